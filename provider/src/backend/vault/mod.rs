//! Vault and OpenBao: login with the pod's service-account token, then read each
//! object's path with the resulting Vault token.
//!
//! Logins are cached per identity and configuration until shortly before the
//! token's TTL ends, and repeated once if a read is refused (the token may have
//! been revoked). Identical requests of one mount are sent once, and a mount's
//! distinct requests run concurrently.
//!
//! Across mounts, and only ever within one identity: concurrent logins share one
//! login, concurrent identical reads share one request (singleflight), and a
//! static read (GET without a lease) is reused for a short window. A response
//! that carries a lease is never handed to another pod.

mod client;
mod config;
mod lease;
mod select;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rand::Rng as _;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

pub use config::{Flavor, LeasePolicy, Method, TlsSettings, TlsVerify, VaultConfig, VaultObject};

use self::client::{Clients, Endpoint};
use self::lease::{LeaseKey, Leases, Lookup, Revoker, lease_facts};
use self::select::{SelectError, data_kind, select};
use super::{Error, ErrorKind, Fetched, ObjectSource, ObjectSpec};
use crate::identity::{CredentialCache, CredentialScope, PodIdentity, TokenProblem, TokenVerifier, unix_now};
use crate::metrics::{LoginLabels, Metrics, OperationLabels, RequestLabels, status_class};
use crate::secret::{SecretBytes, SecretString};
use crate::singleflight::{Flights, Role};

/// Distinct requests of one mount in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 16;
/// Attempts per request on retryable failures (connect errors, 429, 5xx).
const MAX_ATTEMPTS: u32 = 3;
/// First retry delay; doubled per attempt, plus up to 50% jitter.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
/// Largest response body accepted; a larger one is refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// A cached Vault token is dropped this long before its TTL ends, at most.
const TOKEN_EXPIRY_MARGIN_MAX: Duration = Duration::from_secs(60);
/// Reuse period for tokens that report no TTL (never cached forever).
const NO_TTL_TOKEN_REUSE: Duration = Duration::from_secs(300);
/// Longest Vault error text carried into a message.
const MAX_VAULT_ERROR_CHARS: usize = 300;
/// Default reuse window of a static read within one identity.
pub const DEFAULT_STATIC_REUSE: Duration = Duration::from_secs(5);
/// Default bound on concurrent HTTP requests to one backend address.
pub const DEFAULT_BACKEND_CONCURRENCY: usize = 64;
/// Default share of a dynamic secret's lifetime after which it is renewed or re-issued.
pub const DEFAULT_LEASE_REUSE_FRACTION: f64 = 2.0 / 3.0;
/// Default interval of the sweep that drops expired leases and revokes idle ones.
pub const DEFAULT_LEASE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Default time without a mount after which `revokeOnUnmount` leases are revoked.
pub const DEFAULT_LEASE_REVOKE_GRACE: Duration = Duration::from_secs(600);

/// Cache key of a Vault token: the backend configuration plus the pod identity,
/// scoped to the service account only for a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    address: String,
    namespace: Option<String>,
    mount: String,
    role: String,
    audience: String,
    sa_namespace: String,
    sa_name: String,
    scope: CredentialScope,
}

/// A Vault token and when it ends. Leases it issues end with it: Vault revokes a
/// token's leases when the token expires or is revoked.
#[derive(Debug, Clone)]
struct LoginToken {
    secret: SecretString,
    expires: Option<Instant>,
}

impl LoginToken {
    /// A short, non-reversible tag for the leases it issued.
    fn tag(&self) -> [u8; 16] {
        token_tag(&self.secret)
    }
}

fn token_tag(secret: &SecretString) -> [u8; 16] {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret.expose_secret().as_bytes());
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&digest[..16]);
    tag
}

/// Cache and singleflight key of a read: the identity plus the exact request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReadKey {
    identity: TokenKey,
    request: String,
}

