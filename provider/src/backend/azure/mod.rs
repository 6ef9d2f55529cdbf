//! Azure Key Vault secrets, keys and certificates, read with the pod's own
//! identity through Entra workload identity.
//!
//! The pod's token for `api://AzureADTokenExchange` is sent to the tenant's
//! token endpoint as a client assertion for the application named by `clientID`
//! (or the service account's `azure.workload.identity/client-id`); the Key Vault
//! token it returns is cached per verified identity until shortly before it
//! expires. There is no node identity; the service principal of a volume's
//! `nodePublishSecretRef` is used only when the operator allows it. The calls
//! are plain REST on the provider's HTTP client (see the README for why not the
//! Azure SDK crates).

mod auth;
mod cloud;
mod config;
mod convert;
mod flags;
mod login;
mod objects;
mod rest;
mod service_account;
mod vault;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use cloud::parse_cloud_name;
pub(crate) use config::{
    AzureAuth, AzureConfig, AzureObject, Cloud, MAX_HISTORY, ObjectType, valid_client_id,
    valid_object_name, valid_tenant, valid_version, vault_name_problem,
};
pub use flags::AzureArgs;

use self::login::TokenKey;
use self::service_account::Annotations;
use super::annotations::AnnotationReads;
use super::{Backend, BackendPlan, Deps, Error, ErrorKind};
use crate::identity::{CredentialCache, PodIdentity, TokenVerifier};
use crate::kube_client::KubeClient;
use crate::metrics::Metrics;
use crate::plan::{Fetched, ObjectSpec};
use crate::secret::SecretString;
use crate::singleflight::Flights;

/// A mount's Azure part: its configuration and each object's source.
pub(crate) type Plan = BackendPlan<AzureConfig, AzureObject>;
/// The backend's tunables, by the name the backend registry uses.
pub(crate) type Settings = AzureSettings;

/// Name in messages and metrics.
const BACKEND: &str = "azure";
/// The audience of the pod token Entra accepts as a client assertion.
pub(crate) const AUDIENCE: &str = "api://AzureADTokenExchange";
/// Requests of one mount in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 16;
/// How long a service account's annotations are trusted.
pub(crate) const DEFAULT_AZURE_ANNOTATION_CACHE: Duration = Duration::from_secs(60);

/// Tunables of the Azure backend.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// Entra's authority host for every cloud (`AZURE_AUTHORITY_HOST`); `None`
    /// takes the cloud's (`https://login.microsoftonline.com` for the public one).
    pub authority_host: Option<String>,
    /// Key Vault's address, `{vault}` standing for the vault name; `None` takes
    /// the cloud's (`https://{vault}.vault.azure.net`).
    pub keyvault_endpoint: Option<String>,
    /// Extra CA certificates (PEM) trusted for Entra and Key Vault.
    pub ca_file: Option<PathBuf>,
    /// The directory `cloudEnvFileName` files may be read from; `None` refuses them.
    pub cloud_env_dir: Option<PathBuf>,
    /// Whether a volume's `nodePublishSecretRef` service principal may be used.
    pub allow_node_publish_secret: bool,
    /// Order a PKCS#12 certificate's chain leaf to root (`--construct-pem-chain`).
    pub construct_pem_chain: bool,
    /// How long a service account's annotations are reused.
    pub annotation_cache: Duration,
    /// Concurrent requests to Azure across all mounts.
    pub concurrency: usize,
}

impl Default for AzureSettings {
    fn default() -> Self {
        Self {
            authority_host: None,
            keyvault_endpoint: None,
            ca_file: None,
            cloud_env_dir: None,
            allow_node_publish_secret: false,
            construct_pem_chain: true,
            annotation_cache: DEFAULT_AZURE_ANNOTATION_CACHE,
            concurrency: 1,
        }
    }
}

type Shared<T> = Result<T, Error>;

struct State {
    settings: AzureSettings,
    metrics: Arc<Metrics>,
    verifier: Arc<TokenVerifier>,
    kube: Arc<KubeClient>,
    tokens: CredentialCache<TokenKey, SecretString>,
    logins: Flights<TokenKey, Shared<SecretString>>,
    annotations: AnnotationReads<Annotations>,
    /// Built on first use: a node that never mounts from Azure loads no CA certificates for it.
    http: tokio::sync::OnceCell<reqwest::Client>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// Shows settings and cache sizes, never a token.
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("settings", &self.settings)
            .field("tokens", &self.tokens.len())
            .field("logins_inflight", &self.logins.len())
            .field("annotations", &self.annotations.len())
            .finish_non_exhaustive()
    }
}

