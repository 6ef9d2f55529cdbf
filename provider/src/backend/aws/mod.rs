//! AWS Secrets Manager and SSM Parameter Store, read with the pod's own AWS
//! credentials (IRSA or EKS Pod Identity).
//!
//! Secrets Manager objects are fetched concurrently, SSM parameters in batches
//! of ten per GetParameters call. With a failover region, the native socket reads
//! an object there only when the primary region is unreachable or answers 5xx (a
//! 4xx never fails over); the `aws` socket reads it in both regions, as the AWS
//! provider does, and a 4xx from either fails the mount.

mod config;
mod credentials;
mod errors;
mod login;
mod service_account;
mod ssm;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use futures::StreamExt as _;
use tokio::sync::Mutex;

pub(crate) use config::{AwsAuth, AwsConfig, AwsObject, FailoverMode, Service, VersionSelector};

/// A mount's AWS part: its configuration and each object's secret or parameter.
pub(crate) type Plan = BackendPlan<AwsConfig, AwsObject>;
/// The backend's tunables, by the name the backend registry uses.
pub(crate) type Settings = AwsSettings;

use self::errors::{Failure, classify};
use self::ssm::ssm_batches;
use super::annotations::AnnotationReads;
use super::{Backend, BackendPlan, Deps, Error, ErrorKind};
use crate::plan::{Fetched, ObjectSpec};
use super::token::{TokenAdvice, token_error};
use crate::identity::{CredentialCache, CredentialScope, PodIdentity, TokenVerifier};
use crate::kube_client::KubeClient;
use crate::metrics::{Metrics, OperationLabels, RequestLabels};
use crate::secret::SecretBytes;
use crate::singleflight::Flights;

/// Name in messages and metrics.
const BACKEND: &str = "aws";
/// Parameters per GetParameters call (the API's limit).
const SSM_BATCH: usize = 10;
/// Secrets Manager requests of one mount in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 16;
/// How long a service account's role annotation is trusted.
pub const DEFAULT_ROLE_CACHE: Duration = Duration::from_secs(60);
/// Time allowed for one AWS call (the SDK retries within it).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Tunables of the AWS backend.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Region when the SecretProviderClass sets none (`AWS_REGION`).
    pub default_region: Option<String>,
    /// The EKS Pod Identity agent's URL; the well-known link-local address when unset.
    pub pod_identity_agent_url: Option<String>,
    /// How long a service account's role annotation is reused.
    pub role_cache: Duration,
    /// Concurrent requests to AWS (Secrets Manager and SSM) across all mounts.
    pub concurrency: usize,
}

/// Cache key of AWS credentials: the method, the role, and the pod identity,
/// scoped to the service account only for a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CredentialKey {
    method: &'static str,
    role_arn: String,
    sa_namespace: String,
    sa_name: String,
    scope: CredentialScope,
}

type Shared<T> = Result<T, Error>;

struct State {
    settings: AwsSettings,
    metrics: Arc<Metrics>,
    verifier: Arc<TokenVerifier>,
    base: Mutex<HashMap<String, aws_config::SdkConfig>>,
    credentials: CredentialCache<CredentialKey, Credentials>,
    inflight: Flights<CredentialKey, Shared<(Credentials, SystemTime)>>,
    /// Service accounts' role annotations (IRSA).
    roles: AnnotationReads<Option<String>>,
    kube: Arc<KubeClient>,
    /// The Pod Identity agent's client, built on first use: building one loads the system's CA certificates,
    /// which a node that never uses Pod Identity should not pay for at start-up or hold in memory.
    http: tokio::sync::OnceCell<reqwest::Client>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// Shows settings and cache sizes, never a credential.
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("settings", &self.settings)
            .field("credentials", &self.credentials.len())
            .field("credentials_inflight", &self.inflight.len())
            .field("roles", &self.roles.len())
            .finish_non_exhaustive()
    }
}

impl Backend for AwsBackend {
    type Settings = Settings;
    type Config = AwsConfig;
    type Object = AwsObject;

    fn new(settings: AwsSettings, shared: &Deps) -> Self {
        Self::new(settings, Arc::clone(&shared.metrics), Arc::clone(&shared.verifier), Arc::clone(&shared.kube))
    }

    fn name(_config: &AwsConfig) -> &'static str {
        BACKEND
    }

    async fn fetch(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        self.fetch_plan(plan, identity, specs).await
    }
}