/// Tunables of the Vault backend.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// How long a static read is reused within one identity; zero disables reuse.
    pub static_reuse: Duration,
    /// Concurrent HTTP requests allowed to one backend address.
    pub backend_concurrency: usize,
    /// Share of a dynamic secret's lifetime after which it is renewed or re-issued.
    pub lease_reuse_fraction: f64,
    /// Renew renewable leases at that point instead of issuing fresh ones.
    pub renew_leases: bool,
    /// How often expired leases are dropped and idle `revokeOnUnmount` leases revoked.
    pub lease_sweep_interval: Duration,
    /// Time without any mount using a `revokeOnUnmount` lease before it is revoked.
    pub lease_revoke_grace: Duration,
    /// Bound on shared work (a login or read other mounts wait on), so work nobody
    /// waits for any more does not hold a connection slot long after its mounts gave up.
    pub shared_work_timeout: Duration,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            static_reuse: DEFAULT_STATIC_REUSE,
            backend_concurrency: DEFAULT_BACKEND_CONCURRENCY,
            lease_reuse_fraction: DEFAULT_LEASE_REUSE_FRACTION,
            renew_leases: true,
            lease_sweep_interval: DEFAULT_LEASE_SWEEP_INTERVAL,
            lease_revoke_grace: DEFAULT_LEASE_REVOKE_GRACE,
            shared_work_timeout: Duration::from_secs(45),
        }
    }
}

type Shared<T> = Result<T, Error>;

/// State shared by all mounts.
#[derive(Debug)]
struct State {
    settings: VaultSettings,
    metrics: Arc<Metrics>,
    verifier: Arc<TokenVerifier>,
    clients: Clients,
    tokens: CredentialCache<TokenKey, LoginToken>,
    reads: CredentialCache<ReadKey, Arc<Value>>,
    logins_inflight: Flights<TokenKey, Shared<LoginToken>>,
    reads_inflight: Flights<ReadKey, Shared<Arc<Value>>>,
    limits: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
    leases: Leases,
}

/// The Vault/OpenBao backend: HTTP clients, the login cache and shared reads.
#[derive(Debug, Clone)]
pub struct VaultBackend {
    state: Arc<State>,
}

impl VaultBackend {
    /// A backend with empty caches; `verifier` decides which tokens may share them.
    #[must_use]
    pub fn new(settings: VaultSettings, metrics: Arc<Metrics>, verifier: Arc<TokenVerifier>) -> Self {
        let leases = Leases::new(settings.lease_reuse_fraction, settings.renew_leases);
        let state = Arc::new(State {
            settings,
            metrics,
            verifier,
            clients: Clients::default(),
            tokens: CredentialCache::default(),
            reads: CredentialCache::default(),
            logins_inflight: Flights::default(),
            reads_inflight: Flights::default(),
            limits: std::sync::Mutex::new(HashMap::new()),
            leases,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_leases(Arc::downgrade(&state)));
        }
        Self { state }
    }

