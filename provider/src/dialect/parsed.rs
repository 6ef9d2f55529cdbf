//! Plans parsed before: a pod's remounts (the driver's rotation polls every
//! SecretProviderClass volume) and the mounts of its replicas send the same
//! parameters again and again, and get the plan parsed the first time.
//!
//! A plan is a function of the dialect, the provider's defaults (fixed for the
//! cache's life) and the attributes; the pod's name and UID, which differ per
//! pod, are never read by a dialect and are left out of the key. The key is a
//! SHA-256 over the rest, so equal keys mean equal parameters. Only small
//! parameters are kept (the inline parses; hostile or large ones are parsed every
//! time, off the async workers), and the whole cache is bounded by the bytes of
//! parameters it stands for, so it cannot grow with a tenant's inventiveness.
//! Failed parses are not kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::{Defaults, Dialect, Error, MountPlan};
use crate::request::{POD_NAME_KEY, POD_UID_KEY};

/// Largest parameters (attribute names and values, bytes) whose plan is kept.
const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// Most parameter bytes the kept plans stand for, together.
const MAX_TOTAL_BYTES: usize = 1024 * 1024;
/// Most plans kept.
const MAX_PLANS: usize = 1024;

/// Parsed plans by parameters.
#[derive(Default)]
pub(crate) struct ParsedPlans {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    plans: HashMap<[u8; 32], (Arc<MountPlan>, usize)>,
    bytes: usize,
}

/// Shows how many plans are kept.
impl std::fmt::Debug for ParsedPlans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("ParsedPlans").field("plans", &inner.plans.len()).field("bytes", &inner.bytes).finish()
    }
}

impl ParsedPlans {
    /// The plan of `attributes` in `dialect`: kept from an earlier mount with the
    /// same parameters, or parsed now (and kept if small).
    pub(crate) fn parse(
        &self,
        dialect: Dialect,
        attributes: &BTreeMap<String, String>,
        defaults: &Defaults,
    ) -> Result<Arc<MountPlan>, Error> {
        let Some((key, bytes)) = key(dialect, attributes) else {
            return dialect.parse(attributes, defaults).map(Arc::new);
        };
        if let Some((plan, _)) = self.lock().plans.get(&key) {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(dialect.parse(attributes, defaults)?);
        self.keep(key, bytes, Arc::clone(&plan));
        Ok(plan)
    }

    fn keep(&self, key: [u8; 32], bytes: usize, plan: Arc<MountPlan>) {
        let mut inner = self.lock();
        if inner.plans.contains_key(&key) {
            return;
        }
        // Room is made by dropping plans in the map's (randomised) order.
        while !inner.plans.is_empty() && (inner.plans.len() >= MAX_PLANS || inner.bytes + bytes > MAX_TOTAL_BYTES) {
            let Some(victim) = inner.plans.keys().next().copied() else { break };
            if let Some((_, freed)) = inner.plans.remove(&victim) {
                inner.bytes -= freed;
            }
        }
        inner.bytes += bytes;
        inner.plans.insert(key, (plan, bytes));
    }

    /// Plans kept, and the parameter bytes they stand for.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.plans.len(), inner.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The cache key of `attributes` in `dialect`, and their size; `None` when they
/// are too large to keep.
fn key(dialect: Dialect, attributes: &BTreeMap<String, String>) -> Option<([u8; 32], usize)> {
    let read = || attributes.iter().filter(|(name, _)| name.as_str() != POD_NAME_KEY && name.as_str() != POD_UID_KEY);
    let bytes: usize = read().map(|(name, value)| name.len() + value.len()).sum();
    if bytes > MAX_ENTRY_BYTES {
        return None;
    }
    let mut hash = Sha256::new();
    hash.update((dialect.name().len() as u64).to_le_bytes());
    hash.update(dialect.name().as_bytes());
    for (name, value) in read() {
        // Length-prefixed, so no two different attribute sets share an encoding.
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value.as_bytes());
    }
    Some((hash.finalize().into(), bytes.max(1)))
}

#[cfg(test)]
mod tests;
