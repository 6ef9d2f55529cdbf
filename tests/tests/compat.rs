//! Drop-in fidelity: SecretProviderClasses transcribed from the anchor providers' own documentation and
//! end-to-end fixtures mount on Courier's compatibility sockets exactly as they mount on those providers (file
//! names, bytes and modes), and the inputs they refuse are refused. Each case names the anchor file it comes from.
//!
//! `vault.sock` and `openbao.sock` run against a real OpenBao, `aws.sock` against a real moto,
//! `gcp.sock` against a real drongo behind the STS/IAM stand-in, `azure.sock` against the HTTPS Entra/Key Vault
//! stand-in; the native
//! socket's deliberate differences (failover, whole-response `request_id`, request reuse) are checked beside
//! the compatible behaviour.

#[path = "vault/support.rs"]
#[allow(dead_code, reason = "shared with the vault binary; this binary uses part of it")]
mod vault_support;

#[path = "aws/support.rs"]
#[allow(dead_code, reason = "shared with the aws binary; this binary uses part of it")]
mod aws_support;

#[path = "gcp/support.rs"]
#[allow(dead_code, reason = "shared with the gcp binary; this binary uses part of it")]
mod gcp_support;

#[path = "azure/support.rs"]
#[allow(dead_code, reason = "shared with the azure binary; this binary uses part of it")]
mod azure_support;

#[path = "compat/aws.rs"]
mod aws;
#[path = "compat/azure.rs"]
mod azure;
#[path = "compat/gcp.rs"]
mod gcp;
#[path = "compat/openbao.rs"]
mod openbao;
#[path = "compat/vault.rs"]
mod vault;