    /// Fetches `objects` as `identity`. The result is in the order of `objects`.
    pub async fn fetch(
        &self,
        cfg: &VaultConfig,
        identity: &PodIdentity,
        objects: &[ObjectSpec],
    ) -> Result<Vec<Fetched>, Error> {
        let backend = cfg.flavor.name();
        let checked = self.state.verifier.check(identity, &cfg.audience).await.map_err(|problem| match problem {
            TokenProblem::Missing => {
                let passed: Vec<&str> = identity.audiences().collect();
                Error::new(
                    ErrorKind::Invalid,
                    backend,
                    format!(
                        "the driver passed no service-account token for audience {:?} (tokens were passed for: {}); \
                         add {{audience: {:?}}} to the CSIDriver's spec.tokenRequests, or set the SecretProviderClass \
                         'audience' parameter to one of the passed audiences",
                        cfg.audience,
                        if passed.is_empty() { "none".to_owned() } else { format!("{passed:?}") },
                        cfg.audience
                    ),
                )
            }
            TokenProblem::KeysUnavailable => Error::new(
                ErrorKind::Unavailable,
                backend,
                format!("{}; check the provider can reach the Kubernetes API", TokenProblem::KeysUnavailable),
            ),
            other => Error::new(
                ErrorKind::Denied,
                backend,
                format!(
                    "the service-account token for audience {:?} cannot be used for pod {}/{}: {other}",
                    cfg.audience,
                    identity.namespace(),
                    identity.pod_name()
                ),
            ),
        })?;
        let jwt = checked.token;
        let limit = {
            let mut limits = self.state.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                limits
                    .entry(cfg.address.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.state.settings.backend_concurrency.max(1)))),
            )
        };
        let session = Arc::new(Session {
            state: Arc::clone(&self.state),
            cfg: Arc::new(cfg.clone()),
            jwt: jwt.clone(),
            service_account: format!("{}/{}", identity.namespace(), identity.service_account()),
            pod_uid: identity.pod_uid().to_owned(),
            identity_label: identity.log_label(),
            endpoint: self.state.clients.endpoint(cfg).await?,
            key: TokenKey {
                address: cfg.address.clone(),
                namespace: cfg.namespace.clone(),
                mount: cfg.auth_mount.clone(),
                role: cfg.role.clone(),
                audience: cfg.audience.clone(),
                sa_namespace: identity.namespace().to_owned(),
                sa_name: identity.service_account().to_owned(),
                scope: checked.scope,
            },
            limit,
            current: Mutex::new(None),
        });

        // One request per distinct (path, query, method, args).
        let mut unique: Vec<(&ObjectSpec, &VaultObject)> = Vec::new();
        let mut slot_of = Vec::with_capacity(objects.len());
        let mut keys: Vec<String> = Vec::new();
        let mut vault_objects: Vec<&VaultObject> = Vec::with_capacity(objects.len());
        for spec in objects {
            let ObjectSource::Vault(obj) = &spec.source else {
                return Err(Error::new(ErrorKind::Invalid, backend, "a non-Vault object reached the Vault backend"));
            };
            vault_objects.push(obj);
            let key = obj.request_key();
            let slot = match keys.iter().position(|k| *k == key) {
                Some(slot) => slot,
                None => {
                    keys.push(key);
                    unique.push((spec, obj));
                    keys.len() - 1
                }
            };
            slot_of.push(slot);
        }

        session.token().await?;
        // The futures are built first so the stream's type holds no closure over
        // borrowed items (which trips the Send check of the gRPC handler).
        let reads: Vec<_> = unique
            .iter()
            .map(|&(spec, obj)| {
                let session = Arc::clone(&session);
                async move { session.read_object(obj).await.map_err(|e| e.for_object(spec)) }
            })
            .collect();
        let responses: Vec<Result<Arc<Value>, Error>> =
            futures::stream::iter(reads).buffered(MAX_CONCURRENT_REQUESTS).collect().await;
        let mut bodies = Vec::with_capacity(responses.len());
        for response in responses {
            bodies.push(response?);
        }

        let mut fetched = Vec::with_capacity(objects.len());
        for ((spec, slot), obj) in objects.iter().zip(slot_of).zip(vault_objects) {
            let body = &bodies[slot];
            let bytes = select(body, obj.secret_key.as_deref(), obj.expand).map_err(|e| {
                let message = match e {
                    SelectError::NoData => format!(
                        "secretKey {:?}: the response of {} has no 'data' object (data is {})",
                        obj.secret_key.as_deref().unwrap_or_default(),
                        obj.path,
                        data_kind(body)
                    ),
                    SelectError::MissingKey { key, available } => format!(
                        "secretKey {key:?} does not exist at {}; keys there: {}",
                        obj.path,
                        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
                    ),
                };
                Error::new(ErrorKind::NotFound, backend, message).for_object(spec)
            })?;
            fetched.push(Fetched::value(SecretBytes::new(bytes), None));
        }
        Ok(fetched)
    }
}

/// One mount's conversation with Vault. Owned, so shared work can run in spawned tasks.
struct Session {
    state: Arc<State>,
    cfg: Arc<VaultConfig>,
    jwt: SecretString,
    /// `namespace/name`, for messages.
    service_account: String,
    /// Dynamic secrets are kept per pod unless the SecretProviderClass shares them.
    pod_uid: String,
    identity_label: String,
    endpoint: Endpoint,
    key: TokenKey,
    limit: Arc<Semaphore>,
    /// The Vault token this mount uses; replaced at most once after a refusal.
    current: Mutex<Option<LoginToken>>,
}

/// Outcome of one HTTP attempt.
enum Attempt {
    Done(reqwest::StatusCode, Value),
    Retry(String),
    /// A failure retrying cannot fix (the server's certificate is not trusted).
    Fatal(String),
}

