//! The pod's identity and the per-identity credential cache.
//!
//! Every backend call runs as the pod's own service account, with the token the
//! driver passed for the backend's audience. Cached credentials are keyed by that
//! identity plus the backend configuration, so no pod can ever read through
//! another identity's credentials.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::secret::SecretString;

/// Seconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Service-account tokens by audience.
#[derive(Debug, Default)]
pub struct TokenMap(BTreeMap<String, SecretString>);

impl TokenMap {
    /// Adds the token for `audience`.
    pub fn insert(&mut self, audience: String, token: SecretString) {
        self.0.insert(audience, token);
    }

    /// The audiences a token was passed for (names only).
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Who a mount runs as.
#[derive(Debug)]
pub struct PodIdentity {
    namespace: String,
    pod_name: String,
    pod_uid: String,
    service_account: String,
    tokens: TokenMap,
}

impl PodIdentity {
    /// Builds an identity from kubelet's pod-info attributes and the tokens.
    #[must_use]
    pub fn new(
        namespace: String,
        pod_name: String,
        pod_uid: String,
        service_account: String,
        tokens: TokenMap,
    ) -> Self {
        Self { namespace, pod_name, pod_uid, service_account, tokens }
    }

    /// The pod's namespace (also the service account's).
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The pod's name.
    #[must_use]
    pub fn pod_name(&self) -> &str {
        &self.pod_name
    }

    /// The pod's UID.
    #[must_use]
    pub fn pod_uid(&self) -> &str {
        &self.pod_uid
    }

    /// The service account's name.
    #[must_use]
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The token minted for `audience`, if the driver passed one.
    #[must_use]
    pub fn token(&self, audience: &str) -> Option<&SecretString> {
        self.tokens.0.get(audience)
    }

    /// The audiences the driver passed tokens for.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        self.tokens.audiences()
    }

    /// The service account's UID, read from the `kubernetes.io` claim of any of
    /// the tokens. It separates a deleted-and-recreated service account of the
    /// same name from the old one. The claim is only used as a cache key: the
    /// token itself is what the backend verifies.
    #[must_use]
    pub fn service_account_uid(&self) -> String {
        self.tokens
            .0
            .values()
            .find_map(|t| sa_uid_claim(t.expose_secret()))
            .unwrap_or_default()
    }

    /// A short, stable, non-reversible label for logs: never the token.
    #[must_use]
    pub fn log_label(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.namespace.as_bytes());
        h.update([0]);
        h.update(self.service_account.as_bytes());
        h.update([0]);
        h.update(self.service_account_uid().as_bytes());
        let digest = h.finalize();
        hex::encode(&digest[..6])
    }
}

/// A token whose claims were checked against the pod's identity.
#[derive(Debug)]
pub struct CheckedToken<'a> {
    /// The token, to present to the backend.
    pub token: &'a SecretString,
    /// The service account UID from its claims (empty if the claim is absent).
    pub service_account_uid: String,
}

/// Why the token passed for an audience cannot be used for this pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// The driver passed no token for the audience.
    #[error("no token was passed for this audience")]
    Missing,
    /// The token is not a JWT.
    #[error("the token is not a JWT")]
    NotJwt,
    /// The token names another service account.
    #[error("the token belongs to {found:?}, not to this pod's service account {expected:?}")]
    WrongSubject {
        /// `system:serviceaccount:<ns>:<name>` of the pod.
        expected: String,
        /// What the token says.
        found: String,
    },
    /// The token is for other audiences.
    #[error("the token's audiences are {found:?}")]
    WrongAudience {
        /// The token's `aud`.
        found: Vec<String>,
    },
    /// The token has expired.
    #[error("the token expired {0} seconds ago")]
    Expired(u64),
}

