//! Tokens already verified, so a pod's next mount with the same token (a
//! rotation, another volume, a retry) skips the signature check.
//!
//! An entry is the outcome of one successful [`verify`](super::verify::verify)
//! for one exact token against one exact expectation (audience, namespace,
//! service account, pod) and one exact key set. It is used only while all three
//! are the same: the key is a SHA-256 over the token and the expectation (so
//! another token, or the same token presented for another pod or audience,
//! misses and is verified in full), the entry names the key set it was verified
//! against (keys fetched again, because they grew old or a token named a new
//! key, start over), and the token's own `exp` and `nbf` are checked again on
//! every use against the clock. Nothing of the token is kept but its hash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use super::verify::{CLOCK_LEEWAY_SECS, Expected, IssuerKeys, Verified};

/// Most tokens remembered: a node runs at most a few hundred pods, each with a
/// token per audience. Past this, expired entries go first, then all.
const MAX_ENTRIES: usize = 4096;

/// Verified tokens by hash.
#[derive(Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

struct Entry {
    /// The key set the signature was checked against (held weakly: a replaced
    /// key set is freed, and its address is never taken by another while this
    /// entry lives).
    keys: Weak<IssuerKeys>,
    verified: Verified,
}

/// Shows the number of entries, nothing computed from a token.
impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens").field("entries", &self.lock().len()).finish()
    }
}

/// The cache key of `token` presented as `expected`: every field length-prefixed,
/// so no two different inputs share an encoding.
pub(super) fn digest(token: &str, expected: &Expected<'_>) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [
        token,
        expected.audience,
        expected.namespace,
        expected.service_account,
        expected.pod_name,
        expected.pod_uid,
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

impl VerifiedTokens {
    /// The service account's UID if this exact token was verified for this
    /// expectation against `keys` and is still valid at `now` (Unix seconds).
    pub(super) fn get(&self, digest: &[u8; 32], keys: &Arc<IssuerKeys>, now: u64) -> Option<String> {
        let entries = self.lock();
        let entry = entries.get(digest)?;
        (std::ptr::eq(entry.keys.as_ptr(), Arc::as_ptr(keys)) && valid_at(&entry.verified, now))
            .then(|| entry.verified.uid.clone())
    }

    /// Remembers a successful verification against `keys`.
    pub(super) fn insert(&self, digest: [u8; 32], keys: &Arc<IssuerKeys>, verified: Verified, now: u64) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&digest) {
            entries.retain(|_, e| e.keys.strong_count() > 0 && valid_at(&e.verified, now));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(digest, Entry { keys: Arc::downgrade(keys), verified });
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a verified token's `exp` and `nbf` still hold at `now`, with the
/// leeway the full check allows.
fn valid_at(verified: &Verified, now: u64) -> bool {
    now < verified.expires.saturating_add(CLOCK_LEEWAY_SECS)
        && verified.not_before.is_none_or(|nbf| nbf <= now.saturating_add(CLOCK_LEEWAY_SECS))
}

#[cfg(test)]
mod tests;