/// Runs shared work for at most `limit`.
async fn bounded<T>(limit: Duration, backend: &'static str, work: impl std::future::Future<Output = Shared<T>>) -> Shared<T> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(Error::new(ErrorKind::Timeout, backend, format!("the backend did not answer within {limit:?}")))
    })
}

fn aborted<T>(backend: &'static str) -> impl FnOnce() -> Shared<T> {
    move || Err(Error::new(ErrorKind::Unavailable, backend, "a shared backend request was aborted"))
}

/// Whether a response carries a lease (dynamic secret): it belongs to one pod.
fn has_lease(response: &Value) -> bool {
    lease_facts(response, unix_now()).is_some_and(|f| f.lease_id.is_some())
}

impl Session {
    fn name(&self) -> &'static str {
        self.cfg.flavor.name()
    }

    /// The mount's Vault token: cached, or from a (shared) login.
    async fn token(self: &Arc<Self>) -> Result<LoginToken, Error> {
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
    async fn relogin(self: &Arc<Self>, refused: &SecretString) -> Result<LoginToken, Error> {
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
        let result = self.send("login", reqwest::Method::POST, &path, None, Some(&body), None).await;
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

    /// Reads one object: a kept dynamic secret if one is still fresh, else from the
    /// backend (static reads shared within the identity).
    async fn read_object(self: &Arc<Self>, obj: &VaultObject) -> Result<Arc<Value>, Error> {
        let key = LeaseKey {
            identity: self.key.clone(),
            pod_uid: if self.cfg.leases.share { None } else { Some(self.pod_uid.clone()) },
            request: obj.request_key(),
        };
        let leases = &self.state.leases;
        match leases.lookup(&key, Instant::now()) {
            Lookup::Reuse(response) => {
                self.lease_event(lease::Event::Reused, obj);
                return Ok(response);
            }
            Lookup::Renew { lease_id, increment, response } => match self.renew(&lease_id, increment).await {
                Ok(granted) if leases.renewed(&key, granted, Instant::now()) => {
                    self.lease_event(lease::Event::Renewed, obj);
                    return Ok(response);
                }
                Ok(_) => self.lease_event(lease::Event::RenewFailed, obj),
                Err(e) => {
                    leases.forget(&key);
                    self.lease_event(lease::Event::RenewFailed, obj);
                    tracing::debug!(backend = self.name(), path = %obj.path, error = %e, "lease renewal failed; issuing a fresh one");
                }
            },
            Lookup::Miss => {}
        }
        let response = self.fetch_object(obj).await?;
        if let Some(facts) = lease_facts(&response, unix_now()) {
            let parent = self.token().await.ok();
            let revoke = if self.cfg.leases.revoke_on_unmount && facts.lease_id.is_some() {
                parent.as_ref().map(|token| Revoker {
                    endpoint: self.endpoint.clone(),
                    cfg: Arc::clone(&self.cfg),
                    token: token.secret.clone(),
                })
            } else {
                None
            };
            // A lease cannot outlive the token that issued it; a certificate without a lease can.
            let issuer = match (&facts.lease_id, &parent) {
                (Some(_), Some(token)) => Some((token.tag(), token.expires)),
                _ => None,
            };
            leases.store(key, Arc::clone(&response), facts, revoke, issuer, Instant::now());
            self.lease_event(lease::Event::Issued, obj);
        }
        Ok(response)
    }

    fn lease_event(&self, event: lease::Event, obj: &VaultObject) {
        self.state.metrics.lease(event.label());
        self.state.metrics.leases_held.set(i64::try_from(self.state.leases.len()).unwrap_or(i64::MAX));
        tracing::debug!(backend = self.name(), path = %obj.path, lease.event = event.label(), "dynamic secret");
    }

    /// Renews a lease; returns the duration granted.
    async fn renew(self: &Arc<Self>, lease_id: &str, increment: Duration) -> Result<Duration, Error> {
        let token = self.token().await?;
        let body = serde_json::json!({"lease_id": lease_id, "increment": increment.as_secs()});
        let (status, response) =
            self.send("renew", reqwest::Method::PUT, "sys/leases/renew", None, Some(&body), Some(&token.secret)).await?;
        let granted = response.get("lease_duration").and_then(Value::as_u64).unwrap_or(0);
        if !status.is_success() || granted == 0 {
            return Err(self.error(
                ErrorKind::Denied,
                format!("lease renewal refused (HTTP {}): {}", status.as_u16(), vault_errors(&response)),
            ));
        }
        Ok(Duration::from_secs(granted))
    }

    /// Reads from the backend, sharing static reads within the identity.
    async fn fetch_object(self: &Arc<Self>, obj: &VaultObject) -> Result<Arc<Value>, Error> {
        if obj.method != Method::Get {
            // Writes issue something new (a certificate, a credential): never shared.
            return self.read(obj).await.map(Arc::new);
        }
        let key = ReadKey { identity: self.key.clone(), request: obj.request_key() };
        let reuse = self.state.settings.static_reuse;
        if !reuse.is_zero()
            && let Some(found) = self.state.reads.get(&key)
        {
            self.state.metrics.cache("read", "hit");
            return Ok(found);
        }
        let bound = self.state.settings.shared_work_timeout;
        let (result, role) = loop {
            let me = Arc::clone(self);
            let owned = obj.clone();
            let (result, role) = self
                .state
                .reads_inflight
                .run(
                    key.clone(),
                    || async move { bounded(bound, me.name(), async { me.read(&owned).await.map(Arc::new) }).await },
                    aborted(self.name()),
                )
                .await;
            self.state.metrics.cache("read", if role == Role::Leader { "miss" } else { "shared" });
            if role == Role::Follower && result.as_ref().is_err_and(|e| e.kind == ErrorKind::Timeout) {
                continue;
            }
            break (result, role);
        };
        let response = result?;
        if has_lease(&response) {
            if role == Role::Follower && !self.cfg.leases.share {
                // A dynamic secret another pod's request issued: get our own.
                return self.read(obj).await.map(Arc::new);
            }
        } else if !reuse.is_zero() && role == Role::Leader {
            self.state.reads.insert(key, Arc::clone(&response), reuse);
        }
        Ok(response)
    }

    /// Reads one object's path, logging in again once if the token is refused.
    async fn read(self: &Arc<Self>, obj: &VaultObject) -> Result<Value, Error> {
        let (method, operation) = match obj.method {
            Method::Get => (reqwest::Method::GET, "read"),
            Method::Put => (reqwest::Method::PUT, "write"),
            Method::Post => (reqwest::Method::POST, "write"),
        };
        let body = match obj.method {
            Method::Get => None,
            Method::Put | Method::Post => Some(Value::Object(obj.args.clone().unwrap_or_default())),
        };
        let mut token = self.token().await?;
        let mut relogged = false;
        loop {
            let (status, response) = self
                .send(operation, method.clone(), &obj.path, obj.query.as_deref(), body.as_ref(), Some(&token.secret))
                .await?;
            let code = status.as_u16();
            match code {
                200..=299 if response.is_null() => {
                    return Err(self.error(
                        ErrorKind::NotFound,
                        format!("{} {} returned no data (HTTP {code})", obj.method.as_str(), obj.path),
                    ));
                }
                200..=299 => return Ok(response),
                403 if !relogged => {
                    relogged = true;
                    token = self.relogin(&token.secret).await?;
                }
                403 => {
                    return Err(self.error(
                        ErrorKind::Denied,
                        format!(
                            "{} {} refused (HTTP 403) for role {:?}: {}. Check that the role's token policies \
                             grant {} on this path",
                            obj.method.as_str(),
                            obj.path,
                            self.cfg.role,
                            vault_errors(&response),
                            capability(obj.method),
                        ),
                    ));
                }
                404 => {
                    return Err(self.error(
                        ErrorKind::NotFound,
                        format!(
                            "{} not found (HTTP 404){}. Check secretPath (a KV v2 path reads <mount>/data/<name>) \
                             and vaultNamespace",
                            obj.path,
                            optional_errors(&response)
                        ),
                    ));
                }
                _ => {
                    return Err(self.error(
                        ErrorKind::Invalid,
                        format!(
                            "{} {} was rejected (HTTP {code}): {}",
                            obj.method.as_str(),
                            obj.path,
                            vault_errors(&response)
                        ),
                    ));
                }
            }
        }
    }

    fn error(&self, kind: ErrorKind, message: String) -> Error {
        Error::new(kind, self.name(), message)
    }

    /// Sends one request with bounded, jittered retries on connect errors, 429 and 5xx.
    async fn send(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
        token: Option<&SecretString>,
    ) -> Result<(reqwest::StatusCode, Value), Error> {
        let mut url = self.endpoint.base.join(path).map_err(|e| {
            self.error(ErrorKind::Invalid, format!("path {path:?} does not form a URL: {e}"))
        })?;
        url.set_query(query);
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let mut request = self.endpoint.http.request(method.clone(), url.clone());
            request = request.header("X-Vault-Request", "true");
            if let Some(ns) = &self.cfg.namespace {
                request = request.header("X-Vault-Namespace", ns);
            }
            if let Some(token) = token {
                let mut value = reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    self.error(ErrorKind::Unavailable, "the server issued a token that is not a valid header".into())
                })?;
                value.set_sensitive(true);
                request = request.header("X-Vault-Token", value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let started = Instant::now();
            let outcome = {
                let _permit = self.limit.acquire().await.map_err(|_| {
                    self.error(ErrorKind::Unavailable, "the provider is shutting down".into())
                })?;
                self.attempt(request).await
            };
            let status = match &outcome {
                Ok(Attempt::Done(status, _)) => status_class(status.as_u16()),
                Ok(Attempt::Retry(_)) => "5xx",
                Ok(Attempt::Fatal(_)) | Err(_) => "error",
            };
            let metrics = &self.state.metrics;
            metrics.backend_requests.get_or_create(&RequestLabels { backend: self.name(), operation, status }).inc();
            metrics
                .backend_seconds
                .get_or_create(&OperationLabels { backend: self.name(), operation })
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Ok(Attempt::Done(status, value)) => return Ok((status, value)),
                Ok(Attempt::Fatal(why)) => {
                    return Err(self.error(
                        ErrorKind::Unavailable,
                        format!(
                            "TLS verification of {} failed: {why}. Set vaultCACertPath or vaultCADirectory to the CA \
                             that signed the server's certificate, or vaultTLSServerName to a name the certificate \
                             holds",
                            self.cfg.address
                        ),
                    ));
                }
                Ok(Attempt::Retry(why)) | Err(why) => {
                    tracing::debug!(backend = self.name(), path, attempt, reason = %why, "retrying");
                    last = why;
                }
            }
        }
        Err(self.error(
            ErrorKind::Unavailable,
            format!(
                "{} {path} failed after {MAX_ATTEMPTS} attempts: {last}. Check that {} is reachable from the \
                 node and unsealed",
                method.as_str(),
                self.cfg.address
            ),
        ))
    }

    async fn attempt(&self, request: reqwest::RequestBuilder) -> Result<Attempt, String> {
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if is_certificate_error(&e) => return Ok(Attempt::Fatal(describe_transport_error(&e))),
            Err(e) => return Err(describe_transport_error(&e)),
        };
        let status = response.status();
        if status.as_u16() == 429 || (status.is_server_error() && status.as_u16() != 501) {
            return Ok(Attempt::Retry(format!("HTTP {}", status.as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe_transport_error(&e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let body = zeroize::Zeroizing::new(body);
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                format!("HTTP {}: the response is not JSON ({:?} error)", status.as_u16(), e.classify())
            })?
        };
        Ok(Attempt::Done(status, value))
    }
}

