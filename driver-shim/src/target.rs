//! Where a volume goes: the path kubelet (or local mode) names, resolved once
//! into a path without symbolic links, checked, and from then on opened only
//! without following links.
//!
//! Rules:
//! - the target itself must not be a symbolic link (kubelet's never are);
//! - links in its parent directories are resolved once, here;
//! - in node mode the resolved path must lie below kubelet's pods directory;
//! - every later open of the target refuses a link anywhere in the resolved
//!   path, so a link swapped in after resolution is an error, not a detour.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::dir::Dir;

/// Which targets are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Any directory (local mode: the operator names it on the command line).
    Anywhere,
    /// Only below this directory (node mode: kubelet's pods directory).
    Below(PathBuf),
}

/// Why a target is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is relative or has `..` components.
    #[error("target path {0} must be absolute, without '.' or '..' components")]
    NotPlain(PathBuf),
    /// The target itself is a symbolic link.
    #[error("target path {0} is a symbolic link; the shim never follows one at the target")]
    Symlink(PathBuf),
    /// The target is something other than a directory.
    #[error("target path {0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The resolved target is not below the pods directory.
    #[error(
        "target path {target} resolves to {resolved}, which is not below kubelet's pods \
         directory {pods} (--kubelet-pods-dir)"
    )]
    OutsidePods {
        /// As given.
        target: PathBuf,
        /// With its parents' links resolved.
        resolved: PathBuf,
        /// The pods directory, resolved.
        pods: PathBuf,
    },
    /// The file system refused.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether the request can never succeed as given (bad input), as opposed
    /// to a failure of the node.
    #[must_use]
    pub fn is_invalid(&self) -> bool {
        !matches!(self, Self::Io { .. })
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { op, path, source }
}

/// A target resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    requested: PathBuf,
    resolved: PathBuf,
}

impl Target {
    /// Resolves `requested` (made absolute against the working directory when
    /// relative, for local mode), checks it against `scope`, and refuses a
    /// target that is a link or not a directory.
    pub fn resolve(requested: &Path, scope: &Scope) -> Result<Self, Error> {
        let target = Self::locate(requested, scope)?;
        match std::fs::symlink_metadata(&target.resolved) {
            Ok(meta) if meta.file_type().is_symlink() => Err(Error::Symlink(requested.to_owned())),
            Ok(meta) if !meta.is_dir() => Err(Error::NotADirectory(requested.to_owned())),
            _ => Ok(target),
        }
    }

    /// [`Target::resolve`] without looking at the target itself: for unpublish,
    /// which removes a link standing there without following it.
    pub fn locate(requested: &Path, scope: &Scope) -> Result<Self, Error> {
        let absolute = std::path::absolute(requested).map_err(io_err("resolve", requested))?;
        let plain = absolute
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let (Some(parent), Some(name), true) = (absolute.parent(), absolute.file_name(), plain)
        else {
            return Err(Error::NotPlain(requested.to_owned()));
        };
        // The nearest existing ancestor is resolved; the missing rest holds no links.
        let mut existing = parent.to_path_buf();
        let mut missing = Vec::new();
        while std::fs::symlink_metadata(&existing).is_err() {
            match (existing.file_name(), existing.parent()) {
                (Some(last), Some(up)) => {
                    missing.push(last.to_owned());
                    existing = up.to_path_buf();
                }
                _ => break,
            }
        }
        let mut resolved =
            std::fs::canonicalize(&existing).map_err(io_err("resolve", &existing))?;
        resolved.extend(missing.iter().rev());
        resolved.push(name);

        if let Scope::Below(pods) = scope {
            let pods = std::fs::canonicalize(pods).map_err(io_err("resolve", pods))?;
            if !resolved.starts_with(&pods) || resolved == pods {
                return Err(Error::OutsidePods {
                    target: requested.to_owned(),
                    resolved,
                    pods,
                });
            }
        }
        Ok(Self {
            requested: requested.to_owned(),
            resolved,
        })
    }

    /// Whether the target is a link (checked without following it).
    #[must_use]
    pub fn is_link(&self) -> bool {
        std::fs::symlink_metadata(&self.resolved).is_ok_and(|m| m.file_type().is_symlink())
    }

    /// The path as given.
    #[must_use]
    pub fn requested(&self) -> &Path {
        &self.requested
    }

    /// The path with every link resolved.
    #[must_use]
    pub fn resolved(&self) -> &Path {
        &self.resolved
    }

