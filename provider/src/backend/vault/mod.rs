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
mod errors;
mod fetch;
mod lease;
mod read;
mod select;
mod session;
mod sweep;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
#[cfg(test)]
use std::time::Instant;

use serde_json::Value;
use tokio::sync::Semaphore;

pub(crate) use config::{Fidelity, Flavor, LeasePolicy, Method, TlsSettings, TlsVerify, VaultConfig, VaultObject};

/// A mount's Vault part: its configuration and each object's request.
pub(crate) type Plan = BackendPlan<VaultConfig, VaultObject>;
/// The backend's tunables, by the name the backend registry uses.
pub(crate) type Settings = VaultSettings;

use self::client::Clients;
#[cfg(test)]
use self::client::Endpoint;
use self::lease::Leases;
#[cfg(test)]
use self::lease::{LeaseKey, Revoker, lease_facts};
use self::read::ReadKey;
use self::session::{LoginToken, TokenKey};
use super::{Backend, BackendPlan, Deps, Error, ErrorKind};
use crate::identity::{CredentialCache, PodIdentity, TokenVerifier};
#[cfg(test)]
use crate::identity::unix_now;
use crate::metrics::Metrics;
use crate::plan::{Fetched, ObjectSpec};
#[cfg(test)]
use crate::secret::SecretString;
use crate::singleflight::Flights;

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

/// The outcome of work other mounts may share (a login, a read).
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
            runtime.spawn(sweep::sweep_leases(Arc::downgrade(&state)));
        }
        Self { state }
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
