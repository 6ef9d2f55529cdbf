//! The per-identity credential cache: bounded, expiring, and silent about what it
//! holds.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bound on cached credentials, so a churn of identities cannot grow memory
/// without limit; expired entries are dropped first.
const MAX_CACHED_CREDENTIALS: usize = 10_000;

/// Credentials that expire, keyed by identity plus backend configuration.
pub(crate) struct CredentialCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

/// Shows how many entries are held, never a key or a value: values are tokens,
/// credentials and secret responses.
impl<K, V> std::fmt::Debug for CredentialCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        f.debug_struct("CredentialCache").field("entries", &entries).finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Default for CredentialCache<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> CredentialCache<K, V> {
    /// The cached value for `key`, unless it has expired.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get(key) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches `value` for `valid_for`.
    pub(crate) fn insert(&self, key: K, value: V, valid_for: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_CREDENTIALS {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= MAX_CACHED_CREDENTIALS {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + valid_for));
    }

    /// Drops the entry for `key` (after the backend refused it).
    pub(crate) fn remove(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// Number of entries, expired ones included.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}
