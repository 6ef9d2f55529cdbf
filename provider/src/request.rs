//! Decoding a `MountRequest` exactly as the driver sends it.
//!
//! `attributes` and `secrets` are JSON objects of strings (`secrets` may be the
//! literal `null` or empty), `permission` is a decimal `os.FileMode` such as
//! `"420"`, and the pod's service-account tokens arrive as a JSON string under
//! `csi.storage.k8s.io/serviceAccount.tokens`, in `secrets` (driver v1.6 with
//! `serviceAccountTokenInSecrets`) or in `attributes`.
//!
//! Error messages name the field and never quote a value: these fields carry
//! tokens and secrets.

use std::collections::BTreeMap;

use crate::identity::{PodIdentity, TokenMap};
use crate::plan::kind_of;
use crate::secret::SecretString;

/// kubelet's pod-info keys, present when the CSIDriver sets `podInfoOnMount: true`.
pub const POD_NAME_KEY: &str = "csi.storage.k8s.io/pod.name";
/// See [`POD_NAME_KEY`].
pub const POD_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pod.namespace";
/// See [`POD_NAME_KEY`].
pub const POD_UID_KEY: &str = "csi.storage.k8s.io/pod.uid";
/// See [`POD_NAME_KEY`].
pub const SERVICE_ACCOUNT_KEY: &str = "csi.storage.k8s.io/serviceAccount.name";
/// Tokens kubelet minted for the CSIDriver's `tokenRequests` audiences.
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// The SecretProviderClass name the pod's volume refers to.
pub(crate) const SPC_KEY: &str = "secretProviderClass";

/// File mode used when the driver sends no `permission` (what it always sends: 0644).
const DEFAULT_FILE_MODE: u32 = 0o644;
/// Highest permission value a file can carry (`0777`).
const MAX_FILE_MODE: u32 = 0o777;

/// A decoded mount request. Its Debug shows attribute names only.
pub struct MountContext {
    /// SecretProviderClass parameters merged with the pod's volume attributes
    /// (the token key removed).
    pub attributes: BTreeMap<String, String>,
    /// Who the pod is, with its tokens.
    pub identity: PodIdentity,
    /// Mode for files whose object sets none.
    pub default_mode: u32,
    /// The SecretProviderClass name, for logs (may be empty).
    pub spc: String,
}

impl std::fmt::Debug for MountContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountContext")
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("identity", &self.identity)
            .field("default_mode", &format_args!("{:o}", self.default_mode))
            .field("spc", &self.spc)
            .finish()
    }
}

/// Why a request could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field is not JSON of the expected shape.
    #[error("{field}: {problem}")]
    Malformed {
        /// The request field (`attributes`, `secrets`, `permission`, or a key in them).
        field: String,
        /// What is wrong, without quoting the value.
        problem: String,
    },
    /// kubelet's pod information is missing.
    #[error(
        "attributes: '{0}' is missing; the CSIDriver object must set podInfoOnMount: true"
    )]
    MissingPodInfo(&'static str),
}

impl MountContext {
    /// Decodes the request's raw fields.
    pub fn decode(attributes: &str, secrets: &str, permission: &str) -> Result<Self, Error> {
        let mut attributes = string_map("attributes", attributes)?;
        let mut secrets = string_map("secrets", secrets)?;
        let default_mode = parse_permission(permission)?;

        // v1.6 drivers may put the tokens in `secrets`; they win over `attributes`.
        let tokens_json = secrets.remove(TOKENS_KEY);
        let attribute_tokens = attributes.remove(TOKENS_KEY);
        let tokens = match tokens_json.or(attribute_tokens) {
            Some(raw) => parse_tokens(&raw)?,
            None => TokenMap::default(),
        };

        let require = |key: &'static str| -> Result<String, Error> {
            match attributes.get(key) {
                Some(v) if !v.is_empty() => Ok(v.clone()),
                _ => Err(Error::MissingPodInfo(key)),
            }
        };
        let namespace = require(POD_NAMESPACE_KEY)?;
        let service_account = require(SERVICE_ACCOUNT_KEY)?;
        let pod_name = attributes.get(POD_NAME_KEY).cloned().unwrap_or_default();
        let pod_uid = attributes.get(POD_UID_KEY).cloned().unwrap_or_default();
        let spc = attributes.get(SPC_KEY).cloned().unwrap_or_default();

        let publish_secrets = std::mem::take(&mut secrets).into_iter().map(|(k, v)| (k, SecretString::new(v))).collect();
        Ok(Self {
            identity: PodIdentity::new(namespace, pod_name, pod_uid, service_account, tokens)
                .with_publish_secrets(publish_secrets),
            attributes,
            default_mode,
            spc,
        })
    }
}

/// Parses a JSON object whose values are all strings. `null` and `""` are empty.
fn string_map(field: &str, raw: &str) -> Result<BTreeMap<String, String>, Error> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(BTreeMap::new());
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| Error::Malformed {
        field: field.to_owned(),
        problem: format!(
            "not valid JSON ({} at line {} column {})",
            json_error_kind(&e),
            e.line(),
            e.column()
        ),
    })?;
    let serde_json::Value::Object(object) = value else {
        return Err(Error::Malformed {
            field: field.to_owned(),
            problem: format!("expected a JSON object of strings, found {}", kind_of(&value)),
        });
    };
    let mut out = BTreeMap::new();
    for (key, value) in object {
        match value {
            serde_json::Value::String(s) => {
                out.insert(key, s);
            }
            other => {
                return Err(Error::Malformed {
                    field: format!("{field}[{key:?}]"),
                    problem: format!("expected a string, found {}", kind_of(&other)),
                });
            }
        }
    }
    Ok(out)
}

/// The category of a JSON error, never the text around it.
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

