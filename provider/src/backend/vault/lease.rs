//! Dynamic secrets kept for reuse: leased responses (database credentials, PKI
//! with `generate_lease`) and certificates without a lease.
//!
//! A kept response is handed back to later mounts and republishes of the same pod
//! (or of the same identity, with `shareLeases`) until a fraction of its lifetime
//! has passed (2/3 by default). Then a renewable lease is renewed, so the content
//! (and the object version) stays the same; otherwise a fresh one is issued.
//!
//! Entries live in memory only: a provider restart forgets them, and the next
//! mount simply issues a fresh secret (the old lease runs out on its own).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TokenKey;
use super::client::Endpoint;
use super::config::VaultConfig;
use crate::secret::SecretString;

/// Most entries kept; past this, expired entries go first, then the oldest.
const MAX_ENTRIES: usize = 10_000;
/// A renewal that gives back less than this share of the original duration means
/// the lease is near its max TTL: issue a fresh one instead.
const MIN_RENEWED_SHARE: f64 = 1.0 / 3.0;

/// Who may reuse an entry: one pod, or (with `shareLeases`) every pod of the identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LeaseKey {
    pub(super) identity: TokenKey,
    /// `None` when the SecretProviderClass shares leases across pods of the identity.
    pub(super) pod_uid: Option<String>,
    pub(super) request: String,
}

/// What a response says about its lifetime.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LeaseFacts {
    /// The lease id, when the server issued a lease.
    pub(super) lease_id: Option<String>,
    /// Whether the lease can be renewed.
    pub(super) renewable: bool,
    /// Lifetime from now.
    pub(super) duration: Duration,
}

/// Reads the lease facts of a response: a lease (`lease_id` with a duration), or
/// a certificate's own expiry (`data.expiration`, PKI without a lease). `None`
/// for static data. KV v1's `lease_duration` without a `lease_id` is a refresh
/// hint, not a lease, and is treated as static so changes show up promptly.
pub(super) fn lease_facts(response: &Value, now_unix: u64) -> Option<LeaseFacts> {
    let lease_id = response.get("lease_id").and_then(Value::as_str).filter(|id| !id.is_empty());
    if let Some(id) = lease_id {
        let seconds = response.get("lease_duration").and_then(Value::as_u64).unwrap_or(0);
        if seconds == 0 {
            return None;
        }
        return Some(LeaseFacts {
            lease_id: Some(id.to_owned()),
            renewable: response.get("renewable").and_then(Value::as_bool).unwrap_or(false),
            duration: Duration::from_secs(seconds),
        });
    }
    let data = response.get("data")?;
    data.get("certificate")?;
    let expiration = data.get("expiration").and_then(Value::as_u64)?;
    let remaining = expiration.checked_sub(now_unix).filter(|s| *s > 0)?;
    Some(LeaseFacts { lease_id: None, renewable: false, duration: Duration::from_secs(remaining) })
}

/// What is needed to revoke a lease after its pod is gone.
#[derive(Debug, Clone)]
pub(super) struct Revoker {
    pub(super) endpoint: Endpoint,
    pub(super) cfg: Arc<VaultConfig>,
    pub(super) token: SecretString,
}

struct Entry {
    /// Tag of the token that issued the lease; the lease dies with that token.
    issuer: Option<[u8; 16]>,
    /// When that token ends.
    issuer_expires: Option<Instant>,
    response: Arc<Value>,
    facts: LeaseFacts,
    original: Duration,
    reuse_until: Instant,
    expires_at: Instant,
    last_used: Instant,
    revoke: Option<Revoker>,
}

/// Shows the entry's timing and kind, never the response (the secret) or the lease
/// id and token a revocation needs.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("leased", &self.facts.lease_id.is_some())
            .field("renewable", &self.facts.renewable)
            .field("original", &self.original)
            .field("reuse_until", &self.reuse_until)
            .field("expires_at", &self.expires_at)
            .field("last_used", &self.last_used)
            .field("revoke_on_unmount", &self.revoke.is_some())
            .finish_non_exhaustive()
    }
}

/// The outcome of looking up a kept response.
pub(super) enum Lookup {
    /// Nothing kept (or it ran out): issue one.
    Miss,
    /// Hand this back.
    Reuse(Arc<Value>),
    /// Past the reuse point but renewable: renew this lease, then hand the response back.
    Renew { lease_id: String, increment: Duration, response: Arc<Value> },
}

/// Names the outcome, never the response or the lease id.
impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Miss => f.write_str("Miss"),
            Self::Reuse(_) => f.write_str("Reuse(<redacted>)"),
            Self::Renew { increment, .. } => {
                f.debug_struct("Renew").field("increment", increment).finish_non_exhaustive()
            }
        }
    }
}

/// Events counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    Issued,
    Reused,
    Renewed,
    RenewFailed,
    Revoked,
    Expired,
}

