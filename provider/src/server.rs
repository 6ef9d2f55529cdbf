//! The gRPC service: one `CSIDriverProvider` per provider name, each on its own
//! unix socket, and the one place where errors become status codes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_proto::v1alpha1::csi_driver_provider_server::{CsiDriverProvider, CsiDriverProviderServer};
use courier_proto::v1alpha1::{self as api, MountRequest, MountResponse, VersionRequest, VersionResponse};
use futures::TryStreamExt as _;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument as _, field};

use crate::authority::AuthorityFix;
use crate::backend::vault::VaultBackend;
use crate::backend::{self, BackendConfig, ErrorKind};
use crate::dialect::{self, Defaults, Dialect};
use crate::provider_name::ProviderName;
use crate::render::{self, render};
use crate::request::{self, MountContext};
use crate::version::Versioner;

/// Name reported by `Version`.
const RUNTIME_NAME: &str = "courier";
/// The only provider API version.
const API_VERSION: &str = "v1alpha1";

/// State shared by every socket: backends, caches, the version key and settings.
#[derive(Debug)]
pub struct Core {
    vault: VaultBackend,
    versioner: Versioner,
    defaults: Defaults,
    mount_timeout: Duration,
}

impl Core {
    /// A core with empty caches.
    #[must_use]
    pub fn new(versioner: Versioner, defaults: Defaults, mount_timeout: Duration) -> Self {
        Self { vault: VaultBackend::default(), versioner, defaults, mount_timeout }
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

    /// Serves this service on `listener` until `shutdown` completes, then finishes
    /// the requests in flight.
    pub async fn serve(
        self,
        listener: tokio::net::UnixListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = UnixListenerStream::new(listener).map_ok(AuthorityFix::new);
        tonic::transport::Server::builder()
            .add_service(CsiDriverProviderServer::new(self))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    async fn mount_inner(&self, req: MountRequest) -> Result<MountResponse, MountError> {
        let span = tracing::Span::current();
        let ctx = MountContext::decode(&req.attributes, &req.secrets, &req.permission)?;
        span.record("pod.namespace", ctx.identity.namespace());
        span.record("pod.name", ctx.identity.pod_name());
        span.record("pod.uid", ctx.identity.pod_uid());
        span.record("spc", ctx.spc.as_str());
        span.record("identity", ctx.identity.log_label());

        let plan = self.dialect.parse(&ctx.attributes, &self.core.defaults)?;
        let backend_name = plan.backend.name();
        span.record("backend", backend_name);

        let fetch = async {
            match &plan.backend {
                BackendConfig::Vault(cfg) => self.core.vault.fetch(cfg, &ctx.identity, &plan.objects).await,
            }
        };
        let fetched = tokio::time::timeout(self.core.mount_timeout, fetch)
            .await
            .map_err(|_| MountError::Deadline { backend: backend_name, timeout: self.core.mount_timeout })??;
        let rendered = render(&plan.objects, fetched, ctx.default_mode, &self.core.versioner)?;

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
        let started = Instant::now();
        let result = self.mount_inner(request.into_inner()).instrument(span.clone()).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let _entered = span.enter();
        match result {
            Ok(response) => {
                tracing::info!(objects = response.object_version.len(), duration_ms, "mount served");
                Ok(Response::new(response))
            }
            Err(e) => {
                let status = e.status();
                tracing::warn!(code = ?status.code(), duration_ms, error = %status.message(), "mount failed");
                Err(status)
            }
        }
    }
}

/// Everything a mount can fail with.
#[derive(Debug, thiserror::Error)]
enum MountError {
    #[error(transparent)]
    Request(#[from] request::Error),
    #[error(transparent)]
    Dialect(#[from] dialect::Error),
    #[error(transparent)]
    Backend(#[from] backend::Error),
    #[error(transparent)]
    Decode(#[from] render::DecodeError),
    #[error(
        "{backend} backend: the mount did not finish within {timeout:?}; the backend is slow or unreachable \
         (raise --mount-timeout only if it is merely slow)"
    )]
    Deadline { backend: &'static str, timeout: Duration },
}

impl MountError {
    /// The status code of each failure, decided here and nowhere else.
    fn status(&self) -> Status {
        let code = match self {
            Self::Request(_) | Self::Dialect(_) | Self::Decode(_) => Code::InvalidArgument,
            Self::Backend(e) => match e.kind {
                ErrorKind::Invalid => Code::InvalidArgument,
                ErrorKind::Denied => Code::PermissionDenied,
                ErrorKind::NotFound => Code::NotFound,
                ErrorKind::Unavailable => Code::Unavailable,
                ErrorKind::Timeout => Code::DeadlineExceeded,
            },
            Self::Deadline { .. } => Code::DeadlineExceeded,
        };
        Status::new(code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let dialect_err: MountError = dialect::Error::new("objects[0].method", "bad").into();
        assert_eq!(dialect_err.status().code(), Code::InvalidArgument);
        assert_eq!(dialect_err.status().message(), "objects[0].method: bad");
        for (kind, code) in [
            (ErrorKind::Invalid, Code::InvalidArgument),
            (ErrorKind::Denied, Code::PermissionDenied),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Timeout, Code::DeadlineExceeded),
        ] {
            let e: MountError = backend::Error::new(kind, "vault", "x").into();
            assert_eq!(e.status().code(), code);
        }
        let e = MountError::Deadline { backend: "vault", timeout: Duration::from_secs(1) };
        assert_eq!(e.status().code(), Code::DeadlineExceeded);
    }
}
