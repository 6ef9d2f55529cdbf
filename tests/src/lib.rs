//! Test support for Courier's black-box tests.
//!
//! Everything here starts or imitates something the provider meets in a cluster, and nothing re-implements the
//! provider itself:
//!
//! - [`OpenBao`] runs a real `bao server -dev` on 127.0.0.1 and configures it through its HTTP API.
//! - [`TokenIssuer`] plays the Kubernetes service-account token signer; OpenBao's JWT auth trusts its key.
//! - [`TokenReviewServer`] is a faithful fake of the TokenReview API for OpenBao's kubernetes auth method.
//! - [`PodFixture`] and [`MountRequestBuilder`] build the `Mount` request exactly as the Secrets Store CSI driver does.
//! - [`ProviderProcess`] runs the `courier-provider` binary on a temporary providers directory.
//! - [`legacy_client`] drives a socket the way drivers before v1.6 did (socket path as `:authority`), and
//!   [`h2_capture`] proves what a client puts on the wire.
//!
//! Fixtures fail loudly, never skip, when a server cannot start; they only ever contact 127.0.0.1.

pub mod calls;
pub mod h2_capture;
pub mod legacy_client;
mod mount_request;
mod openbao;
mod pod;
pub mod postgres;
mod provider;
mod tokenreview;
mod tokens;
pub mod tools;
mod watchdog;

pub use legacy_client::{
    Authority, LegacyOutcome, legacy_mount, legacy_mount_with, legacy_version,
};
pub use mount_request::{MountRequestBuilder, SpcParameters};
pub use openbao::{JwtRole, KubernetesRole, OpenBao, OpenBaoOptions, ROOT_TOKEN};
pub use pod::PodFixture;
pub use provider::{API_VERSION, ProviderBuilder, ProviderProcess, connect_unix};
pub use tokenreview::{ReviewRecord, TokenReviewServer};
pub use tokens::{MintedToken, TokenIssuer, TokenOptions};

/// The issuer Kubernetes puts into service-account tokens by default; OpenBao's JWT auth binds to it.
pub const KUBERNETES_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
