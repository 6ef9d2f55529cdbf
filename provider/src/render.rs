//! Fetched objects to files: decoding, modes and versions.

use base64::Engine as _;

use crate::backend::{Derived, Encoding, Fetched, ObjectSpec};
use crate::secret::SecretBytes;
use crate::version::Versioner;

/// A file for the driver to write.
#[derive(Debug)]
pub struct File {
    /// Relative path below the mount.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Contents.
    pub contents: SecretBytes,
}

/// An object's id and version, as the driver records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object id: its file path.
    pub id: String,
    /// Opaque version.
    pub version: String,
}

/// The rendered mount.
#[derive(Debug)]
pub struct Rendered {
    /// Files, in object order.
    pub files: Vec<File>,
    /// Versions, in object order.
    pub versions: Vec<ObjectVersion>,
}

/// An object's value cannot be turned into its files.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value does not decode as its `encoding` says.
    #[error("objects[{index}] {path:?}: the value is not valid {encoding} (encoding: {encoding}); store it encoded or remove 'encoding'")]
    Encoding {
        /// Object index.
        index: usize,
        /// Object path.
        path: String,
        /// The declared encoding.
        encoding: &'static str,
    },
    /// A `jmesPath` entry cannot be applied.
    #[error("objects[{index}] {path:?}: jmesPath {expression:?} (objectAlias {alias:?}) {problem}")]
    JmesPath {
        /// Object index.
        index: usize,
        /// Object path.
        path: String,
        /// The expression.
        expression: String,
        /// The file it was meant for.
        alias: String,
        /// What went wrong (never the value).
        problem: String,
    },
}

/// Turns fetched objects into files and versions.
pub fn render(
    specs: &[ObjectSpec],
    fetched: Vec<Fetched>,
    default_mode: u32,
    versioner: &Versioner,
) -> Result<Rendered, DecodeError> {
    let mut files = Vec::with_capacity(specs.len());
    let mut versions = Vec::with_capacity(specs.len());
    for (spec, fetched) in specs.iter().zip(fetched) {
        let contents = decode(spec, fetched.content)?;
        // A backend version id (AWS) is keyed into the HMAC like the rest, so it stays opaque.
        let descriptor = match &fetched.version_id {
            Some(id) => format!("{}|version={id}", spec.descriptor),
            None => spec.descriptor.clone(),
        };
        for derived in &spec.derived {
            let value = jmes(spec, derived, contents.expose_secret())?;
            versions.push(ObjectVersion {
                id: derived.path.as_str().to_owned(),
                version: versioner.version(&format!("{descriptor}|jmes={}", derived.jmes_path), value.expose_secret()),
            });
            files.push(File { path: derived.path.as_str().to_owned(), mode: derived.mode.or(spec.mode).unwrap_or(default_mode), contents: value });
        }
        versions.insert(
            versions.len() - spec.derived.len(),
            ObjectVersion { id: spec.path.as_str().to_owned(), version: versioner.version(&descriptor, contents.expose_secret()) },
        );
        files.insert(
            files.len() - spec.derived.len(),
            File { path: spec.path.as_str().to_owned(), mode: spec.mode.unwrap_or(default_mode), contents },
        );
    }
    Ok(Rendered { files, versions })
}

/// Applies a `jmesPath` entry; the result must be a string, as the AWS provider requires.
fn jmes(spec: &ObjectSpec, derived: &Derived, value: &[u8]) -> Result<SecretBytes, DecodeError> {
    let fail = |problem: String| DecodeError::JmesPath {
        index: spec.index,
        path: spec.path.as_str().to_owned(),
        expression: derived.jmes_path.clone(),
        alias: derived.path.as_str().to_owned(),
        problem,
    };
    let json: serde_json::Value =
        serde_json::from_slice(value).map_err(|_| fail("needs a JSON object, and the secret is not JSON".to_owned()))?;
    let expression = jmespath::compile(&derived.jmes_path).map_err(|_| fail("is not a JMESPath expression".to_owned()))?;
    let data = jmespath::Variable::from_serializable(&json).map_err(|_| fail("cannot read the secret as JSON".to_owned()))?;
    let result = expression.search(data).map_err(|_| fail("failed to evaluate".to_owned()))?;
    match result.as_string() {
        Some(text) => Ok(SecretBytes::new(text.as_bytes().to_vec())),
        None if result.is_null() => Err(fail("matched nothing".to_owned())),
        None => Err(fail(format!("gave {}, not a string", variable_kind(&result)))),
    }
}

fn variable_kind(v: &jmespath::Variable) -> &'static str {
    if v.is_number() {
        "a number"
    } else if v.is_boolean() {
        "a boolean"
    } else if v.is_array() {
        "a list"
    } else if v.is_object() {
        "an object"
    } else {
        "a non-string value"
    }
}

