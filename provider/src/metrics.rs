//! Prometheus metrics. Labels are bounded `&'static str` kinds and the configured
//! provider names, never object names, paths or values.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::process_metrics::ProcessCollector;

/// The source revision the binary was built from (see `build.rs`), or `unknown`.
pub(crate) const REVISION: &str = env!("COURIER_REVISION");

/// Labels of a mount.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MountLabels {
    /// The socket's provider name (from the bounded set of `--provider` names).
    pub provider: String,
    /// `vault`, `openbao`, or `none` when parsing failed before a backend was known.
    pub backend: &'static str,
    /// `ok`, or the error kind.
    pub result: &'static str,
}

/// Labels of a mount's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MountLatencyLabels {
    /// The socket's provider name.
    pub provider: String,
    /// The backend.
    pub backend: &'static str,
}

/// Labels of one backend HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The backend.
    pub backend: &'static str,
    /// `login`, `read` (GET) or `write` (PUT/POST).
    pub operation: &'static str,
    /// `2xx`, `4xx`, `5xx`, `other` or `error` (no HTTP answer).
    pub status: &'static str,
}

/// Labels of a backend request's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The backend.
    pub backend: &'static str,
    /// `login`, `read` or `write`.
    pub operation: &'static str,
}

/// Labels of a login.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// The backend.
    pub backend: &'static str,
    /// `ok`, `denied` or `error`.
    pub result: &'static str,
}

/// Labels of a cache lookup.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `login` (backend tokens) or `read` (static reads in their reuse window).
    pub cache: &'static str,
    /// `hit`, `miss`, or `shared` (joined a request already in flight).
    pub result: &'static str,
}

/// Labels of a lease event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// `issued`, `reused`, `renewed`, `renew_failed`, `revoked` or `expired`.
    pub event: &'static str,
}

/// Labels of a socket's connections.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// The socket's provider name.
    pub provider: String,
}

/// Labels of a connection the provider closed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionCloseLabels {
    /// The socket's provider name.
    pub provider: String,
    /// `idle`, `handshake_timeout`, `evicted` (made room for a new one) or `over_limit` (refused).
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the provider exports.
pub struct Metrics {
    registry: Registry,
    /// Standard `process_*` metrics, without the `courier_` prefix.
    process: Registry,
    /// 1 while every socket is bound and serving, 0 before and from shutdown on.
    pub ready: Gauge,
    /// Mounts served, by result.
    pub mounts: Family<MountLabels, Counter>,
    /// Mount latency.
    pub mount_seconds: HistogramFamily<MountLatencyLabels>,
    /// Backend HTTP requests, by status class.
    pub backend_requests: Family<RequestLabels, Counter>,
    /// Backend HTTP latency.
    pub backend_seconds: HistogramFamily<OperationLabels>,
    /// Logins, by result.
    pub logins: Family<LoginLabels, Counter>,
    /// Cache lookups, by result.
    pub cache_lookups: Family<CacheLabels, Counter>,
    /// Backend tokens currently cached.
    pub tokens_cached: Gauge,
    /// Dynamic-secret leases currently held for reuse.
    pub leases_held: Gauge,
    /// Lease events.
    pub leases: Family<LeaseLabels, Counter>,
    /// Connections open, per socket.
    pub connections_open: Family<ConnectionLabels, Gauge>,
    /// Connections the provider closed or refused, by reason.
    pub connections_closed: Family<ConnectionCloseLabels, Counter>,
    /// Failed `accept` calls (each followed by a back-off).
    pub accept_errors: Family<ConnectionLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("courier");
        registry.register(
            "build",
            "The provider's version and source revision",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION")), ("revision", REVISION)]),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 while every provider socket is serving", ready.clone());
        let mut process = Registry::default();
        process.register_collector(Box::new(ProcessCollector::default()));
        let mounts = Family::<MountLabels, Counter>::default();
        registry.register("mounts", "Mount requests served, by provider, backend and result", mounts.clone());
        let mount_seconds: HistogramFamily<MountLatencyLabels> = Family::new_with_constructor(latency_histogram);
        registry.register("mount_duration_seconds", "Time to serve a mount", mount_seconds.clone());
        let backend_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "backend_requests",
            "HTTP requests sent to backends, by operation and status class",
            backend_requests.clone(),
        );
        let backend_seconds: HistogramFamily<OperationLabels> = Family::new_with_constructor(latency_histogram);
        registry.register("backend_request_duration_seconds", "Backend HTTP request latency", backend_seconds.clone());
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register("logins", "Logins to backends with pod tokens, by result", logins.clone());
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register("cache_lookups", "Identity-keyed cache lookups, by cache and result", cache_lookups.clone());
        let tokens_cached = Gauge::default();
        registry.register("backend_tokens_cached", "Backend tokens cached per identity", tokens_cached.clone());
        let leases_held = Gauge::default();
        registry.register("leases_held", "Dynamic-secret leases held for reuse", leases_held.clone());
        let leases = Family::<LeaseLabels, Counter>::default();
        registry.register("lease_events", "Dynamic-secret lease events", leases.clone());
        let connections_open = Family::<ConnectionLabels, Gauge>::default();
        registry.register("connections_open", "Connections open on each provider socket", connections_open.clone());
        let connections_closed = Family::<ConnectionCloseLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the provider closed (idle, handshake timeout, evicted) or refused (over limit)",
            connections_closed.clone(),
        );
        let accept_errors = Family::<ConnectionLabels, Counter>::default();
        registry.register("accept_errors", "Failed accepts on a provider socket (e.g. out of descriptors)", accept_errors.clone());
        Self {
            registry,
            process,
            ready,
            mounts,
            mount_seconds,
            backend_requests,
            backend_seconds,
            logins,
            cache_lookups,
            tokens_cached,
            leases_held,
            leases,
            connections_open,
            connections_closed,
            accept_errors,
        }
    }
}

impl Metrics {
    /// A shared, empty set of metrics.
    #[must_use]
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts a cache lookup.
    pub fn cache(&self, cache: &'static str, result: &'static str) {
        self.cache_lookups.get_or_create(&CacheLabels { cache, result }).inc();
    }

    /// Counts a lease event.
    pub fn lease(&self, event: &'static str) {
        self.leases.get_or_create(&LeaseLabels { event }).inc();
    }

    /// The text exposition format.
    #[must_use]
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let encoded = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process))
            .and_then(|()| encode_eof(&mut out));
        if encoded.is_err() {
            out.clear();
        }
        out
    }
}

/// Status class label of an HTTP status.
#[must_use]
pub(crate) fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_families() {
        let m = Metrics::default();
        m.mounts.get_or_create(&MountLabels { provider: "courier".into(), backend: "vault", result: "ok" }).inc();
        m.cache("login", "hit");
        m.mount_seconds.get_or_create(&MountLatencyLabels { provider: "courier".into(), backend: "vault" }).observe(0.01);
        let text = m.encode();
        assert!(text.contains("courier_mounts_total{provider=\"courier\",backend=\"vault\",result=\"ok\"} 1"), "{text}");
        assert!(text.contains("courier_cache_lookups_total{cache=\"login\",result=\"hit\"} 1"), "{text}");
        assert!(text.contains("# TYPE courier_mount_duration_seconds histogram"), "{text}");
        assert!(text.contains(&format!("courier_build_info{{version=\"{}\",revision=\"{REVISION}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name} in {text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
