//! A `SecretSync`'s spec, parsed once into types that hold only valid settings.

use std::time::Duration;

use serde::Deserialize;

/// The refresh interval when the spec names none, as External Secrets defaults `refreshInterval`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// Why a spec cannot be used; each names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The spec does not have the schema's shape.
    #[error("spec: {0}")]
    Shape(String),
    /// A required field is empty.
    #[error("spec.{0}: required")]
    Missing(&'static str),
    /// The service account lives in another namespace.
    #[error(
        "spec.serviceAccountRef.namespace: {given:?} is not the SecretSync's namespace {own:?}; a SecretSync \
         may only use a service account of its own namespace"
    )]
    CrossNamespace {
        /// The namespace named.
        given: String,
        /// The SecretSync's namespace.
        own: String,
    },
    /// The refresh interval does not parse or is too short.
    #[error("spec.refreshInterval: {0}")]
    RefreshInterval(String),
    /// A `secretObjects` entry is not an object.
    #[error("spec.target.secretObjects[{0}]: must be an object")]
    SecretObject(usize),
}

/// What creates and owns the target Secrets (External Secrets' `creationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum CreationPolicy {
    /// The SecretSync owns them: they go when it goes (Kubernetes garbage collection).
    #[default]
    Owner,
    /// No owner: they stay when the SecretSync goes.
    Orphan,
}

/// What happens to the target Secrets when the provider reports the source gone (External Secrets'
/// `deletionPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum DeletionPolicy {
    /// They keep their last content.
    #[default]
    Retain,
    /// They are deleted.
    Delete,
}

/// When the Secrets are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum RefreshPolicy {
    /// Every refresh interval (jittered), and when the SecretSync changes.
    #[default]
    Periodic,
    /// Once; never again.
    CreatedOnce,
    /// When the SecretSync's spec changes (its generation), never on a timer.
    OnChange,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    secret_provider_class_name: String,
    #[serde(default)]
    service_account_ref: RawServiceAccountRef,
    #[serde(default)]
    refresh_interval: Option<String>,
    #[serde(default)]
    refresh_policy: RefreshPolicy,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    target: RawTarget,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawServiceAccountRef {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    creation_policy: CreationPolicy,
    #[serde(default)]
    deletion_policy: DeletionPolicy,
    #[serde(default)]
    secret_objects: Option<Vec<serde_json::Value>>,
}

/// A usable spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The SecretProviderClass of the SecretSync's namespace.
    pub secret_provider_class: String,
    /// The service account (same namespace) whose identity reads the secrets.
    pub service_account: String,
    /// How often to refresh under [`RefreshPolicy::Periodic`].
    pub refresh_interval: Duration,
    /// When to refresh.
    pub refresh_policy: RefreshPolicy,
    /// Token audiences; empty: the controller's defaults.
    pub audiences: Vec<String>,
    /// Who owns the Secrets.
    pub creation_policy: CreationPolicy,
    /// What a deleted source does.
    pub deletion_policy: DeletionPolicy,
    /// The Secrets to write; `None`: the SecretProviderClass's `secretObjects`.
    pub secret_objects: Option<Vec<serde_json::Value>>,
}

