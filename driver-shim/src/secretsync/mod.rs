//! The SecretSync controller: Kubernetes Secrets kept in sync from a SecretProviderClass without any pod
//! mounting it (for Ingress TLS, image pull secrets, operators reading a Secret).
//!
//! For each `SecretSync` (`courier.dev/v1alpha1`), the replica holding the leader Lease ([`leader`]) asks the
//! TokenRequest API for a short-lived token of the named service account ([`token`], same namespace only),
//! calls the SecretProviderClass's provider over its socket with the Mount request kubelet and the shim would
//! send for a pod of that service account ([`reconcile`]), and writes the Secrets through the shim's own
//! mirroring ([`crate::sync::SecretSync::mirror`]). [`status`] records the outcome (never a value), with
//! Events ([`events`]) and [`metrics`].

pub mod events;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod spec;
pub mod status;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{Controller, watcher};

use crate::error_chain::display_chain;
use crate::cluster::Cluster;
use crate::provider_client::Providers;

/// Courier's API group.
pub const GROUP: &str = "courier.dev";
/// The served version.
pub const VERSION: &str = "v1alpha1";
/// `group/version`.
pub const API_VERSION: &str = "courier.dev/v1alpha1";
/// The kind.
pub const KIND: &str = "SecretSync";
/// The plural resource name.
pub const PLURAL: &str = "secretsyncs";
/// Label on every Secret a SecretSync wrote, naming it (deletion touches only these).
pub const SECRETSYNC_LABEL: &str = "courier.dev/secretsync";

/// The SecretSync resource.
#[must_use]
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// Runs the controller until `shutdown` resolves: campaigns for the Lease, syncs while leading, stops syncing
/// the moment a renewal fails, and releases the Lease on the way out.
pub async fn run(
    cluster: Arc<Cluster>,
    providers: Providers,
    settings: reconcile::Settings,
    election: leader::Settings,
    metrics: Arc<metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let client = cluster.client().clone();
    let elector = leader::Elector::new(client.clone(), election.clone());
    let ctx = Arc::new(reconcile::Context::new(cluster, providers, settings, Arc::clone(&metrics)));
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    tokio::pin!(shutdown);
    loop {
        let leading = match elector.try_lead().await {
            Ok(leader::Outcome::Leading) => true,
            Ok(leader::Outcome::Following { holder }) => {
                tracing::debug!(holder = %holder, "another replica leads");
                false
            }
            Err(e) => {
                tracing::warn!(error = %display_chain(&e), "cannot read or renew the leader lease");
                false
            }
        };
        match (leading, running.is_some()) {
            (true, false) => {
                tracing::info!(identity = %election.identity, lease = %election.name, "became leader; syncing");
                metrics.leader.set(1);
                running = Some(tokio::spawn(control(client.clone(), Arc::clone(&ctx))));
            }
            (false, true) => {
                tracing::warn!(identity = %election.identity, "lost the leader lease; stopping");
                metrics.leader.set(0);
                if let Some(task) = running.take() {
                    task.abort();
                }
            }
            _ => {}
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(election.retry_period) => {}
        }
    }
    if let Some(task) = running.take() {
        task.abort();
        metrics.leader.set(0);
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %display_chain(&e), "cannot release the leader lease");
        } else {
            tracing::info!(identity = %election.identity, "released the leader lease");
        }
    }
}

/// The controller proper, while leading.
async fn control(client: kube::Client, ctx: Arc<reconcile::Context>) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource());
    Controller::new_with(api, watcher::Config::default(), resource())
        .with_config(kube::runtime::controller::Config::default().concurrency(defaults::CONCURRENCY))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %display_chain(&e), "controller event");
            }
        })
        .await;
}

/// Defaults with a reason each.
pub mod defaults {
    use super::Duration;

    /// Kubernetes' own leader-election default.
    pub const LEASE_DURATION: Duration = Duration::from_secs(15);
    /// Renew well within the lease duration (a third, as client-go's renew deadline and retry period do).
    pub const RETRY_PERIOD: Duration = Duration::from_secs(5);
    /// The TokenRequest API's minimum: the token only lives for one Mount call.
    pub const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
    /// Protects backends from a SecretSync asking for a refresh every second.
    pub const MIN_REFRESH: Duration = Duration::from_secs(30);
    /// First wait after a failure.
    pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
    /// Longest wait after failures: a fixed backend is picked up within this.
    pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
    /// SecretSyncs synced at once: bounds memory (each holds at most one provider answer, 4 MiB by
    /// default) and the load on backends.
    pub const CONCURRENCY: u16 = 8;
}
