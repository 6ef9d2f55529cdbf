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

pub(crate) use config::{Fidelity, Flavor, LeasePolicy, Method, TlsSettings, TlsVerify, VaultConfig, VaultObject};

/// A mount's Vault part: its configuration and each object's request.
pub(crate) type Plan = BackendPlan<VaultConfig, VaultObject>;
/// The backend's tunables, by the name the backend registry uses.
pub(crate) type Settings = VaultSettings;

use self::client::{Clients, Endpoint};
use self::lease::{LeaseKey, Leases, Lookup, Revoker, lease_facts};
use self::select::{Document, SelectError, data_kind, select};
use super::{Backend, BackendPlan, Deps, Error, ErrorKind};
use crate::plan::{Fetched, ObjectSpec};
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
/// (The driver takes at most 4 MiB of files for a whole mount.)
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes of response bodies one mount receives in all: JSON framing around
/// at most 4 MiB of files, with room for a retried read.
const MAX_MOUNT_RESPONSE_BYTES: usize = 12 * 1024 * 1024;
/// A cached Vault token is dropped this long before its TTL ends, at most.
const TOKEN_EXPIRY_MARGIN_MAX: Duration = Duration::from_secs(60);
/// Reuse period for tokens that report no TTL (never cached forever).
const NO_TTL_TOKEN_REUSE: Duration = Duration::from_secs(300);
/// Longest Vault error text carried into a message.
const MAX_VAULT_ERROR_CHARS: usize = 300;
/// Default reuse window of a static read within one identity.
pub(crate) const DEFAULT_STATIC_REUSE: Duration = Duration::from_secs(5);
/// Default bound on concurrent HTTP requests to one backend address.
pub const DEFAULT_BACKEND_CONCURRENCY: usize = 64;
/// Default share of a dynamic secret's lifetime after which it is renewed or re-issued.
pub const DEFAULT_LEASE_REUSE_FRACTION: f64 = 2.0 / 3.0;
/// Default interval of the sweep that drops expired leases and revokes idle ones.
pub(crate) const DEFAULT_LEASE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Default time without a mount after which `revokeOnUnmount` leases are revoked.
pub(crate) const DEFAULT_LEASE_REVOKE_GRACE: Duration = Duration::from_secs(600);

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

/// Shows settings and sizes, never a cached token or response.
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("settings", &self.settings)
            .field("tokens", &self.tokens.len())
            .field("reads", &self.reads.len())
            .field("logins_inflight", &self.logins_inflight.len())
            .field("reads_inflight", &self.reads_inflight.len())
            .field("leases", &self.leases.len())
            .finish_non_exhaustive()
    }
}

/// The Vault/OpenBao backend: HTTP clients, the login cache and shared reads.
#[derive(Debug, Clone)]
pub(crate) struct VaultBackend {
    state: Arc<State>,
}

impl VaultBackend {
    /// A backend with empty caches; `verifier` decides which tokens may share them.
    #[must_use]
    pub(crate) fn new(settings: VaultSettings, metrics: Arc<Metrics>, verifier: Arc<TokenVerifier>) -> Self {
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

    /// Fetches `plan`'s objects as `identity`; `specs[i]` is where
    /// `plan.objects[i]` goes. The result is in the order of `specs`.
    async fn fetch_plan(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        let cfg = &plan.config;
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
            received: std::sync::atomic::AtomicUsize::new(0),
        });

        let vault_objects: Vec<(&ObjectSpec, &VaultObject)> = specs.iter().zip(&plan.objects).collect();
        let (unique, slot_of) = requests(&vault_objects, cfg.fidelity);
        let document = Document {
            request_id: cfg.fidelity == Fidelity::Anchor,
            mount_type: cfg.flavor == Flavor::Vault,
        };

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

