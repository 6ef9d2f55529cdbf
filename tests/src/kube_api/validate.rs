//! The API server's validation, for the fields Courier's components write: names, labels, owner
//! references, Secret data and Events. Each problem is a `(field, message)` cause of a 422 `Invalid`.

use base64::Engine as _;
use serde_json::Value;

use super::resources::KubeResource;

/// The most bytes a Secret's data may hold.
const SECRET_MAX_BYTES: usize = 1024 * 1024;
/// The longest Event `message` (note) with `eventTime` set.
const NOTE_LENGTH_LIMIT: usize = 1024;

pub(crate) type Causes = Vec<(String, String)>;

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, alphanumeric at both ends of each label.
pub(crate) fn dns_subdomain(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some("must be no more than 253 characters".to_owned());
    }
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.starts_with(is_alnum_lower)
                && label.ends_with(is_alnum_lower)
                && label.chars().all(|c| is_alnum_lower(c) || c == '-')
        });
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must \
         start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            .to_owned()
    })
}

/// A label value or the name part of a qualified name: at most 63 characters, alphanumerics with `-`, `_`,
/// `.` inside. `allow_empty` for values.
fn label_part(text: &str, allow_empty: bool) -> bool {
    if text.is_empty() {
        return allow_empty;
    }
    text.len() <= 63
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix).is_none() && label_part(name, false),
        None => label_part(key, false),
    }
}

/// Checks the object metadata every resource shares.
pub(crate) fn metadata(object: &Value, causes: &mut Causes) {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(problem) = dns_subdomain(name) {
        causes.push((
            "metadata.name".to_owned(),
            format!("Invalid value: {name:?}: {problem}"),
        ));
    }
    for (field, allow_value) in [("labels", true), ("annotations", false)] {
        let Some(map) = object.pointer(&format!("/metadata/{field}")) else {
            continue;
        };
        let Some(map) = map.as_object() else {
            causes.push((
                format!("metadata.{field}"),
                "Invalid value: must be a map of strings".to_owned(),
            ));
            continue;
        };
        for (key, value) in map {
            if !qualified_name(key) {
                causes.push((format!("metadata.{field}"), format!("Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.'")));
            }
            match value.as_str() {
                Some(v) if allow_value && !label_part(v, true) => causes.push((
                    format!("metadata.{field}"),
                    format!("Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                )),
                Some(_) => {}
                None => causes.push((format!("metadata.{field}"), format!("Invalid value: {key:?} must map to a string"))),
            }
        }
    }
    if let Some(owners) = object.pointer("/metadata/ownerReferences") {
        let Some(owners) = owners.as_array() else {
            causes.push((
                "metadata.ownerReferences".to_owned(),
                "Invalid value: must be a list".to_owned(),
            ));
            return;
        };
        let mut controllers = 0;
        for owner in owners {
            for (key, what) in [
                ("apiVersion", "version"),
                ("kind", "kind"),
                ("name", "name"),
                ("uid", "uid"),
            ] {
                if owner
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
                {
                    causes.push((
                        format!("metadata.ownerReferences.{key}"),
                        format!("Invalid value: \"\": {what} must not be empty"),
                    ));
                }
            }
            if owner.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            causes.push((
                "metadata.ownerReferences".to_owned(),
                "Invalid value: Only one reference can have Controller set to true".to_owned(),
            ));
        }
    }
}

/// Resource-specific checks, after defaults were applied.
pub(crate) fn resource(resource: &KubeResource, object: &Value, causes: &mut Causes) {
    match (resource.group, resource.plural) {
        ("", "secrets") => secret(object, causes),
        ("", "events") => event(object, causes),
        _ => {}
    }
}

fn secret(object: &Value, causes: &mut Causes) {
    let mut total = 0;
    if let Some(data) = object.get("data").and_then(Value::as_object) {
        for (key, value) in data {
            if key.is_empty()
                || key.len() > 253
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                causes.push((format!("data[{key}]"), format!("Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
            }
            if let Some(text) = value.as_str() {
                total += base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(|b| b.len())
                    .unwrap_or(0);
            }
        }
    }
    if total > SECRET_MAX_BYTES {
        causes.push((
            "data".to_owned(),
            format!("Too long: may not be more than {SECRET_MAX_BYTES} bytes"),
        ));
    }
}

/// The API server's validation of a core `v1` Event: its legacy rules (the strict `events.k8s.io` rules, such
/// as the `type` values, do not apply to `v1`).
fn event(object: &Value, causes: &mut Causes) {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let namespace = text("/metadata/namespace");
    let involved = text("/involvedObject/namespace");
    let mismatch = || {
        (
            "involvedObject.namespace".to_owned(),
            format!("Invalid value: {involved:?}: does not match event.namespace"),
        )
    };
    if object.get("eventTime").is_none_or(Value::is_null) {
        let bad = if involved.is_empty() {
            !namespace.is_empty() && namespace != "default"
        } else {
            involved != namespace
        };
        if bad {
            causes.push(mismatch());
        }
        return;
    }
    // Events with `eventTime` are new-style: the reporting fields are required.
    if involved.is_empty() && namespace != "default" && namespace != "kube-system" {
        causes.push(mismatch());
    }
    for (pointer, field) in [
        ("/reportingComponent", "reportingComponent"),
        ("/reportingInstance", "reportingInstance"),
        ("/action", "action"),
        ("/reason", "reason"),
    ] {
        let value = text(pointer);
        if value.is_empty() {
            causes.push((field.to_owned(), "Required value".to_owned()));
        } else if value.len() > 128 && field != "reportingComponent" {
            causes.push((
                field.to_owned(),
                "Invalid value: \"\": can have at most 128 characters".to_owned(),
            ));
        }
    }
    // Go's len(): bytes.
    if text("/message").len() > NOTE_LENGTH_LIMIT {
        causes.push((
            "message".to_owned(),
            format!("Invalid value: \"\": can have at most {NOTE_LENGTH_LIMIT} characters"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_labels_and_owners_are_checked() {
        assert!(dns_subdomain("pod-a-ns-spc.x").is_none());
        for bad in ["", "Upper", "-a", "a-", "a..b", "a_b"] {
            assert!(dns_subdomain(bad).is_some(), "{bad:?}");
        }
        let mut causes = Causes::new();
        metadata(
            &json!({"metadata": {"name": "ok", "labels": {"example.com/a": "b", "bad key!": "x", "c": "-no"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": ""}]}}),
            &mut causes,
        );
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.labels",
                "metadata.labels",
                "metadata.ownerReferences.uid"
            ],
            "{causes:?}"
        );
    }

    #[test]
    fn events_need_their_reporting_fields() {
        let mut causes = Causes::new();
        event(
            &json!({"metadata": {"namespace": "a"}, "involvedObject": {}, "eventTime": "2026-01-01T00:00:00.000000Z",
                    "message": "\u{e9}".repeat(600)}),
            &mut causes,
        );
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "involvedObject.namespace",
                "reportingComponent",
                "reportingInstance",
                "action",
                "reason",
                "message"
            ]
        );
        let mut legacy = Causes::new();
        event(
            &json!({"metadata": {"namespace": "a"}, "involvedObject": {"namespace": "b"}}),
            &mut legacy,
        );
        assert_eq!(legacy.len(), 1, "{legacy:?}");
    }
}
