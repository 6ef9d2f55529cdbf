//! Black-box tests of the provider's Azure Key Vault backend against the HTTPS
//! [`AzureStandIn`](courier_tests::AzureStandIn) (Entra's token endpoint and Key Vault, written from Microsoft's
//! REST reference: no Key Vault emulator can be installed here), driven as the Secrets Store CSI driver drives it,
//! with SecretProviderClasses written for the Azure provider (`azure.sock`) and Courier's native `backend: azure`.
//!
//! Each test has its own stand-in, fake Kubernetes API and provider process.

#[path = "azure/support.rs"]
mod support;

#[path = "azure/dialects.rs"]
mod dialects;
#[path = "azure/errors.rs"]
mod errors;
#[path = "azure/identity.rs"]
mod identity;
#[path = "azure/key_vault.rs"]
mod key_vault;
#[path = "azure/secrecy.rs"]
mod secrecy;
