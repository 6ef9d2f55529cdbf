//! The cluster's service-account issuer keys, read from the API server
//! (`/openid/v1/jwks`, and the issuer from `/.well-known/openid-configuration`
//! unless configured), cached, and fetched again when a token names an unknown
//! key or the keys grow old. Fetches are rate-limited, so a flood of tokens with
//! made-up key ids cannot make the provider hammer the API server.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::AsyncReadExt as _;
use tokio::time::Instant;

use super::verify::{IssuerKeys, KeysError, discovered_issuer};
use crate::kube_client::KubeClient;

/// Where the API server publishes the issuer's verification keys.
const JWKS_PATH: &str = "/openid/v1/jwks";
/// Where the API server publishes the issuer's discovery document.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Longest time one fetch (discovery plus keys) may take; a mount waits for it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time a mount waits for a fetch it started; a slow or failing API server
/// (the client retries 5xx within [`FETCH_TIMEOUT`]) then costs a mount this much
/// at most, once per [`MIN_FETCH_INTERVAL`], and the fetch goes on in the background.
const FETCH_WAIT: Duration = Duration::from_secs(3);
/// Largest document read: a cluster's key set is a few KiB.
const MAX_DOCUMENT_BYTES: u64 = 256 * 1024;
/// Fewest time between two fetches, whatever tokens arrive: bounds the load an
/// attacker sending unknown key ids can put on the API server, and the retry
/// rate while the API server is unreachable.
const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again on next use, so a key the cluster
/// dropped stops verifying tokens within this time.
const MAX_KEY_AGE: Duration = Duration::from_secs(300);

