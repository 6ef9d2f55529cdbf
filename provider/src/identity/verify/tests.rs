use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

pub(in crate::identity) struct Signer {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

pub(in crate::identity) fn signer(kid: &str) -> Signer {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
    let point = pair.public_key().as_ref();
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": enc.encode(&point[1..33]), "y": enc.encode(&point[33..65]),
    });
    Signer { kid: kid.to_owned(), key: EncodingKey::from_ec_der(pkcs8.as_ref()), jwk }
}

fn now() -> u64 {
    super::super::unix_now()
}

pub(in crate::identity) fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": "system:serviceaccount:team-a:app", "aud": ["vault"],
        "iat": now, "nbf": now, "exp": now + 3600,
        "kubernetes.io": {
            "namespace": "team-a",
            "serviceaccount": {"name": "app", "uid": "sa-1"},
            "pod": {"name": "app-0", "uid": "pod-1"},
        },
    })
}

pub(in crate::identity) fn sign(signer: &Signer, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, claims, &signer.key).expect("sign")
}

pub(in crate::identity) fn keys(signers: &[&Signer]) -> IssuerKeys {
    let doc = json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()});
    IssuerKeys::from_jwks(doc.to_string().as_bytes(), vec![ISSUER.to_owned()]).expect("keys")
}

pub(in crate::identity) const EXPECTED: Expected<'static> =
    Expected { audience: "vault", namespace: "team-a", service_account: "app", pod_name: "app-0", pod_uid: "pod-1" };

#[test]
fn a_genuine_token_verifies_and_yields_the_account_uid() {
    let s = signer("k1");
    let c = claims();
    let verified = verify(&sign(&s, &c), &keys(&[&s]), &EXPECTED).expect("verifies");
    assert_eq!(verified.uid, "sa-1");
    assert_eq!(verified.expires, c["exp"].as_u64().expect("exp"));
    assert_eq!(verified.not_before, c["nbf"].as_u64());
}

#[test]
fn forged_and_mismatched_tokens_are_refused() {
    let s = signer("k1");
    let keys = keys(&[&s]);
    let check = |c: Value| verify(&sign(&s, &c), &keys, &EXPECTED).map(|v| v.uid);

    let mut c = claims();
    c["exp"] = json!(now() - 2 * CLOCK_LEEWAY_SECS);
    assert_eq!(check(c), Err(TokenProblem::ExpiredClaim));
    let mut c = claims();
    c["nbf"] = json!(now() + 600);
    assert_eq!(check(c), Err(TokenProblem::NotYetValid));
    let mut c = claims();
    c["aud"] = json!(["sts.amazonaws.com"]);
    assert!(matches!(check(c), Err(TokenProblem::WrongAudience { .. })));
    let mut c = claims();
    c["iss"] = json!("https://elsewhere.example");
    assert_eq!(check(c), Err(TokenProblem::WrongIssuer));
    let mut c = claims();
    c["sub"] = json!("system:serviceaccount:team-a:other");
    assert!(matches!(check(c), Err(TokenProblem::WrongSubject { .. })));
    let mut c = claims();
    c["kubernetes.io"]["namespace"] = json!("team-b");
    assert!(matches!(check(c), Err(TokenProblem::WrongSubject { .. })));
    let mut c = claims();
    c["kubernetes.io"]["serviceaccount"]["name"] = json!("other");
    assert!(matches!(check(c), Err(TokenProblem::WrongSubject { .. })));
    let mut c = claims();
    c["kubernetes.io"]["pod"]["uid"] = json!("pod-2");
    assert_eq!(check(c), Err(TokenProblem::WrongPod));
    let mut c = claims();
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(check(c), Err(TokenProblem::MissingClaim("exp".to_owned())));
    // Without a pod claim, the service account is what binds the token.
    let mut c = claims();
    c["kubernetes.io"].as_object_mut().expect("object").remove("pod");
    assert_eq!(check(c), Ok("sa-1".to_owned()));
}

#[test]
fn foreign_keys_unsigned_and_tampered_tokens_are_refused() {
    let s = signer("k1");
    let keys = keys(&[&s]);
    // Another key under an unknown kid, and under the published kid.
    let foreign = signer("k2");
    assert_eq!(verify(&sign(&foreign, &claims()), &keys, &EXPECTED), Err(TokenProblem::UnknownKey));
    let impostor = signer("k1");
    assert_eq!(verify(&sign(&impostor, &claims()), &keys, &EXPECTED), Err(TokenProblem::BadSignature));

    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = enc.encode(claims().to_string());
    for alg in ["none", "HS256", "EdDSA"] {
        let header = enc.encode(json!({"alg": alg, "kid": "k1", "typ": "JWT"}).to_string());
        for signature in ["", "c2ln"] {
            let token = format!("{header}.{payload}.{signature}");
            assert_eq!(verify(&token, &keys, &EXPECTED), Err(TokenProblem::UnsupportedHeader), "{alg}");
            assert_eq!(key_id(&token), Err(TokenProblem::UnsupportedHeader));
        }
    }
    // A genuine signature over other claims.
    let genuine = sign(&s, &claims());
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let mut c = claims();
    c["kubernetes.io"]["serviceaccount"]["uid"] = json!("sa-other");
    let altered = enc.encode(c.to_string());
    parts[1] = &altered;
    assert_eq!(verify(&parts.join("."), &keys, &EXPECTED), Err(TokenProblem::BadSignature));
    assert_eq!(verify("not-a-jwt", &keys, &EXPECTED), Err(TokenProblem::UnsupportedHeader));
}

#[test]
fn key_sets_are_read_defensively() {
    assert!(matches!(IssuerKeys::from_jwks(b"[", vec![]), Err(KeysError::Malformed { .. })));
    assert!(matches!(IssuerKeys::from_jwks(br#"{"keys":[]}"#, vec![]), Err(KeysError::NoUsableKey { skipped: 0 })));
    // A symmetric key is never a verification key here.
    let oct = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#;
    assert!(matches!(IssuerKeys::from_jwks(oct, vec![]), Err(KeysError::NoUsableKey { skipped: 1 })));
    // An EC key that claims an RSA algorithm is skipped.
    let mut s = signer("k1");
    s.jwk["alg"] = json!("RS256");
    let doc = json!({"keys": [s.jwk, signer("k2").jwk]}).to_string();
    let keys = IssuerKeys::from_jwks(doc.as_bytes(), vec![]).expect("one usable key");
    assert_eq!(keys.len(), 1);
    assert!(keys.knows(Some("k2")) && !keys.knows(Some("k1")) && keys.knows(None));
    assert_eq!(discovered_issuer(br#"{"issuer":"https://x","jwks_uri":"https://x/openid/v1/jwks"}"#).ok(), Some("https://x".to_owned()));
    assert!(discovered_issuer(b"{}").is_err());
}
