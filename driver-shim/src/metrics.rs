//! The shim's Prometheus metrics (bounded labels only).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Result label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, `error`, `skipped` or `unchanged`.
    pub result: &'static str,
}

/// The shim's metrics.
pub struct Metrics {
    registry: Registry,
    /// NodePublishVolume calls by result.
    pub publish: Family<ResultLabels, Counter>,
    /// NodeUnpublishVolume calls by result.
    pub unpublish: Family<ResultLabels, Counter>,
    /// Republishes that swapped in new content.
    pub rotations: Counter,
    /// Republishes that failed (old files kept).
    pub republish_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("courier_shim");
        let publish = Family::<ResultLabels, Counter>::default();
        registry.register(
            "node_publish",
            "NodePublishVolume calls by result",
            publish.clone(),
        );
        let unpublish = Family::<ResultLabels, Counter>::default();
        registry.register(
            "node_unpublish",
            "NodeUnpublishVolume calls by result",
            unpublish.clone(),
        );
        let rotations = Counter::default();
        registry.register(
            "rotations",
            "Republishes that swapped in new content",
            rotations.clone(),
        );
        let republish_errors = Counter::default();
        registry.register(
            "republish_errors",
            "Republishes that failed; the previous files were kept",
            republish_errors.clone(),
        );
        Self {
            registry,
            publish,
            unpublish,
            rotations,
            republish_errors,
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