impl Event {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Reused => "reused",
            Self::Renewed => "renewed",
            Self::RenewFailed => "renew_failed",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// The kept responses.
pub(super) struct Leases {
    entries: Mutex<HashMap<LeaseKey, Entry>>,
    reuse_fraction: f64,
    renew: bool,
}

/// Shows the settings and how many entries are kept, never an entry.
impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("entries", &self.len())
            .field("reuse_fraction", &self.reuse_fraction)
            .field("renew", &self.renew)
            .finish()
    }
}

impl Leases {
    /// `reuse_fraction` of a lifetime may pass before a renewal or a fresh issue.
    pub(super) fn new(reuse_fraction: f64, renew: bool) -> Self {
        Self { entries: Mutex::new(HashMap::new()), reuse_fraction: reuse_fraction.clamp(0.0, 1.0), renew }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseKey, Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Looks `key` up at `now`.
    pub(super) fn lookup(&self, key: &LeaseKey, now: Instant) -> Lookup {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else { return Lookup::Miss };
        if now >= entry.expires_at {
            entries.remove(key);
            return Lookup::Miss;
        }
        entry.last_used = now;
        if now < entry.reuse_until {
            return Lookup::Reuse(Arc::clone(&entry.response));
        }
        match (&entry.facts.lease_id, entry.facts.renewable && self.renew) {
            (Some(id), true) => Lookup::Renew {
                lease_id: id.clone(),
                increment: entry.original,
                response: Arc::clone(&entry.response),
            },
            _ => Lookup::Miss,
        }
    }

    /// Keeps a freshly issued response. `issuer` is the tag and end of the token a
    /// lease was issued under: Vault revokes the lease when that token ends, so the
    /// entry is never reused past it.
    pub(super) fn store(
        &self,
        key: LeaseKey,
        response: Arc<Value>,
        facts: LeaseFacts,
        revoke: Option<Revoker>,
        issuer: Option<([u8; 16], Option<Instant>)>,
        now: Instant,
    ) {
        let issuer_expires = issuer.and_then(|(_, expires)| expires);
        let (reuse_until, expires_at) = Self::bounds(now, facts.duration, self.reuse_fraction, issuer_expires);
        let entry = Entry {
            issuer: issuer.map(|(tag, _)| tag),
            issuer_expires,
            reuse_until,
            expires_at,
            original: facts.duration,
            last_used: now,
            response,
            facts,
            revoke,
        };
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.expires_at > now);
            if entries.len() >= MAX_ENTRIES {
                let oldest = entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, entry);
    }

    /// Records a renewal that granted `granted`. Returns false (and forgets the
    /// entry) when the renewal is too short to be worth keeping.
    pub(super) fn renewed(&self, key: &LeaseKey, granted: Duration, now: Instant) -> bool {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else { return false };
        if granted.as_secs_f64() < entry.original.as_secs_f64() * MIN_RENEWED_SHARE {
            entries.remove(key);
            return false;
        }
        let (reuse_until, expires_at) = Self::bounds(now, granted, self.reuse_fraction, entry.issuer_expires);
        if expires_at <= now {
            entries.remove(key);
            return false;
        }
        entry.reuse_until = reuse_until;
        entry.expires_at = expires_at;
        entry.facts.duration = granted;
        true
    }

    /// Reuse point and end of a lease of `duration` from `now`, capped by the end
    /// of the token that issued it (with the same fraction of what remains of it).
    fn bounds(now: Instant, duration: Duration, fraction: f64, issuer_expires: Option<Instant>) -> (Instant, Instant) {
        let mut reuse_until = now + duration.mul_f64(fraction);
        let mut expires_at = now + duration;
        if let Some(token_end) = issuer_expires {
            expires_at = expires_at.min(token_end);
            reuse_until = reuse_until.min(now + token_end.saturating_duration_since(now).mul_f64(fraction));
        }
        (reuse_until, expires_at)
    }

    /// Forgets every lease issued under the token with `tag` (it was refused, so it
    /// may have been revoked, and its leases with it).
    pub(super) fn forget_issued_by(&self, tag: [u8; 16]) {
        self.lock().retain(|_, e| e.issuer != Some(tag));
    }

    /// Forgets `key` (a renewal failed).
    pub(super) fn forget(&self, key: &LeaseKey) {
        self.lock().remove(key);
    }

    /// Removes expired entries, and returns the leases with a revoker that no
    /// mount has used for `grace` (their pod is taken to be gone), removing them.
    pub(super) fn sweep(&self, now: Instant, grace: Duration) -> (usize, Vec<(String, Revoker)>) {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.expires_at > now);
        let expired = before - entries.len();
        let idle: Vec<LeaseKey> = entries
            .iter()
            .filter(|(_, e)| e.revoke.is_some() && e.facts.lease_id.is_some() && now.duration_since(e.last_used) >= grace)
            .map(|(k, _)| k.clone())
            .collect();
        let mut revoke = Vec::new();
        for key in idle {
            if let Some(entry) = entries.remove(&key)
                && let (Some(id), Some(revoker)) = (entry.facts.lease_id, entry.revoke) {
                    revoke.push((id, revoker));
                }
        }
        (expired, revoke)
    }
}

#[cfg(test)]
mod tests;
