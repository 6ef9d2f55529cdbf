//! The controller's Prometheus metrics (bounded labels only: results and failure reasons).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Result of one sync.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `written`, `unchanged` or `failed`.
    pub result: &'static str,
}

/// Reason of a failure (one of [`super::status::Reason`]'s names).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason.
    pub reason: &'static str,
}

/// The metrics.
pub struct Metrics {
    registry: Registry,
    /// Syncs by result.
    pub syncs: Family<SyncLabels, Counter>,
    /// Failed syncs by reason.
    pub failures: Family<ReasonLabels, Counter>,
    /// Secrets created or updated.
    pub secret_writes: Counter,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("courier_secretsync");
        let syncs = Family::<SyncLabels, Counter>::default();
        registry.register("syncs", "SecretSync syncs by result", syncs.clone());
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register("failures", "Failed SecretSync syncs by reason", failures.clone());
        let secret_writes = Counter::default();
        registry.register(
            "secret_writes",
            "Secrets whose data a SecretSync created or changed",
            secret_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        Self {
            registry,
            syncs,
            failures,
            secret_writes,
            leader,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
