//! One SecretSync's reconcile: decide whether a sync is due, sync (token, provider, Secrets), and record the
//! outcome in the status, Events and metrics. Failures never touch the Secrets (except a source reported
//! gone under `deletionPolicy: Delete`), so the last good content stays in place.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use tonic::Code;
use zeroize::Zeroize as _;

use super::events::{self, Subject};
use super::metrics::{Metrics, ReasonLabels, SyncLabels};
use super::spec::{self, CreationPolicy, DeletionPolicy, Spec};
use super::status::{self, Due, Observed, Reason};
use super::{API_VERSION, KIND, SECRETSYNC_LABEL, token};
use crate::cluster::Cluster;
use crate::provider_client::{self, Providers};
use crate::request::{TOKENS_KEY, mount_request};
use crate::sync::SecretSync as Mirror;

/// How the controller syncs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Token audiences when a SecretSync names none (the CSIDriver's `tokenRequests` audiences).
    pub default_audiences: Vec<String>,
    /// The shortest refresh interval a SecretSync may ask for.
    pub min_refresh: Duration,
    /// Lifetime of the tokens asked for (the TokenRequest API's minimum is 10 minutes).
    pub token_lifetime: Duration,
    /// First delay after a failed sync; doubled per further failure.
    pub backoff_base: Duration,
    /// Longest delay after failures.
    pub backoff_max: Duration,
    /// This replica's name, in Events.
    pub instance: String,
}

/// What reconciles share.
pub struct Context {
    pub(super) client: kube::Client,
    pub(super) cluster: Arc<Cluster>,
    pub(super) mirror: Mirror,
    pub(super) providers: Providers,
    pub(super) settings: Settings,
    pub(super) metrics: Arc<Metrics>,
    /// Consecutive failures and when the next attempt may run, by SecretSync uid.
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Context {
    /// A context writing through `cluster`'s client.
    #[must_use]
    pub fn new(cluster: Arc<Cluster>, providers: Providers, settings: Settings, metrics: Arc<Metrics>) -> Self {
        Self {
            client: cluster.client().clone(),
            mirror: Mirror::new(Arc::clone(&cluster)),
            cluster,
            providers,
            settings,
            metrics,
            backoff: Mutex::new(HashMap::new()),
        }
    }

    fn backoff_left(&self, uid: &str) -> Option<Duration> {
        let map = self.backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(uid)
            .map(|(_, at)| at.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    fn failed(&self, uid: &str) -> Duration {
        let mut map = self.backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.entry(uid.to_owned()).or_insert((0, Instant::now()));
        let delay = self
            .settings
            .backoff_base
            .saturating_mul(2u32.saturating_pow(entry.0.min(16)))
            .min(self.settings.backoff_max);
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now() + delay;
        delay
    }

    fn succeeded(&self, uid: &str) {
        self.backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }
}

/// A failed reconcile that could not even record its outcome (the status write failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the status of secretsync {namespace}/{name}")]
pub struct Error {
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

/// A failed sync: a bounded reason and a message naming what to check (never a value).
#[derive(Debug)]
struct Failure {
    reason: Reason,
    message: String,
    /// Whether retrying can help without a change to the SecretSync.
    retry: bool,
}

impl Failure {
    fn retry(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), retry: true }
    }

    fn fatal(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), retry: false }
    }
}

/// A good sync.
struct Synced {
    changed: Vec<String>,
    secrets: Vec<String>,
    versions: Vec<(String, String)>,
}

/// The Secret names `secret_objects` lists.
fn secret_names(secret_objects: &[serde_json::Value]) -> Vec<String> {
    secret_objects
        .iter()
        .filter_map(|o| o.get("secretName").and_then(serde_json::Value::as_str))
        .map(|s| s.trim().to_owned())
        .collect()
}

