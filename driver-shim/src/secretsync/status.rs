//! A SecretSync's status: the `Ready` condition with a bounded reason, the last good sync (time,
//! generation, Secret names, object versions) and when the next sync is due. Never a value.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::spec::{RefreshPolicy, Spec};

/// Status messages are cut to this many bytes.
const MAX_MESSAGE_BYTES: usize = 1024;
/// The refresh interval is stretched or shrunk by up to this fraction, so SecretSyncs created together do
/// not all hit the backend at once.
const JITTER: f64 = 0.1;

/// Why a SecretSync is or is not ready: a closed set, used as condition reason, Event reason and metric
/// label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The Secrets hold the provider's current content.
    Synced,
    /// The spec cannot be used.
    InvalidSpec,
    /// The spec names a service account in another namespace.
    CrossNamespaceServiceAccount,
    /// The SecretProviderClass does not exist (or cannot be read).
    SecretProviderClassNotFound,
    /// The service account does not exist.
    ServiceAccountNotFound,
    /// The TokenRequest API refused or failed.
    TokenRequestFailed,
    /// No socket for the SecretProviderClass's provider.
    ProviderNotFound,
    /// The backend refused the service account's identity.
    PermissionDenied,
    /// The provider failed otherwise.
    ProviderError,
    /// The provider reports a source secret missing; the Secrets were kept (`deletionPolicy: Retain`).
    SourceNotFound,
    /// The provider reports a source secret missing; the Secrets were deleted (`deletionPolicy: Delete`).
    SourceDeleted,
    /// Writing the Secrets failed.
    MirrorFailed,
}

impl Reason {
    /// The CamelCase name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "Synced",
            Self::InvalidSpec => "InvalidSpec",
            Self::CrossNamespaceServiceAccount => "CrossNamespaceServiceAccount",
            Self::SecretProviderClassNotFound => "SecretProviderClassNotFound",
            Self::ServiceAccountNotFound => "ServiceAccountNotFound",
            Self::TokenRequestFailed => "TokenRequestFailed",
            Self::ProviderNotFound => "ProviderNotFound",
            Self::PermissionDenied => "PermissionDenied",
            Self::ProviderError => "ProviderError",
            Self::SourceNotFound => "SourceNotFound",
            Self::SourceDeleted => "SourceDeleted",
            Self::MirrorFailed => "MirrorFailed",
        }
    }
}

/// What the stored status says about past syncs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// `metadata.generation`.
    pub generation: i64,
    /// The generation of the last good sync.
    pub synced_generation: Option<i64>,
    /// The time of the last good sync.
    pub last_sync: Option<Timestamp>,
    /// The `Ready` condition: status, reason, message, lastTransitionTime.
    pub ready: Option<(String, String, String, String)>,
}

impl Observed {
    /// Reads `object` (a SecretSync as JSON: metadata and status).
    #[must_use]
    pub fn read(generation: i64, status: Option<&Value>) -> Self {
        let status = status.unwrap_or(&Value::Null);
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let ready = status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready")))
            .map(|c| {
                (
                    text(c, "status"),
                    text(c, "reason"),
                    text(c, "message"),
                    text(c, "lastTransitionTime"),
                )
            });
        Self {
            generation,
            synced_generation: status.get("syncedGeneration").and_then(Value::as_i64),
            last_sync: status
                .get("lastSyncTime")
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok()),
            ready,
        }
    }
}

/// When the next sync is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Now.
    Now,
    /// After this long.
    After(Duration),
    /// Only when the SecretSync changes (or never, for `CreatedOnce`).
    OnChange,
}

