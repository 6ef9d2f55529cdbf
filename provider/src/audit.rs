//! The audit trail: one structured line per mount (target `audit`), answering
//! "which pod read which secret, when". It names objects and versions, never values.

use std::time::Duration;

/// One object of the audit line's `objects` (keys in alphabetical order, as
/// they have always been written).
#[derive(serde::Serialize)]
struct ObjectLine<'a> {
    id: &'a str,
    outcome: &'static str,
    version: Option<&'a str>,
}

/// What a mount did, filled in as the mount proceeds.
#[derive(Debug, Default)]
pub(crate) struct AuditRecord {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID.
    pub pod_uid: String,
    /// Service account name.
    pub service_account: String,
    /// SecretProviderClass name.
    pub spc: String,
    /// Backend, once known.
    pub backend: &'static str,
    /// Object ids, with their version once served.
    pub objects: Vec<(String, Option<String>)>,
}

impl AuditRecord {
    /// Writes the record. `failure` is the error kind label and message of a failed mount.
    pub(crate) fn emit(&self, provider: &str, failure: Option<(&'static str, &str)>, duration: Duration) {
        let outcome = failure.map_or("ok", |(kind, _)| kind);
        let objects: Vec<ObjectLine<'_>> = self
            .objects
            .iter()
            .map(|(id, version)| ObjectLine {
                id,
                outcome: if version.is_some() { "served" } else { "not_served" },
                version: version.as_deref(),
            })
            .collect();
        // Strings and an enum of words: serialising cannot fail.
        let objects = serde_json::to_string(&objects).unwrap_or_default();
        tracing::info!(
            target: "audit",
            pod_namespace = %self.namespace,
            pod_name = %self.pod,
            pod_uid = %self.pod_uid,
            service_account = %self.service_account,
            spc = %self.spc,
            provider = provider,
            backend = if self.backend.is_empty() { "none" } else { self.backend },
            outcome,
            error = failure.map_or("", |(_, message)| message),
            objects = %objects,
            duration_ms = duration.as_millis() as u64,
            "mount"
        );
    }
}