/// `permission` is `json.Marshal(os.FileMode)`: a decimal number, sent as a string.
fn parse_permission(raw: &str) -> Result<u32, Error> {
    let trimmed = raw.trim().trim_matches('"');
    if trimmed.is_empty() {
        return Ok(DEFAULT_FILE_MODE);
    }
    let mode: u32 = trimmed.parse().map_err(|_| Error::Malformed {
        field: "permission".to_owned(),
        problem: "expected a decimal file mode such as \"420\" (0644)".to_owned(),
    })?;
    if mode > MAX_FILE_MODE {
        return Err(Error::Malformed {
            field: "permission".to_owned(),
            problem: format!("{mode} is over 511 (0777); only permission bits are allowed"),
        });
    }
    Ok(mode)
}

/// Parses `{"<audience>": {"token": "...", "expirationTimestamp": "..."}}`.
fn parse_tokens(raw: &str) -> Result<TokenMap, Error> {
    let field = || TOKENS_KEY.to_owned();
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| Error::Malformed {
        field: field(),
        problem: format!("not valid JSON ({})", json_error_kind(&e)),
    })?;
    let serde_json::Value::Object(object) = value else {
        return Err(Error::Malformed {
            field: field(),
            problem: format!("expected an object keyed by audience, found {}", kind_of(&value)),
        });
    };
    let mut tokens = TokenMap::default();
    for (audience, entry) in object {
        let token = entry.get("token").and_then(serde_json::Value::as_str);
        match token {
            Some(token) if !token.is_empty() => {
                tokens.insert(audience, SecretString::new(token.to_owned()));
            }
            _ => {
                return Err(Error::Malformed {
                    field: format!("{TOKENS_KEY}[{audience:?}]"),
                    problem: "has no 'token' string".to_owned(),
                });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(extra: &[(&str, &str)]) -> String {
        let mut map = BTreeMap::from([
            (POD_NAMESPACE_KEY.to_owned(), "team-a".to_owned()),
            (POD_NAME_KEY.to_owned(), "app-0".to_owned()),
            (POD_UID_KEY.to_owned(), "uid-1".to_owned()),
            (SERVICE_ACCOUNT_KEY.to_owned(), "app".to_owned()),
        ]);
        for (k, v) in extra {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        serde_json::to_string(&map).expect("serialisable")
    }

    #[test]
    fn decodes_what_the_driver_sends() {
        let tokens = r#"{"vault":{"token":"jwt-value","expirationTimestamp":"2026-01-01T00:00:00Z"}}"#;
        let ctx = MountContext::decode(&attrs(&[(TOKENS_KEY, tokens), ("roleName", "r")]), "null", "420")
            .expect("valid");
        assert_eq!(ctx.default_mode, 0o644);
        assert_eq!(ctx.identity.namespace(), "team-a");
        assert_eq!(ctx.identity.service_account(), "app");
        assert!(ctx.identity.token("vault").is_some());
        assert!(!ctx.attributes.contains_key(TOKENS_KEY), "tokens are removed from attributes");
        assert_eq!(ctx.attributes.get("roleName").map(String::as_str), Some("r"));
    }

    #[test]
    fn tokens_in_secrets_win() {
        let in_attrs = r#"{"vault":{"token":"from-attributes"}}"#;
        let in_secrets = serde_json::json!({TOKENS_KEY: r#"{"vault":{"token":"from-secrets"}}"#}).to_string();
        let ctx = MountContext::decode(&attrs(&[(TOKENS_KEY, in_attrs)]), &in_secrets, "420").expect("valid");
        assert_eq!(ctx.identity.token("vault").map(SecretString::expose_secret), Some("from-secrets"));
    }

    #[test]
    fn empty_secrets_forms() {
        for s in ["null", "", "{}", " null "] {
            assert!(MountContext::decode(&attrs(&[]), s, "420").is_ok(), "{s:?}");
        }
    }

    #[test]
    fn bad_fields_are_named_and_values_never_quoted() {
        let cases = [
            ("not json", "null", "420", "attributes"),
            ("[1,2]", "null", "420", "attributes"),
            (r#"{"a":5}"#, "null", "420", "attributes[\"a\"]"),
            (&attrs(&[]) as &str, r#"{"password":12345678}"#, "420", "secrets[\"password\"]"),
            (&attrs(&[]), "null", "rw", "permission"),
            (&attrs(&[]), "null", "4200", "permission"),
            (&attrs(&[(TOKENS_KEY, "secret-token-text")]), "null", "420", TOKENS_KEY),
            (&attrs(&[(TOKENS_KEY, r#"{"vault":{"nope":1}}"#)]), "null", "420", TOKENS_KEY),
        ];
        for (a, s, p, field) in cases {
            let err = MountContext::decode(a, s, p).expect_err("must fail").to_string();
            assert!(err.starts_with(field), "{err} should name {field}");
            assert!(!err.contains("12345678") && !err.contains("secret-token-text"), "{err}");
        }
    }

    #[test]
    fn debug_shows_no_parameter_or_token_value() {
        let tokens = r#"{"vault":{"token":"jwt-secret-value"}}"#;
        let ctx = MountContext::decode(&attrs(&[(TOKENS_KEY, tokens), ("objects", "args: plaintext-secret")]), "null", "420")
            .expect("valid");
        let shown = format!("{ctx:?}");
        assert!(shown.contains("objects"), "{shown}");
        assert!(!shown.contains("plaintext-secret") && !shown.contains("jwt-secret-value"), "{shown}");
    }

    #[test]
    fn missing_pod_info_says_what_to_fix() {
        let err = MountContext::decode("{}", "null", "420").expect_err("must fail").to_string();
        assert!(err.contains("podInfoOnMount"), "{err}");
    }
}
