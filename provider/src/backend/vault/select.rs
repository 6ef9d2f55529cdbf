//! Picking an object's bytes out of a Vault response, as vault-csi-provider does.
//!
//! Without `secretKey` the whole response is written as JSON. With it, the key is
//! looked up in `data`, then in `data.data` (KV v2). Strings are written as they
//! are; any other JSON value is written as JSON.

use serde_json::Value;

use crate::request::kind_of;

/// Why a key could not be selected. Holds key names only, never values.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SelectError {
    /// The response has no `data` object.
    NoData,
    /// The key is absent; these keys exist.
    MissingKey { key: String, available: Vec<String> },
}

/// Returns the bytes to write for `secret_key` from `response`.
///
/// The whole response is written without its `request_id`, which differs on
/// every read and would make an unchanged secret look changed.
pub(super) fn select(response: &Value, secret_key: Option<&str>, expand: bool) -> Result<Vec<u8>, SelectError> {
    if expand && secret_key.is_none() {
        // The secret's data map: KV v2's `data.data`, else `data`.
        let Some(data @ Value::Object(map)) = response.get("data") else {
            return Err(SelectError::NoData);
        };
        let inner = match (map.get("data"), map.get("metadata")) {
            (Some(inner @ Value::Object(_)), Some(Value::Object(_))) => inner,
            _ => data,
        };
        return Ok(inner.to_string().into_bytes());
    }
    let Some(key) = secret_key else {
        let mut whole = response.clone();
        if let Value::Object(map) = &mut whole {
            map.remove("request_id");
        }
        return Ok(whole.to_string().into_bytes());
    };
    let Some(Value::Object(data)) = response.get("data") else {
        return Err(SelectError::NoData);
    };
    if let Some(value) = data.get(key) {
        return Ok(value_bytes(value));
    }
    let nested = match data.get("data") {
        Some(Value::Object(nested)) => Some(nested),
        _ => None,
    };
    if let Some(value) = nested.and_then(|n| n.get(key)) {
        return Ok(value_bytes(value));
    }
    // Name the keys a user could have meant: KV v2's inner keys when present.
    let available = match nested {
        Some(n) => n.keys().cloned().collect(),
        None => data.keys().cloned().collect(),
    };
    Err(SelectError::MissingKey { key: key.to_owned(), available })
}

fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// The type of the `data` field, for messages.
pub(super) fn data_kind(response: &Value) -> &'static str {
    response.get("data").map_or("absent", kind_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_response_without_key() {
        let r = json!({"data": {"a": "b"}, "lease_duration": 0});
        assert_eq!(select(&r, None, false).expect("ok"), r.to_string().into_bytes());
        let with_id = json!({"request_id": "r-1", "data": {"a": "b"}, "lease_duration": 0});
        assert_eq!(select(&with_id, None, false).expect("ok"), r.to_string().into_bytes(), "request_id is dropped");
    }

    #[test]
    fn kv1_and_dynamic_keys_are_top_level() {
        let r = json!({"data": {"password": "p", "ttl": 3600}});
        assert_eq!(select(&r, Some("password"), false).expect("ok"), b"p");
        assert_eq!(select(&r, Some("ttl"), false).expect("ok"), b"3600");
    }

    #[test]
    fn kv2_is_unwrapped() {
        let r = json!({"data": {"data": {"user": "u", "nested": {"x": 1}}, "metadata": {"version": 3}}});
        assert_eq!(select(&r, Some("user"), false).expect("ok"), b"u");
        assert_eq!(select(&r, Some("nested"), false).expect("ok"), br#"{"x":1}"#);
        assert_eq!(select(&r, Some("data"), false).expect("ok"), br#"{"nested":{"x":1},"user":"u"}"#);
    }

    #[test]
    fn missing_key_lists_names_only() {
        let r = json!({"data": {"data": {"user": "u", "pass": "secret-value"}}});
        let err = select(&r, Some("password"), false).expect_err("missing");
        assert_eq!(
            err,
            SelectError::MissingKey { key: "password".into(), available: vec!["pass".into(), "user".into()] }
        );
    }

    #[test]
    fn expand_selects_the_data_map() {
        let kv2 = json!({"data": {"data": {"a": "1", "b": {"c": 2}}, "metadata": {"version": 1}}});
        assert_eq!(select(&kv2, None, true).expect("ok"), br#"{"a":"1","b":{"c":2}}"#);
        let kv1 = json!({"data": {"a": "1"}, "lease_duration": 10});
        assert_eq!(select(&kv1, None, true).expect("ok"), br#"{"a":"1"}"#);
        assert_eq!(select(&kv2, Some("b"), true).expect("ok"), br#"{"c":2}"#);
    }

    #[test]
    fn no_data() {
        assert_eq!(select(&json!({"warnings": []}), Some("k"), false), Err(SelectError::NoData));
    }
}
