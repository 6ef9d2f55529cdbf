//! Backends fetch a mount's objects as the pod's identity.
//!
//! A backend knows its own wire format and nothing about gRPC: it returns the
//! selected bytes of each object, or an [`Error`] whose [`ErrorKind`] the server
//! maps to a status code in one place.
//!
//! Every backend is one folder below this one, implements [`Backend`], and is
//! listed once in the `backends!` registration below; the registration makes
//! its typed [`Plan`] variant, its field of [`Settings`] and its dispatch.

pub(crate) mod annotations;
mod registry;
mod rest;
mod token;
pub(crate) mod aws;
pub(crate) mod azure;
pub(crate) mod gcp;
pub(crate) mod vault;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::identity::{PodIdentity, TokenVerifier};
use crate::kube_client::KubeClient;
use crate::metrics::Metrics;
use crate::plan::{Fetched, ObjectSpec};

pub use registry::Settings;
pub(crate) use registry::{BackendPlan, Plan};
pub(crate) use registry::Backends;

/// What every backend is built with besides its own settings.
#[derive(Debug, Clone)]
pub(crate) struct Deps {
    /// Where backends record requests, logins and operations.
    pub(crate) metrics: Arc<Metrics>,
    /// Decides which service-account tokens may share cached credentials.
    pub(crate) verifier: Arc<TokenVerifier>,
    /// The cluster's API, for backends that read service-account annotations.
    pub(crate) kube: Arc<KubeClient>,
}

/// One backend: how it is built, named, and asked for a mount's objects.
pub(crate) trait Backend: fmt::Debug + Sized + Send + Sync {
    /// The backend's tunables (a field of [`Settings`]).
    type Settings;
    /// The mount-wide part of a plan (address, role, region, ...).
    type Config: fmt::Debug + Clone + Send + Sync;
    /// Where one object comes from, in this backend's terms only.
    type Object: fmt::Debug + Clone + Send + Sync;

    /// A backend with empty caches.
    fn new(settings: Self::Settings, shared: &Deps) -> Self;

    /// Short name for logs, metrics and messages (`vault`, `openbao`, `aws`).
    fn name(config: &Self::Config) -> &'static str;

    /// Fetches `objects` as `identity`; `specs[i]` is where `plan.objects[i]` goes.
    /// The result is in the order of `specs`.
    fn fetch(
        &self,
        plan: &BackendPlan<Self::Config, Self::Object>,
        identity: &PodIdentity,
        specs: &[ObjectSpec],
    ) -> impl Future<Output = Result<Vec<Fetched>, Error>> + Send;
}

/// What went wrong, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The request can never succeed as written (bad parameter, bad data shape).
    Invalid,
    /// The backend refused the pod's identity.
    Denied,
    /// The path or key does not exist.
    NotFound,
    /// The backend could not be reached or failed (after retries).
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// Bounded label for metrics and logs.
    #[must_use]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
        }
    }
}

/// The typed cause of a backend failure: a transport error, an SDK error, an I/O
/// error. Shared, because a failure of shared work (a login, a read other mounts
/// joined) reaches every mount that waited on it.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A backend failure: its kind, the backend and object, what happened and what
/// to check, and the typed cause it came from, if any.
///
/// The message is what the user sees in the mount's status and already says
/// what the cause means for them; the cause is kept as [`source`] for programs
/// (classification by type, structured logs), not rendered again. The message
/// never holds a secret value.
///
/// [`source`]: std::error::Error::source
#[derive(Clone)]
pub(crate) struct Error {
    /// Category, mapped to a gRPC code by the server.
    pub(crate) kind: ErrorKind,
    /// The backend (`vault`, `openbao`, `aws`).
    pub(crate) backend: &'static str,
    /// The object concerned (`objects[1] "db-creds"`), if one.
    pub(crate) object: Option<String>,
    /// What happened and what to check.
    pub(crate) message: String,
    /// The failure underneath, if one.
    cause: Option<Cause>,
}

impl Error {
    /// A new error about the whole mount.
    #[must_use]
    pub(crate) fn new(kind: ErrorKind, backend: &'static str, message: impl Into<String>) -> Self {
        Self { kind, backend, object: None, message: message.into(), cause: None }
    }

    /// Names the object this error is about.
    #[must_use]
    pub(crate) fn for_object(mut self, spec: &ObjectSpec) -> Self {
        self.object = Some(spec.label());
        self
    }

    /// Keeps the typed failure this error comes from as its source.
    #[must_use]
    pub(crate) fn caused_by<E: std::error::Error + Send + Sync + 'static>(self, cause: E) -> Self {
        self.with_cause(Some(Arc::new(cause)))
    }

    /// Keeps `cause`, if there is one, as this error's source.
    #[must_use]
    pub(crate) fn with_cause(mut self, cause: Option<Cause>) -> Self {
        self.cause = cause;
        self
    }
}

/// Shows the cause by its text only: a cause's Debug may hold a raw response.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("backend", &self.backend)
            .field("object", &self.object)
            .field("message", &self.message)
            .field("cause", &self.cause.as_ref().map(ToString::to_string))
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{object} ({} backend): {}", self.backend, self.message),
            None => write!(f, "{} backend: {}", self.backend, self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}
