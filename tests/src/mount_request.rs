//! The `Mount` request exactly as the Secrets Store CSI driver builds it.
//!
//! The driver overlays the SecretProviderClass parameters with the volume attributes and kubelet's pod-info keys,
//! marshals the result with Go's `encoding/json` (a `map[string]string`: sorted keys, compact, HTML characters
//! escaped), sends the literal `null` as `secrets` when the volume has no node-publish secret, the file mode as a
//! decimal string, and the service-account tokens kubelet requested as a JSON string under
//! `csi.storage.k8s.io/serviceAccount.tokens`.

use std::collections::BTreeMap;

use anyhow::Context;
use courier_proto::v1alpha1::{MountRequest, ObjectVersion};
use serde::Serialize;

use crate::{MintedToken, PodFixture};

/// SecretProviderClass `parameters`: string to string, kept sorted like Go's JSON encoder writes them.
pub type SpcParameters = BTreeMap<String, String>;

/// The mode the driver sends when the volume sets none: 0644, written as Go writes an `os.FileMode`.
const DEFAULT_PERMISSION: u32 = 0o644;
/// What replaces tokens in [`MountRequestBuilder::redacted_attributes_json`].
const REDACTED: &str = "REDACTED";

/// Builds a `MountRequest` for one pod.
#[derive(Debug, Clone)]
pub struct MountRequestBuilder {
    pod: PodFixture,
    secret_provider_class: String,
    parameters: SpcParameters,
    tokens: BTreeMap<String, MintedToken>,
    permission: u32,
    current_object_versions: Vec<ObjectVersion>,
}

/// One entry of the tokens JSON, as kubelet's `TokenRequest` status is copied into it.
#[derive(Serialize)]
struct TokenEntry<'a> {
    token: &'a str,
    #[serde(rename = "expirationTimestamp")]
    expiration_timestamp: String,
}

impl MountRequestBuilder {
    /// A request for `pod` with no parameters and no tokens yet.
    pub fn new(pod: &PodFixture) -> Self {
        Self {
            pod: pod.clone(),
            secret_provider_class: "app-secrets".to_owned(),
            parameters: SpcParameters::new(),
            tokens: BTreeMap::new(),
            permission: DEFAULT_PERMISSION,
            current_object_versions: Vec::new(),
        }
    }

    /// Names the SecretProviderClass (`secretProviderClass` in the attributes).
    #[must_use]
    pub fn secret_provider_class(mut self, name: impl Into<String>) -> Self {
        self.secret_provider_class = name.into();
        self
    }

