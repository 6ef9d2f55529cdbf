//! The provider's unix sockets: created owner-only, never stealing a live socket,
//! and removed on shutdown only if they are still ours.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

/// Socket permission: only the owner (root, like the driver) may connect.
const SOCKET_MODE: u32 = 0o600;

/// A bound socket and the identity of its file.
#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Inode numbers are reused; the change time tells a successor's socket apart.
    ctime: (i64, i64),
}

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process accepts connections on it.
    #[error("{0}: another process is serving this socket; stop it first or use another --provider name")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0}: exists and is not a socket; refusing to remove it")]
    NotASocket(PathBuf),
    /// A file-system call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { path, op, source }
}

/// Binds `path`, replacing a stale socket. Must be called within a tokio runtime.
pub fn bind(path: &Path) -> Result<(BoundSocket, tokio::net::UnixListener), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(Error::NotASocket(path.to_owned())),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(Error::InUse(path.to_owned())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing stale socket");
                std::fs::remove_file(path).or_else(ignore_not_found).map_err(io_err(path, "remove stale socket"))?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, "stat")(e)),
    }

    // Create the socket owner-only from the start instead of chmod-ing it after
    // bind, so it is never connectable by others. umask is process-wide; sockets
    // are bound at startup before anything else creates files.
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(io_err(path, "bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(io_err(path, "chmod"))?;
    listener.set_nonblocking(true).map_err(io_err(path, "set non-blocking"))?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(io_err(path, "register"))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path, "stat"))?;
    Ok((BoundSocket { path: path.to_owned(), dev: meta.dev(), ino: meta.ino(), ctime: (meta.ctime(), meta.ctime_nsec()) }, listener))
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

impl BoundSocket {
    /// The socket's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one we bound (a successor may
    /// already have replaced it).
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino && (meta.ctime(), meta.ctime_nsec()) == self.ctime => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(socket = %self.path.display(), error = &e as &dyn std::error::Error, "cannot remove socket");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_owner_only_replaces_stale_and_refuses_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("courier.sock");

        // A stale socket: bound, then its listener dropped.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
        let (bound, _listener) = bind(&path).expect("replaces stale socket");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A live socket is refused.
        assert!(matches!(bind(&path), Err(Error::InUse(_))));

        bound.remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn never_removes_a_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.sock");
        std::fs::write(&path, b"data").expect("write");
        assert!(matches!(bind(&path), Err(Error::NotASocket(_))));
        assert_eq!(std::fs::read(&path).expect("kept"), b"data");
    }

    #[tokio::test]
    async fn remove_leaves_a_successors_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("y.sock");
        let (bound, listener) = bind(&path).expect("bind");
        drop(listener);
        std::fs::remove_file(&path).expect("rm");
        let _successor = std::os::unix::net::UnixListener::bind(&path).expect("successor");
        bound.remove();
        assert!(path.exists(), "the successor's socket must stay");
    }
}
