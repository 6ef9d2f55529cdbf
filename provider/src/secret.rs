//! Opaque holders for secret material: tokens, secret values and file contents.
//!
//! None of them derives `Debug`; their `Debug` prints only a length. The bytes are
//! zeroized when dropped, and reading them takes an explicit `expose_secret()`.

use std::fmt;

use zeroize::Zeroizing;

/// Secret bytes (a fetched value, a file's contents).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are zeroized when this value is dropped.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes. Callers must not log or format them.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// A copy of the bytes for handing over to gRPC (which owns and frees its buffers).
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// Number of bytes held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no bytes are held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A secret string (a service-account JWT, a Vault token).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `value`; it is zeroized when this value is dropped.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret text. Callers must not log or format it.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let bytes = SecretBytes::new(b"hunter2-bytes".to_vec());
        let text = SecretString::new("hunter2-text".to_owned());
        let shown = format!("{bytes:?} {text:?} {bytes:#?} {text:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted 13 bytes>"), "{shown}");
        assert!(shown.contains("<redacted 12 bytes>"), "{shown}");
    }

    #[test]
    fn expose_returns_the_value() {
        assert_eq!(SecretBytes::new(vec![1, 2]).expose_secret(), &[1, 2]);
        assert_eq!(SecretString::new("x".into()).expose_secret(), "x");
    }
}