impl PodIdentity {
    /// The token for `audience`, after checking its claims name this pod's service
    /// account and audience and that it has not expired. The signature is the
    /// backend's to verify; this check keeps a token for another identity (or an
    /// expired one) from riding on a login cached for this identity.
    pub fn checked_token(&self, audience: &str, now_unix: u64) -> Result<CheckedToken<'_>, TokenProblem> {
        let token = self.token(audience).ok_or(TokenProblem::Missing)?;
        let claims = jwt_claims(token.expose_secret()).ok_or(TokenProblem::NotJwt)?;
        let expected = format!("system:serviceaccount:{}:{}", self.namespace, self.service_account);
        let subject = claims.get("sub").and_then(serde_json::Value::as_str).unwrap_or_default();
        if subject != expected {
            return Err(TokenProblem::WrongSubject { expected, found: subject.to_owned() });
        }
        let audiences: Vec<String> = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(list)) => {
                list.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };
        if !audiences.iter().any(|a| a == audience) {
            return Err(TokenProblem::WrongAudience { found: audiences });
        }
        if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64)
            && exp <= now_unix {
                return Err(TokenProblem::Expired(now_unix - exp));
            }
        let service_account_uid = claims
            .pointer("/kubernetes.io/serviceaccount/uid")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(CheckedToken { token, service_account_uid })
    }
}

/// A JWT's payload, decoded without verification.
fn jwt_claims(jwt: &str) -> Option<serde_json::Value> {
    let mut parts = jwt.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.is_object().then_some(claims)
}

/// `kubernetes.io.serviceaccount.uid` from a JWT's payload, unverified.
fn sa_uid_claim(jwt: &str) -> Option<String> {
    jwt_claims(jwt)?.pointer("/kubernetes.io/serviceaccount/uid")?.as_str().map(str::to_owned)
}

/// Upper bound on cached credentials, so a churn of identities cannot grow memory
/// without limit; expired entries are dropped first.
const MAX_CACHED_CREDENTIALS: usize = 10_000;

/// Credentials that expire, keyed by identity plus backend configuration.
pub struct CredentialCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

/// Shows how many entries are held, never a key or a value: values are tokens,
/// credentials and secret responses.
impl<K, V> std::fmt::Debug for CredentialCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        f.debug_struct("CredentialCache").field("entries", &entries).finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Default for CredentialCache<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> CredentialCache<K, V> {
    /// The cached value for `key`, unless it has expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get(key) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches `value` for `valid_for`.
    pub fn insert(&self, key: K, value: V, valid_for: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_CREDENTIALS {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= MAX_CACHED_CREDENTIALS {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + valid_for));
    }

    /// Drops the entry for `key` (after the backend refused it).
    pub fn remove(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// Number of entries, expired ones included.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(id(good.clone()).checked_token("vault", now).expect("ok").service_account_uid, "sa-1");
        assert_eq!(id(good.clone()).checked_token("other", now).err(), Some(TokenProblem::Missing));
        let mut other_sa = good.clone();
        other_sa["sub"] = "system:serviceaccount:team-b:app".into();
        assert!(matches!(id(other_sa).checked_token("vault", now), Err(TokenProblem::WrongSubject { .. })));
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "sts.amazonaws.com".into();
        assert!(matches!(id(wrong_aud).checked_token("vault", now), Err(TokenProblem::WrongAudience { .. })));
        let mut expired = good;
        expired["exp"] = (now - 5).into();
        assert_eq!(id(expired).checked_token("vault", now).err(), Some(TokenProblem::Expired(5)));
        let mut tokens = TokenMap::default();
        tokens.insert("vault".into(), SecretString::new("opaque".into()));
        let opaque = PodIdentity::new("team-a".into(), "p".into(), "u".into(), "app".into(), tokens);
        assert_eq!(opaque.checked_token("vault", now).err(), Some(TokenProblem::NotJwt));
    }

    #[test]
    fn unparseable_tokens_give_an_empty_uid() {
        let mut tokens = TokenMap::default();
        tokens.insert("vault".into(), SecretString::new("not-a-jwt".into()));
        let id = PodIdentity::new("ns".into(), "p".into(), "u".into(), "app".into(), tokens);
        assert_eq!(id.service_account_uid(), "");
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
}
