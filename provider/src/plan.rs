//! What a mount fetches and how its values become files, independent of any
//! backend: object specs, encodings, fetched values, derived files.
//!
//! This module is a leaf: request decoding, the dialects, the backends and the
//! renderer import from it, and it imports none of them.

use crate::object_path::ObjectPath;
use crate::secret::SecretBytes;

/// How an object's value is encoded in the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Written as stored.
    Utf8,
    /// Stored base64-encoded; written decoded.
    Base64,
    /// Stored hex-encoded; written decoded.
    Hex,
}

impl Encoding {
    /// The spelling used in SecretProviderClasses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Base64 => "base64",
            Self::Hex => "hex",
        }
    }
}

/// One object of a mount: where it goes and how it is written. Where it comes
/// from is the backend's part of the plan, at the same position.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    /// Position in the `objects` list, for error messages (`objects[2]`).
    pub index: usize,
    /// The name templates use for it (objectName, or objectAlias where set).
    pub name: String,
    /// File path below the mount; also the object id.
    pub path: ObjectPath,
    /// Whether the object is written as a file (`render: false` only feeds templates).
    pub write: bool,
    /// `expandKeys: true`: one file per top-level key (or, for an SSM path, per parameter).
    pub expand: Option<Expand>,
    /// File mode, if the object sets one.
    pub mode: Option<u32>,
    /// How the value is encoded in the backend.
    pub encoding: Encoding,
    /// Canonical description of the object's configuration, folded into its version.
    pub descriptor: String,
    /// Further files cut out of this object's value (AWS `jmesPath`).
    pub derived: Vec<Derived>,
}

impl ObjectSpec {
    /// How error messages name this object (`objects[1] "db-creds"`).
    #[must_use]
    pub fn label(&self) -> String {
        format!("objects[{}] {:?}", self.index, self.path.as_str())
    }
}

/// Where expanded files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expand {
    /// Directory the files are written under; `None` writes them at the mount root.
    pub base: Option<ObjectPath>,
}

/// One value of an object the backend already expanded (an SSM path).
#[derive(Debug)]
pub struct Entry {
    /// Name relative to the expanded path.
    pub name: String,
    /// The value.
    pub content: SecretBytes,
    /// The backend's version id of this value.
    pub version_id: Option<String>,
}

/// A file cut out of an object's JSON value.
#[derive(Debug, Clone)]
pub struct Derived {
    /// File path below the mount; also its object id.
    pub path: ObjectPath,
    /// File mode, if set.
    pub mode: Option<u32>,
    /// JMESPath expression selecting a string from the value.
    pub jmes_path: String,
}

/// One fetched object: the bytes to write (before decoding `encoding`).
#[derive(Debug)]
pub struct Fetched {
    /// The selected value.
    pub content: SecretBytes,
    /// The backend's own version id (Secrets Manager VersionId, SSM version), if it has one.
    pub version_id: Option<String>,
    /// Values the backend expanded itself (SSM path with `expandKeys`).
    pub entries: Option<Vec<Entry>>,
}

impl Fetched {
    /// A single value.
    #[must_use]
    pub fn value(content: SecretBytes, version_id: Option<String>) -> Self {
        Self { content, version_id, entries: None }
    }
}

/// A JSON value's type, for error messages (never the value itself).
pub(crate) fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
