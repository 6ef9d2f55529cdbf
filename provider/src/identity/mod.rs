//! The pod's identity, the verification of its token, and the per-identity
//! credential cache.
//!
//! Every backend call runs as the pod's own service account, with the token the
//! driver passed for the backend's audience. A cached credential is shared only
//! by tokens the provider has verified ([`TokenVerifier`]): signature against the
//! cluster's service-account issuer keys, `exp`/`nbf`/`aud`/`iss`, and claims
//! naming the pod of the request. A token that cannot be verified because no
//! keys can be had gets credentials keyed by a hash of the exact token, so it
//! never rides on a login made for another token.

mod issuer;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use self::issuer::IssuerKeyCache;
use self::verify::Expected;
use crate::kube_client::KubeClient;
use crate::secret::SecretString;

/// Seconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub(crate) fn unix_now() -> u64 {
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
    /// The volume's `nodePublishSecretRef` Secret, as the driver passes it (the
    /// tokens removed); only a backend whose operator allowed it reads them.
    publish_secrets: BTreeMap<String, SecretString>,
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
        Self { namespace, pod_name, pod_uid, service_account, tokens, publish_secrets: BTreeMap::new() }
    }

    /// Adds the volume's `nodePublishSecretRef` values.
    #[must_use]
    pub fn with_publish_secrets(mut self, secrets: BTreeMap<String, SecretString>) -> Self {
        self.publish_secrets = secrets;
        self
    }

    /// The `nodePublishSecretRef` value under `key`, its name matched
    /// case-insensitively (as the anchors read `clientid`/`ClientID`).
    #[must_use]
    pub(crate) fn publish_secret(&self, key: &str) -> Option<&SecretString> {
        self.publish_secrets.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
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

/// A token the provider may present for the pod, and the scope of credentials
/// obtained with it.
#[derive(Debug)]
pub(crate) struct CheckedToken<'a> {
    /// The token, to present to the backend.
    pub token: &'a SecretString,
    /// Who may share credentials obtained with it.
    pub scope: CredentialScope,
}

/// Who may share a credential obtained with a token: part of every cache key
/// (logins, credentials, shared reads, leases) next to the pod's namespace and
/// service account.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum CredentialScope {
    /// A verified token: every verified token of the service account with this
    /// UID (a recreated account of the same name has another).
    ServiceAccount {
        /// The service account's UID from the verified claims (empty if absent).
        uid: String,
    },
    /// A token that could not be verified: this exact token only (its SHA-256).
    Token([u8; 32]),
}

impl CredentialScope {
    /// The scope of an unverified token: the token itself.
    #[must_use]
    pub(crate) fn of_token(token: &SecretString) -> Self {
        Self::Token(Sha256::digest(token.expose_secret().as_bytes()).into())
    }
}

impl std::fmt::Debug for CredentialScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServiceAccount { uid } => f.debug_struct("ServiceAccount").field("uid", uid).finish(),
            // Nothing computed from the token is printed.
            Self::Token(_) => f.write_str("Token(<unverified>)"),
        }
    }
}

/// Whether tokens are verified against the cluster's issuer keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenVerification {
    /// Verify when the keys can be had from the API server; otherwise cache
    /// credentials per exact token.
    #[default]
    Auto,
    /// Verify always; refuse mounts (Unavailable) while no keys can be had.
    Required,
    /// Never verify: credentials are cached per exact token.
    Off,
}

/// Settings of the [`TokenVerifier`].
#[derive(Debug, Clone, Default)]
pub struct VerifierSettings {
    /// Whether tokens are verified.
    pub mode: TokenVerification,
    /// Accepted `iss` values; when empty, the issuer the API server's discovery
    /// document names.
    pub issuers: Vec<String>,
}

/// Verifies service-account tokens before any cached credential is used for them.
#[derive(Debug)]
pub(crate) struct TokenVerifier {
    mode: TokenVerification,
    keys: Arc<IssuerKeyCache>,
}

impl TokenVerifier {
    /// A verifier reading keys through `client` (built on first use).
    #[must_use]
    pub(crate) fn new(settings: VerifierSettings, client: Arc<KubeClient>) -> Self {
        Self { mode: settings.mode, keys: Arc::new(IssuerKeyCache::new(client, settings.issuers)) }
    }

    /// Starts loading the issuer keys in the background (unless verification is
    /// off), so the first mounts after start find them instead of waiting.
    pub(crate) fn prefetch(&self) {
        if self.mode == TokenVerification::Off {
            return;
        }
        let keys = Arc::clone(&self.keys);
        tokio::spawn(async move {
            let _ = keys.keys(None).await;
        });
    }

