use std::time::Duration;

use base64::Engine as _;

use super::*;

fn jwt_with(claims: &serde_json::Value) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.sig", enc.encode(b"{}"), enc.encode(claims.to_string()))
}

#[test]
fn service_account_uid_comes_from_the_claim() {
    let mut tokens = TokenMap::default();
    let claims = serde_json::json!({"kubernetes.io": {"serviceaccount": {"name": "app", "uid": "sa-uid-7"}}});
    tokens.insert("vault".into(), SecretString::new(jwt_with(&claims)));
    let id = PodIdentity::new("ns".into(), "p".into(), "u".into(), "app".into(), tokens);
    assert_eq!(id.service_account_uid(), "sa-uid-7");
    assert!(!id.log_label().is_empty());
}

#[test]
fn token_claims_are_checked_against_the_identity() {
    let now = 1_000_000;
    let id = |claims: serde_json::Value| {
        let mut tokens = TokenMap::default();
        tokens.insert("vault".into(), SecretString::new(jwt_with(&claims)));
        PodIdentity::new("team-a".into(), "p".into(), "u".into(), "app".into(), tokens)
    };
    let good = serde_json::json!({
        "sub": "system:serviceaccount:team-a:app", "aud": ["vault"], "exp": now + 60,
        "kubernetes.io": {"serviceaccount": {"uid": "sa-1"}}
    });
    assert_eq!(id(good.clone()).precheck("vault", now), Ok(()));
    assert_eq!(id(good.clone()).precheck("other", now).err(), Some(TokenProblem::Missing));
    let mut other_sa = good.clone();
    other_sa["sub"] = "system:serviceaccount:team-b:app".into();
    assert!(matches!(id(other_sa).precheck("vault", now), Err(TokenProblem::WrongSubject { .. })));
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = "sts.amazonaws.com".into();
    assert!(matches!(id(wrong_aud).precheck("vault", now), Err(TokenProblem::WrongAudience { .. })));
    let mut expired = good;
    expired["exp"] = (now - 5).into();
    assert_eq!(id(expired).precheck("vault", now).err(), Some(TokenProblem::Expired(5)));
    let mut tokens = TokenMap::default();
    tokens.insert("vault".into(), SecretString::new("opaque".into()));
    let opaque = PodIdentity::new("team-a".into(), "p".into(), "u".into(), "app".into(), tokens);
    assert_eq!(opaque.precheck("vault", now).err(), Some(TokenProblem::NotJwt));
}

#[test]
fn unparseable_tokens_give_an_empty_uid() {
    let mut tokens = TokenMap::default();
    tokens.insert("vault".into(), SecretString::new("not-a-jwt".into()));
    let id = PodIdentity::new("ns".into(), "p".into(), "u".into(), "app".into(), tokens);
    assert_eq!(id.service_account_uid(), "");
}

#[tokio::test]
async fn unverified_tokens_scope_credentials_to_the_exact_token() {
    let off = VerifierSettings { mode: TokenVerification::Off, issuers: Vec::new() };
    let verifier = TokenVerifier::new(off, Arc::new(KubeClient::default()));
    let claims = |jti: &str| {
        serde_json::json!({"sub": "system:serviceaccount:team-a:app", "aud": ["vault"], "jti": jti,
                           "exp": unix_now() + 600, "kubernetes.io": {"serviceaccount": {"uid": "sa-1"}}})
    };
    let id = |jti: &str| {
        let mut tokens = TokenMap::default();
        tokens.insert("vault".into(), SecretString::new(jwt_with(&claims(jti))));
        PodIdentity::new("team-a".into(), "p".into(), "u".into(), "app".into(), tokens)
    };
    let (one, again, other) = (id("1"), id("1"), id("2"));
    let a = verifier.check(&one, "vault").await.expect("claims match").scope;
    assert_eq!(a, verifier.check(&again, "vault").await.expect("claims match").scope);
    assert_ne!(a, verifier.check(&other, "vault").await.expect("claims match").scope);
    assert!(matches!(a, CredentialScope::Token(_)));
    // Nothing computed from the token is printed.
    assert_eq!(format!("{a:?}"), "Token(<unverified>)");
    // The unverified claims still refuse an obviously foreign token.
    let mut tokens = TokenMap::default();
    tokens.insert("vault".into(), SecretString::new(jwt_with(&claims("3"))));
    let stranger = PodIdentity::new("team-a".into(), "p".into(), "u".into(), "stranger".into(), tokens);
    assert!(matches!(verifier.check(&stranger, "vault").await, Err(TokenProblem::WrongSubject { .. })));
}

#[test]
fn cache_expires_and_removes() {
    let cache: CredentialCache<&str, u32> = CredentialCache::default();
    cache.insert("a", 1, Duration::from_secs(60));
    cache.insert("b", 2, Duration::ZERO);
    assert_eq!(cache.get(&"a"), Some(1));
    assert_eq!(cache.get(&"b"), None);
    cache.remove(&"a");
    assert_eq!(cache.get(&"a"), None);
}