#[cfg(test)]
impl AwsBackend {
    /// Caches credentials with `secret_key` and `session_token` (also as a run in
    /// flight), for tests of what Debug shows.
    pub(crate) fn seed_for_test(&self, secret_key: &str, session_token: &str) {
        let key = CredentialKey {
            method: "irsa",
            role_arn: "arn:aws:iam::123456789012:role/app".into(),
            sa_namespace: "team-a".into(),
            sa_name: "app".into(),
            scope: crate::identity::CredentialScope::ServiceAccount { uid: "sa-uid".into() },
        };
        let expires = SystemTime::now() + Duration::from_secs(600);
        let creds = Credentials::new("ASIATEST", secret_key, Some(session_token.to_owned()), Some(expires), "test");
        self.state.credentials.insert(key.clone(), creds.clone(), Duration::from_secs(600));
        self.state.inflight.hold_for_test(key, Ok((creds, expires)));
    }
}

/// The AWS backend.
#[derive(Debug, Clone)]
pub(crate) struct AwsBackend {
    state: Arc<State>,
}

impl AwsBackend {
    /// A backend with empty caches; `verifier` decides which tokens may share
    /// them, and `kube` reads service-account annotations for IRSA.
    #[must_use]
    pub(crate) fn new(settings: AwsSettings, metrics: Arc<Metrics>, verifier: Arc<TokenVerifier>, kube: Arc<KubeClient>) -> Self {
        Self {
            state: Arc::new(State {
                limit: Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1))),
                settings,
                metrics,
                verifier,
                base: Mutex::new(HashMap::new()),
                credentials: CredentialCache::default(),
                inflight: Flights::default(),
                roles: AnnotationReads::new(BACKEND),
                kube,
                http: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Fetches `plan`'s objects as `identity`; `specs[i]` is where
    /// `plan.objects[i]` goes. The result is in the order of `specs`.
    async fn fetch_plan(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        let cfg = &plan.config;
        let audience = cfg.auth.audience();
        let checked = self.state.verifier.check(identity, audience).await.map_err(|problem| {
            token_error(problem, BACKEND, audience, identity, TokenAdvice { missing_also: "", pod: "this pod".to_owned() })
        })?;
        let creds = self.credentials(cfg, identity, checked.token, checked.scope).await?;

        let mut results: Vec<Option<Fetched>> = (0..specs.len()).map(|_| None).collect();
        let mut ssm: Vec<(usize, &ObjectSpec, &AwsObject)> = Vec::new();
        let mut sm: Vec<(usize, &ObjectSpec, &AwsObject)> = Vec::new();
        let mut paths: Vec<(usize, &ObjectSpec, &AwsObject)> = Vec::new();
        for (i, (spec, obj)) in specs.iter().zip(&plan.objects).enumerate() {
            match obj.service {
                Service::SecretsManager => sm.push((i, spec, obj)),
                Service::Ssm if obj.list_path => paths.push((i, spec, obj)),
                Service::Ssm => ssm.push((i, spec, obj)),
            }
        }

        let primary = self.base(&cfg.region).await;
        let failover = match &cfg.failover_region {
            Some(region) => Some(self.base(region).await),
            None => None,
        };
        let clients = Clients::new(&primary, failover.as_ref(), &creds);

        let sm_reads: Vec<_> = sm
            .iter()
            .map(|&(i, spec, obj)| {
                let clients = &clients;
                async move { (i, self.secrets_manager(clients, cfg, spec, obj).await) }
            })
            .collect();
        let sm_results: Vec<_> = futures::stream::iter(sm_reads).buffer_unordered(MAX_CONCURRENT_REQUESTS).collect().await;
        for (i, result) in sm_results {
            results[i] = Some(result?);
        }
        for &(i, spec, obj) in &paths {
            results[i] = Some(self.parameter_path(&clients, cfg, spec, obj).await?);
        }
        for batch in ssm_batches(&ssm) {
            for (i, fetched) in self.parameters(&clients, cfg, &batch).await? {
                results[i] = Some(fetched);
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::new(ErrorKind::Unavailable, BACKEND, "an object was not fetched")))
            .collect()
    }

    async fn base(&self, region: &str) -> aws_config::SdkConfig {
        let mut base = self.state.base.lock().await;
        if let Some(found) = base.get(region) {
            return found.clone();
        }
        // No credentials here on purpose: every client gets the pod's credentials.
        let loaded = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .no_credentials()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder().operation_timeout(OPERATION_TIMEOUT).build(),
            )
            .load()
            .await;
        base.insert(region.to_owned(), loaded.clone());
        loaded
    }

