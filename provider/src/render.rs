//! Fetched objects to files: decoding, modes and versions.

use base64::Engine as _;

use crate::backend::{Encoding, Fetched, ObjectSpec};
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

/// An object's value does not decode as its `encoding` says.
#[derive(Debug, thiserror::Error)]
#[error("objects[{index}] {path:?}: the value is not valid {encoding} (encoding: {encoding}); store it encoded or remove 'encoding'")]
pub struct DecodeError {
    index: usize,
    path: String,
    encoding: &'static str,
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
        versions.push(ObjectVersion {
            id: spec.path.as_str().to_owned(),
            version: versioner.version(&spec.descriptor, contents.expose_secret()),
        });
        files.push(File { path: spec.path.as_str().to_owned(), mode: spec.mode.unwrap_or(default_mode), contents });
    }
    Ok(Rendered { files, versions })
}

fn decode(spec: &ObjectSpec, raw: SecretBytes) -> Result<SecretBytes, DecodeError> {
    let err = || DecodeError { index: spec.index, path: spec.path.as_str().to_owned(), encoding: spec.encoding.as_str() };
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
        Fetched { content: SecretBytes::new(bytes.to_vec()) }
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
    fn bad_encodings_name_the_object_not_the_value() {
        let v = Versioner::random();
        let err = render(&[spec("k", Encoding::Hex, None)], vec![fetched(b"zz-secret")], 0o644, &v).expect_err("bad hex");
        let text = err.to_string();
        assert!(text.contains("objects[0]") && text.contains("hex"), "{text}");
        assert!(!text.contains("zz-secret"));
    }
}