/// The Azure Key Vault backend.
#[derive(Debug, Clone)]
pub(crate) struct AzureBackend {
    state: Arc<State>,
}

impl Backend for AzureBackend {
    type Settings = Settings;
    type Config = AzureConfig;
    type Object = AzureObject;

    fn new(settings: AzureSettings, shared: &Deps) -> Self {
        Self {
            state: Arc::new(State {
                limit: Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1))),
                settings,
                metrics: Arc::clone(&shared.metrics),
                verifier: Arc::clone(&shared.verifier),
                kube: Arc::clone(&shared.kube),
                tokens: CredentialCache::default(),
                logins: Flights::default(),
                annotations: AnnotationReads::new(BACKEND),
                http: tokio::sync::OnceCell::new(),
            }),
        }
    }

    fn name(_config: &AzureConfig) -> &'static str {
        BACKEND
    }

    async fn fetch(
        &self,
        plan: &Plan,
        identity: &PodIdentity,
        specs: &[ObjectSpec],
    ) -> Result<Vec<Fetched>, Error> {
        let ends =
            cloud::resolve(&self.state.settings, &plan.config.cloud, &plan.config.vault).await?;
        let (token, key) = self.token(&plan.config, &ends, identity).await?;
        match self.read_all(plan, &ends, &token, specs).await {
            // A cached token Key Vault no longer accepts (revoked, or its tenant's policy changed): log in again
            // once, within this mount.
            Err(e) if unauthorized(&e) => {
                self.forget_token(&key);
                let (token, _) = self.token(&plan.config, &ends, identity).await?;
                self.read_all(plan, &ends, &token, specs).await
            }
            other => other,
        }
    }
}

impl AzureBackend {
    /// A slot of the backend-wide concurrency limit.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        Arc::clone(&self.state.limit)
            .acquire_owned()
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Unavailable,
                    BACKEND,
                    "the provider is shutting down",
                )
            })
    }

    /// The HTTP client, built on first use with the operator's extra CA.
    async fn http(&self) -> Result<&reqwest::Client, Error> {
        self.state
            .http
            .get_or_try_init(|| async {
                let mut builder = reqwest::Client::builder();
                if let Some(path) = &self.state.settings.ca_file {
                    let pem = tokio::fs::read(path).await.map_err(|e| {
                        Error::new(
                            ErrorKind::Unavailable,
                            BACKEND,
                            format!("--azure-ca-file {} cannot be read", path.display()),
                        )
                        .caused_by(e)
                    })?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                        Error::new(
                            ErrorKind::Unavailable,
                            BACKEND,
                            format!("--azure-ca-file {} is not PEM certificates", path.display()),
                        )
                        .caused_by(e)
                    })?;
                    builder = builder.tls_certs_merge(certs);
                }
                builder.build().map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        BACKEND,
                        "cannot build an HTTP client for Azure",
                    )
                    .caused_by(e)
                })
            })
            .await
    }
}

/// Whether `error` is Key Vault's 401 for the token (read from its typed cause, not its text).
fn unauthorized(error: &Error) -> bool {
    std::error::Error::source(error)
        .and_then(|cause| cause.downcast_ref::<rest::AzureError>())
        .is_some_and(|azure| azure.http == 401)
}

/// Records one call to Azure: its outcome and duration.
fn count(state: &State, operation: &'static str, ok: bool, started: std::time::Instant) {
    use crate::metrics::{OperationLabels, RequestLabels};
    let status = if ok { "2xx" } else { "error" };
    state
        .metrics
        .backend_requests
        .get_or_create(&RequestLabels {
            backend: BACKEND,
            operation,
            status,
        })
        .inc();
    state
        .metrics
        .backend_seconds
        .get_or_create(&OperationLabels {
            backend: BACKEND,
            operation,
        })
        .observe(started.elapsed().as_secs_f64());
}

#[cfg(test)]
impl AzureBackend {
    /// Caches `token` (also as a login in flight), for tests of what Debug shows.
    pub(crate) fn seed_for_test(&self, token: &str) {
        let key = TokenKey::for_test();
        self.state.tokens.insert(
            key.clone(),
            SecretString::new(token.to_owned()),
            Duration::from_secs(600),
        );
        self.state
            .logins
            .hold_for_test(key, Ok(SecretString::new(token.to_owned())));
    }
}
