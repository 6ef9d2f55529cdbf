//! Courier's Secrets Store CSI provider.
//!
//! The driver calls `Mount` over a unix socket with the pod's attributes and
//! service-account tokens; the provider logs in to the backend as the pod,
//! fetches the objects the SecretProviderClass lists, and returns them as files
//! with opaque versions.
//!
//! Layers, imports pointing down only:
//! - [`server`]: gRPC service, sockets, status codes ([`authority`], [`socket`],
//!   [`listener`], [`connection`]);
//! - [`request`], [`dialect`]: request decoding and SecretProviderClass parameters;
//! - [`identity`], [`backend`]: the pod's identity and the backends;
//! - [`render`], [`version`]: files and object versions.

pub mod audit;
pub mod authority;
pub mod backend;
pub mod connection;
pub mod dialect;
pub mod identity;
pub mod listener;
pub mod kube_client;
pub mod memory;
pub mod metrics;
pub mod object_path;
pub mod plan;
pub mod provider_name;
pub mod render;
pub mod request;
pub mod sandbox;
pub mod secret;
pub mod server;
pub mod singleflight;
pub mod socket;
pub mod telemetry;
pub mod template;
pub mod version;

pub use provider_name::ProviderName;
pub use server::{Core, ProviderService};
