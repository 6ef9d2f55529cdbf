//! Backends fetch a mount's objects as the pod's identity.
//!
//! A backend knows its own wire format and nothing about gRPC: it returns the
//! selected bytes of each object, or an [`Error`] whose [`ErrorKind`] the server
//! maps to a status code in one place.

pub mod aws;
pub mod vault;

use std::fmt;

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

/// One object of a mount: where it comes from and where it goes.
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
    /// Backend-specific request.
    pub source: ObjectSource,
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

/// The backend-specific part of an object.
#[derive(Debug, Clone)]
pub enum ObjectSource {
    /// A Vault/OpenBao request.
    Vault(vault::VaultObject),
    /// An AWS Secrets Manager secret or SSM parameter.
    Aws(aws::AwsObject),
}

/// Backend configuration of a mount.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// Vault or OpenBao.
    Vault(vault::VaultConfig),
    /// AWS Secrets Manager and SSM Parameter Store.
    Aws(aws::AwsConfig),
}

impl BackendConfig {
    /// Short name for logs and messages.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Vault(cfg) => cfg.flavor.name(),
            Self::Aws(_) => "aws",
        }
    }
}

/// What went wrong, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request can never succeed as written (bad parameter, bad data shape).
    Invalid,
    /// The backend refused the pod's identity.
    Denied,
    /// The path or key does not exist.
    NotFound,
    /// The backend could not be reached or failed (after retries).
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// Bounded label for metrics and logs.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
        }
    }
}

/// A backend failure, with what to check. The message never holds a secret value.
#[derive(Debug, Clone)]
pub struct Error {
    /// Category, mapped to a gRPC code by the server.
    pub kind: ErrorKind,
    /// The backend (`vault`, `openbao`).
    pub backend: &'static str,
    /// The object concerned (`objects[1] "db-creds"`), if one.
    pub object: Option<String>,
    /// What happened and what to check.
    pub message: String,
}

impl Error {
    /// A new error about the whole mount.
    #[must_use]
    pub fn new(kind: ErrorKind, backend: &'static str, message: impl Into<String>) -> Self {
        Self { kind, backend, object: None, message: message.into() }
    }

    /// Names the object this error is about.
    #[must_use]
    pub fn for_object(mut self, spec: &ObjectSpec) -> Self {
        self.object = Some(format!("objects[{}] {:?}", spec.index, spec.path.as_str()));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{object} ({} backend): {}", self.backend, self.message),
            None => write!(f, "{} backend: {}", self.backend, self.message),
        }
    }
}

impl std::error::Error for Error {}

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
