//! Reading back what the writer wrote: the current data directory and its
//! files, through descriptors, bounded, treating anything not the writer's as
//! no content.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rustix::fs::FileType;
use zeroize::Zeroizing;

use super::{DATA_DIR, Error, MAX_COMPONENTS, MAX_READ_BACK, Payload, io_err, is_own_dir_name};
use crate::dir::{self, Dir};

/// The data directory `..data` names, if it is one of the writer's: a link to
/// a name of the writer's form that is a real directory. Anything else at
/// `..data` (a planted link, a directory) counts as no current content.
pub(super) fn current_dir(dir: &Dir) -> Result<Option<Dir>, Error> {
    let Some(target) = dir
        .read_link(DATA_DIR)
        .map_err(io_err("read", &dir.display(DATA_DIR)))?
    else {
        return Ok(None);
    };
    let Some(name) = dir::utf8(&target).filter(|n| is_own_dir_name(n)) else {
        return Ok(None);
    };
    if dir.kind(name).map_err(io_err("stat", &dir.display(name)))? != Some(FileType::Directory) {
        return Ok(None);
    }
    dir.child(name)
        .map(Some)
        .map_err(io_err("open", &dir.display(name)))
}

/// One file of the current content.
pub struct CurrentFile {
    /// Relative path.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Contents (zeroized on drop).
    pub contents: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for CurrentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CurrentFile({:?}, {:o}, <redacted {} bytes>)",
            self.path,
            self.mode,
            self.contents.len()
        )
    }
}

/// Reads the tree under `root`: regular files only (a link or special file makes
/// `None`, as it is not the writer's), at most `budget` bytes in all.
fn read_tree(root: &Dir, budget: &mut u64) -> Result<Option<Vec<CurrentFile>>, Error> {
    let mut out = Vec::new();
    let mut pending: Vec<String> = vec![String::new()];
    while let Some(relative) = pending.pop() {
        let here;
        let at = if relative.is_empty() {
            root
        } else {
            here = root
                .child(&relative)
                .map_err(io_err("open", &root.display(&relative)))?;
            &here
        };
        for name in at.names().map_err(io_err("list", at.path()))? {
            let Some(name) = dir::utf8(&name) else {
                return Ok(None);
            };
            let path = if relative.is_empty() {
                name.to_owned()
            } else {
                format!("{relative}/{name}")
            };
            if path.split('/').count() > MAX_COMPONENTS {
                return Ok(None);
            }
            match at.kind(name).map_err(io_err("stat", &at.display(name)))? {
                Some(FileType::Directory) => pending.push(path),
                Some(FileType::RegularFile) => {
                    let Some((mode, contents)) = at
                        .read_file(name, *budget)
                        .map_err(io_err("read", &at.display(name)))?
                    else {
                        return Ok(None);
                    };
                    *budget -= contents.len() as u64;
                    out.push(CurrentFile {
                        path,
                        mode: mode & 0o777,
                        contents,
                    });
                }
                _ => return Ok(None),
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(out))
}

/// Whether `current` holds exactly `wanted` (paths, bytes, modes).
pub(super) fn same_content(
    current: &Dir,
    wanted: &BTreeMap<&str, &Payload>,
) -> Result<bool, Error> {
    let mut budget: u64 = wanted.values().map(|p| p.contents.len() as u64).sum();
    let Some(found) = read_tree(current, &mut budget)? else {
        return Ok(false);
    };
    Ok(found.len() == wanted.len()
        && found.iter().all(|file| {
            wanted
                .get(file.path.as_str())
                .is_some_and(|p| p.mode == file.mode && *p.contents == *file.contents)
        }))
}

/// Whether `dir` holds content of the writer's (`..data` naming one of its directories).
pub fn has_content(dir: &Dir) -> Result<bool, Error> {
    Ok(current_dir(dir)?.is_some())
}

/// Where `..data` points, if it is the writer's.
pub fn current_dir_name(dir: &Dir) -> Result<Option<PathBuf>, Error> {
    Ok(current_dir(dir)?.map(|d| PathBuf::from(d.path().file_name().unwrap_or_default())))
}

/// The files a reader of `dir` sees, read through descriptors from the writer's
/// current data directory only, at most [`MAX_READ_BACK`] bytes. Anything not
/// the writer's (a planted `..data`, a link inside the data directory) yields
/// no files.
pub fn current_files(dir: &Dir) -> Result<Vec<CurrentFile>, Error> {
    let Some(current) = current_dir(dir)? else {
        return Ok(Vec::new());
    };
    let mut budget = MAX_READ_BACK;
    Ok(read_tree(&current, &mut budget)?.unwrap_or_default())
}
