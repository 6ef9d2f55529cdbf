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

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Component, Path, PathBuf};

use zeroize::Zeroizing;

/// The symlink naming the current data directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
/// Longest path and component the driver accepts.
const MAX_PATH: usize = 4096;
const MAX_COMPONENT: usize = 255;

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

/// Writes `payloads` into `target` atomically; nothing changes if they equal what
/// is there.
pub fn write(target: &Path, payloads: &[Payload]) -> Result<Outcome, Error> {
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

    let data_link = target.join(DATA_DIR);
    let old_dir = fs::read_link(&data_link).ok();
    if let Some(old) = &old_dir
        && same_content(&target.join(old), &wanted)?
    {
        return Ok(Outcome::Unchanged);
    }

    // 1. A fresh directory with every file.
    let new_name = fresh_dir_name();
    let new_dir = target.join(&new_name);
    fs::create_dir(&new_dir).map_err(io_err("create", &new_dir))?;
    fs::set_permissions(&new_dir, fs::Permissions::from_mode(0o755))
        .map_err(io_err("chmod", &new_dir))?;
    let written = (|| {
        for (path, payload) in &wanted {
            let file = new_dir.join(path);
            if let Some(parent) = file.parent() {
                create_dirs(&new_dir, parent)?;
            }
            fs::write(&file, &*payload.contents).map_err(io_err("write", &file))?;
            fs::set_permissions(&file, fs::Permissions::from_mode(payload.mode))
                .map_err(io_err("chmod", &file))?;
        }
        Ok::<(), Error>(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&new_dir);
        return Err(e);
    }

    // 2. Point ..data at it with one rename: readers see the old set or the new one.
    let tmp_link = target.join(DATA_DIR_TMP);
    let _ = fs::remove_file(&tmp_link);
    symlink(&new_name, &tmp_link).map_err(io_err("symlink", &tmp_link))?;
    fs::rename(&tmp_link, &data_link).map_err(io_err("rename", &data_link))?;

    // 3. Top-level names: add the new ones, drop the stale ones.
    let new_tops: std::collections::BTreeSet<&str> = wanted
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    for top in &new_tops {
        let link = target.join(top);
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => continue,
            Ok(meta) if meta.is_dir() => {
                fs::remove_dir_all(&link).map_err(io_err("remove", &link))?
            }
            Ok(_) => fs::remove_file(&link).map_err(io_err("remove", &link))?,
            Err(_) => {}
        }
        symlink(Path::new(DATA_DIR).join(top), &link).map_err(io_err("symlink", &link))?;
    }
    for entry in fs::read_dir(target).map_err(io_err("list", target))? {
        let entry = entry.map_err(io_err("list", target))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") || new_tops.contains(name) {
            continue;
        }
        if entry.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
            let link = entry.path();
            if fs::read_link(&link)
                .map(|t| t.starts_with(DATA_DIR))
                .unwrap_or(false)
            {
                fs::remove_file(&link).map_err(io_err("remove", &link))?;
            }
        }
    }

    // 4. The old directory goes last.
    if let Some(old) = old_dir {
        let old = target.join(old);
        if old != new_dir {
            let _ = fs::remove_dir_all(&old);
        }
    }
    Ok(Outcome::Written)
}

fn create_dirs(root: &Path, dir: &Path) -> Result<(), Error> {
    if dir == root || dir.exists() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(root, parent)?;
    }
    fs::create_dir(dir).map_err(io_err("create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", dir))
}

/// `..YYYY_MM_DD_HH_MM_SS.<random>`, as kubelet names its data directories.
fn fresh_dir_name() -> OsString {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = stamp
        .trim_end_matches('Z')
        .chars()
        .map(|c| if c.is_ascii_digit() { c } else { '_' })
        .collect();
    let suffix: u32 = rand::random();
    OsString::from(format!("..{stamp}.{suffix:010}"))
}

/// Whether `dir` holds exactly `wanted` (paths, bytes, modes).
fn same_content(dir: &Path, wanted: &BTreeMap<&str, &Payload>) -> Result<bool, Error> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(false);
    }
    collect(dir, dir, &mut found)?;
    if found.len() != wanted.len() {
        return Ok(false);
    }
    for (path, file) in found {
        let Some(payload) = wanted.get(path.as_str()) else {
            return Ok(false);
        };
        let meta = fs::symlink_metadata(&file).map_err(io_err("stat", &file))?;
        if meta.permissions().mode() & 0o777 != payload.mode {
            return Ok(false);
        }
        if meta.len() != payload.contents.len() as u64 {
            return Ok(false);
        }
        let bytes = Zeroizing::new(fs::read(&file).map_err(io_err("read", &file))?);
        if *bytes != *payload.contents {
            return Ok(false);
        }
    }
    Ok(true)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), Error> {
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("stat", &path))?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push((relative.to_string_lossy().into_owned(), path));
        }
    }
    Ok(())
}