    /// The token for `audience` and the scope its credentials may be shared in.
    ///
    /// With keys, the token must verify (signature, `exp`/`nbf` with a small
    /// leeway, `aud`, `iss`, and `kubernetes.io` claims naming the pod's
    /// namespace, service account and, when present, the pod) or it is refused:
    /// the scope is then the service account. Without keys (and not
    /// [`TokenVerification::Required`]), the scope is the exact token, after
    /// the unverified claims were checked so an obviously foreign token is
    /// refused early.
    pub(crate) async fn check<'a>(&self, identity: &'a PodIdentity, audience: &str) -> Result<CheckedToken<'a>, TokenProblem> {
        let token = identity.token(audience).ok_or(TokenProblem::Missing)?;
        if self.mode != TokenVerification::Off {
            let kid = verify::key_id(token.expose_secret())?;
            match self.keys.keys(kid.as_deref()).await {
                Some(keys) => {
                    let expected = Expected {
                        audience,
                        namespace: &identity.namespace,
                        service_account: &identity.service_account,
                        pod_name: &identity.pod_name,
                        pod_uid: &identity.pod_uid,
                    };
                    let uid = verify::verify(token.expose_secret(), &keys, &expected)?;
                    return Ok(CheckedToken { token, scope: CredentialScope::ServiceAccount { uid } });
                }
                None if self.mode == TokenVerification::Required => return Err(TokenProblem::KeysUnavailable),
                None => {}
            }
        }
        identity.precheck(audience, unix_now())?;
        Ok(CheckedToken { token, scope: CredentialScope::of_token(token) })
    }
}

/// Why the token passed for an audience cannot be used for this pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenProblem {
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
    /// The token's `exp` has passed (verified).
    #[error("the token has expired")]
    ExpiredClaim,
    /// The token's `nbf` lies in the future.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// The token names another issuer.
    #[error("the token was not issued by the cluster's service-account issuer (iss)")]
    WrongIssuer,
    /// The token is bound to another pod.
    #[error("the token is bound to another pod")]
    WrongPod,
    /// A claim is missing or malformed.
    #[error("the token's {0:?} claim is missing or malformed")]
    MissingClaim(String),
    /// The header names no accepted signature algorithm (e.g. `none`, HMAC) or is unreadable.
    #[error("the token's header is unreadable or names an algorithm the cluster does not sign with")]
    UnsupportedHeader,
    /// The token names a key the cluster does not publish.
    #[error("the token is signed with a key the cluster does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify against the cluster's service-account issuer keys")]
    BadSignature,
    /// Verification is required and no issuer keys can be had.
    #[error(
        "the cluster's service-account issuer keys cannot be read from the Kubernetes API, and token \
         verification is required"
    )]
    KeysUnavailable,
}

impl PodIdentity {
    /// Checks the unverified claims of the token for `audience`: this pod's
    /// service account and audience, not expired. It proves nothing (anyone can
    /// write claims) and only refuses an obviously foreign token early; the
    /// backend verifies the signature, and credentials obtained with an
    /// unverified token are cached for that token alone.
    fn precheck(&self, audience: &str, now_unix: u64) -> Result<(), TokenProblem> {
        let token = self.token(audience).ok_or(TokenProblem::Missing)?;
        let claims = jwt_claims(token.expose_secret()).ok_or(TokenProblem::NotJwt)?;
        let expected = format!("system:serviceaccount:{}:{}", self.namespace, self.service_account);
        let subject = claims.get("sub").and_then(serde_json::Value::as_str).unwrap_or_default();
        if subject != expected {
            return Err(TokenProblem::WrongSubject { expected, found: subject.to_owned() });
        }
        let audiences = audiences_of(&claims);
        if !audiences.iter().any(|a| a == audience) {
            return Err(TokenProblem::WrongAudience { found: audiences });
        }
        if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64)
            && exp <= now_unix {
                return Err(TokenProblem::Expired(now_unix - exp));
            }
        Ok(())
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

/// The `aud` claim of decoded claims.
fn audiences_of(claims: &serde_json::Value) -> Vec<String> {
    match claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(list)) => list.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The `aud` claim of a JWT, unverified (for messages).
fn audiences(jwt: &str) -> Vec<String> {
    jwt_claims(jwt).map(|c| audiences_of(&c)).unwrap_or_default()
}

/// `kubernetes.io.serviceaccount.uid` from a JWT's payload, unverified.
fn sa_uid_claim(jwt: &str) -> Option<String> {
    jwt_claims(jwt)?.pointer("/kubernetes.io/serviceaccount/uid")?.as_str().map(str::to_owned)
}

/// Upper bound on cached credentials, so a churn of identities cannot grow memory
/// without limit; expired entries are dropped first.
const MAX_CACHED_CREDENTIALS: usize = 10_000;

/// Credentials that expire, keyed by identity plus backend configuration.
pub(crate) struct CredentialCache<K, V> {
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
    pub(crate) fn get(&self, key: &K) -> Option<V> {
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
    pub(crate) fn insert(&self, key: K, value: V, valid_for: Duration) {
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
    pub(crate) fn remove(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// Number of entries, expired ones included.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests;
