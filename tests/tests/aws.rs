//! Black-box tests of the provider against AWS Secrets Manager, SSM Parameter Store and STS served by a real
//! moto server, driven as the Secrets Store CSI driver drives it, with SecretProviderClasses written for
//! aws/secrets-store-csi-driver-provider-aws (`aws.sock`) and Courier's native `backend: aws`.
//!
//! One moto is shared by the whole binary; each test has its own names, its own recording proxy in front of
//! moto (to see regions, identities and call counts, and to fail one region), its own fake Kubernetes API and
//! Pod Identity agent, and its own provider process.

#[path = "aws/support.rs"]
mod support;

#[path = "aws/dialects.rs"]
mod dialects;
#[path = "aws/errors.rs"]
mod errors;
#[path = "aws/failover.rs"]
mod failover;
#[path = "aws/forged.rs"]
mod forged;
#[path = "aws/identity.rs"]
mod identity;
#[path = "aws/logs.rs"]
mod logs;
#[path = "aws/regions.rs"]
mod regions;
#[path = "aws/secrets_manager.rs"]
mod secrets_manager;
#[path = "aws/ssm.rs"]
mod ssm;
