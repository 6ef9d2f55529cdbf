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
mod service_account;

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

use self::credentials::{AGENT_URL_IPV4, AGENT_URL_IPV6, EXPIRY_MARGIN};
use self::errors::{Failure, classify};
use self::service_account::Kube;
use super::{Backend, BackendPlan, Deps, Error, ErrorKind};
use crate::plan::{Fetched, ObjectSpec};
use crate::identity::{CredentialCache, CredentialScope, PodIdentity, TokenProblem, TokenVerifier};
use crate::kube_client::KubeClient;
use crate::metrics::{LoginLabels, Metrics, OperationLabels, RequestLabels};
use crate::secret::SecretBytes;
use crate::singleflight::{Flights, Role};

/// Name in messages and metrics.
const BACKEND: &str = "aws";
/// Parameters per GetParameters call (the API's limit).
const SSM_BATCH: usize = 10;
/// Secrets Manager requests of one mount in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 16;
/// How long a service account's role annotation is trusted.
pub const DEFAULT_ROLE_CACHE: Duration = Duration::from_secs(60);
/// Time allowed to read a service account's role annotation.
const ROLE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
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
    roles: CredentialCache<(String, String), Option<String>>,
    role_lookups: Flights<(String, String), Shared<Option<String>>>,
    kube: Kube,
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
                roles: CredentialCache::default(),
                role_lookups: Flights::default(),
                kube: Kube::new(kube),
                http: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Fetches `plan`'s objects as `identity`; `specs[i]` is where
    /// `plan.objects[i]` goes. The result is in the order of `specs`.
    async fn fetch_plan(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        let cfg = &plan.config;
        let audience = cfg.auth.audience();
        let checked = self.state.verifier.check(identity, audience).await.map_err(|problem| match problem {
            TokenProblem::Missing => Error::new(
                ErrorKind::Invalid,
                BACKEND,
                format!(
                    "the driver passed no service-account token for audience {audience:?} (tokens were passed for: {}); \
                     add {{audience: {audience:?}}} to the CSIDriver's spec.tokenRequests",
                    {
                        let passed: Vec<&str> = identity.audiences().collect();
                        if passed.is_empty() { "none".to_owned() } else { format!("{passed:?}") }
                    }
                ),
            ),
            TokenProblem::KeysUnavailable => Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!("{}; check the provider can reach the Kubernetes API", TokenProblem::KeysUnavailable),
            ),
            other => Error::new(
                ErrorKind::Denied,
                BACKEND,
                format!("the service-account token for audience {audience:?} cannot be used for this pod: {other}"),
            ),
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

    /// The pod's credentials, from the cache or a (shared) exchange.
    async fn credentials(
        &self,
        cfg: &AwsConfig,
        identity: &PodIdentity,
        token: &crate::secret::SecretString,
        scope: CredentialScope,
    ) -> Result<Credentials, Error> {
        let (method, role_arn) = match &cfg.auth {
            AwsAuth::Irsa { role_arn: Some(arn) } => ("irsa", arn.clone()),
            AwsAuth::Irsa { role_arn: None } => ("irsa", self.role_of(identity).await?),
            AwsAuth::PodIdentity { .. } => ("pod_identity", String::new()),
        };
        let key = CredentialKey {
            method,
            role_arn: role_arn.clone(),
            sa_namespace: identity.namespace().to_owned(),
            sa_name: identity.service_account().to_owned(),
            scope,
        };
        if let Some(found) = self.state.credentials.get(&key) {
            self.state.metrics.cache("login", "hit");
            return Ok(found);
        }
        let state = Arc::clone(&self.state);
        let token = token.clone();
        let auth = cfg.auth.clone();
        let session = credentials::session_name(identity.namespace(), identity.service_account());
        let base = self.base(&cfg.region).await;
        let (result, role) = self
            .state
            .inflight
            .run(
                key.clone(),
                || async move {
                    let started = std::time::Instant::now();
                    let result = match &auth {
                        AwsAuth::Irsa { .. } => {
                            let sts = aws_sdk_sts::Client::new(&base);
                            credentials::assume_role(&sts, &role_arn, &session, &token).await
                        }
                        AwsAuth::PodIdentity { prefer_ipv6 } => {
                            let url = state.settings.pod_identity_agent_url.clone().unwrap_or_else(|| {
                                if *prefer_ipv6 { AGENT_URL_IPV6.to_owned() } else { AGENT_URL_IPV4.to_owned() }
                            });
                            match state.http.get_or_try_init(|| async { credentials::agent_client() }).await {
                                Ok(http) => credentials::pod_identity(http, &url, &token).await,
                                Err(e) => Err(e),
                            }
                        }
                    };
                    let operation = "login";
                    let status = if result.is_ok() { "2xx" } else { "error" };
                    state.metrics.backend_requests.get_or_create(&RequestLabels { backend: BACKEND, operation, status }).inc();
                    state
                        .metrics
                        .backend_seconds
                        .get_or_create(&OperationLabels { backend: BACKEND, operation })
                        .observe(started.elapsed().as_secs_f64());
                    let label = match &result {
                        Ok(_) => "ok",
                        Err(e) if e.kind == ErrorKind::Denied => "denied",
                        Err(_) => "error",
                    };
                    state.metrics.logins.get_or_create(&LoginLabels { backend: BACKEND, result: label }).inc();
                    result
                },
                || Err(Error::new(ErrorKind::Unavailable, BACKEND, "a shared credential exchange was aborted")),
            )
            .await;
        self.state.metrics.cache("login", if role == Role::Leader { "miss" } else { "shared" });
        let (creds, expires) = result?;
        let valid_for = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(EXPIRY_MARGIN);
        if !valid_for.is_zero() {
            self.state.credentials.insert(key, creds.clone(), valid_for);
        }
        Ok(creds)
    }

    /// The IAM role of the pod's service account, from its annotation (cached briefly).
    async fn role_of(&self, identity: &PodIdentity) -> Result<String, Error> {
        let key = (identity.namespace().to_owned(), identity.service_account().to_owned());
        let role = match self.state.roles.get(&key) {
            Some(role) => role,
            None => {
                let state = Arc::clone(&self.state);
                let (ns, sa) = key.clone();
                let (role, _) = self
                    .state
                    .role_lookups
                    .run(
                        key.clone(),
                        || async move {
                            // The Kubernetes client retries 429/5xx on its own; bound the whole lookup.
                            let role = tokio::time::timeout(ROLE_LOOKUP_TIMEOUT, state.kube.role_arn(&ns, &sa))
                                .await
                                .map_err(|_| {
                                    Error::new(
                                        ErrorKind::Unavailable,
                                        BACKEND,
                                        format!(
                                            "reading service account {ns}/{sa} from the Kubernetes API took over {ROLE_LOOKUP_TIMEOUT:?}; \
                                             check the API server is reachable and healthy"
                                        ),
                                    )
                                })??;
                            state.roles.insert((ns, sa), role.clone(), state.settings.role_cache);
                            Ok(role)
                        },
                        || Err(Error::new(ErrorKind::Unavailable, BACKEND, "a shared service-account lookup was aborted")),
                    )
                    .await;
                role?
            }
        };
        role.ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                BACKEND,
                format!(
                    "service account {}/{} has no {} annotation; annotate it with the IAM role to assume, or use \
                     usePodIdentity: \"true\"",
                    key.0,
                    key.1,
                    service_account::ROLE_ARN_ANNOTATION
                ),
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
                    let failure = classify(&e);
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

    async fn parameters(&self, clients: &Clients, cfg: &AwsConfig, batch: &[(usize, &ObjectSpec, &AwsObject)]) -> Result<Vec<(usize, Fetched)>, Error> {
        let mut attempts: Vec<(String, String, Failure)> = Vec::new();
        let primary =
            batch.iter().map(|&(i, spec, obj)| (i, spec, obj.name.clone(), ssm_name(&obj.name, &obj.selector))).collect::<Vec<_>>();
        let mut targets = vec![(&clients.primary_ssm, cfg.region.as_str(), primary)];
        if let (Some(client), Some(region)) = (clients.failover_ssm.as_ref(), cfg.failover_region.as_deref()) {
            let names = batch
                .iter()
                .map(|&(i, spec, obj)| {
                    let (name, selector) = obj.failover.as_ref().map_or((&obj.name, &obj.selector), |(n, s)| (n, s));
                    (i, spec, name.clone(), ssm_name(name, selector))
                })
                .collect();
            targets.push((client, region, names));
        }
        let ask_both = cfg.failover_mode == FailoverMode::AskBoth;
        let mut found: Option<Vec<(usize, Fetched)>> = None;
        for (client, region, names) in targets {
            let _permit = self.permit().await?;
            let started = std::time::Instant::now();
            let result = client
                .get_parameters()
                .set_names(Some(names.iter().map(|(_, _, _, n)| n.clone()).collect()))
                .with_decryption(true)
                .send()
                .await;
            self.count("read", result.is_ok(), started);
            match result {
                Ok(output) => {
                    let missing = output.invalid_parameters();
                    if !missing.is_empty() {
                        let objects: Vec<String> = names
                            .iter()
                            .filter(|(_, _, _, n)| missing.contains(n))
                            .map(|(_, spec, _, n)| format!("objects[{}] {n:?}", spec.index))
                            .collect();
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            BACKEND,
                            format!("SSM parameters not found in {region}: {}", objects.join(", ")),
                        ));
                    }
                    let mut out = Vec::with_capacity(names.len());
                    // Each batch names a parameter once, so the answer for a base name
                    // (or ARN) is unambiguous whatever selector was asked for.
                    for (i, spec, base, requested) in &names {
                        let found = output
                            .parameters()
                            .iter()
                            .find(|p| p.name() == Some(base.as_str()) || p.arn() == Some(base.as_str()));
                        let Some(parameter) = found else {
                            return Err(Error::new(ErrorKind::NotFound, BACKEND, format!("parameter {requested} was not returned by {region}")).for_object(spec));
                        };
                        out.push((
                            *i,
                            Fetched::value(
                                SecretBytes::new(parameter.value().unwrap_or_default().as_bytes().to_vec()),
                                Some(parameter.version().to_string()),
                            ),
                        ));
                    }
                    if !ask_both {
                        return Ok(out);
                    }
                    found.get_or_insert(out);
                }
                Err(e) => {
                    let failure = classify(&e);
                    let stop = !failure.failover;
                    let listed = names.iter().map(|(_, _, _, n)| n.as_str()).collect::<Vec<_>>().join(", ");
                    attempts.push((region.to_owned(), listed, failure));
                    if stop {
                        found = None;
                        break;
                    }
                }
            }
        }
        if let Some(out) = found {
            return Ok(out);
        }
        let first = batch.first().map(|(_, spec, _)| *spec);
        Err(match first {
            Some(spec) => report("GetParameters", spec, attempts),
            None => Error::new(ErrorKind::Unavailable, BACKEND, "empty SSM batch"),
        })
    }
}

