//! `spec.secretObjects` entries, checked once, and a Secret's data built from
//! the mounted files.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::Error;
use crate::tls;

/// The TLS Secret type, whose keys are fixed.
pub(super) const TLS_TYPE: &str = "kubernetes.io/tls";

/// One `secretObjects` entry.
#[derive(Debug, Clone)]
pub(super) struct SecretObject {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) data: Vec<(String, String)>,
}

fn string_map(value: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    value
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A string field of `raw`, trimmed; empty when absent.
fn text(raw: &serde_json::Value, key: &str) -> String {
    raw.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .unwrap_or_default()
        .to_owned()
}

/// Checks entry `index` of `secretObjects`.
pub(super) fn parse(index: usize, raw: &serde_json::Value) -> Result<SecretObject, Error> {
    let name = text(raw, "secretName");
    let kind = text(raw, "type");
    if name.is_empty() {
        return Err(Error::NoName { index });
    }
    if kind.is_empty() {
        return Err(Error::NoType { index, name });
    }
    let data: Vec<(String, String)> = raw
        .get("data")
        .and_then(serde_json::Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| (text(e, "objectName"), text(e, "key")))
                .collect()
        })
        .unwrap_or_default();
    if data.is_empty() {
        return Err(Error::NoData { index, name });
    }
    for (entry, (object, key)) in data.iter().enumerate() {
        if object.is_empty() || key.is_empty() {
            return Err(Error::IncompleteEntry { index, entry, name });
        }
        if kind == TLS_TYPE && key != "tls.key" && key != "tls.crt" {
            return Err(Error::TlsKey {
                index,
                entry,
                name,
                key: key.clone(),
            });
        }
    }
    Ok(SecretObject {
        index,
        name,
        kind,
        labels: string_map(raw.get("labels")),
        annotations: string_map(raw.get("annotations")),
        data,
    })
}

impl SecretObject {
    /// This Secret's data from the mounted files.
    pub(super) fn data(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<BTreeMap<String, ByteString>, Error> {
        let mut data = BTreeMap::new();
        for (entry, (object_name, key)) in self.data.iter().enumerate() {
            let Some(content) = files.get(object_name) else {
                let existing: Vec<&str> = files.keys().map(String::as_str).collect();
                return Err(Error::MissingFile {
                    index: self.index,
                    entry,
                    name: self.name.clone(),
                    object: object_name.clone(),
                    files: if existing.is_empty() {
                        "none".to_owned()
                    } else {
                        existing.join(", ")
                    },
                });
            };
            let value = if self.kind == TLS_TYPE {
                let pair = tls::split(content).map_err(|source| Error::Tls {
                    index: self.index,
                    entry,
                    name: self.name.clone(),
                    object: object_name.clone(),
                    source,
                })?;
                if key == "tls.key" {
                    pair.key.to_vec()
                } else {
                    pair.certs
                }
            } else {
                content.clone()
            };
            data.insert(key.clone(), ByteString(value));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain::display_chain;
    use serde_json::json;

    #[test]
    fn entries_are_checked() {
        assert!(parse(0, &json!({"secretName": "s", "type": "Opaque", "data": [{"objectName": "a", "key": "k"}]})).is_ok());
        for (raw, words) in [
            (
                json!({"type": "Opaque", "data": [{"objectName": "a", "key": "k"}]}),
                "secretName",
            ),
            (
                json!({"secretName": "s", "data": [{"objectName": "a", "key": "k"}]}),
                "type is empty",
            ),
            (
                json!({"secretName": "s", "type": "Opaque"}),
                "data is empty",
            ),
            (
                json!({"secretName": "s", "type": "Opaque", "data": [{"key": "k"}]}),
                "objectName and key",
            ),
            (
                json!({"secretName": "s", "type": TLS_TYPE, "data": [{"objectName": "a", "key": "ca.crt"}]}),
                "tls.key and tls.crt",
            ),
        ] {
            let err = parse(0, &raw).expect_err("invalid").to_string();
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn missing_files_are_named_with_the_files_that_exist() {
        let object = parse(1, &json!({"secretName": "s", "type": "Opaque", "data": [{"objectName": "nope", "key": "k"}]})).expect("ok");
        let files = BTreeMap::from([
            ("a".to_owned(), b"secret-value".to_vec()),
            ("b".to_owned(), b"x".to_vec()),
        ]);
        let err = object.data(&files).expect_err("missing");
        assert!(matches!(
            err,
            Error::MissingFile {
                index: 1,
                entry: 0,
                ..
            }
        ));
        let err = display_chain(&err);
        assert!(
            err.contains("\"nope\"")
                && err.contains("files: a, b")
                && !err.contains("secret-value"),
            "{err}"
        );
    }

    #[test]
    fn a_tls_file_that_is_not_a_key_pair_keeps_its_cause() {
        let object = parse(0, &json!({"secretName": "s", "type": TLS_TYPE, "data": [{"objectName": "a", "key": "tls.key"}]})).expect("ok");
        let files = BTreeMap::from([("a".to_owned(), b"secret-value".to_vec())]);
        let err = object.data(&files).expect_err("not a pair");
        assert!(
            matches!(
                err,
                Error::Tls {
                    source: tls::Error::Unreadable,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = display_chain(&err);
        assert!(
            err.contains("objectName \"a\": the file is neither PEM nor PKCS#12")
                && !err.contains("secret-value"),
            "{err}"
        );
    }
}