    /// A slot of the backend-wide concurrency limit.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        Arc::clone(&self.state.limit)
            .acquire_owned()
            .await
            .map_err(|_| Error::new(ErrorKind::Unavailable, BACKEND, "the provider is shutting down"))
    }

    fn count(&self, operation: &'static str, ok: bool, started: std::time::Instant) {
        let status = if ok { "2xx" } else { "error" };
        self.state.metrics.backend_requests.get_or_create(&RequestLabels { backend: BACKEND, operation, status }).inc();
        self.state
            .metrics
            .backend_seconds
            .get_or_create(&OperationLabels { backend: BACKEND, operation })
            .observe(started.elapsed().as_secs_f64());
    }

    async fn secrets_manager(&self, clients: &Clients, cfg: &AwsConfig, spec: &ObjectSpec, obj: &AwsObject) -> Result<Fetched, Error> {
        let mut attempts = Vec::new();
        let targets = std::iter::once((&clients.primary_sm, cfg.region.as_str(), obj.name.as_str(), &obj.selector)).chain(
            clients.failover_sm.as_ref().zip(cfg.failover_region.as_deref()).map(|(client, region)| {
                let (name, selector) = obj.failover.as_ref().map_or((obj.name.as_str(), &obj.selector), |(n, s)| (n.as_str(), s));
                (client, region, name, selector)
            }),
        );
        let ask_both = cfg.failover_mode == FailoverMode::AskBoth;
        let mut found: Option<Fetched> = None;
        for (client, region, name, selector) in targets {
            let _permit = self.permit().await?;
            let started = std::time::Instant::now();
            let result = client
                .get_secret_value()
                .secret_id(name)
                .set_version_id(selector.version.clone())
                .set_version_stage(selector.label.clone().or_else(|| selector.version.is_none().then(|| "AWSCURRENT".to_owned())))
                .send()
                .await;
            self.count("read", result.is_ok(), started);
            match result {
                Ok(output) => {
                    let content = match (output.secret_string(), output.secret_binary()) {
                        (Some(text), _) => text.as_bytes().to_vec(),
                        (None, Some(blob)) => blob.as_ref().to_vec(),
                        (None, None) => {
                            return Err(Error::new(ErrorKind::NotFound, BACKEND, format!("secret {name} in {region} has no value")).for_object(spec));
                        }
                    };
                    let fetched = Fetched::value(SecretBytes::new(content), output.version_id().map(str::to_owned));
                    if !ask_both {
                        return Ok(fetched);
                    }
                    // The first region that answers supplies the value; the others must not refuse.
                    found.get_or_insert(fetched);
                }
                Err(e) => {
                    let failure = classify(e);
                    let stop = !failure.failover;
                    attempts.push((region.to_owned(), name.to_owned(), failure));
                    if stop {
                        return Err(report("GetSecretValue", spec, attempts));
                    }
                }
            }
        }
        found.ok_or_else(|| report("GetSecretValue", spec, attempts))
    }
}

/// One error naming every region tried.
fn report(operation: &str, spec: &ObjectSpec, attempts: Vec<(String, String, Failure)>) -> Error {
    let kind = attempts.last().map_or(ErrorKind::Unavailable, |(_, _, f)| f.kind);
    let cause = attempts.last().map(|(_, _, f)| Arc::clone(&f.cause));
    let tried: Vec<String> = attempts
        .into_iter()
        .map(|(region, name, failure)| format!("{region} ({name}): {}", failure.message))
        .collect();
    Error::new(kind, BACKEND, format!("{operation} failed in {}", tried.join("; then "))).for_object(spec).with_cause(cause)
}

struct Clients {
    primary_sm: aws_sdk_secretsmanager::Client,
    primary_ssm: aws_sdk_ssm::Client,
    failover_sm: Option<aws_sdk_secretsmanager::Client>,
    failover_ssm: Option<aws_sdk_ssm::Client>,
}

impl Clients {
    fn new(primary: &aws_config::SdkConfig, failover: Option<&aws_config::SdkConfig>, creds: &Credentials) -> Self {
        let sm = |base: &aws_config::SdkConfig| {
            aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(base)
                    .credentials_provider(SharedCredentialsProvider::new(creds.clone()))
                    .build(),
            )
        };
        let ssm = |base: &aws_config::SdkConfig| {
            aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(base)
                    .credentials_provider(SharedCredentialsProvider::new(creds.clone()))
                    .build(),
            )
        };
        Self {
            primary_sm: sm(primary),
            primary_ssm: ssm(primary),
            failover_sm: failover.map(sm),
            failover_ssm: failover.map(ssm),
        }
    }
}
