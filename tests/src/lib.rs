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
//! - [`Moto`] runs a real `moto_server` (Secrets Manager, SSM, STS) on 127.0.0.1 and seeds it over the AWS API;
//!   [`AwsProxy`] sits between the provider and moto, records every call, injects faults per region, and checks
//!   web identity tokens as STS does.
//! - [`FakeKubeApi`] is a faithful fake of the Kubernetes API (core objects and the Secrets Store CRDs: GET, LIST,
//!   WATCH, POST, PUT, PATCH, DELETE) for the real `kube` client, with a kubeconfig; [`PodIdentityAgent`] stands
//!   in for the EKS Pod Identity agent.
//! - [`Drongo`] runs a real `drongo` Secret Manager emulator; [`GcpStandIn`] stands in for Google's STS and IAM
//!   Credentials and fronts drongo with Secret Manager's auth, regional paths and `dataCrc32c`.
//! - [`SecretSyncProcess`] runs the SecretSync controller (`courier-driver-shim secret-sync`).
//! - [`ShimProcess`] runs the `courier-driver-shim` binary and [`Kubelet`] calls it as kubelet does for an inline
//!   [`InlineVolume`]; [`FakeProvider`] stands for any other provider, answering what the test sets.
//! - [`legacy_client`] drives a socket the way drivers before v1.6 did (socket path as `:authority`), and
//!   [`h2_capture`] proves what a client puts on the wire; [`h2_attack`] is a hostile HTTP/2 client.
//! - [`VaultProxy`] sits between the provider and OpenBao, records every request and injects faults (an error
//!   status instead of forwarding, or an error status or a cut connection after OpenBao served the request).
//! - [`SilentBackend`] is a fault injector: it accepts connections and never answers, like a hung server;
//!   [`closed_port_url`] names an address where nothing listens.
//!
//! Fixtures fail loudly, never skip, when a server cannot start; they only ever contact 127.0.0.1.

mod aws_proxy;
mod azure_standin;
pub mod calls;
pub mod corpus;
mod fake_provider;
mod drongo;
mod fault_injection;
mod gcp_standin;
pub mod h2_attack;
pub mod h2_capture;
mod kube_api;
pub mod legacy_client;
mod memory;
pub mod monitoring;
mod moto;
mod mount_request;
pub mod objects;
mod openbao;
mod pod;
mod pod_identity_agent;
pub mod probe;
pub mod postgres;
mod process;
mod provider;
mod secretsync;
mod server_thread;
pub mod shim;
mod sigv4;
mod tokenreview;
mod tokens;
pub mod tools;
mod upstream;
mod vault_proxy;
mod watchdog;

pub use aws_proxy::{AwsCall, AwsFault, AwsProxy, IssuedCredentials, STS_AUDIENCE};
pub use azure_standin::{
    AZURE_TOKEN_AUDIENCE, AzureApi, AzureCall, AzureStandIn, CertFormat, KEYVAULT_RESOURCE, KEYVAULT_SCOPE, TestCertificate,
    TestKey,
};
pub use fake_provider::{FakeAnswer, FakeFile, FakeProvider, ReceivedMount};
pub use drongo::Drongo;
pub use gcp_standin::{Checksum, GKE_IDENTITY_PROVIDER, GcpApi, GcpCall, GcpStandIn, NODE_SERVICE_ACCOUNT, crc32c};
pub use fault_injection::{SilentBackend, closed_port_url};
pub use kube_api::{
    COORDINATION_GROUP, COURIER_GROUP, FakeKubeApi, JWKS_PATH, KubeFault, KubeRequest, KubeResource,
    OPENID_CONFIGURATION_PATH,
    SECRETS_STORE_GROUP, service_account_path,
};
pub use legacy_client::{
    Authority, LegacyOutcome, legacy_mount, legacy_mount_with, legacy_version,
};
pub use moto::{
    AwsApiError, AwsService, CreatedSecret, MOTO_ACCOUNT_ID, Moto, ParameterType, SecretValue,
};
pub use memory::ProcessMemory;
pub use mount_request::{MountRequestBuilder, SpcParameters};
pub use openbao::{JwtRole, KubernetesRole, OpenBao, OpenBaoOptions, ROOT_TOKEN};
pub use pod::PodFixture;
pub use pod_identity_agent::{AgentRequest, POD_IDENTITY_AUDIENCE, PodIdentityAgent};
pub use provider::{
    API_VERSION, MetricSample, MetricsSnapshot, ProviderBuilder, ProviderProcess, connect_unix,
};
pub use secretsync::{SecretSyncBuilder, SecretSyncProcess};
pub use shim::{InlineVolume, Kubelet, MountCleanup, ShimBuilder, ShimProcess};
pub use tokenreview::{ReviewRecord, TokenReviewServer};
pub use vault_proxy::{VaultCall, VaultFault, VaultFaultKind, VaultProxy};
pub use tokens::{MintedToken, TokenIssuer, TokenOptions, forged_tokens};

/// The issuer Kubernetes puts into service-account tokens by default; OpenBao's JWT auth binds to it.
pub const KUBERNETES_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
