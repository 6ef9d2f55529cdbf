//! Caching under load and observability, black-box on a real OpenBao: singleflight logins and reads, identity
//! isolation of every cache, the Prometheus endpoint, gRPC and HTTP health, the audit trail, and how backend
//! faults (a sealed server, a stalled listener, a closed port) surface.
//!
//! The binary has its own OpenBao dev server; every test works under its own id (namespace, roles, policy,
//! secret paths) and runs its own provider process, so counters start at zero and logs never mix.

#[path = "observability/support.rs"]
mod support;

#[path = "observability/audit.rs"]
mod audit;
#[path = "observability/cancelled.rs"]
mod cancelled;
#[path = "observability/faults.rs"]
mod faults;
#[path = "observability/health.rs"]
mod health;
#[path = "observability/isolation.rs"]
mod isolation;
#[path = "observability/metrics.rs"]
mod metrics;
#[path = "observability/singleflight.rs"]
mod singleflight;
