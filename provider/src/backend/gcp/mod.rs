//! Google Cloud Secret Manager (global and regional) and Parameter Manager,
//! read with the pod's own identity through GKE Workload Identity.
//!
//! The pod's token for the workload pool audience is exchanged at Google's STS
//! for a federated access token; when the Kubernetes service account carries
//! `iam.gke.io/gcp-service-account`, that Google service account is
//! impersonated through IAM Credentials. Tokens are cached per verified
//! identity until shortly before they expire. The calls are plain REST on the
//! provider's HTTP client (see the README for why not Google's Rust crates).

mod access;
mod config;
mod crc32c;
mod login;
mod rest;
mod service_account;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

pub(crate) use config::{Extract, GcpAuth, GcpConfig, GcpObject, Resource, ResourceKind};

use self::login::TokenKey;
use self::service_account::Impersonation;
use super::token::{TokenAdvice, token_error};
use super::annotations::AnnotationReads;
use super::{Backend, BackendPlan, Deps, Error, ErrorKind};
use crate::identity::{CredentialCache, PodIdentity, TokenVerifier};
use crate::kube_client::KubeClient;
use crate::metrics::Metrics;
use crate::plan::{Fetched, ObjectSpec};
use crate::secret::SecretString;
use crate::singleflight::Flights;

/// A mount's Google Cloud part: its configuration and each object's resource.
pub(crate) type Plan = BackendPlan<GcpConfig, GcpObject>;
/// The backend's tunables, by the name the backend registry uses.
pub(crate) type Settings = GcpSettings;

/// Name in messages and metrics.
const BACKEND: &str = "gcp";
/// Requests of one mount in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 16;
/// How long a service account's impersonation annotation is trusted.
pub const DEFAULT_ANNOTATION_CACHE: Duration = Duration::from_secs(60);

/// Google's endpoints, overridable for tests and private endpoints.
#[derive(Debug, Clone)]
pub struct GcpEndpoints {
    /// Global Secret Manager (`https://secretmanager.googleapis.com`).
    pub secret_manager: String,
    /// Regional Secret Manager; `{location}` is replaced by the secret's location.
    pub secret_manager_regional: String,
    /// Global Parameter Manager (`https://parametermanager.googleapis.com`).
    pub parameter_manager: String,
    /// Regional Parameter Manager; `{location}` is replaced by the parameter's location.
    pub parameter_manager_regional: String,
    /// Security Token Service (`https://sts.googleapis.com`).
    pub sts: String,
    /// IAM Credentials (`https://iamcredentials.googleapis.com`).
    pub iam_credentials: String,
    /// The metadata server, for `auth: provider-adc` only (`http://metadata.google.internal`).
    pub metadata: String,
}

impl Default for GcpEndpoints {
    fn default() -> Self {
        Self {
            secret_manager: "https://secretmanager.googleapis.com".into(),
            secret_manager_regional: "https://secretmanager.{location}.rep.googleapis.com".into(),
            parameter_manager: "https://parametermanager.googleapis.com".into(),
            parameter_manager_regional: "https://parametermanager.{location}.rep.googleapis.com".into(),
            sts: "https://sts.googleapis.com".into(),
            iam_credentials: "https://iamcredentials.googleapis.com".into(),
            metadata: "http://metadata.google.internal".into(),
        }
    }
}

/// Tunables of the Google Cloud backend.
#[derive(Debug, Clone, Default)]
pub struct GcpSettings {
    /// Where Google's APIs are.
    pub endpoints: GcpEndpoints,
    /// The workload pool, `PROJECT_ID.svc.id.goog`: the audience of the pod's
    /// token when the SecretProviderClass sets no `audience`.
    pub workload_pool: Option<String>,
    /// The cluster's identity provider
    /// (`https://container.googleapis.com/v1/projects/P/locations/L/clusters/C`),
    /// named in the STS audience `identitynamespace:POOL:PROVIDER`.
    pub identity_provider: Option<String>,
    /// Whether `auth: provider-adc` (the provider's own credentials) is allowed.
    pub allow_provider_adc: bool,
    /// How long a service account's annotation is reused.
    pub annotation_cache: Duration,
    /// Concurrent requests to Google across all mounts.
    pub concurrency: usize,
}

type Shared<T> = Result<T, Error>;

struct State {
    settings: GcpSettings,
    metrics: Arc<Metrics>,
    verifier: Arc<TokenVerifier>,
    kube: Arc<KubeClient>,
    tokens: CredentialCache<TokenKey, SecretString>,
    exchanges: Flights<TokenKey, Shared<SecretString>>,
    annotations: AnnotationReads<Option<Impersonation>>,
    /// Built on first use: a node that never mounts from Google does not load CA certificates for it.
    http: tokio::sync::OnceCell<reqwest::Client>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// Shows settings and cache sizes, never a token.
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("settings", &self.settings)
            .field("tokens", &self.tokens.len())
            .field("exchanges_inflight", &self.exchanges.len())
            .field("annotations", &self.annotations.len())
            .finish_non_exhaustive()
    }
}

/// The Google Cloud backend.
#[derive(Debug, Clone)]
pub(crate) struct GcpBackend {
    state: Arc<State>,
}

