//! `ObjectPath`: a file path below the mount that is always safe to write.
//!
//! The rules are the driver's (relative, clean, no `..`, components of at most 255
//! bytes, at most 4096 bytes in all) plus two of our own: no component may start
//! with `..` (the atomic writer's `..data` and `..<timestamp>` live there) and no
//! NUL byte or backslash may appear.

use std::fmt;

/// Longest path the driver accepts.
const MAX_PATH_BYTES: usize = 4096;
/// Longest single component (NAME_MAX on Linux).
const MAX_COMPONENT_BYTES: usize = 255;

/// A relative, normalised path below the mount root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectPath(String);

/// Why a path is not safe to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("is empty")]
    Empty,
    /// The path starts with `/`.
    #[error("must be relative, not start with '/'")]
    Absolute,
    /// `a//b` or a trailing `/`.
    #[error("has an empty path component ('//' or a trailing '/')")]
    EmptyComponent,
    /// `.` as a component.
    #[error("has a '.' component")]
    Dot,
    /// A component that is `..` or starts with it.
    #[error("has a component starting with '..'")]
    DotDot,
    /// A NUL byte.
    #[error("contains a NUL byte")]
    Nul,
    /// A backslash (a Windows separator, never meant literally).
    #[error("contains a backslash")]
    Backslash,
    /// A component over 255 bytes.
    #[error("has a component of {0} bytes (at most 255)")]
    ComponentTooLong(usize),
    /// The path is over 4096 bytes.
    #[error("is {0} bytes long (at most 4096)")]
    TooLong(usize),
}

impl ObjectPath {
    /// Checks `raw` and returns it as a safe path.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(raw.len()));
        }
        if raw.starts_with('/') {
            return Err(PathError::Absolute);
        }
        if raw.contains('\0') {
            return Err(PathError::Nul);
        }
        if raw.contains('\\') {
            return Err(PathError::Backslash);
        }
        for component in raw.split('/') {
            match component {
                "" => return Err(PathError::EmptyComponent),
                "." => return Err(PathError::Dot),
                c if c.starts_with("..") => return Err(PathError::DotDot),
                c if c.len() > MAX_COMPONENT_BYTES => {
                    return Err(PathError::ComponentTooLong(c.len()));
                }
                _ => {}
            }
        }
        Ok(Self(raw.to_owned()))
    }

    /// The path as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_clean_relative_paths() {
        for ok in ["a", "db-creds", "dir/file.pem", "a/b/c", ".hidden", "a..b", "x."] {
            assert_eq!(ObjectPath::parse(ok).map(|p| p.as_str().to_owned()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn rejects_unsafe_paths() {
        let long_component = "x".repeat(256);
        let long_path = ["y"; 2100].join("/");
        let cases: &[(&str, PathError)] = &[
            ("", PathError::Empty),
            ("/abs", PathError::Absolute),
            ("../x", PathError::DotDot),
            ("a/../x", PathError::DotDot),
            ("..data", PathError::DotDot),
            ("a/..2026_01_01", PathError::DotDot),
            ("./a", PathError::Dot),
            ("a//b", PathError::EmptyComponent),
            ("a/", PathError::EmptyComponent),
            ("a\0b", PathError::Nul),
            ("a\\b", PathError::Backslash),
            (&long_component, PathError::ComponentTooLong(256)),
            (&long_path, PathError::TooLong(long_path.len())),
        ];
        for (raw, want) in cases {
            assert_eq!(ObjectPath::parse(raw).as_ref().err(), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn component_of_exactly_255_bytes_is_fine() {
        assert!(ObjectPath::parse(&"z".repeat(255)).is_ok());
    }
}
