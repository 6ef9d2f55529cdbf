//! Object versions: a keyed HMAC-SHA256 over the object's configuration and content.
//!
//! A bare content hash would let anyone who can read the driver's
//! SecretProviderClassPodStatus (or a log) confirm a guessed secret value; with a
//! key only the provider holds, the version says "changed or not" and nothing else.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Random key length when no key file is given.
const GENERATED_KEY_BYTES: usize = 32;
/// Shortest key accepted from a file.
pub(crate) const MIN_KEY_BYTES: usize = 16;

/// Computes object versions with a secret key.
pub struct Versioner {
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Versioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Versioner { key: <redacted> }")
    }
}

/// The key is too short to be a key.
#[derive(Debug, thiserror::Error)]
#[error("the HMAC key has {0} bytes; at least {MIN_KEY_BYTES} are needed")]
pub struct ShortKey(pub usize);

impl Versioner {
    /// Uses `key` (e.g. from `--hmac-key-file`), so versions survive restarts.
    pub fn with_key(key: Vec<u8>) -> Result<Self, ShortKey> {
        if key.len() < MIN_KEY_BYTES {
            return Err(ShortKey(key.len()));
        }
        Ok(Self { key: Zeroizing::new(key) })
    }

    /// A random key for this process: versions change once after a restart, which
    /// makes the driver rewrite identical files once, nothing worse.
    #[must_use]
    pub fn random() -> Self {
        let mut key = vec![0u8; GENERATED_KEY_BYTES];
        rand::fill(&mut key[..]);
        Self { key: Zeroizing::new(key) }
    }

    /// The version of an object with this configuration and content.
    #[must_use]
    pub fn version(&self, descriptor: &str, content: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            // HMAC accepts keys of any length; this branch cannot be taken.
            return String::new();
        };
        // Length-prefix the descriptor so (config, content) pairs cannot collide by shifting bytes.
        mac.update(&(descriptor.len() as u64).to_be_bytes());
        mac.update(descriptor.as_bytes());
        mac.update(content);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_for_same_key_and_input() {
        let a = Versioner::with_key(vec![7; 32]).expect("key");
        let b = Versioner::with_key(vec![7; 32]).expect("key");
        assert_eq!(a.version("cfg", b"value"), b.version("cfg", b"value"));
    }

    #[test]
    fn changes_with_content_config_and_key() {
        let a = Versioner::with_key(vec![7; 32]).expect("key");
        let other_key = Versioner::with_key(vec![8; 32]).expect("key");
        let v = a.version("cfg", b"value");
        assert_ne!(v, a.version("cfg", b"value2"));
        assert_ne!(v, a.version("cfg2", b"value"));
        assert_ne!(v, other_key.version("cfg", b"value"));
        // Moving bytes between descriptor and content changes the version.
        assert_ne!(a.version("ab", b"c"), a.version("a", b"bc"));
    }

    #[test]
    fn not_a_bare_content_hash() {
        use sha2::Digest as _;
        let a = Versioner::random();
        let bare = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(b"value"));
        assert_ne!(a.version("", b"value"), bare);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Versioner::with_key(vec![1; 4]).is_err());
    }
}
