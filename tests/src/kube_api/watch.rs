//! WATCH: a chunked stream of newline-delimited `{"type": ..., "object": ...}` events, as the API server
//! sends them.
//!
//! - `resourceVersion=N`: every change after N, then live changes; N older than the compacted history gets
//!   one `ERROR` event with a `410 Expired` Status, and the stream ends (the client must re-list).
//! - no `resourceVersion`, or `0`: synthetic `ADDED` events for the current objects first.
//! - `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan` and bookmarks): the same, closed by a
//!   `BOOKMARK` annotated `k8s.io/initial-events-end: "true"`.
//! - `allowWatchBookmarks=true`: a `BOOKMARK` with the current resourceVersion right before the stream ends.
//! - `timeoutSeconds`: the stream ends then (default 30 minutes); it also ends when the server stops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Value, json};

use super::Shared;
use super::resources::KubeResource;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Change, Failure, Store, status_body};

/// What the server does when the client sets no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Synthetic ADDED events for the current state first; with the initial-events-end bookmark after them.
    Current { end_bookmark: bool },
    /// Changes after this resourceVersion.
    After(u64),
}

/// A parsed watch request.
#[derive(Debug, Clone)]
pub(crate) struct WatchSpec {
    resource: KubeResource,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    start: Start,
    bookmarks: bool,
    timeout: Duration,
}

impl WatchSpec {
    /// Reads the query of a watch on `resource` (in `namespace`, or everywhere).
    pub(crate) fn parse(
        resource: KubeResource,
        namespace: Option<String>,
        query: &[(String, String)],
    ) -> Result<Self, Failure> {
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let truthy = |name: &str| get(name).is_some_and(|v| v == "true" || v == "1");
        let labels = LabelSelector::parse(get("labelSelector").unwrap_or_default())
            .map_err(|e| Failure::bad_request(&e))?;
        let fields = FieldSelector::parse(get("fieldSelector").unwrap_or_default(), &resource)
            .map_err(|e| Failure::bad_request(&e))?;
        let bookmarks = truthy("allowWatchBookmarks");
        let start = if truthy("sendInitialEvents") {
            if get("resourceVersionMatch") != Some("NotOlderThan") {
                return Err(Failure::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    None,
                ));
            }
            if !bookmarks {
                return Err(Failure::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
                    None,
                ));
            }
            Start::Current { end_bookmark: true }
        } else {
            match get("resourceVersion").unwrap_or_default() {
                "" | "0" => Start::Current {
                    end_bookmark: false,
                },
                text => Start::After(text.parse().map_err(|_| {
                    Failure::bad_request(&format!(
                        "resourceVersion: Invalid value: {text:?}: must be a number"
                    ))
                })?),
            }
        };
        let timeout = match get("timeoutSeconds") {
            Some(text) => Duration::from_secs(text.parse().map_err(|_| {
                Failure::bad_request(&format!("timeoutSeconds: Invalid value: {text:?}"))
            })?),
            None => DEFAULT_TIMEOUT,
        };
        Ok(Self {
            resource,
            namespace,
            labels,
            fields,
            start,
            bookmarks,
            timeout,
        })
    }

    fn selects(&self, store_key: &str, namespace: &str, object: &Value) -> bool {
        store_key == self.resource.store_key()
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    fn line(&self, kind: &str, object: &Value) -> Bytes {
        let mut object = object.clone();
        if object.get("kind").and_then(Value::as_str) != Some("Status") {
            object["apiVersion"] = json!(self.resource.api_version());
        }
        let mut text = json!({"type": kind, "object": object}).to_string();
        text.push('\n');
        Bytes::from(text)
    }

    fn bookmark(&self, resource_version: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line("BOOKMARK", &json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata}))
    }
}

/// One open watch.
struct Watch {
    shared: Arc<Shared>,
    spec: WatchSpec,
    cursor: u64,
    pending: VecDeque<Bytes>,
    changes: tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
    done: bool,
}

/// Starts a watch: the initial events are computed under the store lock, live ones follow.
pub(crate) fn open(
    shared: Arc<Shared>,
    store: &Store,
    spec: WatchSpec,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut pending = VecDeque::new();
    let mut done = false;
    let cursor = match spec.start {
        Start::Current { end_bookmark } => {
            for ((key, namespace, _), object) in &store.objects {
                if spec.selects(key, namespace, object) {
                    pending.push_back(spec.line("ADDED", object));
                }
            }
            if end_bookmark {
                pending.push_back(spec.bookmark(store.last_resource_version, true));
            }
            store.last_resource_version
        }
        Start::After(from) if from < store.compacted_below => {
            let gone = status_body(
                axum::http::StatusCode::GONE,
                "Expired",
                &format!(
                    "too old resource version: {from} ({})",
                    store.compacted_below
                ),
                None,
            );
            pending.push_back(spec.line("ERROR", &gone));
            done = true;
            from
        }
        Start::After(from) => from,
    };
    let changes = shared.changes.subscribe();
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let watch = Watch {
        shared,
        spec,
        cursor,
        pending,
        changes,
        deadline,
        done,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        loop {
            if let Some(chunk) = watch.pending.pop_front() {
                return Some((Ok(chunk), watch));
            }
            if watch.done {
                return None;
            }
            // Mark the current version seen before reading, so no change slips between the two.
            watch.changes.borrow_and_update();
            watch.collect();
            if !watch.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = watch.changes.changed() => {
                    if changed.is_err() {
                        watch.done = true;
                    }
                }
                () = tokio::time::sleep_until(watch.deadline) => {
                    if watch.spec.bookmarks {
                        let now = watch.shared.lock().store.last_resource_version;
                        watch.pending.push_back(watch.spec.bookmark(now.max(watch.cursor), false));
                    }
                    watch.done = true;
                }
            }
        }
    })
}

impl Watch {
    /// Queues every selected change after the cursor.
    fn collect(&mut self) {
        let inner = self.shared.lock();
        let changes: Vec<&Change> = inner
            .store
            .history
            .iter()
            .filter(|c| c.resource_version > self.cursor)
            .collect();
        for change in changes {
            if self
                .spec
                .selects(&change.store_key, &change.namespace, &change.object)
            {
                self.pending
                    .push_back(self.spec.line(change.kind, &change.object));
            }
        }
        self.cursor = self.cursor.max(inner.store.last_resource_version);
    }
}
