//! Singleflight: concurrent callers asking for the same key share one execution.
//!
//! The work runs in a spawned task, so a caller that gives up (its mount was
//! cancelled) does not cancel the work the others wait for.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Whether this caller ran the work or joined a run already in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// This call started the work.
    Leader,
    /// This call joined work another call started.
    Follower,
}

/// In-flight work by key.
pub(crate) struct Flights<K, V> {
    inflight: Arc<Mutex<HashMap<K, watch::Receiver<Option<V>>>>>,
}

/// Shows how many runs are in flight, never a key or a result (a login's token, a
/// read's secret response).
impl<K, V> std::fmt::Debug for Flights<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inflight = self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        f.debug_struct("Flights").field("inflight", &inflight).finish()
    }
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self { inflight: Arc::new(Mutex::new(HashMap::new())) }
    }
}

impl<K, V> Flights<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Runs `work` for `key` unless a run for `key` is already in flight, and
    /// returns that run's result. `aborted` makes the result if the run died.
    pub(crate) async fn run<F, Fut>(&self, key: K, work: F, aborted: impl FnOnce() -> V) -> (V, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (mut rx, role) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match inflight.get(&key) {
                Some(rx) => (rx.clone(), Role::Follower),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.clone(), rx.clone());
                    let map = Arc::clone(&self.inflight);
                    let fut = work();
                    let ours = rx.clone();
                    tokio::spawn(async move {
                        let value = fut.await;
                        // Publish first, then forget the key: a caller arriving in
                        // between still gets this fresh result.
                        let _ = tx.send(Some(value));
                        let mut inflight = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if inflight.get(&key).is_some_and(|rx| rx.same_channel(&ours)) {
                            inflight.remove(&key);
                        }
                    });
                    (rx, Role::Leader)
                }
            }
        };
        let value = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        (value.unwrap_or_else(aborted), role)
    }

    /// Keys in flight now.
    pub(crate) fn len(&self) -> usize {
        self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether nothing is in flight.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
impl<K: Eq + Hash, V> Flights<K, V> {
    /// Holds a finished run's `value` under `key`, as between its publication and
    /// the removal of its key.
    pub(crate) fn hold_for_test(&self, key: K, value: V) {
        let (tx, rx) = watch::channel(Some(value));
        drop(tx);
        self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, rx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<&'static str, u32>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                flights
                    .run(
                        "k",
                        move || async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            7
                        },
                        || 0,
                    )
                    .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, role) = t.await.expect("task");
            assert_eq!(v, 7);
            if role == Role::Leader {
                leaders += 1;
            }
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        tokio::task::yield_now().await;
        assert!(flights.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_leader_does_not_cancel_the_work() {
        let flights: Arc<Flights<u8, u8>> = Arc::default();
        let f2 = Arc::clone(&flights);
        let leader = tokio::spawn(async move {
            f2.run(1, || async { tokio::time::sleep(Duration::from_millis(100)).await; 9 }, || 0).await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let follower = flights.run(1, || async { 1 }, || 0);
        leader.abort();
        let (v, role) = follower.await;
        assert_eq!((v, role), (9, Role::Follower));
    }

    #[test]
    fn debug_shows_a_count_not_results() {
        let flights: Flights<String, String> = Flights::default();
        flights.hold_for_test("key-canary".to_owned(), "result-canary".to_owned());
        for shown in [format!("{flights:?}"), format!("{flights:#?}")] {
            assert!(!shown.contains("canary"), "{shown}");
            assert!(shown.contains('1'), "{shown}");
        }
    }

    #[tokio::test]
    async fn different_keys_run_separately() {
        let flights: Flights<u8, u8> = Flights::default();
        let (a, _) = flights.run(1, || async { 1 }, || 0).await;
        let (b, _) = flights.run(2, || async { 2 }, || 0).await;
        assert_eq!((a, b), (1, 2));
    }
}