        let mut fetched = Vec::with_capacity(specs.len());
        for ((spec, obj), slot) in vault_objects.into_iter().zip(slot_of) {
            let body = &bodies[slot];
            let bytes = select(body, obj.secret_key.as_deref(), obj.expand, document).map_err(|e| {
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

impl Backend for VaultBackend {
    type Settings = Settings;
    type Config = VaultConfig;
    type Object = VaultObject;

    fn new(settings: VaultSettings, shared: &Deps) -> Self {
        Self::new(settings, std::sync::Arc::clone(&shared.metrics), std::sync::Arc::clone(&shared.verifier))
    }

    fn name(config: &VaultConfig) -> &'static str {
        config.flavor.name()
    }

    async fn fetch(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        self.fetch_plan(plan, identity, specs).await
    }
}

#[cfg(test)]
impl VaultBackend {
    /// Fills every cache with `token` as the Vault token and `response` (which must
    /// carry a lease) as the cached response, for tests of what Debug shows.
    pub(crate) fn seed_for_test(&self, token: &str, response: &Value) {
        let state = &self.state;
        let key = TokenKey {
            address: "http://127.0.0.1:8200".into(),
            namespace: None,
            mount: "jwt".into(),
            role: "app".into(),
            audience: "vault".into(),
            sa_namespace: "team-a".into(),
            sa_name: "app".into(),
            scope: crate::identity::CredentialScope::ServiceAccount { uid: "sa-uid".into() },
        };
        let login = LoginToken { secret: SecretString::new(token.to_owned()), expires: None };
        let response = Arc::new(response.clone());
        let read = ReadKey { identity: key.clone(), request: "GET secret/data/app".into() };
        let ttl = Duration::from_secs(600);
        state.tokens.insert(key.clone(), login.clone(), ttl);
        state.reads.insert(read.clone(), Arc::clone(&response), ttl);
        state.logins_inflight.hold_for_test(key.clone(), Ok(login.clone()));
        state.reads_inflight.hold_for_test(read, Ok(Arc::clone(&response)));
        let Some(facts) = lease_facts(&response, unix_now()) else { panic!("the seeded response carries no lease") };
        let Ok(base) = reqwest::Url::parse("http://127.0.0.1:8200/v1/") else { panic!("a literal URL parses") };
        let cfg = VaultConfig {
            flavor: Flavor::OpenBao,
            address: key.address.clone(),
            namespace: None,
            auth_mount: key.mount.clone(),
            role: key.role.clone(),
            audience: key.audience.clone(),
            tls: TlsSettings {
                ca_cert: None,
                ca_dir: None,
                server_name: None,
                client_cert: None,
                client_key: None,
                verify: TlsVerify::Enabled,
            },
            leases: LeasePolicy { share: false, revoke_on_unmount: true },
            fidelity: Fidelity::Native,
        };
        let revoker =
            Revoker { endpoint: Endpoint { http: reqwest::Client::new(), base }, cfg: Arc::new(cfg), token: login.secret.clone() };
        let lease = LeaseKey { identity: key, pod_uid: Some("pod-uid".into()), request: "PUT database/creds/app".into() };
        state.leases.store(lease, response, facts, Some(revoker), Some((login.tag(), None)), Instant::now());
    }
}

/// The distinct requests of a mount, and for each object the index of the request
/// whose response it reads.
///
/// As the anchor providers, a mount sends one request per (path, query, method):
/// a second object with the same `secretPath` and `method` reads the first one's
/// response (the usual `tls.key` next to `tls.crt` from one `pki/issue` call),
/// whatever its own `secretArgs`. On the native socket, objects whose `secretArgs`
/// differ are separate requests, and an object without `secretArgs` reads the
/// response of an object with the same path and method if there is one.
fn requests<'a>(
    objects: &[(&'a ObjectSpec, &'a VaultObject)],
    fidelity: Fidelity,
) -> (Vec<(&'a ObjectSpec, &'a VaultObject)>, Vec<usize>) {
    let target = |obj: &VaultObject| (obj.method, obj.path.clone(), obj.query.clone());
    let mut unique: Vec<(&ObjectSpec, &VaultObject)> = Vec::new();
    let mut slot_of = vec![usize::MAX; objects.len()];
    let mut join = |i: usize, matches: &dyn Fn(&VaultObject) -> bool, unique: &mut Vec<(&'a ObjectSpec, &'a VaultObject)>| {
        let slot = match unique.iter().position(|(_, u)| matches(u)) {
            Some(slot) => slot,
            None => {
                unique.push(objects[i]);
                unique.len() - 1
            }
        };
        slot_of[i] = slot;
    };
    match fidelity {
        Fidelity::Anchor => {
            for (i, (_, obj)) in objects.iter().enumerate() {
                let t = target(obj);
                join(i, &|u| target(u) == t, &mut unique);
            }
        }
        Fidelity::Native => {
            // Objects that send arguments first, so one without arguments can read
            // the response of one listed after it.
            for (i, (_, obj)) in objects.iter().enumerate().filter(|(_, (_, o))| o.args.is_some()) {
                let key = obj.request_key();
                join(i, &|u| u.request_key() == key, &mut unique);
            }
            for (i, (_, obj)) in objects.iter().enumerate().filter(|(_, (_, o))| o.args.is_none()) {
                let t = target(obj);
                join(i, &|u| target(u) == t, &mut unique);
            }
        }
    }
    (unique, slot_of)
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
    /// Bytes of response bodies this mount has received (retries included).
    received: std::sync::atomic::AtomicUsize,
}

/// Outcome of one HTTP attempt.
enum Attempt {
    Done(reqwest::StatusCode, Value),
    /// The server answered 429 or a 5xx: it was busy, sealed, or failed midway.
    Busy(u16),
    /// The request failed in transit. `unsent` when it provably never left this
    /// process (the connection was never established).
    Lost { why: String, unsent: bool },
    /// A failure retrying cannot fix (the server's certificate is not trusted).
    Fatal(String),
    /// The mount's responses together passed [`MAX_MOUNT_RESPONSE_BYTES`].
    TooLarge,
}

/// Which failed attempts of a request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Sending it twice does no harm: a read, a lease renewal (the same increment
    /// again), a login (see [`Session::login`]).
    Always,
    /// The request issues something (a certificate, database credentials, any
    /// write-method secret read): sent again only when an attempt provably never
    /// reached the server, or the server refused it unprocessed (429). After a 5xx
    /// or a connection lost once the request was sent, the server may have issued
    /// it; a second attempt would issue a second certificate or lease nobody holds.
    UnsentOnly,
}

impl Replay {
    /// Whether a failed attempt with this outcome may be sent again.
    fn allows(self, outcome: &Attempt) -> bool {
        match outcome {
            // Vault's rate-limit quotas refuse a request before it is routed.
            Attempt::Busy(429) => true,
            Attempt::Busy(_) => self == Self::Always,
            Attempt::Lost { unsent, .. } => *unsent || self == Self::Always,
            Attempt::Done(..) | Attempt::Fatal(_) | Attempt::TooLarge => false,
        }
    }
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
            self.send("renew", reqwest::Method::PUT, "sys/leases/renew", None, Some(&body), Some(&token.secret), Replay::Always)
                .await?;
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
        let (method, operation, replay) = match obj.method {
            Method::Get => (reqwest::Method::GET, "read", Replay::Always),
            Method::Put => (reqwest::Method::PUT, "write", Replay::UnsentOnly),
            Method::Post => (reqwest::Method::POST, "write", Replay::UnsentOnly),
        };
        let body = match obj.method {
            Method::Get => None,
            Method::Put | Method::Post => Some(Value::Object(obj.args.clone().unwrap_or_default())),
        };
        let mut token = self.token().await?;
        let mut relogged = false;
        loop {
            let (status, response) = self
                .send(operation, method.clone(), &obj.path, obj.query.as_deref(), body.as_ref(), Some(&token.secret), replay)
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

    /// Sends one request with bounded, jittered retries on connect errors, 429 and
    /// 5xx, as far as `replay` allows.
    #[allow(clippy::too_many_arguments, reason = "one request's parts; a struct for them would only be unpacked here")]
    async fn send(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
        token: Option<&SecretString>,
        replay: Replay,
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
                Attempt::Done(status, _) => status_class(status.as_u16()),
                Attempt::Busy(_) => "5xx",
                Attempt::Lost { .. } | Attempt::Fatal(_) | Attempt::TooLarge => "error",
            };
            let metrics = &self.state.metrics;
            metrics.backend_requests.get_or_create(&RequestLabels { backend: self.name(), operation, status }).inc();
            metrics
                .backend_seconds
                .get_or_create(&OperationLabels { backend: self.name(), operation })
                .observe(started.elapsed().as_secs_f64());
            let replayable = replay.allows(&outcome);
            match outcome {
                Attempt::Done(status, value) => return Ok((status, value)),
                Attempt::Fatal(why) => {
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
                Attempt::TooLarge => {
                    return Err(self.error(
                        ErrorKind::Invalid,
                        format!(
                            "{} {path}: the mount's responses from {} pass {MAX_MOUNT_RESPONSE_BYTES} bytes; \
                             the driver takes at most 4 MiB of files: split the objects across SecretProviderClasses",
                            method.as_str(),
                            self.cfg.address
                        ),
                    ));
                }
                Attempt::Busy(code) => last = format!("HTTP {code}"),
                Attempt::Lost { why, .. } => last = why,
            }
            if !replayable {
                return Err(self.error(
                    ErrorKind::Unavailable,
                    format!(
                        "{} {path} failed after the request may have reached {} ({last}); it is not sent again, \
                         since a second attempt could issue a second secret. The next mount tries again; check \
                         that the server is healthy",
                        method.as_str(),
                        self.cfg.address
                    ),
                ));
            }
            tracing::debug!(backend = self.name(), path, attempt, reason = %last, "retrying");
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

    async fn attempt(&self, request: reqwest::RequestBuilder) -> Attempt {
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if is_certificate_error(&e) => return Attempt::Fatal(describe_transport_error(&e)),
            Err(e) => return Attempt::Lost { why: describe_transport_error(&e), unsent: never_sent(&e) },
        };
        let status = response.status();
        if status.as_u16() == 429 || (status.is_server_error() && status.as_u16() != 501) {
            return Attempt::Busy(status.as_u16());
        }
        // From here on the server has answered: whatever is lost was sent.
        let lost = |why: String| Attempt::Lost { why, unsent: false };
        let mut body = zeroize::Zeroizing::new(Vec::new());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return lost(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
                    }
                    // Charged as it arrives, so a server that answers every read of a
                    // mount with megabytes is stopped before they are all held.
                    let received = self.received.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed) + chunk.len();
                    if received > MAX_MOUNT_RESPONSE_BYTES {
                        return Attempt::TooLarge;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return lost(describe_transport_error(&e)),
            }
        }
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(e) => {
                    return lost(format!(
                        "HTTP {}: the response is not JSON ({:?} error)",
                        status.as_u16(),
                        e.classify()
                    ));
                }
            }
        };
        Attempt::Done(status, value)
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

