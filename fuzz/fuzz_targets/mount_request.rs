//! Feeds bytes into `Mount` request decoding and every dialect's parameter parsing (`objects`, `templates`, ...).
//!
//! An input is either one line of `tests/corpus/mount_requests.jsonl` (its `socket`, `attributes` or
//! `parameters`, `secrets` and `permission`; generated values are taken as their JSON text), or raw bytes split at
//! NUL into attributes, secrets, permission and a dialect selector. Parsing must never panic, and whatever is
//! accepted must be safe to write.

#![no_main]

use std::collections::BTreeMap;

use courier_provider::Defaults;
use courier_provider::testing::Dialect;
use courier_provider::testing::{MountContext, POD_NAMESPACE_KEY, SERVICE_ACCOUNT_KEY};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SOCKETS: [&str; 6] = ["vault", "openbao", "courier", "aws", "gcp", "azure"];

fn text(value: Option<&Value>, default: &str) -> String {
    match value {
        None => default.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// (socket, attributes, secrets, permission) from one input.
fn request(data: &[u8]) -> (String, String, String, String) {
    if let Ok(Value::Object(line)) = serde_json::from_slice::<Value>(data) {
        let socket = text(line.get("socket"), "courier");
        let attributes = match (line.get("attributes"), line.get("parameters")) {
            (Some(raw), _) => text(Some(raw), ""),
            (None, Some(Value::Object(parameters))) => {
                let mut map: BTreeMap<String, String> = parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), text(Some(v), "")))
                    .collect();
                map.entry(POD_NAMESPACE_KEY.to_owned()).or_insert_with(|| "fuzz".to_owned());
                map.entry(SERVICE_ACCOUNT_KEY.to_owned()).or_insert_with(|| "app".to_owned());
                serde_json::to_string(&map).unwrap_or_default()
            }
            _ => String::new(),
        };
        return (
            socket,
            attributes,
            text(line.get("secrets"), "null"),
            text(line.get("permission"), "420"),
        );
    }
    let mut parts = data.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned());
    let attributes = parts.next().unwrap_or_default();
    let secrets = parts.next().unwrap_or_default();
    let permission = parts.next().unwrap_or_default();
    let socket = SOCKETS[data.first().map_or(0, |b| usize::from(*b) % SOCKETS.len())].to_owned();
    (socket, attributes, secrets, permission)
}

fuzz_target!(|data: &[u8]| {
    let (socket, attributes, secrets, permission) = request(data);
    let Ok(ctx) = MountContext::decode(&attributes, &secrets, &permission) else {
        return;
    };
    assert!(ctx.default_mode <= 0o777);
    let defaults = Defaults {
        vault_address: "https://127.0.0.1:8200".to_owned(),
        aws_region: Some("us-east-1".to_owned()),
    };
    let Ok(plan) = Dialect::for_provider(&socket).parse(&ctx.attributes, &defaults) else {
        return;
    };
    let paths = plan
        .objects
        .iter()
        .map(|o| o.path.as_str())
        .chain(plan.templates.iter().map(|t| t.path.as_str()));
    for path in paths {
        assert!(!path.is_empty() && path.len() <= 4096 && !path.starts_with('/'));
        assert!(!path.contains('\0') && !path.contains('\\'));
        assert!(path.split('/').all(|c| !c.is_empty() && c != "." && !c.starts_with("..") && c.len() <= 255));
    }
});
