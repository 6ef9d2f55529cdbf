//! The gRPC service: one `CSIDriverProvider` per provider name, each on its own
//! unix socket, and the one place where errors become status codes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_proto::v1alpha1::csi_driver_provider_server::{CsiDriverProvider, CsiDriverProviderServer};
use courier_proto::v1alpha1::{self as api, MountRequest, MountResponse, VersionRequest, VersionResponse};
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, field};

mod status;

pub(crate) use self::status::{parameter_error_status, request_error_status};
use self::status::MountError;
use crate::audit::AuditRecord;
use crate::authority;
use crate::connection::TrackStreamsLayer;
use crate::listener::{self, ConnectionLimits};
use crate::backend::{self, Backends};
use crate::dialect::{Defaults, Dialect, ParsedPlans};
use crate::identity::{TokenVerifier, VerifierSettings};
use crate::kube_client::KubeClient;
use crate::metrics::{Metrics, MountLabels, MountLatencyLabels};
use crate::provider_name::ProviderName;
use crate::render::{self, MAX_MOUNT_BYTES, render};
use crate::request::MountContext;
use crate::sandbox::Sandbox;
use crate::version::Versioner;

/// Parameters up to this size and without YAML aliases (`*`, what an alias bomb
/// needs however small it is) are parsed on the request's own task.
const INLINE_PARSE_BYTES: usize = 4096;
/// Costly parses (above) running at once; more wait their turn, so a burst of
/// hostile classes holds at most this many parsers' memory.
const COSTLY_PARSES: usize = 2;

/// Requests in progress at once on one connection: the RFC's recommended floor.
/// The driver queues further mounts on its side until one finishes.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// A request whose client stalls (headers sent, body never finished) is ended
/// this long after the mount deadline, so it cannot hold its connection open.
const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// Name reported by `Version`.
const RUNTIME_NAME: &str = "courier";
/// The only provider API version.
const API_VERSION: &str = "v1alpha1";

/// State shared by every socket: backends, caches, the version key and settings.
#[derive(Debug)]
pub struct Core {
    backends: Backends,
    versioner: Versioner,
    defaults: Defaults,
    /// Plans of small parameter sets, by parameters.
    plans: ParsedPlans,
    mount_timeout: Duration,
    templates: Option<Sandbox>,
    verifier: Arc<TokenVerifier>,
    parse_permits: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
}

/// Provider-wide settings.
#[derive(Debug)]
pub struct Settings {
    /// Defaults a SecretProviderClass may override.
    pub defaults: Defaults,
    /// Longest time one mount may take.
    pub mount_timeout: Duration,
    /// Where templates are rendered: a child-process sandbox, or this process
    /// (`None`, for embedding and tests only: memory is then not bounded).
    pub templates: Option<Sandbox>,
    /// Every backend's tunables.
    pub backends: backend::Settings,
    /// Service-account token verification.
    pub tokens: VerifierSettings,
}

impl Core {
    /// A core with empty caches.
    #[must_use]
    pub fn new(versioner: Versioner, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let kube = Arc::new(KubeClient::default());
        let verifier = Arc::new(TokenVerifier::new(settings.tokens, Arc::clone(&kube)));
        Self {
            backends: Backends::new(
                settings.backends,
                &backend::Deps { metrics: Arc::clone(&metrics), verifier: Arc::clone(&verifier), kube },
            ),
            verifier,
            versioner,
            defaults: settings.defaults,
            plans: ParsedPlans::default(),
            mount_timeout: settings.mount_timeout,
            templates: settings.templates,
            parse_permits: tokio::sync::Semaphore::new(COSTLY_PARSES),
            metrics,
        }
    }

    /// Starts loading the cluster's token issuer keys, so the first mounts find
    /// them (call once the runtime runs).
    pub fn prefetch_issuer_keys(&self) {
        self.verifier.prefetch();
    }

    /// The metrics this core records.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// The service behind one socket.
#[derive(Debug, Clone)]
pub struct ProviderService {
    name: ProviderName,
    dialect: Dialect,
    core: Arc<Core>,
}

impl ProviderService {
    /// The service for socket `name`; its dialect follows from the name.
    #[must_use]
    pub fn new(name: ProviderName, core: Arc<Core>) -> Self {
        let dialect = Dialect::for_provider(name.as_str());
        Self { name, dialect, core }
    }