/// Drops expired leases and revokes `revokeOnUnmount` leases no mount has used
/// for the grace period. Stops when the backend is dropped.
async fn sweep_leases(state: std::sync::Weak<State>) {
    let Some(interval) = state.upgrade().map(|s| s.settings.lease_sweep_interval) else { return };
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(state) = state.upgrade() else { return };
        let (expired, idle) = state.leases.sweep(Instant::now(), state.settings.lease_revoke_grace);
        for _ in 0..expired {
            state.metrics.lease(lease::Event::Expired.label());
        }
        for (lease_id, revoker) in idle {
            let backend = revoker.cfg.flavor.name();
            match revoke(&revoker, &lease_id).await {
                Ok(()) => {
                    state.metrics.lease(lease::Event::Revoked.label());
                    tracing::info!(backend, "revoked a dynamic secret no mount has used for the grace period");
                }
                Err(why) => tracing::warn!(
                    backend,
                    reason = %why,
                    "could not revoke an idle dynamic secret (the role's policy needs 'update' on sys/leases/revoke); it expires on its own"
                ),
            }
        }
        state.metrics.leases_held.set(i64::try_from(state.leases.len()).unwrap_or(i64::MAX));
    }
}

async fn revoke(revoker: &Revoker, lease_id: &str) -> Result<(), String> {
    let url = revoker.endpoint.base.join("sys/leases/revoke").map_err(|e| e.to_string())?;
    let mut token = reqwest::header::HeaderValue::from_str(revoker.token.expose_secret()).map_err(|e| e.to_string())?;
    token.set_sensitive(true);
    let mut request = revoker
        .endpoint
        .http
        .put(url)
        .header("X-Vault-Request", "true")
        .header("X-Vault-Token", token)
        .json(&serde_json::json!({"lease_id": lease_id}));
    if let Some(ns) = &revoker.cfg.namespace {
        request = request.header("X-Vault-Namespace", ns);
    }
    let response = request.send().await.map_err(|e| describe_transport_error(&e))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", response.status().as_u16())) }
}

