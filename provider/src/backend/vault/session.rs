//! A mount's session with Vault: the login as the pod's service account, the
//! Vault token it yields, and its reuse across mounts of the same identity.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::client::Endpoint;
use super::errors::vault_errors;
use super::transport::Replay;
use super::{Error, ErrorKind, Shared, State, VaultConfig};
use crate::identity::CredentialScope;
use crate::metrics::LoginLabels;
use crate::secret::SecretString;
use crate::singleflight::Role;

/// A cached Vault token is dropped this long before its TTL ends, at most.
const TOKEN_EXPIRY_MARGIN_MAX: Duration = Duration::from_secs(60);
/// Reuse period for tokens that report no TTL (never cached forever).
const NO_TTL_TOKEN_REUSE: Duration = Duration::from_secs(300);

/// Cache key of a Vault token: the backend configuration plus the pod identity,
/// scoped to the service account only for a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    pub(super) address: String,
    pub(super) namespace: Option<String>,
    pub(super) mount: String,
    pub(super) role: String,
    pub(super) audience: String,
    pub(super) sa_namespace: String,
    pub(super) sa_name: String,
    pub(super) scope: CredentialScope,
}

/// A Vault token and when it ends. Leases it issues end with it: Vault revokes a
/// token's leases when the token expires or is revoked.
#[derive(Debug, Clone)]
pub(super) struct LoginToken {
    pub(super) secret: SecretString,
    pub(super) expires: Option<Instant>,
}

impl LoginToken {
    /// A short, non-reversible tag for the leases it issued.
    pub(super) fn tag(&self) -> [u8; 16] {
        token_tag(&self.secret)
    }
}

pub(super) fn token_tag(secret: &SecretString) -> [u8; 16] {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret.expose_secret().as_bytes());
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&digest[..16]);
    tag
}

/// One mount's conversation with Vault. Owned, so shared work can run in spawned tasks.
pub(super) struct Session {
    pub(super) state: Arc<State>,
    pub(super) cfg: Arc<VaultConfig>,
    pub(super) jwt: SecretString,
    /// `namespace/name`, for messages.
    pub(super) service_account: String,
    /// Dynamic secrets are kept per pod unless the SecretProviderClass shares them.
    pub(super) pod_uid: String,
    pub(super) identity_label: String,
    pub(super) endpoint: Endpoint,
    pub(super) key: TokenKey,
    pub(super) limit: Arc<Semaphore>,
    /// The Vault token this mount uses; replaced at most once after a refusal.
    pub(super) current: Mutex<Option<LoginToken>>,
    /// Bytes of response bodies this mount has received (retries included).
    pub(super) received: AtomicUsize,
}

/// Runs shared work for at most `limit`.
pub(super) async fn bounded<T>(limit: Duration, backend: &'static str, work: impl std::future::Future<Output = Shared<T>>) -> Shared<T> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(Error::new(ErrorKind::Timeout, backend, format!("the backend did not answer within {limit:?}")))
    })
}

pub(super) fn aborted<T>(backend: &'static str) -> impl FnOnce() -> Shared<T> {
    move || Err(Error::new(ErrorKind::Unavailable, backend, "a shared backend request was aborted"))
}

