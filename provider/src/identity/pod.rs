//! Who a mount runs as: the pod's attributes and its tokens by audience, and the
//! unverified reading of a token's claims (for cache keys, messages and an early
//! refusal of an obviously foreign token; never for trust).

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::TokenProblem;
use crate::secret::SecretString;

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
    pub(super) namespace: String,
    pub(super) pod_name: String,
    pub(super) pod_uid: String,
    pub(super) service_account: String,
    tokens: TokenMap,
    /// The volume's `nodePublishSecretRef` Secret, as the driver passes it (the
    /// tokens removed); only a backend whose operator allowed it reads them.
    publish_secrets: BTreeMap<String, SecretString>,
    /// [`Self::log_label`], computed on first use (it reads the token's claims).
    label: std::sync::OnceLock<String>,
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
        Self {
            namespace,
            pod_name,
            pod_uid,
            service_account,
            tokens,
            publish_secrets: BTreeMap::new(),
            label: std::sync::OnceLock::new(),
        }
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
    pub fn log_label(&self) -> &str {
        self.label.get_or_init(|| {
            let mut h = Sha256::new();
            h.update(self.namespace.as_bytes());
            h.update([0]);
            h.update(self.service_account.as_bytes());
            h.update([0]);
            h.update(self.service_account_uid().as_bytes());
            let digest = h.finalize();
            hex::encode(&digest[..6])
        })
    }
}

impl PodIdentity {
    /// Checks the unverified claims of the token for `audience`: this pod's
    /// service account and audience, not expired. It proves nothing (anyone can
    /// write claims) and only refuses an obviously foreign token early; the
    /// backend verifies the signature, and credentials obtained with an
    /// unverified token are cached for that token alone.
    pub(super) fn precheck(&self, audience: &str, now_unix: u64) -> Result<(), TokenProblem> {
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
pub(super) fn audiences(jwt: &str) -> Vec<String> {
    jwt_claims(jwt).map(|c| audiences_of(&c)).unwrap_or_default()
}

/// `kubernetes.io.serviceaccount.uid` from a JWT's payload, unverified.
fn sa_uid_claim(jwt: &str) -> Option<String> {
    jwt_claims(jwt)?.pointer("/kubernetes.io/serviceaccount/uid")?.as_str().map(str::to_owned)
}