/// How long to reuse a token with this TTL: until shortly before it ends.
fn token_reuse(ttl: Duration) -> Duration {
    if ttl.is_zero() {
        return NO_TTL_TOKEN_REUSE;
    }
    let margin = (ttl / 5).min(TOKEN_EXPIRY_MARGIN_MAX);
    ttl - margin
}

fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BASE_DELAY * 2u32.saturating_pow(attempt.saturating_sub(1));
    let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
    base + Duration::from_millis(jitter)
}

fn capability(method: Method) -> &'static str {
    match method {
        Method::Get => "the 'read' capability",
        Method::Put | Method::Post => "the 'update' (or 'create') capability",
    }
}

/// Vault's `errors` list, on one line and shortened; error texts name paths and
/// roles, not secrets. Vault wraps some as "1 error occurred:\n\t* permission denied".
fn vault_errors(response: &Value) -> String {
    let errors: Vec<String> = response
        .get("errors")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(one_line).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if errors.is_empty() { "no error text".to_owned() } else { errors.join("; ") }
}

fn one_line(text: &str) -> String {
    let mut parts: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("* ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if parts.len() > 1 && parts[0].ends_with("occurred:") {
        parts.remove(0);
    }
    let joined = parts.join("; ");
    joined.chars().take(MAX_VAULT_ERROR_CHARS).collect()
}

