//! Logging setup and the HTTP health endpoints.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::metrics::Metrics;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Courier's own log targets, which `--log-level` sets: the two binaries and the audit trail.
const OWN_TARGETS: &[&str] = &["courier_provider", "courier_driver_shim", "audit"];
/// Every other crate (HTTP/2, HTTP, gRPC, TLS, the Kubernetes and AWS clients) logs at most
/// this verbosely unless a directive names it: their debug output is per-frame noise.
const LIBRARY_LEVEL: LevelFilter = LevelFilter::WARN;

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The level or a filter directive is not valid.
    #[error("{flag} {value:?}: {problem}")]
    Filter {
        /// `--log-level` or `--log-filter`.
        flag: &'static str,
        /// What was given.
        value: String,
        /// Why it is refused.
        problem: String,
    },
    /// A global subscriber was already installed.
    #[error("logging is already initialised")]
    AlreadySet,
}

/// The filter directives for `level` and the extra directives in `extra`.
///
/// A plain level (`debug`) applies to Courier's own targets; other crates stay at `warn`
/// (or quieter, when the level is). A level that is already a directive list
/// (`courier_provider=trace,info`) is taken as written. `extra` (`--log-filter`, or
/// `RUST_LOG`) adds directives and overrides those for the same target: `h2=trace` shows the
/// HTTP/2 frames, a bare `trace` sets every other crate's level.
pub(crate) fn directives(level: &str, extra: Option<&str>) -> Result<String, Error> {
    let level = level.trim();
    let refuse = |flag, value: &str, problem: String| Error::Filter { flag, value: value.to_owned(), problem };
    // Keyed by what a directive selects (`""` for the default), so a later one replaces an earlier one.
    let mut selected: Vec<(String, String)> = Vec::new();
    let mut add = |directive: &str| {
        let key = directive.split_once('=').map_or("", |(target, _)| target).to_owned();
        selected.retain(|(k, _)| *k != key);
        selected.push((key, directive.to_owned()));
    };
    match level.parse::<LevelFilter>() {
        Ok(own) => {
            add(&std::cmp::min(own, LIBRARY_LEVEL).to_string().to_lowercase());
            for target in OWN_TARGETS {
                add(&format!("{target}={}", own.to_string().to_lowercase()));
            }
        }
        Err(_) if !level.contains('=') => {
            return Err(refuse(
                "--log-level",
                level,
                "not a level (trace, debug, info, warn, error, off) nor a directive list such as courier_provider=debug,info"
                    .to_owned(),
            ));
        }
        Err(_) => {
            EnvFilter::try_new(level).map_err(|e| refuse("--log-level", level, e.to_string()))?;
            level.split(',').map(str::trim).filter(|d| !d.is_empty()).for_each(&mut add);
        }
    }
    if let Some(extra) = extra.map(str::trim).filter(|e| !e.is_empty()) {
        EnvFilter::try_new(extra).map_err(|e| refuse("--log-filter", extra, e.to_string()))?;
        extra.split(',').map(str::trim).filter(|d| !d.is_empty()).for_each(&mut add);
    }
    Ok(selected.into_iter().map(|(_, d)| d).collect::<Vec<_>>().join(","))
}

/// Installs the global subscriber, writing to stderr, with colours only when stderr is a
/// terminal. See [`directives`] for `level` and `extra`.
pub fn init(format: LogFormat, level: &str, extra: Option<&str>) -> Result<(), Error> {
    let directives = directives(level, extra)?;
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| Error::Filter { flag: "--log-level", value: directives.clone(), problem: e.to_string() })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        // The stable JSON field set (README, "Logs"): timestamp, level, target, the event's own
        // fields (message included) at the top level, and `span`: the innermost span's name
        // and fields.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
    result.map_err(|_| Error::AlreadySet)
}

/// Liveness and readiness as the health endpoints report them.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Ready once every socket is bound; not ready again from shutdown on.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// `/healthz` (live), `/readyz` (every socket bound) and `/health/ready` (the same,
/// where vault-csi-provider charts probe).
pub fn router(health: Arc<Health>) -> Router {
    let ready = move || {
        let health = Arc::clone(&health);
        async move {
            if health.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
        }
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready.clone()))
        .route("/health/ready", get(ready))
}

/// `/metrics` in the Prometheus text format.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    metrics.encode(),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_applies_to_courier_and_libraries_stay_at_warn() {
        assert_eq!(
            directives("debug", None).expect("valid"),
            "warn,courier_provider=debug,courier_driver_shim=debug,audit=debug"
        );
        assert_eq!(
            directives("error", None).expect("valid"),
            "error,courier_provider=error,courier_driver_shim=error,audit=error"
        );
    }

    #[test]
    fn libraries_only_when_asked_by_target() {
        let d = directives("debug", Some("h2=trace,tower=debug")).expect("valid");
        assert!(d.starts_with("warn,") && d.ends_with(",h2=trace,tower=debug"), "{d}");
        let d = directives("info", Some("trace")).expect("valid");
        assert!(d.starts_with("courier_provider=info") && d.ends_with(",trace"), "a bare level replaces the default: {d}");
        let d = directives("info", Some("courier_provider=trace")).expect("valid");
        assert!(d.contains("courier_provider=trace") && !d.contains("courier_provider=info"), "{d}");
    }

    #[test]
    fn directive_lists_are_taken_as_written() {
        assert_eq!(directives("courier_provider=trace,info", None).expect("valid"), "courier_provider=trace,info");
    }

    #[test]
    fn bad_filters_name_the_flag() {
        let e = directives("loud", None).expect_err("invalid").to_string();
        assert!(e.starts_with("--log-level"), "{e}");
        let e = directives("info", Some("h2=noisy")).expect_err("invalid").to_string();
        assert!(e.starts_with("--log-filter"), "{e}");
    }
}
