//! Writing a volume's files the way kubelet's AtomicWriter does, so readers never
//! see a half-written set:
//!
//! ```text
//! <target>/..2026_11_22_10_00_00.1234567/   the files (a fresh directory per change)
//! <target>/..data -> ..2026_11_22_10_00_00.1234567   swapped by rename: the atomic step
//! <target>/<name> -> ..data/<name>          one symlink per top-level name
//! ```
//!
//! Identical content (same paths, bytes and modes) writes nothing.
//!
//! The writer works inside the target through a directory descriptor and never
//! follows a link: an entry is read as what it is. It removes only what it
//! creates (directories named `..<timestamp>.<random>`, its temporary links, and
//! top-level links of the form `..data/<name>`), and replaces whatever stands at
//! a name it needs (`..data`, an object's name) with its own entry.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

use rustix::fs::FileType;
use zeroize::Zeroizing;

use crate::dir::{self, Dir};

mod read_back;

pub use read_back::{CurrentFile, current_dir_name, current_files, has_content};
use read_back::{current_dir, same_content};

/// The symlink naming the current data directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
/// Where a top-level link is made before it is renamed over its name.
const LINK_TMP: &str = "..link_tmp";
/// Longest path and component the driver accepts.
const MAX_PATH: usize = 4096;
const MAX_COMPONENT: usize = 255;
/// Most components in one payload path: the writer's removal descends one
/// descriptor per level, and kubelet's paths need a handful.
const MAX_COMPONENTS: usize = dir::MAX_DEPTH - 1;
/// Most bytes [`current_files`] reads back: more than a volume's tmpfs
/// (`--tmpfs-size`, 16Mi by default) or a provider response (4 MiB by default)
/// holds, and a bound on a directory someone else filled.
pub const MAX_READ_BACK: u64 = 64 << 20;
/// One file to write.
pub struct Payload {
    /// Relative path.
    pub path: String,
    /// Exact permission bits (0 means 0000).
    pub mode: u32,
    /// Contents (zeroized on drop).
    pub contents: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Payload({:?}, {:o}, <redacted {} bytes>)",
            self.path,
            self.mode,
            self.contents.len()
        )
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Files were swapped in.
    Written,
    /// The content was identical; nothing was touched.
    Unchanged,
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path breaks the rules.
    #[error("file path {path:?} {problem}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two payloads name the same file.
    #[error("file path {0:?} is given twice")]
    Duplicate(String),
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

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { op, path, source }
}

/// Checks a payload path as the driver does (relative, clean, no `..`, bounded
/// lengths), and also refuses components starting with `..`, which would collide
/// with the writer's own `..data` entries.
pub fn validate_path(path: &str) -> Result<(), Error> {
    let bad = |problem| {
        Err(Error::InvalidPath {
            path: path.to_owned(),
            problem,
        })
    };
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > MAX_PATH {
        return bad("is longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return bad("must be relative");
    }
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    if path.split('/').count() > MAX_COMPONENTS {
        return bad("has too many components");
    }
    for component in path.split('/') {
        if component.is_empty() || component == "." {
            return bad("is not clean (empty or '.' component)");
        }
        if component.starts_with("..") {
            return bad("has a component starting with '..'");
        }
        if component.len() > MAX_COMPONENT {
            return bad("has a component longer than 255 bytes");
        }
    }
    if Path::new(path)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return bad("is not a plain relative path");
    }
    Ok(())
}

/// Writes `payloads` into the open target `dir` atomically; nothing changes if
/// they equal what is there.
pub fn write(dir: &Dir, payloads: &[Payload]) -> Result<Outcome, Error> {
    let wanted = check(payloads)?;
    let tops: BTreeSet<&str> = wanted
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    if let Some(current) = current_dir(dir)?
        && same_content(&current, &wanted)?
        && links_in_place(dir, &tops)?
    {
        return Ok(Outcome::Unchanged);
    }

    // 1. A fresh directory with every file.
    let new_name = fresh_dir_name();
    let new_dir = dir
        .create_dir(&new_name, 0o755)
        .map_err(io_err("create", &dir.display(&new_name)))?;
    if let Err(e) = fill(&new_dir, &wanted) {
        let _ = dir.remove(OsStr::new(&new_name));
        return Err(e);
    }

    // 2. Point ..data at it with one rename: readers see the old set or the new one.
    replace_with_link(dir, DATA_DIR_TMP, &new_name, DATA_DIR)?;

    // 3. Top-level names: ours replace whatever stands there; stale ones of ours go.
    for top in &tops {
        let link = format!("{DATA_DIR}/{top}");
        if dir
            .read_link(top)
            .map_err(io_err("read", &dir.display(top)))?
            != Some(OsString::from(&link))
        {
            replace_with_link(dir, LINK_TMP, &link, top)?;
        }
    }
    let names = dir.names().map_err(io_err("list", dir.path()))?;
    for name in &names {
        let Some(name) = dir::utf8(name) else {
            continue;
        };
        if name.starts_with("..") || tops.contains(name) {
            continue;
        }
        if is_own_link(dir, name)? {
            dir.unlink(name)
                .map_err(io_err("remove", &dir.display(name)))?;
        }
    }

    // 4. The old directories go last: every one of ours but the new one.
    for name in &names {
        if dir::utf8(name).is_some_and(|n| is_own_dir_name(n) && n != new_name)
            && dir.kind(name).ok().flatten() == Some(FileType::Directory)
        {
            let _ = dir.remove(name);
        }
    }
    Ok(Outcome::Written)
}

