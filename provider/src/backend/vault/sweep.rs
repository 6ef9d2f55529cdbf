//! The background sweep of kept dynamic secrets: expired leases are dropped and
//! idle `revokeOnUnmount` leases revoked.

use std::time::{Duration, Instant};

use super::lease::{self, Revoker};
use super::State;
use super::transport::TransportError;

/// Drops expired leases and revokes `revokeOnUnmount` leases no mount has used
/// for the grace period. Stops when the backend is dropped.
pub(super) async fn sweep_leases(state: std::sync::Weak<State>) {
    let Some(interval) = state.upgrade().map(|s| s.settings.lease_sweep_interval) else { return };
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(state) = state.upgrade() else { return };
        let (expired, idle) = state.leases.sweep(Instant::now(), state.settings.lease_revoke_grace);
        for _ in 0..expired {
            state.metrics.lease(lease::Event::Expired.label());
        }
        for (lease_id, revoker) in idle {
            let backend = revoker.cfg.flavor.name();
            match revoke(&revoker, &lease_id).await {
                Ok(()) => {
                    state.metrics.lease(lease::Event::Revoked.label());
                    tracing::info!(backend, "revoked a dynamic secret no mount has used for the grace period");
                }
                Err(why) => tracing::warn!(
                    backend,
                    reason = %why,
                    "could not revoke an idle dynamic secret (the role's policy needs 'update' on sys/leases/revoke); it expires on its own"
                ),
            }
        }
        state.metrics.leases_held.set(i64::try_from(state.leases.len()).unwrap_or(i64::MAX));
    }
}

/// Why an idle lease could not be revoked.
#[derive(Debug, thiserror::Error)]
enum RevokeError {
    /// The revoke URL cannot be formed from the configured address.
    #[error(transparent)]
    Url(Box<dyn std::error::Error + Send + Sync>),
    /// The Vault token is not a valid header value (its text is never shown).
    #[error(transparent)]
    Token(reqwest::header::InvalidHeaderValue),
    /// The request failed in transit.
    #[error(transparent)]
    Transport(TransportError),
    /// Vault refused it (usually: the role's policy lacks `update` on sys/leases/revoke).
    #[error("HTTP {0}")]
    Refused(u16),
}

async fn revoke(revoker: &Revoker, lease_id: &str) -> Result<(), RevokeError> {
    let url = revoker.endpoint.base.join("sys/leases/revoke").map_err(|e| RevokeError::Url(Box::new(e)))?;
    let mut token = reqwest::header::HeaderValue::from_str(revoker.token.expose_secret()).map_err(RevokeError::Token)?;
    token.set_sensitive(true);
    let mut request = revoker
        .endpoint
        .http
        .put(url)
        .header("X-Vault-Request", "true")
        .header("X-Vault-Token", token)
        .json(&serde_json::json!({"lease_id": lease_id}));
    if let Some(ns) = &revoker.cfg.namespace {
        request = request.header("X-Vault-Namespace", ns);
    }
    let response = request.send().await.map_err(|e| RevokeError::Transport(TransportError::http(e)))?;
    if response.status().is_success() { Ok(()) } else { Err(RevokeError::Refused(response.status().as_u16())) }
}
