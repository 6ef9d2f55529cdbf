//! Courier's Secrets Store CSI provider.
//!
//! The driver calls `Mount` over a unix socket with the pod's attributes and
//! service-account tokens; the provider logs in to the backend as the pod,
//! fetches the objects the SecretProviderClass lists, and returns them as files
//! with opaque versions.
//!
//! Layers, imports pointing down only:
//! - `server`: gRPC service, sockets, status codes (`authority`, `socket`,
//!   `listener`, `connection`);
//! - `request`, `dialect`: request decoding and SecretProviderClass parameters;
//! - `identity`, `backend`: the pod's identity and the backends;
//! - `render`, `version`: files and object versions;
//! - `plan`: what a mount fetches and how values become files, imported by all
//!   of the above and importing none of them.
//!
//! # Adding a backend
//!
//! A backend (say `gcp`) touches exactly these places:
//! 1. **Its folder**, `provider/src/backend/gcp/` (`mod.rs` plus one file per
//!    concern). It defines the backend type and implements the crate's
//!    `backend::Backend` trait for it (`new`, `name`, `fetch`), and exports
//!    `pub type Plan = BackendPlan<GcpConfig, GcpObject>` (the mount-wide
//!    configuration and where one object comes from, in its own terms only) and
//!    `pub type Settings = GcpSettings` (its tunables). Its failures are
//!    `backend::Error`s with an `ErrorKind` and, where there is one, the typed
//!    cause as their source (`Error::caused_by`); a token the pod cannot use is
//!    reported with `backend::token::token_error`. It never sees gRPC or tonic.
//!    A backend that speaks plain HTTP uses `backend::rest` (bounded answers,
//!    retries honouring `Retry-After`, typed transport errors) with its own
//!    `Policy`, and one that reads service-account annotations uses
//!    `backend::annotations` (one cached, shared, time-bounded read).
//!    Add its dependencies to `provider/Cargo.toml`.
//! 2. **One registration line** in `provider/src/backend/registry.rs`:
//!    `Gcp => gcp::GcpBackend,` in the `backends!` call. It generates the
//!    `backend::Plan::Gcp` variant, the `gcp` field of [`BackendSettings`], the
//!    backend's instance in the server's core and the dispatch of a mount to it;
//!    the server itself is not edited.
//! 3. **One dialect file**, `provider/src/dialect/gcp.rs`, whose `parse` turns the
//!    SecretProviderClass parameters into a `MountPlan` with
//!    `backend: Plan::Gcp(..)` and one `plan::ObjectSpec` per object (in the same
//!    order as the plan's objects), plus its lines in `provider/src/dialect/mod.rs`:
//!    `mod gcp;`, a `Dialect::Gcp` variant with its name, and its arm in
//!    `Dialect::parse_backend`.
//! 4. **The socket name**: the `Dialect::for_provider` arm mapping the socket (the
//!    driver's provider name, `gcp` for `gcp.sock`) to that dialect, and, for the
//!    native socket, the `backend: gcp` value in `provider/src/dialect/native.rs`.
//! 5. **Wiring**: its settings in `provider/src/main.rs` (flags, then the
//!    `gcp` field of [`BackendSettings`]). A backend with many flags keeps them
//!    in a `clap::Args` struct in its folder, flattened into main's, so that
//!    main stays short (`azure`'s `AzureArgs`).
//! 6. **The offline check**: its arm in `describe` in `provider/src/check/mod.rs`
//!    (the audience and the backend facts `courier-provider check` reports); the
//!    match is exhaustive, so the compiler points at it.
//!
//! 7. **Test-only literals** the compiler also points at: the backend's field in
//!    the `Settings` of `provider/src/server/tests.rs`, and any test `match` on
//!    `Plan` that named every variant.
//!
//! Nothing else changes: `plan`, `render`, `request` and the server's status-code
//! mapping are shared by every backend.

mod audit;
mod authority;
mod backend;
mod check;
mod connection;
mod dialect;
mod identity;
mod kube_client;
mod listener;
mod memory;
mod metrics;
mod object_path;
mod plan;
mod process_metrics;
mod provider_name;
mod render;
mod request;
mod sandbox;
mod secret;
mod server;
mod singleflight;
mod socket;
mod telemetry;
mod template;
mod version;

// What the provider binary wires together.
pub use backend::Settings as BackendSettings;
pub use backend::aws::{AwsSettings, DEFAULT_ROLE_CACHE};
pub use backend::azure::{AzureArgs, AzureSettings};
pub use backend::gcp::{DEFAULT_ANNOTATION_CACHE, GcpEndpoints, GcpSettings};
pub use backend::vault::{DEFAULT_BACKEND_CONCURRENCY, DEFAULT_LEASE_REUSE_FRACTION, VaultSettings};
pub use check::run_cli as run_check;
pub use connection::Timeouts;
pub use dialect::Defaults;
pub use identity::{TokenVerification, VerifierSettings};
pub use listener::{ConnectionLimits, DEFAULT_MAX_CONNECTIONS};
pub use memory::tune_allocator;
pub use metrics::Metrics;
pub use provider_name::ProviderName;
pub use sandbox::{
    CHILD_ARG as TEMPLATE_CHILD_ARG, DEFAULT_CONCURRENCY as DEFAULT_TEMPLATE_RENDERERS,
    DEFAULT_MEMORY_LIMIT as DEFAULT_TEMPLATE_MEMORY, Sandbox, child_main as template_child_main,
};
pub use server::{Core, ProviderService, Settings};
pub use socket::{BoundSocket, bind as bind_socket};
pub use telemetry::{Health, LogFormat, init as init_telemetry, metrics_router, router as health_router};
pub use version::Versioner;

/// The parsers and the renderer, for the property tests and fuzz targets, which
/// drive them directly; not a stable API.
#[doc(hidden)]
pub mod testing {
    pub use crate::dialect::{Dialect, MountPlan};
    pub use crate::object_path::ObjectPath;
    pub use crate::plan::{Fetched, ObjectSpec};
    pub use crate::render::render;
    pub use crate::request::{MountContext, POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY, SERVICE_ACCOUNT_KEY, TOKENS_KEY};
    pub use crate::secret::SecretBytes;
    pub use crate::template::{TemplateSpec, render_all};
}