/// The reconcile the controller runs for each SecretSync.
pub async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let uid = object.metadata.uid.clone().unwrap_or_default();
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let observed = Observed::read(object.metadata.generation.unwrap_or(0), object.data.get("status"));
    let subject = Subject { namespace: &namespace, name: &name, uid: &uid };
    let spec = match Spec::parse(
        &namespace,
        object.data.get("spec").unwrap_or(&serde_json::Value::Null),
        ctx.settings.min_refresh,
    ) {
        Ok(spec) => spec,
        Err(e) => {
            let reason = match e {
                spec::Error::CrossNamespace { .. } => Reason::CrossNamespaceServiceAccount,
                _ => Reason::InvalidSpec,
            };
            let failure = Failure::fatal(reason, e.to_string());
            return fail(&ctx, &subject, &observed, failure).await;
        }
    };
    if let Some(wait) = ctx.backoff_left(&uid) {
        return Ok(Action::requeue(wait));
    }
    match status::due(&spec, &observed, &uid, Timestamp::now()) {
        Due::Now => {}
        Due::After(wait) => return Ok(Action::requeue(wait)),
        Due::OnChange => return Ok(Action::await_change()),
    }
    let span = tracing::info_span!("secretsync", secretsync.namespace = %namespace, secretsync.name = %name, spc = %spec.secret_provider_class);
    let outcome = tracing::Instrument::instrument(sync(&object, &spec, &ctx), span).await;
    match outcome {
        Ok(synced) => {
            ctx.succeeded(&uid);
            let result = if synced.changed.is_empty() { "unchanged" } else { "written" };
            ctx.metrics.syncs.get_or_create(&SyncLabels { result }).inc();
            ctx.metrics.secret_writes.inc_by(synced.changed.len() as u64);
            let message = format!("secrets {} hold the provider's content", synced.secrets.join(", "));
            if !synced.changed.is_empty() {
                events::record(
                    &ctx.client,
                    &ctx.settings.instance,
                    &subject,
                    "Normal",
                    "Synced",
                    &format!("wrote secrets {}", synced.changed.join(", ")),
                )
                .await;
            } else if status::changes_condition(&observed, true, Reason::Synced, &message) {
                events::record(&ctx.client, &ctx.settings.instance, &subject, "Normal", "Synced", &message).await;
            }
            let now = Timestamp::now();
            let patch = status::synced(&observed, &synced.secrets, &synced.versions, &message, now);
            write_status(&ctx, &subject, &patch).await?;
            tracing::info!(secretsync.namespace = %namespace, secretsync.name = %name, changed = synced.changed.len(), "synced");
            Ok(match spec.refresh_policy {
                // The same jittered interval the next reconcile reads back from lastSyncTime.
                spec::RefreshPolicy::Periodic => Action::requeue(status::jittered(spec.refresh_interval, &uid, now)),
                _ => Action::await_change(),
            })
        }
        Err(failure) => fail(&ctx, &subject, &observed, failure).await,
    }
}

async fn fail(ctx: &Context, subject: &Subject<'_>, observed: &Observed, failure: Failure) -> Result<Action, Error> {
    ctx.metrics.syncs.get_or_create(&SyncLabels { result: "failed" }).inc();
    ctx.metrics.failures.get_or_create(&ReasonLabels { reason: failure.reason.as_str() }).inc();
    tracing::warn!(secretsync.namespace = subject.namespace, secretsync.name = subject.name, reason = failure.reason.as_str(), message = %failure.message, "sync failed");
    if status::changes_condition(observed, false, failure.reason, &failure.message) {
        let type_ = if failure.reason == Reason::SourceDeleted { "Normal" } else { "Warning" };
        events::record(&ctx.client, &ctx.settings.instance, subject, type_, failure.reason.as_str(), &failure.message).await;
    }
    let patch = status::failed(observed, failure.reason, &failure.message, Timestamp::now());
    write_status(ctx, subject, &patch).await?;
    if failure.retry {
        Ok(Action::requeue(ctx.failed(subject.uid)))
    } else {
        Ok(Action::await_change())
    }
}

async fn write_status(ctx: &Context, subject: &Subject<'_>, patch: &serde_json::Value) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), subject.namespace, &super::resource());
    api.patch_status(subject.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|source| Error { namespace: subject.namespace.to_owned(), name: subject.name.to_owned(), source })
}

/// Where the request says the volume is: a path no kubelet uses, naming the SecretSync. Providers that
/// return files (Courier's and current upstream ones) never touch it.
fn target_path(uid: &str) -> String {
    format!("/var/lib/courier-secretsync/{uid}/mount")
}