fn decode(spec: &ObjectSpec, raw: SecretBytes) -> Result<SecretBytes, DecodeError> {
    let err = || DecodeError::Encoding { index: spec.index, path: spec.path.as_str().to_owned(), encoding: spec.encoding.as_str() };
    match spec.encoding {
        Encoding::Utf8 => Ok(raw),
        Encoding::Base64 => {
            let text: Vec<u8> = raw.expose_secret().iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            let text = zeroize::Zeroizing::new(text);
            base64::engine::general_purpose::STANDARD
                .decode(&*text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&*text))
                .map(SecretBytes::new)
                .map_err(|_| err())
        }
        Encoding::Hex => {
            let text = raw.expose_secret();
            let trimmed = text.trim_ascii();
            hex::decode(trimmed).map(SecretBytes::new).map_err(|_| err())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ObjectSource;
    use crate::backend::vault::{Method, VaultObject};
    use crate::object_path::ObjectPath;

    fn spec(name: &str, encoding: Encoding, mode: Option<u32>) -> ObjectSpec {
        ObjectSpec {
            index: 0,
            path: ObjectPath::parse(name).expect("path"),
            mode,
            encoding,
            descriptor: name.to_owned(),
            derived: Vec::new(),
            source: ObjectSource::Vault(VaultObject {
                path: "p".into(),
                query: None,
                method: Method::Get,
                args: None,
                secret_key: None,
            }),
        }
    }

    fn fetched(bytes: &[u8]) -> Fetched {
        Fetched { content: SecretBytes::new(bytes.to_vec()), version_id: None }
    }

    #[test]
    fn decodes_and_sets_modes() {
        let v = Versioner::random();
        let specs = [spec("a", Encoding::Base64, Some(0o600)), spec("b", Encoding::Hex, None), spec("c", Encoding::Utf8, None)];
        let out = render(&specs, vec![fetched(b"aGVsbG8=\n"), fetched(b"68690a"), fetched(b"raw")], 0o644, &v).expect("ok");
        assert_eq!(out.files[0].contents.expose_secret(), b"hello");
        assert_eq!(out.files[0].mode, 0o600);
        assert_eq!(out.files[1].contents.expose_secret(), b"hi\n");
        assert_eq!(out.files[1].mode, 0o644);
        assert_eq!(out.files[2].contents.expose_secret(), b"raw");
        assert_eq!(out.versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn jmes_paths_cut_strings_out_of_json() {
        let v = Versioner::random();
        let mut s = spec("db", Encoding::Utf8, None);
        s.derived = vec![
            Derived { path: ObjectPath::parse("user").expect("p"), mode: Some(0o600), jmes_path: "username".into() },
            Derived { path: ObjectPath::parse("host").expect("p"), mode: None, jmes_path: "conn.host".into() },
        ];
        let body = br#"{"username":"u1","port":5432,"conn":{"host":"db.internal"}}"#;
        let out = render(&[s.clone()], vec![fetched(body)], 0o644, &v).expect("ok");
        let names: Vec<&str> = out.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["db", "user", "host"]);
        assert_eq!(out.files[1].contents.expose_secret(), b"u1");
        assert_eq!(out.files[1].mode, 0o600);
        assert_eq!(out.files[2].contents.expose_secret(), b"db.internal");
        assert_eq!(out.versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["db", "user", "host"]);

        s.derived = vec![Derived { path: ObjectPath::parse("port").expect("p"), mode: None, jmes_path: "port".into() }];
        let err = render(&[s.clone()], vec![fetched(body)], 0o644, &v).expect_err("number").to_string();
        assert!(err.contains("a number, not a string") && err.contains("objects[0]"), "{err}");
        assert!(!err.contains("5432"));
        let err = render(&[s], vec![fetched(b"not json secret")], 0o644, &v).expect_err("not json").to_string();
        assert!(err.contains("not JSON") && !err.contains("not json secret"), "{err}");
    }

    #[test]
    fn backend_version_ids_are_keyed_into_versions() {
        let v = Versioner::with_key(vec![1; 32]).expect("key");
        let s = spec("a", Encoding::Utf8, None);
        let with = |id: Option<&str>| {
            let f = Fetched { content: SecretBytes::new(b"same".to_vec()), version_id: id.map(str::to_owned) };
            render(&[s.clone()], vec![f], 0o644, &v).expect("ok").versions[0].version.clone()
        };
        assert_ne!(with(Some("v1")), with(Some("v2")));
        assert_eq!(with(Some("v1")), with(Some("v1")));
        assert!(!with(Some("v1")).contains("v1"));
    }

    #[test]
    fn bad_encodings_name_the_object_not_the_value() {
        let v = Versioner::random();
        let err = render(&[spec("k", Encoding::Hex, None)], vec![fetched(b"zz-secret")], 0o644, &v).expect_err("bad hex");
        let text = err.to_string();
        assert!(text.contains("objects[0]") && text.contains("hex"), "{text}");
        assert!(!text.contains("zz-secret"));
    }
}