/// The files currently visible in `target` (relative path -> path of the data file).
pub fn current_files(target: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let Ok(dir) = fs::read_link(target.join(DATA_DIR)) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    collect(&target.join(&dir), &target.join(&dir), &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(path: &str, mode: u32, contents: &[u8]) -> Payload {
        Payload {
            path: path.to_owned(),
            mode,
            contents: Zeroizing::new(contents.to_vec()),
        }
    }

    fn read(target: &Path, path: &str) -> Vec<u8> {
        fs::read(target.join(path)).expect("readable")
    }

    #[test]
    fn writes_the_kubelet_layout_with_exact_modes() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = dir.path();
        let out = write(
            t,
            &[
                payload("a", 0o644, b"one"),
                payload("dir/b", 0o400, b"two"),
                payload("z", 0, b""),
            ],
        )
        .expect("ok");
        assert_eq!(out, Outcome::Written);
        assert_eq!(read(t, "a"), b"one");
        assert_eq!(read(t, "dir/b"), b"two");
        let data = fs::read_link(t.join(DATA_DIR)).expect("..data");
        assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
        assert_eq!(
            fs::read_link(t.join("a")).expect("link"),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(t.join("dir")).expect("link"),
            Path::new("..data/dir")
        );
        let mode = |p: &str| fs::metadata(t.join(p)).expect("meta").permissions().mode() & 0o777;
        assert_eq!((mode("a"), mode("dir/b"), mode("z")), (0o644, 0o400, 0));
    }

    #[test]
    fn identical_content_writes_nothing_and_changes_swap() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = dir.path();
        write(
            t,
            &[payload("a", 0o644, b"one"), payload("old", 0o644, b"x")],
        )
        .expect("ok");
        let first = fs::read_link(t.join(DATA_DIR)).expect("data");
        assert_eq!(
            write(
                t,
                &[payload("a", 0o644, b"one"), payload("old", 0o644, b"x")]
            )
            .expect("ok"),
            Outcome::Unchanged
        );
        assert_eq!(fs::read_link(t.join(DATA_DIR)).expect("data"), first);
        assert_eq!(
            write(
                t,
                &[payload("a", 0o600, b"one"), payload("old", 0o644, b"x")]
            )
            .expect("ok"),
            Outcome::Written,
            "mode change"
        );
        assert_eq!(
            write(t, &[payload("a", 0o600, b"two")]).expect("ok"),
            Outcome::Written
        );
        assert_eq!(read(t, "a"), b"two");
        assert!(
            fs::symlink_metadata(t.join("old")).is_err(),
            "stale names are removed"
        );
        assert!(
            !t.join(&first).exists(),
            "the old data directory is removed"
        );
        let entries: Vec<_> = fs::read_dir(t)
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(entries.len(), 3, "a, ..data and one data dir: {entries:?}");
    }

    #[test]
    fn bad_paths_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tmp");
        for bad in [
            "",
            "/abs",
            "../x",
            "a/../b",
            "..data",
            "a//b",
            "./a",
            "a/.",
            &"x".repeat(256),
        ] {
            assert!(
                matches!(
                    write(dir.path(), &[payload(bad, 0o644, b"v")]),
                    Err(Error::InvalidPath { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            write(
                dir.path(),
                &[payload("a", 0o644, b"1"), payload("a", 0o644, b"2")]
            ),
            Err(Error::Duplicate(_))
        ));
        assert!(matches!(
            write(
                dir.path(),
                &[payload("a", 0o644, b"1"), payload("a/b", 0o644, b"2")]
            ),
            Err(Error::InvalidPath { .. })
        ));
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn stray_files_colliding_with_new_names_are_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("a"), b"left by someone").expect("stray");
        write(dir.path(), &[payload("a", 0o644, b"ours")]).expect("ok");
        assert!(
            fs::symlink_metadata(dir.path().join("a"))
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        assert_eq!(read(dir.path(), "a"), b"ours");
    }

    #[test]
    fn data_dir_names_follow_kubelet() {
        let name = fresh_dir_name().to_string_lossy().into_owned();
        let (stamp, suffix) = name
            .trim_start_matches("..")
            .split_once('.')
            .expect("two parts");
        assert_eq!(stamp.len(), "2026_11_22_10_09_42".len(), "{name}");
        assert!(
            stamp.chars().all(|c| c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        assert!(suffix.chars().all(|c| c.is_ascii_digit()), "{name}");
    }
}