async fn sync(object: &DynamicObject, spec: &Spec, ctx: &Context) -> Result<Synced, Failure> {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let spc = ctx
        .cluster
        .secret_provider_class(&namespace, &spec.secret_provider_class)
        .await
        .map_err(|e| Failure::retry(Reason::SecretProviderClassNotFound, e.to_string()))?
        .ok_or_else(|| {
            Failure::retry(
                Reason::SecretProviderClassNotFound,
                format!("secretproviderclass {namespace}/{} does not exist", spec.secret_provider_class),
            )
        })?;
    if spc.provider.is_empty() || spc.parameters.is_empty() {
        return Err(Failure::retry(
            Reason::InvalidSpec,
            format!("secretproviderclass {namespace}/{}: spec.provider and spec.parameters are required", spc.name),
        ));
    }
    let secret_objects = spec.secret_objects.clone().unwrap_or_else(|| spc.secret_objects.clone());
    if secret_objects.is_empty() {
        return Err(Failure::fatal(
            Reason::InvalidSpec,
            format!(
                "nothing to sync: neither spec.target.secretObjects nor secretproviderclass {} names a Secret",
                spc.name
            ),
        ));
    }
    let audiences = if spec.audiences.is_empty() { &ctx.settings.default_audiences } else { &spec.audiences };
    let tokens = token::request(&ctx.client, &namespace, &spec.service_account, audiences, ctx.settings.token_lifetime)
        .await
        .map_err(|e| {
            let reason = if e.is_not_found() { Reason::ServiceAccountNotFound } else { Reason::TokenRequestFailed };
            Failure::retry(reason, crate::error_chain::display_chain(&e))
        })?;
    // The attributes kubelet would send for a pod mounting this class as an inline volume, with the
    // SecretSync standing for the pod: its namespace, a name naming it, its uid, and the service account.
    let pod_name = format!("secretsync.{name}");
    let volume_context: HashMap<String, String> = HashMap::from([
        ("secretProviderClass".to_owned(), spc.name.clone()),
        ("csi.storage.k8s.io/pod.name".to_owned(), pod_name),
        ("csi.storage.k8s.io/pod.namespace".to_owned(), namespace.clone()),
        ("csi.storage.k8s.io/pod.uid".to_owned(), uid.clone()),
        ("csi.storage.k8s.io/serviceAccount.name".to_owned(), spec.service_account.clone()),
        ("csi.storage.k8s.io/ephemeral".to_owned(), "true".to_owned()),
        (TOKENS_KEY.to_owned(), tokens.expose_secret().to_owned()),
    ]);
    let request = mount_request(&spc.parameters, &volume_context, &HashMap::new(), &target_path(&uid));
    drop(volume_context);
    let response = match ctx.providers.mount(&spc.provider, request).await {
        Ok(response) => response,
        Err(e) => return Err(provider_failure(ctx, &namespace, &name, spec, &secret_objects, &e).await),
    };
    if let Some(error) = response.error.as_ref().filter(|e| !e.code.is_empty()) {
        return Err(Failure::retry(
            Reason::ProviderError,
            format!("provider {:?} failed the mount with error code {}", spc.provider, error.code),
        ));
    }
    if response.files.is_empty() {
        return Err(Failure::retry(
            Reason::ProviderError,
            format!(
                "provider {:?} returned no files; a provider that writes files itself cannot serve a SecretSync",
                spc.provider
            ),
        ));
    }
    let versions: Vec<(String, String)> =
        response.object_version.iter().map(|v| (v.id.clone(), v.version.clone())).collect();
    let mut files: BTreeMap<String, Vec<u8>> =
        response.files.into_iter().map(|f| (f.path, f.contents)).collect();
    let owners = match spec.creation_policy {
        CreationPolicy::Owner => vec![OwnerReference {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            name: name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }],
        CreationPolicy::Orphan => Vec::new(),
    };
    let labels = BTreeMap::from([(SECRETSYNC_LABEL.to_owned(), name.clone())]);
    let mirrored = ctx.mirror.mirror(&namespace, &secret_objects, &files, &owners, &labels).await;
    for contents in files.values_mut() {
        contents.zeroize();
    }
    let changed = mirrored.map_err(|e| Failure::retry(Reason::MirrorFailed, crate::error_chain::display_chain(&e)))?;
    Ok(Synced { changed, secrets: secret_names(&secret_objects), versions })
}

/// Maps a failed provider call; a source reported missing applies the deletion policy.
async fn provider_failure(
    ctx: &Context,
    namespace: &str,
    name: &str,
    spec: &Spec,
    secret_objects: &[serde_json::Value],
    error: &provider_client::Error,
) -> Failure {
    let message = crate::error_chain::display_chain(error);
    match (error, error.code()) {
        (provider_client::Error::NotFound { .. } | provider_client::Error::InvalidName(_), _) => {
            Failure::retry(Reason::ProviderNotFound, message)
        }
        (_, Code::PermissionDenied | Code::Unauthenticated) => Failure::retry(Reason::PermissionDenied, message),
        (_, Code::NotFound) => match spec.deletion_policy {
            DeletionPolicy::Retain => Failure::retry(Reason::SourceNotFound, format!("{message}; the Secrets keep their last content (deletionPolicy Retain)")),
            DeletionPolicy::Delete => match delete_secrets(ctx, namespace, name, secret_objects).await {
                Ok(deleted) => Failure::retry(
                    Reason::SourceDeleted,
                    format!("{message}; deleted secrets [{}] (deletionPolicy Delete)", deleted.join(", ")),
                ),
                Err(e) => Failure::retry(Reason::MirrorFailed, format!("{message}; deleting the secrets failed: {e}")),
            },
        },
        _ => Failure::retry(Reason::ProviderError, message),
    }
}

/// Deletes the listed Secrets that carry this SecretSync's label (never another's or a stranger's Secret),
/// each with its uid as precondition. Returns the names deleted.
async fn delete_secrets(
    ctx: &Context,
    namespace: &str,
    name: &str,
    secret_objects: &[serde_json::Value],
) -> Result<Vec<String>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut deleted = Vec::new();
    for secret in secret_names(secret_objects) {
        let Some(existing) = api.get_opt(&secret).await? else { continue };
        let ours = existing.metadata.labels.as_ref().and_then(|l| l.get(SECRETSYNC_LABEL)).map(String::as_str) == Some(name);
        if !ours {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: existing.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(&secret, &params).await {
            Ok(_) => deleted.push(secret),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The controller's error policy: the reconcile records its own failures, so only a failed status write
/// lands here; try again after the first backoff step.
pub fn error_policy(_object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %crate::error_chain::display_chain(error), "reconcile failed");
    Action::requeue(ctx.settings.backoff_base)
}