    /// Sets one SecretProviderClass parameter.
    #[must_use]
    pub fn parameter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.insert(key.into(), value.into());
        self
    }

    /// Sets several SecretProviderClass parameters.
    #[must_use]
    pub fn parameters<I, K, V>(mut self, parameters: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.parameters
            .extend(parameters.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Removes a parameter.
    #[must_use]
    pub fn without_parameter(mut self, key: &str) -> Self {
        self.parameters.remove(key);
        self
    }

    /// Adds the token kubelet requested for `audience` (one entry of the CSIDriver's `tokenRequests`).
    #[must_use]
    pub fn token(mut self, audience: impl Into<String>, token: MintedToken) -> Self {
        self.tokens.insert(audience.into(), token);
        self
    }

    /// Drops every token, as when the CSIDriver's `tokenRequests` has no entry for an audience.
    #[must_use]
    pub fn without_tokens(mut self) -> Self {
        self.tokens.clear();
        self
    }

    /// The file mode the volume asks for (the driver's `permission`).
    #[must_use]
    pub fn permission(mut self, mode: u32) -> Self {
        self.permission = mode;
        self
    }

    /// Adds a version the driver recorded on the previous mount.
    #[must_use]
    pub fn current_object_version(
        mut self,
        id: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        self.current_object_versions.push(ObjectVersion {
            id: id.into(),
            version: version.into(),
        });
        self
    }

    /// The pod the request is for.
    pub fn pod(&self) -> &PodFixture {
        &self.pod
    }

    /// The `attributes` string of the request.
    pub fn attributes_json(&self) -> anyhow::Result<String> {
        let tokens = self.tokens_json(false)?;
        Ok(go_json(&self.attributes(tokens))?)
    }

    /// The `attributes` string with every token replaced by `REDACTED`, for printing.
    pub fn redacted_attributes_json(&self) -> anyhow::Result<String> {
        let tokens = self.tokens_json(true)?;
        Ok(go_json(&self.attributes(tokens))?)
    }

    /// The request the driver sends.
    pub fn build(&self) -> anyhow::Result<MountRequest> {
        Ok(MountRequest {
            attributes: self.attributes_json()?,
            secrets: "null".to_owned(),
            target_path: self.pod.target_path(),
            permission: self.permission.to_string(),
            current_object_version: self.current_object_versions.clone(),
        })
    }

    // kubelet adds the tokens key only when the CSIDriver has `tokenRequests`; without tokens it is absent.
    fn attributes(&self, tokens: Option<String>) -> BTreeMap<String, String> {
        let mut attributes = self.parameters.clone();
        let pod = &self.pod;
        let pod_info = [
            ("secretProviderClass", self.secret_provider_class.clone()),
            ("csi.storage.k8s.io/pod.name", pod.name().to_owned()),
            (
                "csi.storage.k8s.io/pod.namespace",
                pod.namespace().to_owned(),
            ),
            ("csi.storage.k8s.io/pod.uid", pod.uid().to_owned()),
            (
                "csi.storage.k8s.io/serviceAccount.name",
                pod.service_account().to_owned(),
            ),
            ("csi.storage.k8s.io/ephemeral", "true".to_owned()),
        ];
        for (key, value) in pod_info {
            attributes.insert(key.to_owned(), value);
        }
        if let Some(tokens) = tokens {
            attributes.insert(
                "csi.storage.k8s.io/serviceAccount.tokens".to_owned(),
                tokens,
            );
        }
        attributes
    }

    fn tokens_json(&self, redact: bool) -> anyhow::Result<Option<String>> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let mut entries = BTreeMap::new();
        for (audience, token) in &self.tokens {
            let token_text = if redact { REDACTED } else { token.jwt() };
            entries.insert(
                audience.as_str(),
                TokenEntry {
                    token: token_text,
                    expiration_timestamp: token.expiration_timestamp()?,
                },
            );
        }
        go_json(&entries)
            .map(Some)
            .context("cannot encode the tokens")
    }
}

/// JSON as Go's `json.Marshal` writes it: compact, and `<`, `>`, `&`, U+2028 and U+2029 escaped. Those characters
/// only ever occur inside strings in JSON text, so replacing them after encoding is exact.
fn go_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let text = serde_json::to_string(value)?;
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            other => escaped.push(other),
        }
    }
    Ok(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_escapes_like_go() -> anyhow::Result<()> {
        let map = BTreeMap::from([("b", "<&>"), ("a", "x\u{2028}")]);
        assert_eq!(
            go_json(&map)?,
            r#"{"a":"x\u2028","b":"\u003c\u0026\u003e"}"#
        );
        Ok(())
    }

    #[test]
    fn request_has_the_driver_shape() -> anyhow::Result<()> {
        let pod = PodFixture::new("team-a", "app")
            .with_name("app-1")
            .with_uid("uid-1");
        let request = MountRequestBuilder::new(&pod)
            .parameter("roleName", "app")
            .parameter("objects", "- objectName: a\n  secretPath: secret/data/a\n")
            .build()?;
        assert_eq!(request.secrets, "null");
        assert_eq!(request.permission, "420");
        assert_eq!(
            request.target_path,
            "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/secrets-store/mount"
        );
        let attributes: serde_json::Value = serde_json::from_str(&request.attributes)?;
        assert_eq!(attributes["csi.storage.k8s.io/pod.name"], "app-1");
        assert!(
            attributes
                .get("csi.storage.k8s.io/serviceAccount.tokens")
                .is_none()
        );
        assert!(
            request
                .attributes
                .starts_with(r#"{"csi.storage.k8s.io/ephemeral":"true","#)
        );
        Ok(())
    }
}
