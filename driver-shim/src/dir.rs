//! A directory held open by file descriptor, and the operations the shim does
//! inside it, all relative to that descriptor and none following a symbolic link.
//!
//! The shim runs as root inside directories other processes can write to (a
//! pod's volume, a local target). Working by descriptor means a link planted
//! at any name can be read as a link, replaced or removed, but never followed
//! out of the directory.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use zeroize::Zeroizing;

/// Most entries one directory listing returns: bounds memory before a listing
/// of a directory someone else filled is read.
const MAX_ENTRIES: usize = 65_536;
/// Deepest tree [`Dir::remove`] descends: each level holds one descriptor. The
/// writer never creates deeper trees (payload paths are limited to fewer levels).
pub const MAX_DEPTH: usize = 255;

/// The flags every directory is opened with: a readable directory, never a
/// link, closed on exec.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// An open directory and the path it was opened at (for messages only).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the absolute `path`, refusing a symbolic link in any component:
    /// `openat2` with `RESOLVE_NO_SYMLINKS` where the kernel has it, otherwise
    /// one `O_NOFOLLOW` open per component.
    pub fn open_no_symlinks(path: &Path) -> io::Result<Self> {
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an absolute path",
            ));
        }
        match rustix::fs::openat2(
            CWD,
            path,
            dir_flags(),
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => Ok(Self {
                fd,
                path: path.to_owned(),
            }),
            Err(rustix::io::Errno::NOSYS) => Self::open_by_components(path),
            Err(e) => Err(e.into()),
        }
    }

    /// The fallback of [`Dir::open_no_symlinks`] for kernels without `openat2`
    /// (before 5.6): from `/`, each component opened with `O_NOFOLLOW`.
    pub fn open_by_components(path: &Path) -> io::Result<Self> {
        let mut fd = rustix::fs::open("/", dir_flags(), Mode::empty())?;
        for component in path.components() {
            match component {
                Component::RootDir => {}
                Component::Normal(name) => {
                    fd = rustix::fs::openat(&fd, name, dir_flags(), Mode::empty())?;
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "path has a '.' or '..' component",
                    ));
                }
            }
        }
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// The path this directory was opened at.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `path/name`, for messages.
    #[must_use]
    pub fn display(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// The subdirectory `name` (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or
    /// `O_NOFOLLOW` on kernels without `openat2`). `name` may have several
    /// components.
    pub fn child(&self, name: &str) -> io::Result<Self> {
        let fd = match rustix::fs::openat2(
            &self.fd,
            name,
            dir_flags(),
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOSYS) => {
                let mut fd = rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())?;
                for part in name.split('/') {
                    if part.is_empty() || part == "." || part == ".." {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "not a plain relative path",
                        ));
                    }
                    fd = rustix::fs::openat(&fd, part, dir_flags(), Mode::empty())?;
                }
                fd
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            fd,
            path: self.path.join(name),
        })
    }

    /// The kind of the entry `name`, not following a link; `None` if absent.
    pub fn kind(&self, name: impl rustix::path::Arg) -> io::Result<Option<FileType>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The text of the link `name`; `None` if absent or not a link.
    pub fn read_link(&self, name: &str) -> io::Result<Option<OsString>> {
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(target) => Ok(Some(OsString::from_vec(target.into_bytes()))),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The names in this directory (without `.` and `..`), at most [`MAX_ENTRIES`].
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if names.len() == MAX_ENTRIES {
                return Err(io::Error::other(format!(
                    "{} has more than {MAX_ENTRIES} entries",
                    self.path.display()
                )));
            }
            names.push(OsString::from_vec(name.to_vec()));
        }
        Ok(names)
    }

    /// Creates the directory `name` with exactly `mode` and opens it.
    pub fn create_dir(&self, name: &str, mode: u32) -> io::Result<Self> {
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700))?;
        let dir = self.child(name)?;
        // mkdir applies the umask; set the bits through the descriptor.
        rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(mode))?;
        Ok(dir)
    }

    /// Creates the file `name` (which must not exist) with `contents` and exactly `mode`.
    pub fn create_file(&self, name: &str, mode: u32, contents: &[u8]) -> io::Result<()> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        io::Write::write_all(&mut file, contents)?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// The regular file `name` (never through a link): its permission bits and
    /// contents, if it is at most `limit` bytes; `None` if it is not a regular
    /// file or is larger.
    pub fn read_file(
        &self,
        name: &str,
        limit: u64,
    ) -> io::Result<Option<(u32, Zeroizing<Vec<u8>>)>> {
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        if size > limit {
            return Ok(None);
        }
        let mut contents = Zeroizing::new(Vec::with_capacity(
            usize::try_from(size).unwrap_or_default(),
        ));
        let file = std::fs::File::from(fd);
        io::Read::read_to_end(&mut io::Read::take(&file, limit), &mut contents)?;
        Ok(Some((stat.st_mode & 0o7777, contents)))
    }

    /// Creates the link `name` holding `target`.
    pub fn symlink(&self, target: &str, name: &str) -> io::Result<()> {
        rustix::fs::symlinkat(target, &self.fd, name).map_err(Into::into)
    }

    /// Renames `from` to `to` within this directory, replacing `to` (unless `to`
    /// is a directory).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(Into::into)
    }

    /// Removes the entry `name` whatever it is, never following a link: a link
    /// or file is unlinked, a directory is emptied depth-first and removed. A
    /// directory on another file system (a mount point) is refused, not entered.
    /// Absent is success.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        self.remove_at_depth(name, 0)
    }

    fn remove_at_depth(&self, name: &OsStr, depth: usize) -> io::Result<()> {
        match self.kind(name)? {
            None => Ok(()),
            Some(FileType::Directory) => {
                if depth >= MAX_DEPTH {
                    return Err(io::Error::other(format!(
                        "{} is nested more than {MAX_DEPTH} levels deep",
                        self.display(name).display()
                    )));
                }
                let child = Self {
                    fd: rustix::fs::openat(&self.fd, name, dir_flags(), Mode::empty())?,
                    path: self.display(name),
                };
                if rustix::fs::fstat(&child.fd)?.st_dev != rustix::fs::fstat(&self.fd)?.st_dev {
                    return Err(io::Error::other(format!(
                        "{} is a mount point; not removed",
                        child.path.display()
                    )));
                }
                for entry in child.names()? {
                    child.remove_at_depth(&entry, depth + 1)?;
                }
                drop(child);
                ignore_absent(rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR))
            }
            Some(_) => ignore_absent(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())),
        }
    }

    /// Removes the empty directory `name`.
    pub fn remove_empty_dir(&self, name: &OsStr) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(Into::into)
    }

    /// Unlinks the link or file `name` (not a directory). Absent is success.
    pub fn unlink(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        ignore_absent(rustix::fs::unlinkat(
            &self.fd,
            name.as_ref(),
            AtFlags::empty(),
        ))
    }
}

