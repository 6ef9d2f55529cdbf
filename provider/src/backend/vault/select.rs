//! Picking an object's bytes out of a Vault response, as vault-csi-provider does.
//!
//! Without `secretKey` the whole response is written as JSON, in the exact form
//! the anchor providers write it: their client library reads the response into
//! its fixed secret record and writes that record back (see [`whole_response`]).
//! With `secretKey`, the key is looked up in `data.data` when that is a map (KV
//! v2), else in `data`. Strings are written as they are; any other JSON value is
//! written as JSON in the same form.

use serde_json::{Map, Value};

use crate::plan::kind_of;

/// Why a key could not be selected. Holds key names only, never values.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SelectError {
    /// The response has no `data` object.
    NoData,
    /// The key is absent; these keys exist.
    MissingKey { key: String, available: Vec<String> },
}

/// Which fields a whole-response file carries besides the record's fixed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Document {
    /// `request_id`: the anchors write it; the native socket leaves it out, since it
    /// differs on every read and would make an unchanged secret look changed.
    pub(super) request_id: bool,
    /// `mount_type` (when the response has one): Vault's client library keeps it,
    /// OpenBao's does not.
    pub(super) mount_type: bool,
}

/// Returns the bytes to write for `secret_key` from `response`.
pub(super) fn select(response: &Value, secret_key: Option<&str>, expand: bool, document: Document) -> Result<Vec<u8>, SelectError> {
    let data = effective_data(response).ok_or(SelectError::NoData)?;
    if expand && secret_key.is_none() {
        // The secret's data map: KV v2's `data.data`, else `data`.
        let inner = match (data.get("data"), data.get("metadata")) {
            (Some(inner @ Value::Object(_)), Some(Value::Object(_))) => inner.clone(),
            _ => Value::Object(data.clone()),
        };
        return Ok(inner.to_string().into_bytes());
    }
    let Some(key) = secret_key else {
        return Ok(whole_response(response, data, document));
    };
    // KV v2: when `data.data` is a map, the key is looked up there only, so a
    // user key named `data` or `metadata` is never confused with the envelope.
    let map = match data.get("data") {
        Some(Value::Object(nested)) => nested,
        _ => data,
    };
    match map.get(key) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(other) => Ok(go_json(other)),
        None => Err(SelectError::MissingKey { key: key.to_owned(), available: map.keys().cloned().collect() }),
    }
}

/// The response's `data` map as the anchors' client library sees it: the `data`
/// field, or, when the body has none of the record's fields set (an endpoint that
/// answers with a bare JSON object), the whole body unless it holds only `errors`.
/// `None` when there is no map: the anchors fail such a read as empty.
fn effective_data(response: &Value) -> Option<&Map<String, Value>> {
    let Value::Object(body) = response else {
        return None;
    };
    if let Some(Value::Object(data)) = body.get("data") {
        return Some(data);
    }
    if record_is_zero(body) && !body.is_empty() && !(body.len() == 1 && body.contains_key("errors")) {
        return Some(body);
    }
    None
}

/// Whether none of the secret record's fields has a non-zero value.
fn record_is_zero(body: &Map<String, Value>) -> bool {
    let zero = |name: &str| match body.get(name) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        // An empty list still makes a non-nil slice.
        Some(_) => false,
    };
    ["request_id", "lease_id", "lease_duration", "renewable", "data", "warnings", "auth", "wrap_info", "mount_type"]
        .into_iter()
        .all(zero)
}

/// The whole response, written as the anchors' client library writes its secret
/// record: the fields `request_id`, `lease_id`, `lease_duration`, `renewable`,
/// `data`, `warnings` always and in that order; then `auth` and `wrap_info` only
/// when not null, and `mount_type` only when not empty. Other top-level fields of
/// the response are dropped; map keys are sorted; strings are escaped as Go escapes
/// them (`<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes).
fn whole_response(response: &Value, data: &Map<String, Value>, document: Document) -> Vec<u8> {
    let field = |name: &str| response.get(name).filter(|v| !v.is_null());
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    if document.request_id {
        out.extend_from_slice(b"\"request_id\":");
        write_string(&mut out, field("request_id").and_then(Value::as_str).unwrap_or(""));
        out.push(b',');
    }
    out.extend_from_slice(b"\"lease_id\":");
    write_string(&mut out, field("lease_id").and_then(Value::as_str).unwrap_or(""));
    out.extend_from_slice(b",\"lease_duration\":");
    write_number_or_zero(&mut out, field("lease_duration"));
    out.extend_from_slice(b",\"renewable\":");
    out.extend_from_slice(if field("renewable").and_then(Value::as_bool).unwrap_or(false) { b"true" } else { b"false" });
    out.extend_from_slice(b",\"data\":");
    write_object(&mut out, data);
    out.extend_from_slice(b",\"warnings\":");
    match field("warnings") {
        Some(list @ Value::Array(_)) => write_value(&mut out, list),
        _ => out.extend_from_slice(b"null"),
    }
    if let Some(auth @ Value::Object(_)) = field("auth") {
        out.extend_from_slice(b",\"auth\":");
        write_record(&mut out, auth, AUTH_FIELDS);
    }
    if let Some(wrap @ Value::Object(_)) = field("wrap_info") {
        out.extend_from_slice(b",\"wrap_info\":");
        write_record(&mut out, wrap, WRAP_FIELDS);
    }
    if document.mount_type
        && let Some(mount_type) = field("mount_type").and_then(Value::as_str).filter(|m| !m.is_empty())
    {
        out.extend_from_slice(b",\"mount_type\":");
        write_string(&mut out, mount_type);
    }
    out.push(b'}');
    out
}

