//! Logging setup and the HTTP health endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tracing_subscriber::EnvFilter;

use crate::metrics::Metrics;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The level is not a valid filter.
    #[error("--log-level {0:?}: {1}")]
    Filter(String, String),
    /// A global subscriber was already installed.
    #[error("logging is already initialised")]
    AlreadySet,
}

/// Installs the global subscriber, writing to stderr. `level` is an `EnvFilter`
/// directive such as `info` or `courier_provider=debug,info`.
pub fn init(format: LogFormat, level: &str) -> Result<(), Error> {
    let filter = EnvFilter::try_new(level).map_err(|e| Error::Filter(level.to_owned(), e.to_string()))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
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