fn ignore_absent(result: rustix::io::Result<()>) -> io::Result<()> {
    match result {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        other => other.map_err(Into::into),
    }
}

/// `name` as UTF-8 bytes, if it is UTF-8.
pub fn utf8(name: &OsStr) -> Option<&str> {
    std::str::from_utf8(name.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_anywhere_in_the_path_is_refused_by_both_openers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("sub")).expect("mkdir");
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).expect("link");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        for open in [Dir::open_no_symlinks, Dir::open_by_components] {
            assert!(open(&root.join("real/sub")).is_ok());
            assert!(open(&root.join("link/sub")).is_err());
            assert!(open(&root.join("link")).is_err());
        }
        let dir = Dir::open_no_symlinks(&root).expect("open");
        assert!(dir.child("real/sub").is_ok());
        assert!(dir.child("link").is_err());
        assert!(dir.child("../x").is_err());
    }

    #[test]
    fn remove_never_follows_a_link() {
        let tmp = tempfile::tempdir().expect("tmp");
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).expect("mkdir");
        std::fs::write(victim.join("keep"), b"x").expect("write");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(work.join("tree/deeper")).expect("mkdir");
        std::os::unix::fs::symlink(&victim, work.join("tree/deeper/out")).expect("link");
        std::os::unix::fs::symlink(&victim, work.join("top")).expect("link");
        let dir = Dir::open_no_symlinks(&std::fs::canonicalize(&work).expect("c")).expect("open");
        dir.remove(OsStr::new("tree")).expect("remove tree");
        dir.remove(OsStr::new("top")).expect("remove link");
        dir.remove(OsStr::new("absent")).expect("absent is fine");
        assert_eq!(dir.names().expect("ls").len(), 0);
        assert_eq!(std::fs::read(victim.join("keep")).expect("kept"), b"x");
    }

    #[test]
    fn read_file_does_not_follow_links_and_respects_the_limit() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("f"), b"12345").expect("write");
        std::os::unix::fs::symlink(tmp.path().join("f"), tmp.path().join("l")).expect("link");
        let dir =
            Dir::open_no_symlinks(&std::fs::canonicalize(tmp.path()).expect("c")).expect("open");
        let (_, bytes) = dir.read_file("f", 5).expect("read").expect("regular");
        assert_eq!(&*bytes, b"12345");
        assert!(dir.read_file("f", 4).expect("read").is_none());
        assert!(dir.read_file("l", 5).expect("read").is_none());
    }
}
