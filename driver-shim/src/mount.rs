//! The volume's tmpfs, recognised by identity rather than by path: a target is
//! mounted when the directory the shim opened is the root of a mount
//! (`statx` `STATX_ATTR_MOUNT_ROOT`, or a device differing from its parent's on
//! kernels without it), and that mount is the shim's when it is a tmpfs.

use std::io;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};

use crate::dir::Dir;

/// `TMPFS_MAGIC` from `linux/magic.h`.
const TMPFS_MAGIC: i128 = 0x0102_1994;
/// Most tmpfs layers one unpublish removes from a target: older versions stacked
/// one per republish; a bound keeps a target that keeps being remounted from
/// holding the call forever.
pub const MAX_STACKED_MOUNTS: usize = 1024;

/// What is mounted at a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The directory is not the root of a mount.
    NotMounted,
    /// It is the root of a tmpfs: the shim's volume.
    Tmpfs,
    /// It is the root of another file system, which the shim never mounts.
    Other {
        /// `statfs` `f_type`.
        magic: i128,
    },
}

/// What is mounted at the open directory `dir`.
pub fn state(dir: &Dir) -> io::Result<State> {
    let stx = rustix::fs::statx(
        dir.fd(),
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    let root = if stx
        .stx_attributes_mask
        .contains(StatxAttributes::MOUNT_ROOT)
    {
        stx.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
    } else {
        // Before Linux 5.8: a mount root sits on another device than its parent.
        let parent = rustix::fs::statat(dir.fd(), "..", AtFlags::empty())?;
        (stx.stx_dev_major, stx.stx_dev_minor)
            != (
                rustix::fs::major(parent.st_dev),
                rustix::fs::minor(parent.st_dev),
            )
    };
    if !root {
        return Ok(State::NotMounted);
    }
    let magic = i128::from(rustix::fs::fstatfs(dir.fd())?.f_type);
    Ok(if magic == TMPFS_MAGIC {
        State::Tmpfs
    } else {
        State::Other { magic }
    })
}

/// Mounts a tmpfs on exactly the directory `dir` (through its descriptor, so no
/// path is resolved again): no suid, no devices, no exec, size-limited. Reopen
/// the target afterwards to see the tmpfs.
pub fn mount_tmpfs(dir: &Dir, size_bytes: Option<u64>) -> nix::Result<()> {
    let mut data = String::from("mode=0755");
    if let Some(size) = size_bytes {
        data.push_str(&format!(",size={size}"));
    }
    let at = format!("/proc/self/fd/{}", dir.fd().as_raw_fd());
    mount(
        Some("tmpfs"),
        at.as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
}

/// Unmounts the top mount at `path` (a path without symbolic links, which the
/// caller has just found to be the shim's tmpfs), lazily if it is busy; the last
/// component is not followed.
pub fn unmount(path: &Path) -> nix::Result<()> {
    match umount2(path, MntFlags::UMOUNT_NOFOLLOW) {
        Err(nix::errno::Errno::EBUSY) => {
            umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
        }
        other => other,
    }
}

/// Why a size does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No leading number.
    #[error("{0:?} is not a size such as 16Mi")]
    NotANumber(String),
    /// A suffix we do not know.
    #[error("{text:?}: unknown unit {unit:?} (use Ki, Mi or Gi)")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The suffix.
        unit: String,
    },
    /// Over `u64::MAX` bytes.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// `16Mi`, `512Ki`, `1G`, or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::NotANumber(text.to_owned()))?;
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        _ => {
            return Err(SizeError::UnknownUnit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| SizeError::TooLarge(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16Mi"), Ok(16 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5Xi").is_err());
    }

    #[test]
    fn root_is_a_mount_root_and_a_plain_directory_is_not() {
        let root = Dir::open_no_symlinks(Path::new("/")).expect("open /");
        assert_ne!(state(&root).expect("state"), State::NotMounted);
        let tmp = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("tmp");
        let dir =
            Dir::open_no_symlinks(&std::fs::canonicalize(tmp.path()).expect("c")).expect("open");
        assert_eq!(state(&dir).expect("state"), State::NotMounted);
    }
}