impl Backend for GcpBackend {
    type Settings = Settings;
    type Config = GcpConfig;
    type Object = GcpObject;

    fn new(settings: GcpSettings, shared: &Deps) -> Self {
        Self {
            state: Arc::new(State {
                limit: Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1))),
                settings,
                metrics: Arc::clone(&shared.metrics),
                verifier: Arc::clone(&shared.verifier),
                kube: Arc::clone(&shared.kube),
                tokens: CredentialCache::default(),
                exchanges: Flights::default(),
                annotations: AnnotationReads::new(BACKEND),
                http: tokio::sync::OnceCell::new(),
            }),
        }
    }

    fn name(_config: &GcpConfig) -> &'static str {
        BACKEND
    }

    async fn fetch(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        self.fetch_plan(plan, identity, specs).await
    }
}

impl GcpBackend {
    async fn fetch_plan(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        let token = match &plan.config.auth {
            GcpAuth::Pod { audience } => {
                let audience = self.audience(audience.as_deref())?;
                let checked = self.state.verifier.check(identity, audience).await.map_err(|problem| {
                    token_error(problem, BACKEND, audience, identity, TokenAdvice { missing_also: "", pod: "this pod".to_owned() })
                })?;
                self.pod_token(audience, identity, checked.token, checked.scope).await?
            }
            GcpAuth::ProviderAdc if self.state.settings.allow_provider_adc => self.provider_token().await?,
            GcpAuth::ProviderAdc => {
                return Err(Error::new(
                    ErrorKind::Denied,
                    BACKEND,
                    "auth: provider-adc would read with the provider's own credentials, shared by every pod on the node; \
                     use the pod's identity (auth: pod-adc, the default), or ask the operator to start the provider \
                     with --gcp-allow-provider-adc",
                ));
            }
        };

        // One read per distinct resource; objects naming the same version share it.
        let mut unique: Vec<&Resource> = Vec::new();
        for object in &plan.objects {
            if !unique.contains(&&object.resource) {
                unique.push(&object.resource);
            }
        }
        let first_spec = |resource: &Resource| {
            plan.objects.iter().position(|o| &o.resource == resource).and_then(|i| specs.get(i))
        };
        let reads: Vec<_> = unique
            .iter()
            .map(|&resource| {
                let token = &token;
                async move {
                    let read = self.read(resource, token).await;
                    (resource.name.clone(), read.map_err(|e| match first_spec(resource) {
                        Some(spec) => e.for_object(spec),
                        None => e,
                    }))
                }
            })
            .collect();
        let mut values: HashMap<String, access::Value> = HashMap::new();
        let mut results = futures::stream::iter(reads).buffer_unordered(MAX_CONCURRENT_REQUESTS);
        while let Some((name, read)) = results.next().await {
            values.insert(name, read?);
        }
        specs
            .iter()
            .zip(&plan.objects)
            .map(|(spec, object)| {
                let value = values
                    .get(&object.resource.name)
                    .ok_or_else(|| Error::new(ErrorKind::Unavailable, BACKEND, "an object was not fetched").for_object(spec))?;
                access::select(value, object).map_err(|e| e.for_object(spec))
            })
            .collect()
    }

    /// The audience of the pod's token: the SecretProviderClass's, else the pool.
    fn audience<'a>(&'a self, declared: Option<&'a str>) -> Result<&'a str, Error> {
        declared.or(self.state.settings.workload_pool.as_deref()).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                BACKEND,
                "no workload pool audience is known: set the SecretProviderClass 'audience' parameter \
                 (PROJECT_ID.svc.id.goog), or --gcp-workload-pool on the provider",
            )
        })
    }

    /// A slot of the backend-wide concurrency limit.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        Arc::clone(&self.state.limit)
            .acquire_owned()
            .await
            .map_err(|_| Error::new(ErrorKind::Unavailable, BACKEND, "the provider is shutting down"))
    }

    /// The HTTP client, built on first use.
    async fn http(&self) -> Result<&reqwest::Client, Error> {
        self.state
            .http
            .get_or_try_init(|| async {
                reqwest::Client::builder().build().map_err(|e| {
                    Error::new(ErrorKind::Unavailable, BACKEND, "cannot build an HTTP client for Google's APIs").caused_by(e)
                })
            })
            .await
    }
}

/// Records one call to Google: its outcome and duration.
fn count(state: &State, operation: &'static str, ok: bool, started: std::time::Instant) {
    use crate::metrics::{OperationLabels, RequestLabels};
    let status = if ok { "2xx" } else { "error" };
    state.metrics.backend_requests.get_or_create(&RequestLabels { backend: BACKEND, operation, status }).inc();
    state
        .metrics
        .backend_seconds
        .get_or_create(&OperationLabels { backend: BACKEND, operation })
        .observe(started.elapsed().as_secs_f64());
}

#[cfg(test)]
impl GcpBackend {
    /// Caches `token` (also as an exchange in flight), for tests of what Debug shows.
    pub(crate) fn seed_for_test(&self, token: &str) {
        let key = TokenKey::for_test();
        self.state.tokens.insert(key.clone(), SecretString::new(token.to_owned()), Duration::from_secs(600));
        self.state.exchanges.hold_for_test(key, Ok(SecretString::new(token.to_owned())));
    }
}