impl Session {
    pub(super) fn name(&self) -> &'static str {
        self.cfg.flavor.name()
    }

    /// The mount's Vault token: cached, or from a (shared) login.
    pub(super) async fn token(self: &Arc<Self>) -> Result<LoginToken, Error> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            return Ok(token.clone());
        }
        let token = match self.state.tokens.get(&self.key) {
            Some(token) => {
                self.state.metrics.cache("login", "hit");
                token
            }
            None => self.shared_login().await?,
        };
        *current = Some(token.clone());
        Ok(token)
    }

    async fn shared_login(self: &Arc<Self>) -> Result<LoginToken, Error> {
        let bound = self.state.settings.shared_work_timeout;
        loop {
            let me = Arc::clone(self);
            let (token, role) = self
                .state
                .logins_inflight
                .run(self.key.clone(), || async move { bounded(bound, me.name(), me.login()).await }, aborted(self.name()))
                .await;
            self.state.metrics.cache("login", if role == Role::Leader { "miss" } else { "shared" });
            // A login this mount joined late may have run out of time on another
            // mount's clock; this mount's own deadline still bounds a fresh one.
            if role == Role::Follower && token.as_ref().is_err_and(|e| e.kind == ErrorKind::Timeout) {
                continue;
            }
            return token;
        }
    }

    /// After `refused` was refused: log in again, once per mount.
    pub(super) async fn relogin(self: &Arc<Self>, refused: &SecretString) -> Result<LoginToken, Error> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && token.secret != *refused
        {
            return Ok(token.clone());
        }
        // A refused token may have been revoked, and its leases with it.
        self.state.leases.forget_issued_by(token_tag(refused));
        // Another mount of this identity may have logged in again already.
        let token = match self.state.tokens.get(&self.key).filter(|t| t.secret != *refused) {
            Some(token) => token,
            None => {
                self.state.tokens.remove(&self.key);
                self.shared_login().await?
            }
        };
        *current = Some(token.clone());
        Ok(token)
    }

    async fn login(&self) -> Result<LoginToken, Error> {
        let path = format!("auth/{}/login", self.cfg.auth_mount);
        let body = serde_json::json!({"role": self.cfg.role, "jwt": self.jwt.expose_secret()});
        let started = Instant::now();
        // A login is replayed like a read, after a 5xx or a lost connection too: all it
        // can create is a Vault token, and a duplicate one is never used, holds no
        // lease and ends with its TTL, while not retrying would fail the mount. The
        // logins metric counts this call, not its attempts.
        let result = self.send("login", reqwest::Method::POST, &path, None, Some(&body), None, Replay::Always).await;
        let label = |result: &'static str| LoginLabels { backend: self.name(), result };
        let (status, response) = match result {
            Ok(answer) => answer,
            Err(e) => {
                self.state.metrics.logins.get_or_create(&label("error")).inc();
                return Err(e);
            }
        };
        if !status.is_success() {
            self.state.metrics.logins.get_or_create(&label("denied")).inc();
            return Err(Error::new(
                ErrorKind::Denied,
                self.name(),
                format!(
                    "login refused (HTTP {}) at auth/{}/login for role {:?} with the token for audience {:?} \
                     of service account {}: {}. Check that the role exists on auth mount {:?}, that it is \
                     bound to this service account and namespace, that its bound audience is {:?}, that \
                     the auth method trusts the cluster's token issuer, and (if the role lives in a namespace) \
                     that vaultNamespace names it",
                    status.as_u16(),
                    self.cfg.auth_mount,
                    self.cfg.role,
                    self.cfg.audience,
                    self.service_account,
                    vault_errors(&response),
                    self.cfg.auth_mount,
                    self.cfg.audience,
                ),
            ));
        }
        let auth = response.get("auth");
        let Some(token) = auth.and_then(|a| a.get("client_token")).and_then(Value::as_str).filter(|t| !t.is_empty())
        else {
            self.state.metrics.logins.get_or_create(&label("error")).inc();
            return Err(Error::new(
                ErrorKind::Unavailable,
                self.name(),
                format!("login at auth/{}/login returned no client token", self.cfg.auth_mount),
            ));
        };
        self.state.metrics.logins.get_or_create(&label("ok")).inc();
        let ttl = auth.and_then(|a| a.get("lease_duration")).and_then(Value::as_u64).unwrap_or(0);
        let token = LoginToken {
            secret: SecretString::new(token.to_owned()),
            expires: (ttl > 0).then(|| started + Duration::from_secs(ttl)),
        };
        let reuse = token_reuse(Duration::from_secs(ttl));
        self.state.tokens.insert(self.key.clone(), token.clone(), reuse);
        self.state.metrics.tokens_cached.set(i64::try_from(self.state.tokens.len()).unwrap_or(i64::MAX));
        tracing::debug!(
            backend = self.name(),
            identity = %self.identity_label,
            ttl_s = ttl,
            reuse_s = reuse.as_secs(),
            duration_ms = started.elapsed().as_millis() as u64,
            "logged in"
        );
        Ok(token)
    }
}

impl Session {
    pub(super) fn error(&self, kind: ErrorKind, message: String) -> Error {
        Error::new(kind, self.name(), message)
    }
}

/// How long to reuse a token with this TTL: until shortly before it ends.
fn token_reuse(ttl: Duration) -> Duration {
    if ttl.is_zero() {
        return NO_TTL_TOKEN_REUSE;
    }
    let margin = (ttl / 5).min(TOKEN_EXPIRY_MARGIN_MAX);
    ttl - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_reused_until_shortly_before_their_ttl() {
        assert_eq!(token_reuse(Duration::from_secs(3600)), Duration::from_secs(3540));
        assert_eq!(token_reuse(Duration::from_secs(100)), Duration::from_secs(80));
        assert_eq!(token_reuse(Duration::ZERO), NO_TTL_TOKEN_REUSE);
    }
}