/// Why the keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// No Kubernetes client could be built.
    #[error("no Kubernetes client (in-cluster config or KUBECONFIG)")]
    Client(#[source] kube::Error),
    /// The request failed or was refused.
    #[error("GET {path} from the Kubernetes API failed")]
    Request {
        /// The path requested.
        path: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The body could not be read.
    #[error("reading GET {path} from the Kubernetes API failed")]
    Read {
        /// The path requested.
        path: &'static str,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The body is larger than any key set.
    #[error("GET {path} answered more than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The path requested.
        path: &'static str,
    },
    /// The fetch took too long.
    #[error("the Kubernetes API did not answer within {FETCH_TIMEOUT:?}")]
    Timeout,
    /// A document is unusable.
    #[error(transparent)]
    Keys(#[from] KeysError),
}

/// Where the documents come from.
enum Source {
    /// The API server, through the provider's Kubernetes client.
    Kube(Arc<KubeClient>),
    /// Fixed documents, counting fetches.
    #[cfg(test)]
    Fixed(Arc<std::sync::Mutex<tests::Documents>>),
}

/// Cached issuer keys.
pub(super) struct IssuerKeyCache {
    source: Source,
    /// Accepted `iss` values when configured; discovered when empty.
    issuers: Vec<String>,
    current: RwLock<Option<(Arc<IssuerKeys>, Instant)>>,
    /// When the last fetch started; held while a fetch runs, so fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for IssuerKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeyCache").field("issuers", &self.issuers).finish_non_exhaustive()
    }
}

impl IssuerKeyCache {
    pub(super) fn new(client: Arc<KubeClient>, issuers: Vec<String>) -> Self {
        Self::with_source(Source::Kube(client), issuers)
    }

    fn with_source(source: Source, issuers: Vec<String>) -> Self {
        Self { source, issuers, current: RwLock::new(None), last_fetch: tokio::sync::Mutex::new(None) }
    }

    /// The keys, if any could be had: fetched first when none are cached, when
    /// they are old, or when they lack `kid` (at most once per [`MIN_FETCH_INTERVAL`]).
    pub(super) async fn keys(self: &Arc<Self>, kid: Option<&str>) -> Option<Arc<IssuerKeys>> {
        if let Some(keys) = self.fresh(kid) {
            return Some(keys);
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another mount may have fetched while this one waited.
        if let Some(keys) = self.fresh(kid) {
            return Some(keys);
        }
        let cached = self.cached().map(|(keys, _)| keys);
        if last_fetch.is_some_and(|at| at.elapsed() < MIN_FETCH_INTERVAL) {
            return cached;
        }
        *last_fetch = Some(Instant::now());
        // In its own task, so neither a cancelled mount nor one that stops waiting wastes the fetch.
        let me = Arc::clone(self);
        let mut fetch = tokio::spawn(async move {
            let result = tokio::time::timeout(FETCH_TIMEOUT, me.fetch()).await.unwrap_or(Err(FetchError::Timeout));
            match &result {
                Ok(keys) => {
                    *me.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some((Arc::clone(keys), Instant::now()));
                    tracing::info!(keys = keys.len(), "service-account issuer keys loaded from the Kubernetes API");
                }
                // Logged at most once per MIN_FETCH_INTERVAL, since fetches are.
                Err(e) => tracing::warn!(
                    error = %chain(e),
                    "cannot load the service-account issuer keys; check the provider reaches the Kubernetes API \
                     and may read /openid/v1/jwks (the default system:service-account-issuer-discovery binding)"
                ),
            }
            result.ok()
        });
        match tokio::time::timeout(FETCH_WAIT, &mut fetch).await {
            Ok(Ok(Some(keys))) => Some(keys),
            // Failed, aborted, or still running (it stores the keys when it ends): what was there before.
            Ok(_) | Err(_) => cached,
        }
    }

    /// The key set in use, unless it has grown old (then the next
    /// [`keys`](Self::keys) fetches again).
    pub(super) fn current(&self) -> Option<Arc<IssuerKeys>> {
        self.fresh(None)
    }

    fn cached(&self) -> Option<(Arc<IssuerKeys>, Instant)> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn fresh(&self, kid: Option<&str>) -> Option<Arc<IssuerKeys>> {
        self.cached().filter(|(keys, at)| at.elapsed() < MAX_KEY_AGE && keys.knows(kid)).map(|(keys, _)| keys)
    }

    async fn fetch(&self) -> Result<Arc<IssuerKeys>, FetchError> {
        let issuers = if self.issuers.is_empty() {
            vec![discovered_issuer(&self.get(DISCOVERY_PATH).await?)?]
        } else {
            self.issuers.clone()
        };
        let jwks = self.get(JWKS_PATH).await?;
        Ok(Arc::new(IssuerKeys::from_jwks(&jwks, issuers)?))
    }

    async fn get(&self, path: &'static str) -> Result<Vec<u8>, FetchError> {
        match &self.source {
            Source::Kube(client) => get(&client.get().await.map_err(FetchError::Client)?, path).await,
            #[cfg(test)]
            Source::Fixed(documents) => tests::serve(documents, path),
        }
    }
}

/// GETs `path` from the API server, reading at most [`MAX_DOCUMENT_BYTES`].
async fn get(client: &kube::Client, path: &'static str) -> Result<Vec<u8>, FetchError> {
    let request = http::Request::get(path)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| FetchError::Request { path, source: kube::Error::HttpError(e) })?;
    let body = client.request_stream(request).await.map_err(|source| FetchError::Request { path, source })?;
    let mut body = std::pin::pin!(body.take(MAX_DOCUMENT_BYTES + 1));
    let mut document = Vec::new();
    body.read_to_end(&mut document).await.map_err(|source| FetchError::Read { path, source })?;
    if document.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(FetchError::TooLarge { path });
    }
    Ok(document)
}