/// What a record field holds when the response leaves it out.
#[derive(Clone, Copy)]
enum Zero {
    Text,
    Int,
    Bool,
    Null,
}

/// The token record of a response, field by field, in the client library's order.
const AUTH_FIELDS: &[(&str, Zero)] = &[
    ("client_token", Zero::Text),
    ("accessor", Zero::Text),
    ("policies", Zero::Null),
    ("token_policies", Zero::Null),
    ("identity_policies", Zero::Null),
    ("metadata", Zero::Null),
    ("orphan", Zero::Bool),
    ("entity_id", Zero::Text),
    ("lease_duration", Zero::Int),
    ("renewable", Zero::Bool),
    ("mfa_requirement", Zero::Null),
];

/// The response-wrapping record, in the client library's order.
const WRAP_FIELDS: &[(&str, Zero)] = &[
    ("token", Zero::Text),
    ("accessor", Zero::Text),
    ("ttl", Zero::Int),
    ("creation_time", Zero::Text),
    ("creation_path", Zero::Text),
    ("wrapped_accessor", Zero::Text),
];

fn write_record(out: &mut Vec<u8>, value: &Value, fields: &[(&str, Zero)]) {
    out.push(b'{');
    for (i, (name, zero)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, name);
        out.push(b':');
        match (value.get(*name).filter(|v| !v.is_null()), zero) {
            (Some(v), _) => write_value(out, v),
            (None, Zero::Text) => out.extend_from_slice(b"\"\""),
            (None, Zero::Int) => out.push(b'0'),
            (None, Zero::Bool) => out.extend_from_slice(b"false"),
            (None, Zero::Null) => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

fn write_number_or_zero(out: &mut Vec<u8>, value: Option<&Value>) {
    match value {
        Some(Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
        _ => out.push(b'0'),
    }
}

/// `value` as JSON, as Go writes a decoded value: map keys sorted, strings
/// escaped as [`write_string`] does.
pub(super) fn go_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// serde_json's map iterates in byte order of its keys, which is the order Go
/// writes map keys in.
fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_value(out, item);
    }
    out.push(b'}');
}

/// A JSON string escaped as Go's encoder escapes it by default.
fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The type of the `data` field, for messages.
pub(super) fn data_kind(response: &Value) -> &'static str {
    response.get("data").map_or("absent", kind_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ANCHOR: Document = Document { request_id: true, mount_type: true };
    const OPENBAO: Document = Document { request_id: true, mount_type: false };
    const NATIVE: Document = Document { request_id: false, mount_type: true };

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn whole_response_is_the_client_record() {
        // A KV v2 read as OpenBao answers it (extra top-level fields, nulls for auth and wrap_info).
        let r = json!({
            "request_id": "r-1", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": {"data": {"b": "<&>", "a": "x\u{2028}"}, "metadata": {"version": 1}},
            "wrap_info": null, "warnings": null, "auth": null, "mount_type": "kv"
        });
        let expected = r#"{"request_id":"r-1","lease_id":"","lease_duration":0,"renewable":false,"data":{"data":{"a":"x\u2028","b":"\u003c\u0026\u003e"},"metadata":{"version":1}},"warnings":null"#;
        assert_eq!(text(select(&r, None, false, ANCHOR).expect("ok")), format!("{expected},\"mount_type\":\"kv\"}}"));
        assert_eq!(text(select(&r, None, false, OPENBAO).expect("ok")), format!("{expected}}}"));
        let native = text(select(&r, None, false, NATIVE).expect("ok"));
        assert!(native.starts_with(r#"{"lease_id":"""#), "{native}");
    }

    #[test]
    fn missing_record_fields_take_their_zero_values_and_auth_is_kept_when_set() {
        let r = json!({"data": {"k": "v"}, "auth": {"client_token": "t", "policies": ["a"]}, "extra": 1});
        assert_eq!(
            text(select(&r, None, false, OPENBAO).expect("ok")),
            r#"{"request_id":"","lease_id":"","lease_duration":0,"renewable":false,"data":{"k":"v"},"warnings":null,"auth":{"client_token":"t","accessor":"","policies":["a"],"token_policies":null,"identity_policies":null,"metadata":null,"orphan":false,"entity_id":"","lease_duration":0,"renewable":false,"mfa_requirement":null}}"#
        );
    }

    #[test]
    fn a_bare_body_becomes_the_data() {
        let r = json!({"initialized": true, "sealed": false});
        assert_eq!(
            text(select(&r, None, false, OPENBAO).expect("ok")),
            r#"{"request_id":"","lease_id":"","lease_duration":0,"renewable":false,"data":{"initialized":true,"sealed":false},"warnings":null}"#
        );
        assert_eq!(select(&r, Some("sealed"), false, OPENBAO).expect("ok"), b"false");
        assert_eq!(select(&json!({"errors": []}), None, false, OPENBAO), Err(SelectError::NoData));
        assert_eq!(select(&json!({"request_id": "x", "data": null}), None, false, OPENBAO), Err(SelectError::NoData));
    }

    #[test]
    fn go_escapes() {
        let mut out = Vec::new();
        write_string(&mut out, "a\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é<");
        assert_eq!(text(out), "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\u{7f}é\\u003c\"");
    }

    #[test]
    fn kv1_and_dynamic_keys_are_top_level() {
        let r = json!({"data": {"password": "p", "ttl": 3600}});
        assert_eq!(select(&r, Some("password"), false, ANCHOR).expect("ok"), b"p");
        assert_eq!(select(&r, Some("ttl"), false, ANCHOR).expect("ok"), b"3600");
    }

    #[test]
    fn kv2_keys_are_looked_up_in_the_inner_map_only() {
        let r = json!({"data": {"data": {"user": "u", "nested": {"y": "<", "x": 1}, "data": "inner", "metadata": "m"}, "metadata": {"version": 3}}});
        assert_eq!(select(&r, Some("user"), false, ANCHOR).expect("ok"), b"u");
        assert_eq!(select(&r, Some("nested"), false, ANCHOR).expect("ok"), br#"{"x":1,"y":"\u003c"}"#);
        assert_eq!(select(&r, Some("data"), false, ANCHOR).expect("ok"), b"inner");
        assert_eq!(select(&r, Some("metadata"), false, ANCHOR).expect("ok"), b"m");
        // A key of the envelope is not found once `data.data` is a map.
        let r = json!({"data": {"data": {"user": "u"}, "metadata": {"version": 3}}});
        assert_eq!(
            select(&r, Some("metadata"), false, ANCHOR),
            Err(SelectError::MissingKey { key: "metadata".into(), available: vec!["user".into()] })
        );
        // `data.data` that is not a map: the outer map is searched.
        let r = json!({"data": {"data": "plain", "other": "o"}});
        assert_eq!(select(&r, Some("data"), false, ANCHOR).expect("ok"), b"plain");
    }

    #[test]
    fn missing_key_lists_names_only() {
        let r = json!({"data": {"data": {"user": "u", "pass": "secret-value"}}});
        let err = select(&r, Some("password"), false, ANCHOR).expect_err("missing");
        assert_eq!(err, SelectError::MissingKey { key: "password".into(), available: vec!["pass".into(), "user".into()] });
    }

    #[test]
    fn expand_selects_the_data_map() {
        let kv2 = json!({"data": {"data": {"a": "1", "b": {"c": 2}}, "metadata": {"version": 1}}});
        assert_eq!(select(&kv2, None, true, ANCHOR).expect("ok"), br#"{"a":"1","b":{"c":2}}"#);
        let kv1 = json!({"data": {"a": "1"}, "lease_duration": 10});
        assert_eq!(select(&kv1, None, true, ANCHOR).expect("ok"), br#"{"a":"1"}"#);
        assert_eq!(select(&kv2, Some("b"), true, ANCHOR).expect("ok"), br#"{"c":2}"#);
    }

    #[test]
    fn no_data() {
        assert_eq!(select(&json!({"warnings": ["w"]}), Some("k"), false, ANCHOR), Err(SelectError::NoData));
    }
}
