//! The `MountRequest` a driver sends a provider, built exactly as the upstream
//! driver builds it: SecretProviderClass parameters overlaid by the pod's volume
//! context, serialized as Go's `json.Marshal` would (sorted keys, compact, HTML
//! characters escaped), `secrets` as the literal `null` when there are none, and
//! permission `"420"`.

use std::collections::{BTreeMap, HashMap};

use courier_proto::v1alpha1::MountRequest;

/// Key of the service-account tokens kubelet mints for the CSIDriver's `tokenRequests`.
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// `json.Marshal(os.FileMode(0644))`.
pub const PERMISSION: &str = "420";

/// Builds the request for a publish.
#[must_use]
pub fn mount_request(
    parameters: &BTreeMap<String, String>,
    volume_context: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
    target_path: &str,
) -> MountRequest {
    let mut attributes: BTreeMap<&str, &str> = parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in volume_context {
        attributes.insert(k, v);
    }
    // Driver v1.6 reads the tokens from the CSI secrets first (serviceAccountTokenInSecrets).
    if let Some(tokens) = secrets.get(TOKENS_KEY) {
        attributes.insert(TOKENS_KEY, tokens);
    }
    let secrets_json = if secrets.is_empty() {
        "null".to_owned()
    } else {
        let sorted: BTreeMap<&String, &String> = secrets.iter().collect();
        go_json(&sorted)
    };
    MountRequest {
        attributes: go_json(&attributes),
        secrets: secrets_json,
        target_path: target_path.to_owned(),
        permission: PERMISSION.to_owned(),
        current_object_version: Vec::new(),
    }
}

/// JSON as Go's encoding/json writes it: compact, with `<`, `>`, `&`, U+2028 and
/// U+2029 escaped (they can only occur inside strings, so replacing is safe).
fn go_json<T: serde::Serialize>(value: &T) -> String {
    let plain = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_sorts_and_escapes_like_the_driver() {
        let params = BTreeMap::from([
            ("objects".to_owned(), "- a: <b> & c".to_owned()),
            ("roleName".to_owned(), "spc".to_owned()),
        ]);
        let ctx = HashMap::from([
            ("roleName".to_owned(), "pod".to_owned()),
            ("csi.storage.k8s.io/pod.name".to_owned(), "p".to_owned()),
        ]);
        let req = mount_request(&params, &ctx, &HashMap::new(), "/t");
        assert_eq!(
            req.attributes,
            r#"{"csi.storage.k8s.io/pod.name":"p","objects":"- a: \u003cb\u003e \u0026 c","roleName":"pod"}"#
        );
        assert_eq!(req.secrets, "null");
        assert_eq!(req.permission, "420");
        assert!(req.current_object_version.is_empty());
    }

    #[test]
    fn tokens_in_secrets_reach_the_attributes() {
        let secrets = HashMap::from([(
            TOKENS_KEY.to_owned(),
            r#"{"vault":{"token":"t"}}"#.to_owned(),
        )]);
        let req = mount_request(&BTreeMap::new(), &HashMap::new(), &secrets, "/t");
        let attrs: BTreeMap<String, String> = serde_json::from_str(&req.attributes).expect("json");
        assert!(attrs.contains_key(TOKENS_KEY));
        assert_ne!(req.secrets, "null");
    }
}
