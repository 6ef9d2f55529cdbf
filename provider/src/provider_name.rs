//! `ProviderName`: a socket name the driver can address.

use std::fmt;
use std::str::FromStr;

/// Longest name the driver accepts.
const MAX_LEN: usize = 30;

/// A provider name matching `^[a-zA-Z0-9_-]{1,30}$` (the driver's rule, minus the empty name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderName(String);

/// The name breaks the driver's rule.
#[derive(Debug, thiserror::Error)]
#[error("provider name {0:?} must be 1 to 30 characters of a-z, A-Z, 0-9, '_' or '-'")]
pub struct InvalidName(String);

impl FromStr for ProviderName {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(Self(s.to_owned())) } else { Err(InvalidName(s.to_owned())) }
    }
}

impl ProviderName {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The socket file name, `<name>.sock`.
    #[must_use]
    pub fn socket_file(&self) -> String {
        format!("{}.sock", self.0)
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["courier", "vault", "openbao", "a", "A_b-9", &"x".repeat(30)] {
            assert!(ok.parse::<ProviderName>().is_ok(), "{ok}");
        }
        for bad in ["", "a.b", "a/b", "../x", "é", &"x".repeat(31), "a b"] {
            assert!(bad.parse::<ProviderName>().is_err(), "{bad}");
        }
    }
}
