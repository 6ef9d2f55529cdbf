//! Courier's driver shim: a CSI node plugin that stands in for the upstream
//! Secrets Store CSI driver. kubelet calls it to publish a pod's secrets volume;
//! it mounts a tmpfs, asks the provider named by the SecretProviderClass for the
//! files, and swaps them in atomically, on first mount and on every republish.
//!
//! - [`csi`]: the Identity and Node services kubelet calls;
//! - [`publish`]: mount, ask, write (shared with [`local`] mode);
//! - [`provider_client`], [`request`]: finding and calling providers;
//! - [`target`], [`dir`]: where a volume goes, resolved once and opened without following links;
//! - [`atomic_writer`], [`mount`]: files and the tmpfs;
//! - [`cluster`]: SecretProviderClasses, status records and events;
//! - [`sync`], [`tls`]: mirroring files into Kubernetes Secrets;
//! - [`error_chain`]: an error and its causes as one line, where errors leave the shim;
//! - [`secretsync`]: the SecretSync controller (Secrets synced without a pod mount).

pub mod atomic_writer;
pub mod cluster;
pub mod csi;
pub mod dir;
pub mod error_chain;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod mount;
pub mod provider_client;
pub mod publish;
pub mod request;
pub mod secretsync;
pub mod sync;
pub mod target;
pub mod tls;