/// Whether a transport error is the server's certificate being refused: a TLS
/// certificate error somewhere in the source chain.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(cause) = source {
        if is_tls_certificate_error(cause) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The TLS connector wraps the TLS library's error in I/O errors (nested), whose
/// own `source` skips the wrapped error, so I/O errors are opened by hand.
fn is_tls_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.get_ref().is_some_and(|inner| is_tls_certificate_error(inner));
    }
    matches!(
        e.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

/// Whether a failed request provably never reached the server: no connection was
/// established (refused, DNS, TLS handshake, connect timeout). The HTTP client
/// reports each of these as a connect error of its connector (found by type in the
/// error's source chain), before a byte of the request is written. Anything later (a
/// reset, a timeout while waiting for the answer) may follow a request the server
/// acted on.
fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect()
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

    fn local_client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("a plain HTTP client builds")
    }

    #[tokio::test]
    async fn a_refused_connection_was_never_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let err = local_client().post(format!("http://{addr}/v1/pki/issue/web")).send().await.expect_err("refused");
        assert!(never_sent(&err), "{err:?}");
    }

    #[tokio::test]
    async fn a_connection_cut_after_sending_may_have_reached_the_server() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            // Read the request, then close without an answer.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"{}") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            request
        });
        let err = local_client()
            .post(format!("http://{addr}/v1/pki/issue/web"))
            .body("{}")
            .send()
            .await
            .expect_err("the connection is cut");
        let request = server.await.expect("server task");
        assert!(request.starts_with(b"POST /v1/pki/issue/web"), "the request was sent");
        assert!(!never_sent(&err), "{err:?}");
    }

    #[test]
    fn certificate_errors_are_found_by_type_inside_nested_io_errors() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, refused));
        assert!(is_tls_certificate_error(&nested));
        let other = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError));
        assert!(!is_tls_certificate_error(&other));
        // The words alone do not count.
        assert!(!is_tls_certificate_error(&std::io::Error::other("invalid peer certificate: UnknownIssuer")));
    }

    #[test]
    fn writes_are_replayed_only_when_unsent_or_refused_unprocessed() {
        let lost = |unsent| Attempt::Lost { why: String::new(), unsent };
        for (outcome, always, unsent_only) in [
            (Attempt::Busy(503), true, false),
            (Attempt::Busy(502), true, false),
            (Attempt::Busy(429), true, true),
            (lost(true), true, true),
            (lost(false), true, false),
            (Attempt::Fatal(String::new()), false, false),
        ] {
            assert_eq!(Replay::Always.allows(&outcome), always);
            assert_eq!(Replay::UnsentOnly.allows(&outcome), unsent_only);
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

    fn spec_of(obj: VaultObject, index: usize) -> (ObjectSpec, VaultObject) {
        let spec = ObjectSpec {
            index,
            name: format!("o{index}"),
            path: crate::object_path::ObjectPath::parse(&format!("o{index}")).expect("path"),
            write: true,
            expand: None,
            mode: None,
            encoding: crate::plan::Encoding::Utf8,
            descriptor: String::new(),
            derived: Vec::new(),
        };
        (spec, obj)
    }

    #[test]
    fn one_request_per_path_and_method() {
        let issue = |args: Option<Value>, key: &str| VaultObject {
            path: "pki/issue/web".into(),
            query: None,
            method: Method::Put,
            args: args.and_then(|a| a.as_object().cloned()),
            secret_key: Some(key.into()),
            expand: false,
        };
        let specs = [
            spec_of(issue(None, "private_key"), 0),
            spec_of(issue(Some(serde_json::json!({"common_name": "a"})), "certificate"), 1),
            spec_of(issue(Some(serde_json::json!({"common_name": "b"})), "certificate"), 2),
            spec_of(VaultObject { method: Method::Post, ..issue(None, "ca_chain") }, 3),
        ];
        let objects: Vec<(&ObjectSpec, &VaultObject)> = specs.iter().map(|(s, o)| (s, o)).collect();
        // The anchors: the first listed object of each (path, method) sends, whatever its arguments.
        let (unique, slots) = requests(&objects, Fidelity::Anchor);
        assert_eq!((unique.len(), slots), (2, vec![0, 0, 0, 1]));
        assert!(unique[0].1.args.is_none());
        // Native: distinct arguments are distinct requests; no arguments joins the first with arguments.
        let (unique, slots) = requests(&objects, Fidelity::Native);
        assert_eq!((unique.len(), slots), (3, vec![0, 0, 1, 2]));
        assert_eq!(unique[0].0.index, 1);
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
