//! Fetched objects to files: decoding, key fan-out, jmesPath, templates, modes,
//! path conflicts and versions.

use base64::Engine as _;

use crate::plan::{Derived, Encoding, Fetched, ObjectSpec, kind_of};
use crate::object_path::ObjectPath;
use crate::template::{TemplateError, TemplateSpec, render_all};
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
pub enum RenderError {
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
    /// `expandKeys` cannot be applied.
    #[error("objects[{index}] {path:?}: expandKeys: {problem}")]
    Expand {
        /// Object index.
        index: usize,
        /// Object path.
        path: String,
        /// What went wrong (key names and types, never values).
        problem: String,
        /// The secret holds nothing to expand.
        empty: bool,
    },
    /// A template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Two outputs want the same file, or a file where another needs a directory.
    #[error("{first:?} and {second:?} cannot both be written: {why}; rename one (objectAlias, objectName or the template path)")]
    Conflict {
        /// One path.
        first: String,
        /// The other.
        second: String,
        /// Why they clash.
        why: &'static str,
    },
    /// The files so far are more than the driver accepts for one mount.
    #[error(
        "objects[{index}] {path:?}: the mount's files reach {bytes} bytes with this object; the driver accepts at \
         most {MAX_MOUNT_BYTES}: split the objects across SecretProviderClasses"
    )]
    TooLarge {
        /// Object index.
        index: usize,
        /// Object path.
        path: String,
        /// Bytes of files up to and including this object.
        bytes: usize,
    },
    /// Every object has `render: false` and there are no templates.
    #[error("nothing would be written: every object has render: false and no templates are listed")]
    Nothing,
}

impl RenderError {
    /// Whether the failure means the secret holds nothing (rather than bad input).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Expand { empty: true, .. })
    }
}

/// Turns fetched objects into files and versions, then renders the templates in
/// this process (the provider renders them in [`crate::sandbox`] instead, through
/// [`render_objects`] and [`Staged::finish`]).
pub fn render(
    specs: &[ObjectSpec],
    fetched: Vec<Fetched>,
    templates: &[TemplateSpec],
    default_mode: u32,
    versioner: &Versioner,
) -> Result<Rendered, RenderError> {
    let staged = render_objects(specs, fetched, default_mode, versioner)?;
    let outputs = render_all(templates, &staged.template_inputs())?;
    staged.finish(templates, outputs, default_mode, versioner)
}

/// Objects rendered into files, waiting for the templates.
pub(crate) struct Staged {
    files: Vec<File>,
    versions: Vec<ObjectVersion>,
    inputs: Vec<(String, SecretBytes)>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("files", &self.files.len()).field("inputs", &self.inputs.len()).finish()
    }
}

impl Staged {
    /// What templates see: each object's name and content.
    #[must_use]
    pub(crate) fn template_inputs(&self) -> Vec<(String, &SecretBytes)> {
        self.inputs.iter().map(|(n, c)| (n.clone(), c)).collect()
    }

    /// Adds the templates' outputs and checks the whole mount.
    pub(crate) fn finish(
        mut self,
        templates: &[TemplateSpec],
        outputs: Vec<SecretBytes>,
        default_mode: u32,
        versioner: &Versioner,
    ) -> Result<Rendered, RenderError> {
        self.inputs.clear();
        for (template, output) in templates.iter().zip(outputs) {
            let descriptor = format!("template|{}", template.source);
            self.versions.push(ObjectVersion {
                id: template.path.as_str().to_owned(),
                version: versioner.version(&descriptor, output.expose_secret()),
            });
            self.files.push(File {
                path: template.path.as_str().to_owned(),
                mode: template.mode.unwrap_or(default_mode),
                contents: output,
            });
        }
        check_conflicts(&self.files)?;
        if self.versions.is_empty() {
            return Err(RenderError::Nothing);
        }
        Ok(Rendered { files: self.files, versions: self.versions })
    }
}

