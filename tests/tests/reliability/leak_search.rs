//! Searching text for secrets: the forms a value can be written in, token-shaped strings, and what a request or
//! a response carries that must never show up anywhere.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use courier_proto::v1alpha1::{MountRequest, MountResponse};
use serde_json::Value;

/// Every JWT a request carries (the tokens JSON in its attributes).
pub(crate) fn tokens_in(request: &MountRequest) -> Vec<String> {
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&request.attributes).unwrap_or_default();
    let tokens: BTreeMap<String, Value> = attributes
        .get("csi.storage.k8s.io/serviceAccount.tokens")
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    tokens
        .values()
        .filter_map(|entry| entry["token"].as_str().map(str::to_owned))
        .collect()
}

/// The forms a secret could be written in: as it is, base64 (standard and URL-safe, with and without padding) and
/// hex (lower and upper case).
pub(crate) fn forms(secret: &[u8]) -> Vec<(&'static str, String)> {
    let mut forms = vec![
        ("base64", STANDARD.encode(secret)),
        ("base64 unpadded", STANDARD_NO_PAD.encode(secret)),
        ("url-safe base64", URL_SAFE.encode(secret)),
        ("url-safe base64 unpadded", URL_SAFE_NO_PAD.encode(secret)),
        ("hex", hex::encode(secret)),
        ("HEX", hex::encode_upper(secret)),
    ];
    if let Ok(raw) = std::str::from_utf8(secret) {
        forms.push(("raw", raw.to_owned()));
    }
    forms
}

/// Places in `haystack` where a token of the shape `<prefix><at least 20 alphanumerics>` starts after a
/// non-alphanumeric character, e.g. Vault's `s.` or `hvs.` tokens.
pub(crate) fn token_shaped(haystack: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = haystack[from..].find(prefix) {
        let start = from + at;
        from = start + prefix.len();
        let before_ok = haystack[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let tail: String = haystack[from..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if before_ok && tail.len() >= 20 {
            found.push(format!("{prefix}{tail}"));
        }
    }
    found
}

/// Adds what a successful mount was issued (private key, database password, ...) to `secrets`.
pub(crate) fn collect_issued(
    label: &str,
    response: &MountResponse,
    secrets: &mut Vec<(String, Vec<u8>)>,
) {
    for f in &response.files {
        let secret = matches!(
            f.path.as_str(),
            "tls.key"
                | "db/password"
                | "db-password"
                | "secure"
                | "inner-b64"
                | "inner-hex"
                | "api.env"
                | "whole.json"
                | "db.json"
        );
        if !secret {
            continue;
        }
        secrets.push((format!("file {} of '{label}'", f.path), f.contents.clone()));
        if f.path == "tls.key" {
            // Each base64 line of the PEM body on its own, too.
            let pem = String::from_utf8_lossy(&f.contents).into_owned();
            for line in pem
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 32)
            {
                secrets.push((
                    "a line of the private key".to_owned(),
                    line.as_bytes().to_vec(),
                ));
            }
        }
    }
}