    /// Serves this service on `listener`, within `limits`, until `shutdown`
    /// completes, then finishes the requests in flight.
    pub async fn serve(
        self,
        listener: tokio::net::UnixListener,
        limits: ConnectionLimits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = listener::incoming(listener, limits, Arc::clone(&self.core.metrics), self.name.to_string());
        // grpc.health.v1 on the same socket, for probes that speak gRPC.
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<CsiDriverProviderServer<Self>>().await;
        // The HTTP/2 limits are set explicitly rather than left to library defaults;
        // the `:authority` adapter's bounds are derived from the same values.
        tonic::transport::Server::builder()
            .max_frame_size(Some(authority::MAX_FRAME_SIZE as u32))
            .http2_max_header_list_size(Some(authority::MAX_HEADER_LIST_SIZE as u32))
            .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
            // A peer that dies closes a unix socket; idle peers meet the idle timeout.
            .http2_keepalive_interval(None)
            .timeout(self.core.mount_timeout + REQUEST_TIMEOUT_MARGIN)
            .layer(TrackStreamsLayer)
            .add_service(health)
            .add_service(CsiDriverProviderServer::new(self))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    async fn mount_inner(&self, req: MountRequest, audit: &mut AuditRecord) -> Result<MountResponse, MountError> {
        let span = tracing::Span::current();
        let ctx = MountContext::decode(&req.attributes, &req.secrets, &req.permission)?;
        audit.namespace = ctx.identity.namespace().to_owned();
        audit.pod = ctx.identity.pod_name().to_owned();
        audit.pod_uid = ctx.identity.pod_uid().to_owned();
        audit.service_account = ctx.identity.service_account().to_owned();
        audit.spc = ctx.spc.clone();
        span.record("pod.namespace", ctx.identity.namespace());
        span.record("pod.name", ctx.identity.pod_name());
        span.record("pod.uid", ctx.identity.pod_uid());
        span.record("spc", ctx.spc.as_str());
        span.record("identity", ctx.identity.log_label());

        // Hostile YAML (alias bombs, huge inputs) costs CPU before the budget stops
        // it: such parameters are parsed off the async workers so other mounts go on
        // meanwhile; ordinary ones inline, without a thread hand-off per mount, and
        // kept for the next mount of the same parameters.
        let yaml: Vec<&String> = ["objects", "templates"].iter().filter_map(|k| ctx.attributes.get(*k)).collect();
        let costly = yaml.iter().map(|y| y.len()).sum::<usize>() > INLINE_PARSE_BYTES || yaml.iter().any(|y| y.contains('*'));
        let plan = if !costly {
            self.core.plans.parse(self.dialect, &ctx.attributes, &self.core.defaults)?
        } else {
            let _permit = self
                .core
                .parse_permits
                .acquire()
                .await
                .map_err(|_| MountError::ParserClosed)?;
            let (dialect, attributes, defaults) = (self.dialect, ctx.attributes.clone(), self.core.defaults.clone());
            tokio::task::spawn_blocking(move || {
                let plan = dialect.parse(&attributes, &defaults);
                drop(attributes);
                let _released = crate::memory::release_memory();
                plan
            })
                .await
                .map_err(MountError::ParserStopped)??
                .into()
        };
        let backend_name = plan.backend.name();
        span.record("backend", backend_name);
        audit.backend = backend_name;
        audit.objects = plan.objects.iter().map(|o| (o.path.as_str().to_owned(), None)).collect();

        let fetch = self.core.backends.fetch(&plan.backend, &ctx.identity, &plan.objects);
        let fetched = tokio::time::timeout(self.core.mount_timeout, fetch)
            .await
            .map_err(|_| MountError::Deadline { backend: backend_name, timeout: self.core.mount_timeout })??;
        let default_mode = ctx.default_mode;
        let versioner = &self.core.versioner;
        let rendered = match &self.core.templates {
            Some(sandbox) if !plan.templates.is_empty() => {
                let staged = render::render_objects(&plan.objects, fetched, default_mode, versioner)?;
                let outputs = sandbox.render(&plan.templates, &staged.template_inputs()).await.map_err(render::RenderError::from)?;
                staged.finish(&plan.templates, outputs, default_mode, versioner)?
            }
            _ => render(&plan.objects, fetched, &plan.templates, default_mode, versioner)?,
        };
        check_size(rendered.files.iter().map(|f| f.contents.len()).sum())?;

        audit.objects = rendered.versions.iter().map(|v| (v.id.clone(), Some(v.version.clone()))).collect();
        for v in &rendered.versions {
            tracing::debug!(object.id = %v.id, object.version = %v.version, "object fetched");
        }
        Ok(MountResponse {
            object_version: rendered
                .versions
                .into_iter()
                .map(|v| api::ObjectVersion { id: v.id, version: v.version })
                .collect(),
            error: None,
            files: rendered
                .files
                .into_iter()
                .map(|f| api::File { path: f.path, mode: f.mode as i32, contents: f.contents.to_vec() })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl CsiDriverProvider for ProviderService {
    async fn version(&self, _request: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: API_VERSION.to_owned(),
            runtime_name: RUNTIME_NAME.to_owned(),
            runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn mount(&self, request: Request<MountRequest>) -> Result<Response<MountResponse>, Status> {
        let span = tracing::info_span!(
            "mount",
            provider = %self.name,
            dialect = self.dialect.name(),
            pod.namespace = field::Empty,
            pod.name = field::Empty,
            pod.uid = field::Empty,
            spc = field::Empty,
            identity = field::Empty,
            backend = field::Empty,
        );
        let mut record = MountRecord {
            service: self,
            span: span.clone(),
            started: Instant::now(),
            audit: AuditRecord::default(),
            recorded: false,
        };
        let result = self.mount_inner(request.into_inner(), &mut record.audit).instrument(span.clone()).await;
        let _entered = span.enter();
        match result {
            Ok(response) => {
                let elapsed = record.record(None);
                let duration_ms = elapsed.as_millis() as u64;
                // The audit line (info) already records every mount and its outcome.
                tracing::debug!(objects = response.object_version.len(), duration_ms, "mount served");
                Ok(Response::new(response))
            }
            Err(e) => {
                let status = e.status();
                let elapsed = record.record(Some((e.label(), status.message())));
                let duration_ms = elapsed.as_millis() as u64;
                tracing::warn!(code = ?status.code(), duration_ms, error = %status.message(), "mount failed");
                Err(status)
            }
        }
    }
}

/// The whole mount's files must fit in what the driver reads.
fn check_size(bytes: usize) -> Result<(), MountError> {
    if bytes > MAX_MOUNT_BYTES {
        return Err(MountError::TooLarge { bytes });
    }
    Ok(())
}

/// Result label of a mount the caller dropped before it finished.
const CANCELLED: &str = "cancelled";

/// A mount's metrics and audit line, recorded once: when the mount finishes, or
/// when the caller drops it first (the driver's deadline passed, the client went
/// away: tonic then drops the handler's future), with result `cancelled`.
struct MountRecord<'a> {
    service: &'a ProviderService,
    span: tracing::Span,
    started: Instant,
    audit: AuditRecord,
    recorded: bool,
}

impl MountRecord<'_> {
    /// Records the outcome (`failure`: label and message; `None` when served) and
    /// returns the mount's duration.
    fn record(&mut self, failure: Option<(&'static str, &str)>) -> Duration {
        self.recorded = true;
        let elapsed = self.started.elapsed();
        let backend = if self.audit.backend.is_empty() { "none" } else { self.audit.backend };
        let provider = self.service.name.to_string();
        let metrics = &self.service.core.metrics;
        metrics
            .mount_seconds
            .get_or_create(&MountLatencyLabels { provider: provider.clone(), backend })
            .observe(elapsed.as_secs_f64());
        let result = failure.map_or("ok", |(label, _)| label);
        metrics.mounts.get_or_create(&MountLabels { provider, backend, result }).inc();
        self.audit.emit(self.service.name.as_str(), failure, elapsed);
        elapsed
    }
}

impl Drop for MountRecord<'_> {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let span = self.span.clone();
        let _entered = span.enter();
        let elapsed = self.record(Some((CANCELLED, "the caller cancelled the mount before it finished")));
        tracing::warn!(
            duration_ms = elapsed.as_millis() as u64,
            "mount cancelled: the caller gave up before it finished (the driver's deadline passed, or it went away)"
        );
    }
}

#[cfg(test)]
mod tests;