impl AwsBackend {
    /// Every parameter under an SSM path (recursively, all pages), named relative to it.
    async fn parameter_path(&self, clients: &Clients, cfg: &AwsConfig, spec: &ObjectSpec, obj: &AwsObject) -> Result<Fetched, Error> {
        let mut attempts = Vec::new();
        let mut targets = vec![(&clients.primary_ssm, cfg.region.as_str(), obj.name.clone())];
        if let (Some(client), Some(region)) = (clients.failover_ssm.as_ref(), cfg.failover_region.as_deref()) {
            targets.push((client, region, obj.failover.as_ref().map_or(obj.name.clone(), |(n, _)| n.clone())));
        }
        let ask_both = cfg.failover_mode == FailoverMode::AskBoth;
        let mut found: Option<Fetched> = None;
        for (client, region, path) in targets {
            let _permit = self.permit().await?;
            let started = std::time::Instant::now();
            let mut pages = client
                .get_parameters_by_path()
                .path(path.trim_end_matches('/').to_owned() + "/")
                .recursive(true)
                .with_decryption(true)
                .into_paginator()
                .send();
            let mut entries = Vec::new();
            let mut failed = None;
            while let Some(page) = pages.next().await {
                match page {
                    Ok(page) => {
                        for p in page.parameters() {
                            let full = p.name().unwrap_or_default();
                            let relative = full.strip_prefix(path.as_str()).unwrap_or(full).trim_start_matches('/');
                            entries.push(crate::plan::Entry {
                                name: relative.to_owned(),
                                content: SecretBytes::new(p.value().unwrap_or_default().as_bytes().to_vec()),
                                version_id: Some(p.version().to_string()),
                            });
                        }
                    }
                    Err(e) => {
                        failed = Some(classify(&e));
                        break;
                    }
                }
            }
            self.count("read", failed.is_none(), started);
            match failed {
                None => {
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                    let fetched = Fetched { content: SecretBytes::new(Vec::new()), version_id: None, entries: Some(entries) };
                    if !ask_both {
                        return Ok(fetched);
                    }
                    found.get_or_insert(fetched);
                }
                Some(failure) => {
                    let stop = !failure.failover;
                    attempts.push((region.to_owned(), path, failure));
                    if stop {
                        return Err(report("GetParametersByPath", spec, attempts));
                    }
                }
            }
        }
        found.ok_or_else(|| report("GetParametersByPath", spec, attempts))
    }
}

