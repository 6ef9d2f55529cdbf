//! The SecretSync controller (`courier-driver-shim secret-sync`) as a process against the fake Kubernetes
//! API (TokenRequest, Leases, the SecretSync resource with its status subresource), the real provider and a
//! real OpenBao or moto: Secrets synced with no pod mounting anything.

#[path = "secretsync/support.rs"]
mod support;

#[path = "secretsync/aws.rs"]
mod aws;
#[path = "secretsync/identity.rs"]
mod identity;
#[path = "secretsync/leader.rs"]
mod leader;
#[path = "secretsync/policies.rs"]
mod policies;
#[path = "secretsync/sync.rs"]
mod sync;
