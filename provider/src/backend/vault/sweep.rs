//! The background sweep of kept dynamic secrets: expired leases are dropped and
//! idle `revokeOnUnmount` leases revoked.

use std::time::{Duration, Instant};

use super::lease::{self, Revoker};
use super::State;
use super::transport::describe_transport_error;

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

async fn revoke(revoker: &Revoker, lease_id: &str) -> Result<(), String> {
    let url = revoker.endpoint.base.join("sys/leases/revoke").map_err(|e| e.to_string())?;
    let mut token = reqwest::header::HeaderValue::from_str(revoker.token.expose_secret()).map_err(|e| e.to_string())?;
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
    let response = request.send().await.map_err(|e| describe_transport_error(&e))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", response.status().as_u16())) }
}