/// Most bytes of files one mount may return: the driver reads at most 4 MiB of
/// response, and the gRPC framing needs a little of that.
pub(crate) const MAX_MOUNT_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// Turns fetched objects into files and versions, and keeps their contents for
/// the templates. The running size is checked as each object is added.
pub(crate) fn render_objects(
    specs: &[ObjectSpec],
    fetched: Vec<Fetched>,
    default_mode: u32,
    versioner: &Versioner,
) -> Result<Staged, RenderError> {
    let mut files = Vec::with_capacity(specs.len());
    let mut versions = Vec::with_capacity(specs.len());
    let mut inputs: Vec<(String, SecretBytes)> = Vec::with_capacity(specs.len());
    let written = std::cell::Cell::new(0usize);
    let mut push = |path: &str, mode: u32, descriptor: &str, contents: SecretBytes| {
        written.set(written.get() + contents.len());
        versions.push(ObjectVersion { id: path.to_owned(), version: versioner.version(descriptor, contents.expose_secret()) });
        files.push(File { path: path.to_owned(), mode, contents });
    };
    for (spec, fetched) in specs.iter().zip(fetched) {
        // A backend version id (AWS) is keyed into the HMAC like the rest, so it stays opaque.
        let descriptor = match &fetched.version_id {
            Some(id) => format!("{}|version={id}", spec.descriptor),
            None => spec.descriptor.clone(),
        };
        let mode = spec.mode.unwrap_or(default_mode);
        let expand_err = |problem: String, empty: bool| RenderError::Expand {
            index: spec.index,
            path: spec.path.as_str().to_owned(),
            problem,
            empty,
        };

        if let Some(entries) = fetched.entries {
            // An SSM path the backend expanded.
            if entries.is_empty() {
                return Err(expand_err("the path holds no parameters".to_owned(), true));
            }
            let base = spec.expand.as_ref().and_then(|e| e.base.clone());
            let mut map = serde_json::Map::new();
            for entry in entries {
                let path = join(base.as_ref(), &entry.name)
                    .map_err(|e| expand_err(format!("parameter {:?} is not a safe file name: {e}", entry.name), false))?;
                let value = decode(spec, entry.content)?;
                map.insert(entry.name.clone(), String::from_utf8_lossy(value.expose_secret()).into_owned().into());
                if spec.write {
                    let d = format!("{descriptor}|entry={}|version={}", entry.name, entry.version_id.unwrap_or_default());
                    push(path.as_str(), mode, &d, value);
                }
            }
            inputs.push((spec.name.clone(), SecretBytes::new(serde_json::Value::Object(map).to_string().into_bytes())));
            check_running_size(spec, written.get())?;
            continue;
        }

        if let Some(expand) = &spec.expand {
            let json: serde_json::Value = serde_json::from_slice(fetched.content.expose_secret())
                .map_err(|_| expand_err("needs a JSON object, and the value is not JSON".to_owned(), false))?;
            let serde_json::Value::Object(map) = json else {
                return Err(expand_err(format!("needs a JSON object, and the value is {}", kind_of(&json)), false));
            };
            if map.is_empty() {
                return Err(expand_err("the secret has no keys".to_owned(), true));
            }
            for (key, value) in &map {
                if key.contains('/') {
                    return Err(expand_err(format!("key {key:?} is not a safe file name: it contains '/'"), false));
                }
                let path = join(expand.base.as_ref(), key)
                    .map_err(|e| expand_err(format!("key {key:?} is not a safe file name: {e}"), false))?;
                let bytes = match value {
                    serde_json::Value::String(s) => s.as_bytes().to_vec(),
                    other => other.to_string().into_bytes(),
                };
                let value = decode(spec, SecretBytes::new(bytes))?;
                if spec.write {
                    push(path.as_str(), mode, &format!("{descriptor}|key={key}"), value);
                }
            }
            for derived in &spec.derived {
                let value = jmes(spec, derived, fetched.content.expose_secret())?;
                push(derived.path.as_str(), derived.mode.or(spec.mode).unwrap_or(default_mode), &format!("{descriptor}|jmes={}", derived.jmes_path), value);
            }
            inputs.push((spec.name.clone(), fetched.content));
            check_running_size(spec, written.get())?;
            continue;
        }

        let contents = decode(spec, fetched.content)?;
        if spec.write {
            push(spec.path.as_str(), mode, &descriptor, contents.clone());
        }
        for derived in &spec.derived {
            let value = jmes(spec, derived, contents.expose_secret())?;
            push(derived.path.as_str(), derived.mode.or(spec.mode).unwrap_or(default_mode), &format!("{descriptor}|jmes={}", derived.jmes_path), value);
        }
        inputs.push((spec.name.clone(), contents));
        check_running_size(spec, written.get())?;
    }

    Ok(Staged { files, versions, inputs })
}

/// Fails, naming `spec`, once the files written so far exceed [`MAX_MOUNT_BYTES`].
fn check_running_size(spec: &ObjectSpec, bytes: usize) -> Result<(), RenderError> {
    if bytes > MAX_MOUNT_BYTES {
        return Err(RenderError::TooLarge { index: spec.index, path: spec.path.as_str().to_owned(), bytes });
    }
    Ok(())
}

fn join(base: Option<&ObjectPath>, name: &str) -> Result<ObjectPath, crate::object_path::PathError> {
    match base {
        Some(base) => ObjectPath::parse(&format!("{}/{}", base.as_str(), name.trim_start_matches('/'))),
        None => ObjectPath::parse(name.trim_start_matches('/')),
    }
}

/// No two files may share a path, and no file may sit where another needs a directory.
fn check_conflicts(files: &[File]) -> Result<(), RenderError> {
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for f in files {
        if let Some(first) = seen.insert(f.path.as_str(), f.path.as_str()) {
            return Err(RenderError::Conflict { first: first.to_owned(), second: f.path.clone(), why: "they are the same file" });
        }
    }
    for f in files {
        let mut prefix = f.path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if seen.contains_key(parent) {
                return Err(RenderError::Conflict {
                    first: parent.to_owned(),
                    second: f.path.clone(),
                    why: "the first is a file and the second needs it as a directory",
                });
            }
            prefix = parent;
        }
    }
    Ok(())
}

/// Applies a `jmesPath` entry; the result must be a string, as the AWS provider requires.
fn jmes(spec: &ObjectSpec, derived: &Derived, value: &[u8]) -> Result<SecretBytes, RenderError> {
    let fail = |problem: String| RenderError::JmesPath {
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
        None if result.is_null() => {
            let keys: Vec<&str> = json.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
            Err(fail(format!(
                "matched nothing; top-level keys there: {}",
                if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
            )))
        }
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

fn decode(spec: &ObjectSpec, raw: SecretBytes) -> Result<SecretBytes, RenderError> {
    let err = || RenderError::Encoding { index: spec.index, path: spec.path.as_str().to_owned(), encoding: spec.encoding.as_str() };
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
mod tests;