/// An error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    /// What the fake source serves; `None` answers an error.
    #[derive(Default)]
    pub(super) struct Documents {
        jwks: Option<Vec<u8>>,
        fetches: usize,
    }

    pub(super) fn serve(documents: &std::sync::Mutex<Documents>, path: &'static str) -> Result<Vec<u8>, FetchError> {
        let mut documents = documents.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if path == DISCOVERY_PATH {
            return Ok(json!({"issuer": ISSUER}).to_string().into_bytes());
        }
        documents.fetches += 1;
        documents.jwks.clone().ok_or(FetchError::TooLarge { path })
    }

    /// A JWKS with one P-256 key per kid (the same point: only the kids matter here).
    fn jwks(kids: &[&str]) -> Vec<u8> {
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| {
                json!({"kty": "EC", "crv": "P-256", "kid": kid,
                       "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                       "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
            })
            .collect();
        json!({"keys": keys}).to_string().into_bytes()
    }

    fn cache(kids: Option<&[&str]>) -> (Arc<IssuerKeyCache>, Arc<std::sync::Mutex<Documents>>) {
        let documents =
            Arc::new(std::sync::Mutex::new(Documents { jwks: kids.map(jwks), fetches: 0 }));
        (Arc::new(IssuerKeyCache::with_source(Source::Fixed(Arc::clone(&documents)), Vec::new())), documents)
    }

    fn fetches(documents: &std::sync::Mutex<Documents>) -> usize {
        documents.lock().map(|d| d.fetches).unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let (cache, documents) = cache(Some(&["a"]));
        assert!(cache.keys(Some("a")).await.is_some_and(|k| k.knows(Some("a"))));
        assert_eq!(fetches(&documents), 1);
        // A flood of made-up kids right after: no fetch, the keys as they are.
        for n in 0..1000 {
            let keys = cache.keys(Some(&format!("forged-{n}"))).await;
            assert!(keys.is_some_and(|k| k.knows(Some("a"))));
        }
        assert_eq!(fetches(&documents), 1);
        // A rotation: the new kid is fetched once the interval has passed, and only once.
        documents.lock().expect("lock").jwks = Some(jwks(&["a", "b"]));
        tokio::time::advance(MIN_FETCH_INTERVAL).await;
        assert!(cache.keys(Some("b")).await.is_some_and(|k| k.knows(Some("b"))));
        assert!(cache.keys(Some("b")).await.is_some());
        assert!(cache.keys(Some("c")).await.is_some());
        assert_eq!(fetches(&documents), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn old_keys_are_refetched_and_kept_while_the_api_fails() {
        let (cache, documents) = cache(Some(&["a"]));
        assert!(cache.keys(Some("a")).await.is_some());
        documents.lock().expect("lock").jwks = None;
        tokio::time::advance(MAX_KEY_AGE).await;
        // The refetch fails: the keys loaded before still verify.
        assert!(cache.keys(Some("a")).await.is_some_and(|k| k.knows(Some("a"))));
        assert_eq!(fetches(&documents), 2);
        // The next attempt waits for the interval.
        assert!(cache.keys(Some("a")).await.is_some());
        assert_eq!(fetches(&documents), 2);
        documents.lock().expect("lock").jwks = Some(jwks(&["b"]));
        tokio::time::advance(MIN_FETCH_INTERVAL).await;
        // A key the cluster dropped stops being known.
        assert!(cache.keys(Some("a")).await.is_some_and(|k| !k.knows(Some("a")) && k.knows(Some("b"))));
        assert_eq!(fetches(&documents), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn without_keys_fetches_are_retried_at_most_once_per_interval() {
        let (cache, documents) = cache(None);
        for _ in 0..100 {
            assert!(cache.keys(Some("a")).await.is_none());
        }
        assert_eq!(fetches(&documents), 1);
        documents.lock().expect("lock").jwks = Some(b"{\"keys\": []}".to_vec());
        tokio::time::advance(MIN_FETCH_INTERVAL).await;
        // An empty key set is no keys.
        assert!(cache.keys(Some("a")).await.is_none());
        documents.lock().expect("lock").jwks = Some(jwks(&["a"]));
        tokio::time::advance(MIN_FETCH_INTERVAL).await;
        assert!(cache.keys(None).await.is_some());
        assert_eq!(fetches(&documents), 3);
    }
}
