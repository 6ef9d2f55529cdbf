//! Black-box tests of dynamic secrets: database credentials from a real PostgreSQL through OpenBao's database
//! engine, PKI certificates with and without a lease, and what the provider does with them across mounts,
//! pods, identities, namespaces and restarts.
//!
//! One OpenBao and one PostgreSQL are shared by the whole binary; every test works under its own id (its own
//! database role, policy, JWT role and namespace) and runs its own provider process with the lease flags it
//! needs. Lifetimes are seconds long so thresholds pass within a test; every wait polls against a deadline.

#[path = "dynamic/support.rs"]
mod support;

#[path = "dynamic/database.rs"]
mod database;
#[path = "dynamic/forged.rs"]
mod forged;
#[path = "dynamic/identities.rs"]
mod identities;
#[path = "dynamic/namespaces.rs"]
mod namespaces;
#[path = "dynamic/pki.rs"]
mod pki;
#[path = "dynamic/replay.rs"]
mod replay;
#[path = "dynamic/restart.rs"]
mod restart;
#[path = "dynamic/revoke.rs"]
mod revoke;