/// Validates payloads into a map by path.
fn check(payloads: &[Payload]) -> Result<BTreeMap<&str, &Payload>, Error> {
    let mut wanted: BTreeMap<&str, &Payload> = BTreeMap::new();
    for p in payloads {
        validate_path(&p.path)?;
        if wanted.insert(p.path.as_str(), p).is_some() {
            return Err(Error::Duplicate(p.path.clone()));
        }
        if p.mode > 0o777 {
            return Err(Error::InvalidPath {
                path: p.path.clone(),
                problem: "has a mode beyond 0777",
            });
        }
    }
    // A file may not also be a directory of another file.
    for path in wanted.keys() {
        let mut prefix = *path;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if wanted.contains_key(parent) {
                return Err(Error::InvalidPath {
                    path: (*path).to_owned(),
                    problem: "lies under another file",
                });
            }
            prefix = parent;
        }
    }
    Ok(wanted)
}

/// Writes every file into the fresh directory `root`.
fn fill(root: &Dir, wanted: &BTreeMap<&str, &Payload>) -> Result<(), Error> {
    for (path, payload) in wanted {
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (Some(parent), name),
            None => (None, *path),
        };
        let opened;
        let into = match parent {
            Some(parent) => {
                opened = create_dirs(root, parent)?;
                &opened
            }
            None => root,
        };
        into.create_file(name, payload.mode, &payload.contents)
            .map_err(io_err("write", &root.display(path)))?;
    }
    Ok(())
}

/// Opens `relative` below `root`, creating missing directories (0755).
fn create_dirs(root: &Dir, relative: &str) -> Result<Dir, Error> {
    let mut here: Option<Dir> = None;
    for part in relative.split('/') {
        let at = here.as_ref().unwrap_or(root);
        let next = match at.kind(part).map_err(io_err("stat", &at.display(part)))? {
            Some(_) => at.child(part),
            None => at.create_dir(part, 0o755),
        }
        .map_err(io_err("create", &at.display(part)))?;
        here = Some(next);
    }
    here.ok_or_else(|| Error::InvalidPath {
        path: relative.to_owned(),
        problem: "is empty",
    })
}

/// Makes `name` a link holding `link`: created at `tmp`, then renamed over
/// `name`. A directory standing at `name` (planted: the writer only ever puts
/// links there) is removed first, without following anything in it.
fn replace_with_link(dir: &Dir, tmp: &str, link: &str, name: &str) -> Result<(), Error> {
    let tmp_path = dir.display(tmp);
    dir.remove(OsStr::new(tmp))
        .map_err(io_err("remove", &tmp_path))?;
    dir.symlink(link, tmp)
        .map_err(io_err("symlink", &tmp_path))?;
    if dir.kind(name).map_err(io_err("stat", &dir.display(name)))? == Some(FileType::Directory) {
        dir.remove(OsStr::new(name))
            .map_err(io_err("remove", &dir.display(name)))?;
    }
    dir.rename(tmp, name)
        .map_err(io_err("rename", &dir.display(name)))
}

/// Whether `name` is a link the writer made: exactly `..data/<name>`.
fn is_own_link(dir: &Dir, name: &str) -> Result<bool, Error> {
    Ok(dir
        .read_link(name)
        .map_err(io_err("read", &dir.display(name)))?
        .is_some_and(|target| target == OsString::from(format!("{DATA_DIR}/{name}"))))
}

/// Whether every top-level name is the writer's link.
fn links_in_place(dir: &Dir, tops: &BTreeSet<&str>) -> Result<bool, Error> {
    for top in tops {
        if !is_own_link(dir, top)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `..YYYY_MM_DD_HH_MM_SS.<random>`, as kubelet names its data directories.
fn fresh_dir_name() -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = stamp
        .trim_end_matches('Z')
        .chars()
        .map(|c| if c.is_ascii_digit() { c } else { '_' })
        .collect();
    let suffix: u32 = rand::random();
    format!("..{stamp}.{suffix:010}")
}

/// Whether `name` has the form [`fresh_dir_name`] gives.
fn is_own_dir_name(name: &str) -> bool {
    let Some((stamp, suffix)) = name
        .strip_prefix("..")
        .and_then(|rest| rest.split_once('.'))
    else {
        return false;
    };
    let pattern = "dddd_dd_dd_dd_dd_dd";
    stamp.len() == pattern.len()
        && stamp.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        })
        && suffix.len() == 10
        && suffix.bytes().all(|c| c.is_ascii_digit())
}

/// Removes what the writer created in `dir` (its data directories, `..data`,
/// its temporary and top-level links) and nothing else. Returns whether the
/// directory is empty afterwards.
pub fn clear(dir: &Dir) -> Result<bool, Error> {
    let names = dir.names().map_err(io_err("list", dir.path()))?;
    let mut left = 0;
    for name in &names {
        let own = match dir::utf8(name) {
            Some(n @ (DATA_DIR | DATA_DIR_TMP | LINK_TMP)) => {
                dir.kind(n).map_err(io_err("stat", &dir.display(n)))? == Some(FileType::Symlink)
            }
            Some(n) if is_own_dir_name(n) => {
                dir.kind(n).map_err(io_err("stat", &dir.display(n)))? == Some(FileType::Directory)
            }
            Some(n) => is_own_link(dir, n)?,
            None => false,
        };
        if own {
            dir.remove(name)
                .map_err(io_err("remove", &dir.display(name)))?;
        } else {
            left += 1;
        }
    }
    Ok(left == 0)
}

#[cfg(test)]
mod tests;
