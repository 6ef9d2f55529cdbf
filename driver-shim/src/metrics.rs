//! The shim's Prometheus metrics (bounded labels only).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Result label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, `error`, `skipped` or `unchanged`.
    pub result: &'static str,
}

/// Labels of a NodePublishVolume call by what it was and the code kubelet got.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// `publish` (first mount of the volume) or `republish` (kubelet's periodic call).
    pub operation: &'static str,
    /// The gRPC code returned to kubelet (`OK`, `InvalidArgument`, `Unavailable`, ...).
    pub code: &'static str,
}

/// Labels of a NodePublishVolume call's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `publish` or `republish`.
    pub operation: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s: a publish waits for the provider, which may take up to its timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
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
    /// NodePublishVolume calls by operation and the code kubelet got.
    pub publish_codes: Family<CodeLabels, Counter>,
    /// NodePublishVolume latency by operation.
    pub publish_seconds: HistogramFamily<OperationLabels>,
    /// Kubernetes Secrets that could not be created or updated from a mount (`secretObjects`).
    pub sync_errors: Counter,
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
        let publish_codes = Family::<CodeLabels, Counter>::default();
        registry.register(
            "node_publish_codes",
            "NodePublishVolume calls by operation (publish, republish) and the gRPC code returned",
            publish_codes.clone(),
        );
        let publish_seconds: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "node_publish_duration_seconds",
            "NodePublishVolume latency by operation (publish, republish)",
            publish_seconds.clone(),
        );
        let sync_errors = Counter::default();
        registry.register(
            "secret_sync_errors",
            "Kubernetes Secrets that could not be created or updated from a mount",
            sync_errors.clone(),
        );
        Self {
            registry,
            publish,
            unpublish,
            rotations,
            republish_errors,
            publish_codes,
            publish_seconds,
            sync_errors,
        }
    }
}

impl Metrics {
    /// Records one NodePublishVolume call: what it was, the code returned, and how long it took.
    pub fn published(&self, operation: &'static str, code: tonic::Code, elapsed: std::time::Duration) {
        self.publish_codes
            .get_or_create(&CodeLabels {
                operation,
                code: code_label(code),
            })
            .inc();
        self.publish_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

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

/// The gRPC code's name as a bounded label.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_publish_codes_and_latency() {
        let m = Metrics::default();
        m.published("republish", tonic::Code::Unavailable, std::time::Duration::from_millis(3));
        let text = m.encode();
        assert!(
            text.contains("courier_shim_node_publish_codes_total{operation=\"republish\",code=\"Unavailable\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("courier_shim_node_publish_duration_seconds_count{operation=\"republish\"} 1"),
            "{text}"
        );
        assert!(text.contains("courier_shim_secret_sync_errors_total 0"), "{text}");
    }
}