/// The refresh interval of the sync at `last_sync`, stretched by a jitter derived from `uid` and that time
/// (stable across reconciles, different between SecretSyncs).
#[must_use]
pub fn jittered(interval: Duration, uid: &str, last_sync: Timestamp) -> Duration {
    let digest = Sha256::new()
        .chain_update(uid.as_bytes())
        .chain_update(last_sync.to_string().as_bytes())
        .finalize();
    let unit = f64::from(u16::from_be_bytes([digest[0], digest[1]])) / f64::from(u16::MAX);
    interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

/// When `spec`'s next sync is due, given what `observed` records.
#[must_use]
pub fn due(spec: &Spec, observed: &Observed, uid: &str, now: Timestamp) -> Due {
    let Some(last_sync) = observed.last_sync else {
        return Due::Now;
    };
    let current = observed.synced_generation == Some(observed.generation);
    match spec.refresh_policy {
        RefreshPolicy::CreatedOnce => Due::OnChange,
        RefreshPolicy::OnChange if current => Due::OnChange,
        RefreshPolicy::OnChange => Due::Now,
        RefreshPolicy::Periodic if !current => Due::Now,
        RefreshPolicy::Periodic => {
            let interval = jittered(spec.refresh_interval, uid, last_sync);
            let next = last_sync
                .checked_add(SignedDuration::try_from(interval).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MAX);
            match now.duration_until(next).try_into() {
                Ok(wait) if wait > Duration::ZERO => Due::After(wait),
                _ => Due::Now,
            }
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
#[must_use]
pub fn truncate(text: &str, max: usize) -> String {
    crate::cluster::truncate_bytes(text, max)
}

/// The `Ready` condition, keeping `lastTransitionTime` while the status stays the same.
fn ready(ok: bool, reason: Reason, message: &str, generation: i64, observed: &Observed, now: Timestamp) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = match &observed.ready {
        Some((old, _, _, at)) if old == status && !at.is_empty() => at.clone(),
        _ => now.to_string(),
    };
    json!({
        "type": "Ready",
        "status": status,
        "reason": reason.as_str(),
        "message": truncate(message, MAX_MESSAGE_BYTES),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    })
}

/// The status patch of a good sync.
#[must_use]
pub fn synced(
    observed: &Observed,
    secrets: &[String],
    versions: &[(String, String)],
    message: &str,
    now: Timestamp,
) -> Value {
    let objects: Vec<Value> = versions
        .iter()
        .map(|(id, version)| json!({"id": id, "version": version}))
        .collect();
    json!({"status": {
        "observedGeneration": observed.generation,
        "syncedGeneration": observed.generation,
        "lastSyncTime": now.to_string(),
        "secrets": secrets,
        "objects": objects,
        "conditions": [ready(true, Reason::Synced, message, observed.generation, observed, now)],
    }})
}

/// The status patch of a failed sync: the last good sync's fields stay as they are.
#[must_use]
pub fn failed(observed: &Observed, reason: Reason, message: &str, now: Timestamp) -> Value {
    json!({"status": {
        "observedGeneration": observed.generation,
        "conditions": [ready(false, reason, message, observed.generation, observed, now)],
    }})
}

/// Whether writing `reason`/`message` changes the `Ready` condition (an Event is due).
#[must_use]
pub fn changes_condition(observed: &Observed, ok: bool, reason: Reason, message: &str) -> bool {
    let status = if ok { "True" } else { "False" };
    !matches!(&observed.ready, Some((s, r, m, _))
        if s == status && r == reason.as_str() && *m == truncate(message, MAX_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(policy: RefreshPolicy) -> Spec {
        Spec {
            secret_provider_class: "db".to_owned(),
            service_account: "app".to_owned(),
            refresh_interval: Duration::from_secs(100),
            refresh_policy: policy,
            audiences: Vec::new(),
            creation_policy: super::super::spec::CreationPolicy::Owner,
            deletion_policy: super::super::spec::DeletionPolicy::Retain,
            secret_objects: None,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_is_stable() {
        for i in 0..200 {
            let d = jittered(Duration::from_secs(3600), &format!("uid-{i}"), at(i));
            assert!(d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960), "{d:?}");
            assert_eq!(d, jittered(Duration::from_secs(3600), &format!("uid-{i}"), at(i)));
        }
    }

    #[test]
    fn policies_decide_when_a_sync_is_due() {
        let never = Observed { generation: 1, ..Observed::default() };
        for policy in [RefreshPolicy::Periodic, RefreshPolicy::CreatedOnce, RefreshPolicy::OnChange] {
            assert_eq!(due(&spec(policy), &never, "u", at(0)), Due::Now, "{policy:?}: first sync");
        }
        let synced = Observed { generation: 1, synced_generation: Some(1), last_sync: Some(at(0)), ready: None };
        assert!(matches!(due(&spec(RefreshPolicy::Periodic), &synced, "u", at(1)), Due::After(_)));
        assert_eq!(due(&spec(RefreshPolicy::Periodic), &synced, "u", at(200)), Due::Now);
        assert_eq!(due(&spec(RefreshPolicy::OnChange), &synced, "u", at(200)), Due::OnChange);
        assert_eq!(due(&spec(RefreshPolicy::CreatedOnce), &synced, "u", at(200)), Due::OnChange);
        let changed = Observed { generation: 2, ..synced };
        assert_eq!(due(&spec(RefreshPolicy::OnChange), &changed, "u", at(1)), Due::Now);
        assert_eq!(due(&spec(RefreshPolicy::Periodic), &changed, "u", at(1)), Due::Now);
        assert_eq!(due(&spec(RefreshPolicy::CreatedOnce), &changed, "u", at(1)), Due::OnChange);
    }

    #[test]
    fn a_failure_keeps_the_last_good_sync_and_the_transition_time_moves_only_on_change() {
        let observed = Observed::read(
            3,
            Some(&json!({"syncedGeneration": 2, "lastSyncTime": at(0).to_string(),
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "",
                                "lastTransitionTime": "then"}]})),
        );
        assert_eq!(observed.last_sync, Some(at(0)));
        let patch = failed(&observed, Reason::ProviderError, "x", at(5));
        assert!(patch["status"].get("lastSyncTime").is_none());
        assert!(patch["status"].get("objects").is_none());
        assert_eq!(patch["status"]["conditions"][0]["lastTransitionTime"], json!(at(5).to_string()));
        let ok = synced(&observed, &["s".to_owned()], &[], "", at(6));
        assert_eq!(ok["status"]["conditions"][0]["lastTransitionTime"], json!("then"));
        assert!(changes_condition(&observed, false, Reason::ProviderError, "x"));
        assert!(!changes_condition(&observed, true, Reason::Synced, ""));
    }
}