    /// Opens the target; `None` if it does not exist. A link anywhere in the
    /// resolved path (one swapped in since resolution) is an error.
    pub fn open(&self) -> Result<Option<Dir>, Error> {
        match Dir::open_no_symlinks(&self.resolved) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            // ELOOP: a link in the path; ENOTDIR: O_DIRECTORY met a link or a file.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                Err(Error::Symlink(self.requested.clone()))
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                Err(if self.is_link() {
                    Error::Symlink(self.requested.clone())
                } else {
                    Error::NotADirectory(self.requested.clone())
                })
            }
            Err(e) => Err(Error::Io {
                op: "open",
                path: self.requested.clone(),
                source: e,
            }),
        }
    }

    /// Opens the target, creating it (and missing parents, mode 0750) first.
    pub fn create(&self) -> Result<Dir, Error> {
        if let Some(dir) = self.open()? {
            return Ok(dir);
        }
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o750)
            .create(&self.resolved)
            .map_err(io_err("create", &self.requested))?;
        self.open()?.ok_or_else(|| Error::Io {
            op: "open",
            path: self.requested.clone(),
            source: io::ErrorKind::NotFound.into(),
        })
    }

    /// The directory holding the target, and the target's name in it.
    pub fn parent(&self) -> Result<(Dir, &std::ffi::OsStr), Error> {
        let (Some(parent), Some(name)) = (self.resolved.parent(), self.resolved.file_name()) else {
            return Err(Error::NotPlain(self.requested.clone()));
        };
        let dir = Dir::open_no_symlinks(parent).map_err(io_err("open", parent))?;
        Ok((dir, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        std::fs::create_dir_all(root.join("pods/uid/volumes/v")).expect("mkdir");
        std::fs::create_dir_all(root.join("pods/uid/real")).expect("mkdir");
        std::fs::create_dir_all(root.join("outside")).expect("mkdir");
        (tmp, root)
    }

    #[test]
    fn parents_are_resolved_and_the_scope_applies_to_the_result() {
        let (_tmp, root) = tree();
        let pods = Scope::Below(root.join("pods"));
        std::os::unix::fs::symlink(root.join("pods/uid/real"), root.join("pods/uid/linked"))
            .expect("link");
        std::os::unix::fs::symlink(root.join("outside"), root.join("pods/uid/escape"))
            .expect("link");
        let t = Target::resolve(&root.join("pods/uid/linked/mount"), &pods).expect("inside");
        assert_eq!(t.resolved(), root.join("pods/uid/real/mount"));
        let t = Target::resolve(&root.join("pods/uid/volumes/v/a/b/mount"), &pods).expect("ok");
        assert_eq!(t.resolved(), root.join("pods/uid/volumes/v/a/b/mount"));
        assert!(matches!(
            Target::resolve(&root.join("pods/uid/escape/mount"), &pods),
            Err(Error::OutsidePods { .. })
        ));
        assert!(matches!(
            Target::resolve(&root.join("outside/mount"), &pods),
            Err(Error::OutsidePods { .. })
        ));
        assert!(matches!(
            Target::resolve(&root.join("pods"), &pods),
            Err(Error::OutsidePods { .. })
        ));
        assert!(matches!(
            Target::resolve(&root.join("pods/uid/../../outside/mount"), &pods),
            Err(Error::NotPlain(_))
        ));
        assert!(Target::resolve(&root.join("outside/mount"), &Scope::Anywhere).is_ok());
    }

    #[test]
    fn a_target_that_is_a_link_is_refused() {
        let (_tmp, root) = tree();
        let pods = Scope::Below(root.join("pods"));
        let link = root.join("pods/uid/volumes/v/mount");
        std::os::unix::fs::symlink(root.join("pods/uid/real"), &link).expect("link");
        assert!(matches!(
            Target::resolve(&link, &pods),
            Err(Error::Symlink(_))
        ));
        assert!(matches!(
            Target::resolve(&link, &Scope::Anywhere),
            Err(Error::Symlink(_))
        ));
    }

    #[test]
    fn a_link_swapped_in_after_resolution_is_not_followed() {
        let (_tmp, root) = tree();
        let pods = Scope::Below(root.join("pods"));
        let t = Target::resolve(&root.join("pods/uid/volumes/v/mount"), &pods).expect("ok");
        t.create().expect("create");
        std::fs::remove_dir(t.resolved()).expect("rmdir");
        std::os::unix::fs::symlink(root.join("outside"), t.resolved()).expect("swap");
        assert!(matches!(t.open(), Err(Error::Symlink(_))));
        assert!(matches!(t.create(), Err(Error::Symlink(_))));
    }
}