fn optional_errors(response: &Value) -> String {
    let text = vault_errors(response);
    if text == "no error text" { String::new() } else { format!(": {text}") }
}

/// Whether a transport error is the server's certificate being refused.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains("certificate") || text.contains("UnknownIssuer") || text.contains("NotValidForName") {
            return true;
        }
        source = cause.source();
    }
    false
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "transport error".to_owned()
    };
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 1..MAX_ATTEMPTS {
            let d = backoff(attempt);
            let base = RETRY_BASE_DELAY * 2u32.pow(attempt - 1);
            assert!(d >= base && d <= base + base / 2, "{d:?}");
        }
    }

    #[test]
    fn vault_errors_are_put_on_one_line() {
        let v = serde_json::json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]});
        assert_eq!(vault_errors(&v), "permission denied");
        let v = serde_json::json!({"errors": ["2 errors occurred:\n\t* a\n\t* b\n"]});
        assert_eq!(vault_errors(&v), "a; b");
    }

    #[test]
    fn vault_errors_are_joined_and_shortened() {
        let long = "x".repeat(1000);
        let v = serde_json::json!({"errors": ["permission denied", long]});
        let text = vault_errors(&v);
        assert!(text.starts_with("permission denied; "));
        assert!(text.len() < 400);
        assert_eq!(vault_errors(&serde_json::json!({})), "no error text");
    }

    #[test]
    fn identical_requests_share_a_key() {
        let a = VaultObject {
            path: "pki/issue/web".into(),
            query: None,
            method: Method::Put,
            args: serde_json::json!({"common_name": "a"}).as_object().cloned(),
            secret_key: Some("certificate".into()),
            expand: false,
        };
        let mut b = a.clone();
        b.secret_key = Some("private_key".into());
        assert_eq!(a.request_key(), b.request_key());
        b.args = serde_json::json!({"common_name": "b"}).as_object().cloned();
        assert_ne!(a.request_key(), b.request_key());
    }
}