/// Batches of at most ten parameters in which no parameter name repeats (two
/// versions of one parameter go to different calls, so answers match requests).
fn ssm_batches<'a>(objects: &[(usize, &'a ObjectSpec, &'a AwsObject)]) -> Vec<Vec<(usize, &'a ObjectSpec, &'a AwsObject)>> {
    let mut batches: Vec<Vec<(usize, &ObjectSpec, &AwsObject)>> = Vec::new();
    for &item in objects {
        let slot = batches
            .iter_mut()
            .find(|b| b.len() < SSM_BATCH && b.iter().all(|(_, _, o)| o.name != item.2.name));
        match slot {
            Some(batch) => batch.push(item),
            None => batches.push(vec![item]),
        }
    }
    batches
}

/// `name`, `name:version` or `name:label`.
fn ssm_name(name: &str, selector: &VersionSelector) -> String {
    match (&selector.version, &selector.label) {
        (Some(v), _) => format!("{name}:{v}"),
        (None, Some(l)) => format!("{name}:{l}"),
        (None, None) => name.to_owned(),
    }
}

/// One error naming every region tried.
fn report(operation: &str, spec: &ObjectSpec, attempts: Vec<(String, String, Failure)>) -> Error {
    let kind = attempts.last().map_or(ErrorKind::Unavailable, |(_, _, f)| f.kind);
    let tried: Vec<String> = attempts
        .into_iter()
        .map(|(region, name, failure)| format!("{region} ({name}): {}", failure.message))
        .collect();
    Error::new(kind, BACKEND, format!("{operation} failed in {}", tried.join("; then "))).for_object(spec)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssm_names_carry_the_selector() {
        let v = VersionSelector { version: Some("3".into()), label: None };
        assert_eq!(ssm_name("/a/b", &v), "/a/b:3");
        let l = VersionSelector { version: None, label: Some("prod".into()) };
        assert_eq!(ssm_name("/a/b", &l), "/a/b:prod");
        assert_eq!(ssm_name("x", &VersionSelector::default()), "x");
    }
}
