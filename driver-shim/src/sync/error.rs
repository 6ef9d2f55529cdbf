//! Why mirroring failed: which `secretObjects` entry, which Secret, and the
//! cause as a source, never the file contents.

use super::CONFLICT_RETRIES;
use crate::{atomic_writer, tls};

/// What a Secret write did, for [`Error::Secret`].
#[derive(Debug, Clone, Copy)]
pub enum SecretAction {
    /// `GET`.
    Read,
    /// `POST`.
    Create,
    /// `PUT`.
    Update,
}

impl std::fmt::Display for SecretAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Create => "create",
            Self::Update => "update",
        })
    }
}

/// Why mounted files could not be mirrored into Secrets. Entries are named
/// `secretObjects[i].data[j] (secretName)`; no variant carries file contents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry without `secretName`.
    #[error("secretObjects[{index}].secretName is empty")]
    NoName {
        /// Entry.
        index: usize,
    },
    /// An entry without `type`.
    #[error("secretObjects[{index}] ({name}): type is empty; set it, e.g. Opaque")]
    NoType {
        /// Entry.
        index: usize,
        /// Its `secretName`.
        name: String,
    },
    /// An entry without `data`.
    #[error("secretObjects[{index}] ({name}): data is empty")]
    NoData {
        /// Entry.
        index: usize,
        /// Its `secretName`.
        name: String,
    },
    /// A `data` item missing `objectName` or `key`.
    #[error("secretObjects[{index}].data[{entry}] ({name}): objectName and key are both required")]
    IncompleteEntry {
        /// Entry.
        index: usize,
        /// Item of its `data`.
        entry: usize,
        /// Its `secretName`.
        name: String,
    },
    /// A TLS Secret asked for a key other than `tls.key` and `tls.crt`.
    #[error(
        "secretObjects[{index}].data[{entry}] ({name}): a kubernetes.io/tls Secret takes only the keys tls.key and tls.crt, not {key:?}"
    )]
    TlsKey {
        /// Entry.
        index: usize,
        /// Item of its `data`.
        entry: usize,
        /// Its `secretName`.
        name: String,
        /// The key asked for.
        key: String,
    },
    /// No mounted file has the `objectName`.
    #[error(
        "secretObjects[{index}].data[{entry}] ({name}): file matching objectName {object:?} not found in the pod; files: {files}"
    )]
    MissingFile {
        /// Entry.
        index: usize,
        /// Item of its `data`.
        entry: usize,
        /// Its `secretName`.
        name: String,
        /// The `objectName`.
        object: String,
        /// The file names that exist, or `none`.
        files: String,
    },
    /// A TLS Secret's file is not a key pair.
    #[error("secretObjects[{index}].data[{entry}] ({name}): objectName {object:?}")]
    Tls {
        /// Entry.
        index: usize,
        /// Item of its `data`.
        entry: usize,
        /// Its `secretName`.
        name: String,
        /// The `objectName`.
        object: String,
        /// What is wrong with the file.
        #[source]
        source: tls::Error,
    },
    /// The mounted files could not be read back.
    #[error("cannot read the mounted files")]
    ReadTarget(#[source] ReadError),
    /// The pod could not be read (for its owners).
    #[error("cannot read pod {namespace}/{name}")]
    ReadPod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The bare pod's SecretProviderClassPodStatus could not be read.
    #[error("cannot read secretproviderclasspodstatus {name}")]
    ReadPodStatus {
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A bare pod has no SecretProviderClassPodStatus to own its Secret.
    #[error(
        "secretproviderclasspodstatus {name} does not exist, so a bare pod's Secret has no owner"
    )]
    NoPodStatus {
        /// Its name.
        name: String,
    },
    /// A Secret could not be read or written.
    #[error("cannot {action} secret {namespace}/{name}")]
    Secret {
        /// What was tried.
        action: SecretAction,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Every attempt met a newer resourceVersion.
    #[error("secret {namespace}/{name}: still conflicting after {CONFLICT_RETRIES} attempts")]
    Conflict {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// Why the mounted files could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The target path.
    #[error(transparent)]
    Target(#[from] crate::target::Error),
    /// The files under it.
    #[error(transparent)]
    Files(#[from] atomic_writer::Error),
    /// The reading task died.
    #[error("the reading task failed")]
    Task(#[from] tokio::task::JoinError),
}
