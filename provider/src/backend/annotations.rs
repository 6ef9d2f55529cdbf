//! A service account's annotations as a backend reads them (the role to
//! assume, the account to impersonate, the application to log in as): read
//! through the Kubernetes API at most once per service account and cache period,
//! one read shared by concurrent mounts, and bounded in time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Error, ErrorKind};
use crate::identity::CredentialCache;
use crate::singleflight::Flights;

/// Time allowed to read a service account's annotations.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A service account: namespace and name.
type Account = (String, String);

/// What a backend read from service accounts' annotations, cached briefly.
pub(crate) struct AnnotationReads<V> {
    backend: &'static str,
    cache: Arc<CredentialCache<Account, V>>,
    flights: Flights<Account, Result<V, Error>>,
}

/// Shows how many accounts are cached, never what they hold.
impl<V: Clone> std::fmt::Debug for AnnotationReads<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnotationReads").field("backend", &self.backend).field("cached", &self.cache.len()).finish()
    }
}

impl<V: Clone + Send + Sync + 'static> AnnotationReads<V> {
    /// Reads for `backend` (named in its errors).
    pub(crate) fn new(backend: &'static str) -> Self {
        Self { backend, cache: Arc::new(CredentialCache::default()), flights: Flights::default() }
    }

    /// How many service accounts are cached.
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    /// What `read` finds on `namespace/name`, from the cache or one shared read
    /// kept for `ttl`.
    pub(crate) async fn get<F, Fut>(&self, namespace: &str, name: &str, ttl: Duration, read: F) -> Result<V, Error>
    where
        F: FnOnce(String, String) -> Fut,
        Fut: Future<Output = Result<V, Error>> + Send + 'static,
    {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(found) = self.cache.get(&key) {
            return Ok(found);
        }
        let (backend, cache) = (self.backend, Arc::clone(&self.cache));
        let (ns, sa) = key.clone();
        let (found, _) = self
            .flights
            .run(
                key,
                || {
                    let reading = read(ns.clone(), sa.clone());
                    async move {
                        // A read that ended just before this one joined has cached its answer.
                        if let Some(found) = cache.get(&(ns.clone(), sa.clone())) {
                            return Ok(found);
                        }
                        let found = tokio::time::timeout(READ_TIMEOUT, reading).await.map_err(|_| {
                            Error::new(
                                ErrorKind::Unavailable,
                                backend,
                                format!(
                                    "reading service account {ns}/{sa} from the Kubernetes API took over \
                                     {READ_TIMEOUT:?}; check the API server is reachable and healthy"
                                ),
                            )
                        })??;
                        cache.insert((ns, sa), found.clone(), ttl);
                        Ok(found)
                    }
                },
                || Err(Error::new(ErrorKind::Unavailable, backend, "a shared service-account lookup was aborted")),
            )
            .await;
        found
    }
}

/// The annotations of service account `namespace/name`, read through the
/// Kubernetes API for `backend`; `denied_hint` says what to do when the
/// provider may not read service accounts. A missing account is an error.
pub(crate) async fn read(
    kube: &crate::kube_client::KubeClient,
    backend: &'static str,
    namespace: &str,
    name: &str,
    denied_hint: &'static str,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    let client = kube.get().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            backend,
            format!("cannot build a Kubernetes client to read service account {namespace}/{name} (in-cluster config or KUBECONFIG)"),
        )
        .caused_by(e)
    })?;
    let api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = kube::Api::namespaced(client, namespace);
    let account = api.get_opt(name).await.map_err(|e| {
        let (kind, hint) = match &e {
            kube::Error::Api(status) if status.code == 403 => (ErrorKind::Denied, denied_hint),
            _ => (ErrorKind::Unavailable, "check that the Kubernetes API is reachable from the provider"),
        };
        Error::new(kind, backend, format!("cannot read service account {namespace}/{name}; {hint}")).caused_by(e)
    })?;
    let Some(account) = account else {
        return Err(Error::new(
            ErrorKind::Invalid,
            backend,
            format!("service account {namespace}/{name} does not exist in the Kubernetes API"),
        ));
    };
    Ok(account.metadata.annotations.unwrap_or_default())
}
