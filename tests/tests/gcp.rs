//! Black-box tests of the provider against Google Secret Manager served by a real `drongo`, with STS and IAM
//! Credentials played by the [`GcpStandIn`](courier_tests::GcpStandIn), driven as the Secrets Store CSI driver
//! drives it, with SecretProviderClasses written for the GCP provider (`gcp.sock`) and Courier's native
//! `backend: gcp`.
//!
//! Two drongos (global and regional) are shared by the whole binary; each test has its own project, its own
//! stand-in, fake Kubernetes API and provider process.

#[path = "gcp/support.rs"]
mod support;

#[path = "gcp/dialects.rs"]
mod dialects;
#[path = "gcp/errors.rs"]
mod errors;
#[path = "gcp/identity.rs"]
mod identity;
#[path = "gcp/secret_manager.rs"]
mod secret_manager;
#[path = "gcp/secrecy.rs"]
mod secrecy;