impl Spec {
    /// Parses `spec` of a SecretSync in `namespace`; intervals under `min_refresh` are refused.
    pub fn parse(
        namespace: &str,
        spec: &serde_json::Value,
        min_refresh: Duration,
    ) -> Result<Self, Error> {
        let raw: RawSpec =
            serde_json::from_value(spec.clone()).map_err(|e| Error::Shape(e.to_string()))?;
        if raw.secret_provider_class_name.trim().is_empty() {
            return Err(Error::Missing("secretProviderClassName"));
        }
        if raw.service_account_ref.name.trim().is_empty() {
            return Err(Error::Missing("serviceAccountRef.name"));
        }
        if let Some(given) = raw
            .service_account_ref
            .namespace
            .filter(|n| !n.is_empty() && n != namespace)
        {
            return Err(Error::CrossNamespace {
                given,
                own: namespace.to_owned(),
            });
        }
        let refresh_interval = match raw.refresh_interval.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_REFRESH_INTERVAL,
            Some(text) => {
                let interval = humantime::parse_duration(text)
                    .map_err(|e| Error::RefreshInterval(format!("{text:?}: {e}")))?;
                if interval < min_refresh {
                    return Err(Error::RefreshInterval(format!(
                        "{text:?} is shorter than the controller's minimum of {}",
                        humantime::format_duration(min_refresh)
                    )));
                }
                interval
            }
        };
        if let Some(objects) = &raw.target.secret_objects
            && let Some(index) = objects.iter().position(|o| !o.is_object())
        {
            return Err(Error::SecretObject(index));
        }
        Ok(Self {
            secret_provider_class: raw.secret_provider_class_name.trim().to_owned(),
            service_account: raw.service_account_ref.name.trim().to_owned(),
            refresh_interval,
            refresh_policy: raw.refresh_policy,
            audiences: raw.audiences,
            creation_policy: raw.target.creation_policy,
            deletion_policy: raw.target.deletion_policy,
            secret_objects: raw.target.secret_objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: Duration = Duration::from_secs(10);

    #[test]
    fn defaults_follow_external_secrets() {
        let spec = Spec::parse(
            "team-a",
            &json!({"secretProviderClassName": "db", "serviceAccountRef": {"name": "app"}}),
            MIN,
        )
        .expect("valid");
        assert_eq!(spec.refresh_interval, DEFAULT_REFRESH_INTERVAL);
        assert_eq!(spec.refresh_policy, RefreshPolicy::Periodic);
        assert_eq!(spec.creation_policy, CreationPolicy::Owner);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert!(spec.secret_objects.is_none());
    }

    #[test]
    fn every_field_is_read() {
        let spec = Spec::parse(
            "team-a",
            &json!({
                "secretProviderClassName": "db",
                "serviceAccountRef": {"name": "app", "namespace": "team-a"},
                "refreshInterval": "90s",
                "refreshPolicy": "OnChange",
                "audiences": ["vault"],
                "target": {"creationPolicy": "Orphan", "deletionPolicy": "Delete",
                           "secretObjects": [{"secretName": "s"}]},
            }),
            MIN,
        )
        .expect("valid");
        assert_eq!(spec.refresh_interval, Duration::from_secs(90));
        assert_eq!(spec.refresh_policy, RefreshPolicy::OnChange);
        assert_eq!(spec.creation_policy, CreationPolicy::Orphan);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.secret_objects.map(|o| o.len()), Some(1));
    }

    #[test]
    fn intervals_read_as_the_crd_pattern_allows() {
        for (text, secs) in [("1h30m", 5400), ("90s", 90), ("2h", 7200), ("1m30s", 90)] {
            let spec = Spec::parse(
                "team-a",
                &json!({"secretProviderClassName": "db", "serviceAccountRef": {"name": "app"},
                        "refreshInterval": text}),
                MIN,
            )
            .expect(text);
            assert_eq!(spec.refresh_interval, Duration::from_secs(secs), "{text}");
        }
    }

    #[test]
    fn hostile_and_broken_specs_are_refused_by_field() {
        let base = json!({"secretProviderClassName": "db", "serviceAccountRef": {"name": "app"}});
        let with = |patch: serde_json::Value| {
            let mut spec = base.clone();
            if let (Some(s), Some(p)) = (spec.as_object_mut(), patch.as_object()) {
                s.extend(p.clone());
            }
            Spec::parse("team-a", &spec, MIN)
        };
        assert_eq!(
            with(json!({"serviceAccountRef": {"name": "admin", "namespace": "kube-system"}})),
            Err(Error::CrossNamespace {
                given: "kube-system".to_owned(),
                own: "team-a".to_owned()
            })
        );
        assert_eq!(
            with(json!({"serviceAccountRef": {"name": " "}})),
            Err(Error::Missing("serviceAccountRef.name"))
        );
        assert_eq!(
            with(json!({"secretProviderClassName": ""})),
            Err(Error::Missing("secretProviderClassName"))
        );
        assert!(matches!(
            with(json!({"refreshInterval": "1s"})),
            Err(Error::RefreshInterval(_))
        ));
        assert!(matches!(
            with(json!({"refreshInterval": "soon"})),
            Err(Error::RefreshInterval(_))
        ));
        assert!(matches!(
            with(json!({"refreshPolicy": "Always"})),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            with(json!({"serviceAccount": "app"})),
            Err(Error::Shape(_))
        ));
        assert_eq!(
            with(json!({"target": {"secretObjects": ["s"]}})),
            Err(Error::SecretObject(0))
        );
    }
}
