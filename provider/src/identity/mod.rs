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

mod cache;
mod issuer;
mod pod;
mod verified;
mod verify;

use std::sync::Arc;

use sha2::{Digest, Sha256};

pub(crate) use self::cache::CredentialCache;
use self::issuer::IssuerKeyCache;
use self::pod::audiences;
pub(crate) use self::pod::{PodIdentity, TokenMap};
use self::verified::VerifiedTokens;
use self::verify::Expected;
use crate::kube_client::KubeClient;
use crate::secret::SecretString;

/// Seconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
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
    verified: VerifiedTokens,
}

impl TokenVerifier {
    /// A verifier reading keys through `client` (built on first use).
    #[must_use]
    pub(crate) fn new(settings: VerifierSettings, client: Arc<KubeClient>) -> Self {
        Self {
            mode: settings.mode,
            keys: Arc::new(IssuerKeyCache::new(client, settings.issuers)),
            verified: VerifiedTokens::default(),
        }
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
    ///
    /// A token verified before for the same pod and audience, against the key
    /// set still current, is not verified again while its `exp`/`nbf` hold
    /// ([`verified`]).
    pub(crate) async fn check<'a>(&self, identity: &'a PodIdentity, audience: &str) -> Result<CheckedToken<'a>, TokenProblem> {
        let token = identity.token(audience).ok_or(TokenProblem::Missing)?;
        if self.mode != TokenVerification::Off {
            let expected = Expected {
                audience,
                namespace: &identity.namespace,
                service_account: &identity.service_account,
                pod_name: &identity.pod_name,
                pod_uid: &identity.pod_uid,
            };
            let digest = verified::digest(token.expose_secret(), &expected);
            if let Some(keys) = self.keys.current()
                && let Some(uid) = self.verified.get(&digest, &keys, unix_now())
            {
                return Ok(CheckedToken { token, scope: CredentialScope::ServiceAccount { uid } });
            }
            let kid = verify::key_id(token.expose_secret())?;
            match self.keys.keys(kid.as_deref()).await {
                Some(keys) => {
                    let verified = verify::verify(token.expose_secret(), &keys, &expected)?;
                    let uid = verified.uid.clone();
                    self.verified.insert(digest, &keys, verified, unix_now());
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

#[cfg(test)]
mod tests;
