//! A small, faithful fake of the Kubernetes API server, for the real `kube` client in the provider and the
//! driver shim.
//!
//! It serves over real HTTP what those clients ask for:
//!
//! - objects of the core resources (pods, secrets, service accounts, config maps, events, nodes, namespaces)
//!   and of the Secrets Store CRDs (`secretproviderclasses`, `secretproviderclasspodstatuses`, served as `v1`
//!   and `v1alpha1`), stored per (resource, namespace, name);
//! - GET, LIST (all namespaces or one; label selectors `a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`;
//!   the field selectors the API server supports; `limit` and `continue` paging), WATCH (see [`watch`]),
//!   POST (with `generateName`), PUT (with the resourceVersion check), PATCH (`merge-patch+json`,
//!   `json-patch+json`, and for built-in types `strategic-merge-patch+json` with owner references merged by
//!   uid), DELETE (with preconditions and finalizers), and the `status` subresource;
//! - `/version`, `/api`, `/api/v1`, `/apis` and `/apis/<group>/<version>` discovery;
//! - the service-account issuer's discovery document (`/.well-known/openid-configuration`) and verification
//!   keys (`/openid/v1/jwks`), once [`publish_issuer_keys`](FakeKubeApi::publish_issuer_keys) gave it a
//!   [`TokenIssuer`](crate::TokenIssuer)'s real public key (`404` before, as with issuer discovery disabled).
//!
//! It behaves as the API server does where clients can tell: one cluster-wide resourceVersion that every
//! write bumps (a no-op write bumps nothing), uids and creation timestamps kept across updates, `generation`
//! on custom resources, `409 Conflict` on a stale resourceVersion, `409 AlreadyExists` on a taken name,
//! `404 NotFound`, `422 Invalid` with causes (names, labels, owner references, Secret data, Events), `400`,
//! `410 Expired` for compacted history, each as a `Status` object with the API server's reason, message and
//! details. Secrets get `stringData` folded into `data`; owner references are kept exactly as given, and
//! [`collect_garbage`](FakeKubeApi::collect_garbage) deletes dependents whose owners are all gone.
//! Server-side apply, strategic merge patch on custom resources (as on the real server) and strategic merge
//! directives (`$patch`, ...) are refused with `415`, so a client relying on them fails loudly instead of being
//! served something else.
//!
//! Every request must carry `Authorization: Bearer <token>` with the token written into
//! [`kubeconfig_path`](FakeKubeApi::kubeconfig_path) (only `/version` is public, as on a real cluster). Every
//! request is recorded with its body, so tests can count reads and inspect writes; faults can be set for all
//! requests or injected into the next few requests to one path.

mod patch;
mod resources;
mod selector;
mod store;
mod token_request;
mod validate;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tempfile::TempDir;

pub use resources::{COORDINATION_GROUP, COURIER_GROUP, KubeResource, SECRETS_STORE_GROUP};

use crate::pod::{PodFixture, random_uid};
use crate::server_thread::ServerThread;
use store::{Failure, Store};

/// The user the kubeconfig names; it appears in `Forbidden` messages as the API server writes them.
const CLIENT_USER: &str = "system:serviceaccount:kube-system:courier-provider";
/// The version `/version` reports.
const GIT_VERSION: &str = "v1.32.4";
/// The first resourceVersion handed out.
const FIRST_RESOURCE_VERSION: u64 = 1000;
/// How often [`FakeKubeApi::wait_for`] looks again.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRequest {
    /// `GET`, ...
    pub method: String,
    /// The path, e.g. `/api/v1/namespaces/team-a/serviceaccounts/app`.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Whether it carried the right bearer token.
    pub authorized: bool,
    /// The status code answered.
    pub status: u16,
    /// The `Content-Type` of the body, if any.
    pub content_type: Option<String>,
    /// The body, parsed as JSON (a string if it was not JSON), if there was one.
    pub body: Option<Value>,
}

impl KubeRequest {
    /// Whether this was a watch (`?watch=true`).
    pub fn is_watch(&self) -> bool {
        self.query_param("watch")
            .is_some_and(|v| v == "true" || v == "1")
    }

    /// The decoded value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_query(self.query.as_deref().unwrap_or_default())
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A fault to answer authenticated requests with, instead of serving them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeFault {
    /// `403 Forbidden`: the client's RBAC does not allow the request.
    Forbidden,
    /// `503 ServiceUnavailable`: the API server is overloaded or restarting.
    Unavailable,
    /// `409 Conflict`, as for a write based on a stale resourceVersion.
    Conflict,
    /// `500 InternalError`.
    Internal,
}

/// A fault for the next `remaining` requests with `method` to exactly `path`.
#[derive(Debug, Clone)]
struct InjectedFault {
    method: String,
    path: String,
    remaining: usize,
    fault: KubeFault,
}

/// A running fake API server; stops on drop (open watches end with it).
#[derive(Debug)]
pub struct FakeKubeApi {
    server: ServerThread,
    state: Arc<Shared>,
    token: String,
    kubeconfig_path: PathBuf,
    _dir: TempDir,
}

#[derive(Debug)]
pub(crate) struct Shared {
    token: String,
    inner: Mutex<Inner>,
    /// The latest resourceVersion, for open watches to wake on.
    changes: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    requests: Vec<KubeRequest>,
    fault: Option<KubeFault>,
    injected: Vec<InjectedFault>,
    /// The JWKs `/openid/v1/jwks` lists; empty: issuer discovery is not served.
    issuer_keys: Vec<Value>,
    /// The signer of the `serviceaccounts/<name>/token` subresource; `None`: it is not served.
    token_signer: Option<Arc<crate::TokenIssuer>>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the store, then wakes the watches if it wrote anything.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (result, before, after) = {
            let mut inner = self.lock();
            let before = inner.store.last_resource_version;
            let result = f(&mut inner.store);
            (result, before, inner.store.last_resource_version)
        };
        if after != before {
            self.changes.send_replace(after);
        }
        result
    }
}

impl FakeKubeApi {
    /// Starts the fake on 127.0.0.1 with a free port and a random bearer token, and writes its kubeconfig.
    pub fn start() -> anyhow::Result<Self> {
        let token = format!("courier-test-{}", random_uid());
        let (changes, _) = tokio::sync::watch::channel(FIRST_RESOURCE_VERSION);
        let state = Arc::new(Shared {
            token: token.clone(),
            inner: Mutex::new(Inner {
                store: Store {
                    last_resource_version: FIRST_RESOURCE_VERSION,
                    ..Store::default()
                },
                ..Inner::default()
            }),
            changes,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let server = ServerThread::start("kube-api-fake", app)?;
        let dir = tempfile::Builder::new()
            .prefix("courier-kubeconfig-")
            .tempdir()
            .context("cannot create a temporary directory for the kubeconfig")?;
        let kubeconfig_path = dir.path().join("kubeconfig");
        let kubeconfig = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: courier-test
  cluster:
    server: http://{addr}
contexts:
- name: courier-test
  context:
    cluster: courier-test
    user: courier-provider
    namespace: kube-system
current-context: courier-test
users:
- name: courier-provider
  user:
    token: {token}
",
            addr = server.addr()
        );
        std::fs::write(&kubeconfig_path, kubeconfig)
            .with_context(|| format!("cannot write {}", kubeconfig_path.display()))?;
        Ok(Self {
            server,
            state,
            token,
            kubeconfig_path,
            _dir: dir,
        })
    }

    /// The server URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The bearer token the fake accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig naming this server and token; start a client with `KUBECONFIG=<this>`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    // ----- generic object access (the tests' own view, not recorded as requests) -----

    /// Creates `object` as a POST would (validation, generateName, 409 if the name is taken); returns it as
    /// stored.
    pub fn create(
        &self,
        resource: KubeResource,
        namespace: &str,
        object: Value,
    ) -> anyhow::Result<Value> {
        self.state
            .write(|store| store.create(&resource, namespace, object, false, false))
            .map_err(|f| anyhow!("create refused: {}", f.body))
    }

    /// Creates or replaces `object` without a resourceVersion check; a `metadata.uid` in it is kept. Returns
    /// the object as stored. Fails only when the object is invalid.
    pub fn put(
        &self,
        resource: KubeResource,
        namespace: &str,
        object: Value,
    ) -> anyhow::Result<Value> {
        self.state
            .write(|store| store.put(&resource, namespace, object))
            .map_err(|f| anyhow!("put refused: {}", f.body))
    }

    /// The object `namespace/name` as stored (`namespace` is ignored for cluster-scoped resources).
    pub fn get(&self, resource: KubeResource, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .store
            .get(&resource, namespace, name)
            .cloned()
    }

    /// Every object of `resource`, in `namespace` or in all namespaces, in key order.
    pub fn list(&self, resource: KubeResource, namespace: Option<&str>) -> Vec<Value> {
        let key = resource.store_key();
        self.state
            .lock()
            .store
            .objects
            .iter()
            .filter(|((k, ns, _), _)| *k == key && namespace.is_none_or(|want| want == ns))
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Applies a JSON merge patch to `namespace/name`, as a PATCH would.
    pub fn merge_patch(
        &self,
        resource: KubeResource,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> anyhow::Result<Value> {
        self.state
            .write(|store| {
                store.patch(
                    &resource,
                    namespace,
                    name,
                    "application/merge-patch+json",
                    patch,
                    false,
                    false,
                )
            })
            .map_err(|f| anyhow!("patch refused: {}", f.body))
    }

    /// Deletes `namespace/name` as a DELETE would (finalizers only mark it); true if it existed.
    pub fn delete(&self, resource: KubeResource, namespace: &str, name: &str) -> bool {
        self.state
            .write(|store| store.delete(&resource, namespace, name, &Value::Null, false))
            .is_ok()
    }

    /// Runs the garbage collector once: deletes every object whose owners (by uid) are all gone, transitively.
    /// Returns `resource/namespace/name` of each deleted object.
    pub fn collect_garbage(&self) -> Vec<String> {
        self.state
            .write(Store::collect_garbage)
            .into_iter()
            .map(|(resource, namespace, name)| format!("{resource}/{namespace}/{name}"))
            .collect()
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().store.last_resource_version
    }

    /// Forgets the change history: watches resuming from an older resourceVersion get `410 Expired`.
    pub fn compact(&self) {
        self.state.lock().store.compact();
    }

    /// Polls `check` until it returns `Some` or `timeout` passes.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(self) {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "waited {timeout:?} for {what}; requests so far:\n{}",
                    self.request_log()
                ));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    // ----- convenience for the objects Courier meets -----

    /// Creates or replaces the service account `namespace/name` with `annotations`; returns its resourceVersion.
    pub fn put_service_account<I, K, V>(
        &self,
        namespace: &str,
        name: &str,
        annotations: I,
    ) -> String
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.put_service_account_with_uid(namespace, name, None, annotations)
    }

    /// Creates or replaces the service account `pod` runs as (with the uid its tokens carry); returns its
    /// resourceVersion.
    pub fn put_pod_service_account<I, K, V>(&self, pod: &PodFixture, annotations: I) -> String
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.put_service_account_with_uid(
            pod.namespace(),
            pod.service_account(),
            Some(pod.service_account_uid()),
            annotations,
        )
    }

    fn put_service_account_with_uid<I, K, V>(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        annotations: I,
    ) -> String
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let annotations: BTreeMap<String, String> = annotations
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut metadata = json!({"name": name, "namespace": namespace});
        if !annotations.is_empty() {
            metadata["annotations"] = json!(annotations);
        }
        let object = json!({"kind": "ServiceAccount", "apiVersion": "v1", "metadata": metadata});
        self.put_object(KubeResource::SERVICE_ACCOUNTS, namespace, uid, object)
    }

    /// Creates or replaces the pod `pod` (scheduled on `node_name`); returns its resourceVersion.
    pub fn put_pod(&self, pod: &PodFixture, node_name: &str) -> String {
        self.put_pod_owned_by(pod, node_name, &[])
    }

    /// Creates or replaces the pod `pod` (scheduled on `node_name`) with `owner_references` (e.g. its
    /// ReplicaSet, `{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": ..., "uid": ..., "controller": true}`);
    /// returns its resourceVersion.
    pub fn put_pod_owned_by(
        &self,
        pod: &PodFixture,
        node_name: &str,
        owner_references: &[Value],
    ) -> String {
        let mut metadata = json!({"name": pod.name(), "namespace": pod.namespace()});
        if !owner_references.is_empty() {
            metadata["ownerReferences"] = json!(owner_references);
        }
        let object = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata,
            "spec": {"serviceAccountName": pod.service_account(), "nodeName": node_name},
            "status": {"phase": "Running"},
        });
        self.put_object(KubeResource::PODS, pod.namespace(), Some(pod.uid()), object)
    }

    /// Creates or replaces the node `name` with `labels`; returns its resourceVersion.
    pub fn put_node<I, K, V>(&self, name: &str, labels: I) -> String
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let labels: BTreeMap<String, String> = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let object = json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "labels": labels}});
        self.put_object(KubeResource::NODES, "", None, object)
    }

    /// Creates or replaces the SecretProviderClass `namespace/name` (`spec.provider`, `spec.parameters`);
    /// returns it as stored.
    pub fn put_secret_provider_class<I, K, V>(
        &self,
        namespace: &str,
        name: &str,
        provider: &str,
        parameters: I,
    ) -> Value
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let parameters: BTreeMap<String, String> = parameters
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.put_secret_provider_class_spec(
            namespace,
            name,
            json!({"provider": provider, "parameters": parameters}),
        )
    }

    /// Creates or replaces the SecretProviderClass `namespace/name` with `spec` as given (e.g. with
    /// `secretObjects`); returns it as stored.
    pub fn put_secret_provider_class_spec(
        &self,
        namespace: &str,
        name: &str,
        spec: Value,
    ) -> Value {
        let object = json!({
            "apiVersion": format!("{SECRETS_STORE_GROUP}/v1"),
            "kind": "SecretProviderClass",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        self.put(KubeResource::SECRET_PROVIDER_CLASSES, namespace, object)
            .unwrap_or_else(|e| panic!("a SecretProviderClass the test wrote is invalid: {e:#}"))
    }

    /// Deletes the service account `namespace/name`; true if it existed.
    pub fn delete_service_account(&self, namespace: &str, name: &str) -> bool {
        self.delete(KubeResource::SERVICE_ACCOUNTS, namespace, name)
    }

    /// The service account `namespace/name` as served, if it exists.
    pub fn service_account(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(KubeResource::SERVICE_ACCOUNTS, namespace, name)
    }

    /// Every Event stored, oldest first.
    pub fn events(&self) -> Vec<Value> {
        let mut events = self.list(KubeResource::EVENTS, None);
        events.sort_by_key(|e| {
            e.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
        });
        events
    }

    /// The Events about the object `namespace/name` (`involvedObject`), oldest first.
    pub fn events_about(&self, namespace: &str, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| {
                e.pointer("/involvedObject/namespace")
                    .and_then(Value::as_str)
                    == Some(namespace)
                    && e.pointer("/involvedObject/name").and_then(Value::as_str) == Some(name)
            })
            .collect()
    }

    fn put_object(
        &self,
        resource: KubeResource,
        namespace: &str,
        uid: Option<&str>,
        mut object: Value,
    ) -> String {
        if let Some(uid) = uid {
            object["metadata"]["uid"] = json!(uid);
        }
        let stored = self
            .put(resource, namespace, object)
            .unwrap_or_else(|e| panic!("an object the test wrote is invalid: {e:#}"));
        stored
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    // ----- faults and the request log -----

    /// Answers every authenticated request with `fault` from now on (`None` heals).
    pub fn set_fault(&self, fault: Option<KubeFault>) {
        self.state.lock().fault = fault;
    }

    /// Answers the next `times` requests with `method` to exactly `path` with `fault`, then serves normally.
    pub fn inject_fault(&self, method: &str, path: &str, times: usize, fault: KubeFault) {
        self.state.lock().injected.push(InjectedFault {
            method: method.to_owned(),
            path: path.to_owned(),
            remaining: times,
            fault,
        });
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<KubeRequest> {
        self.state.lock().requests.clone()
    }

    /// Every request except reads of the issuer's keys and discovery document (which the provider makes to verify
    /// tokens), in order: what a feature asked of the API beyond token verification.
    pub fn requests_beyond_issuer_keys(&self) -> Vec<KubeRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path != JWKS_PATH && r.path != OPENID_CONFIGURATION_PATH)
            .collect()
    }

    /// The requests with `method` to exactly `path`, in order.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<KubeRequest> {
        self.state
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .cloned()
            .collect()
    }

    /// One line per request (`METHOD path?query -> status`), for failure messages.
    pub fn request_log(&self) -> String {
        self.state
            .lock()
            .requests
            .iter()
            .map(|r| match &r.query {
                Some(q) => format!("{} {}?{q} -> {}", r.method, r.path, r.status),
                None => format!("{} {} -> {}", r.method, r.path, r.status),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many `GET`s of exactly `path` were received (any outcome).
    pub fn get_count(&self, path: &str) -> usize {
        self.state
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    }

    /// How many times the service account `namespace/name` was read.
    pub fn service_account_reads(&self, namespace: &str, name: &str) -> usize {
        self.get_count(&service_account_path(namespace, name))
    }
}

impl FakeKubeApi {
    /// Publishes `issuer`'s public key at `/openid/v1/jwks` (next to any published before, as during a key
    /// rotation), and the issuer [`KUBERNETES_ISSUER`](crate::KUBERNETES_ISSUER) at
    /// `/.well-known/openid-configuration`.
    pub fn publish_issuer_keys(&self, issuer: &crate::TokenIssuer) {
        self.publish_jwk(issuer.jwk().clone());
    }

    /// Serves the TokenRequest API (`POST .../serviceaccounts/<name>/token`), signing with `issuer`, and
    /// publishes `issuer`'s key at `/openid/v1/jwks` (as a cluster whose issuer signs TokenRequests does).
    pub fn serve_token_requests(&self, issuer: Arc<crate::TokenIssuer>) {
        self.publish_issuer_keys(&issuer);
        self.state.lock().token_signer = Some(issuer);
    }

    /// The TokenRequests answered (`201`) for service account `namespace/name`.
    pub fn token_requests(&self, namespace: &str, name: &str) -> Vec<KubeRequest> {
        let path = format!("{}/token", service_account_path(namespace, name));
        self.requests_to("POST", &path)
            .into_iter()
            .filter(|r| r.status == 201)
            .collect()
    }

    /// Publishes `jwk` at `/openid/v1/jwks`.
    pub(crate) fn publish_jwk(&self, jwk: Value) {
        self.state.lock().issuer_keys.push(jwk);
    }

    /// How many times the issuer's keys were requested.
    pub fn jwks_reads(&self) -> usize {
        self.get_count(JWKS_PATH)
    }
}

/// Where the API server publishes the service-account issuer's keys.
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Where the API server publishes the service-account issuer's discovery document.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";

/// `/api/v1/namespaces/<namespace>/serviceaccounts/<name>`.
pub fn service_account_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
}

/// What a request asks for.
#[derive(Debug, Clone)]
enum Route {
    Version,
    IssuerKeys,
    IssuerDiscovery,
    Api,
    Apis,
    Resources {
        group: String,
        version: String,
    },
    Collection {
        resource: KubeResource,
        namespace: Option<String>,
    },
    Object {
        resource: KubeResource,
        namespace: String,
        name: String,
        subresource: Option<String>,
    },
    Unknown,
}

fn route(segments: &[&str]) -> Route {
    let (group, version, rest) = match segments {
        ["version"] => return Route::Version,
        ["openid", "v1", "jwks"] => return Route::IssuerKeys,
        [".well-known", "openid-configuration"] => return Route::IssuerDiscovery,
        ["api"] => return Route::Api,
        ["apis"] => return Route::Apis,
        ["api", version] => {
            return Route::Resources {
                group: String::new(),
                version: (*version).to_owned(),
            };
        }
        ["apis", group, version] => {
            return Route::Resources {
                group: (*group).to_owned(),
                version: (*version).to_owned(),
            };
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Unknown,
    };
    let find = |plural: &str| resources::find(group, version, plural);
    match rest {
        ["namespaces", namespace, plural, tail @ ..]
            if find(plural).is_some_and(|r| r.namespaced) =>
        {
            let Some(resource) = find(plural) else {
                return Route::Unknown;
            };
            let namespace = (*namespace).to_owned();
            match tail {
                [] => Route::Collection {
                    resource,
                    namespace: Some(namespace),
                },
                [name] => Route::Object {
                    resource,
                    namespace,
                    name: (*name).to_owned(),
                    subresource: None,
                },
                [name, sub] => Route::Object {
                    resource,
                    namespace,
                    name: (*name).to_owned(),
                    subresource: Some((*sub).to_owned()),
                },
                _ => Route::Unknown,
            }
        }
        [plural] => find(plural).map_or(Route::Unknown, |resource| Route::Collection {
            resource,
            namespace: None,
        }),
        [plural, name, tail @ ..]
            if find(plural).is_some_and(|r| !r.namespaced) && tail.len() <= 1 =>
        {
            let Some(resource) = find(plural) else {
                return Route::Unknown;
            };
            Route::Object {
                resource,
                namespace: String::new(),
                name: (*name).to_owned(),
                subresource: tail.first().map(|s| (*s).to_owned()),
            }
        }
        _ => Route::Unknown,
    }
}

/// An answer: JSON, or a watch stream.
enum Reply {
    Json(StatusCode, Value),
    Watch(Response),
}

impl From<Failure> for Reply {
    fn from(failure: Failure) -> Self {
        Self::Json(failure.code, failure.body)
    }
}

/// The request as the handler sees it.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    query: Vec<(String, String)>,
    authorized: bool,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.param(name).is_some_and(|v| v == "true" || v == "1")
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun").is_some_and(|v| v == "All")
    }

    fn json_body(&self) -> Result<Value, Failure> {
        if self.body.is_empty() {
            return Err(Failure::bad_request("the request body is empty"));
        }
        serde_json::from_slice(self.body).map_err(|e| {
            Failure::bad_request(&format!("the body of the request is not valid JSON: {e}"))
        })
    }
}

async fn handle(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| token == state.token);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let call = Call {
        method: &method,
        path: &path,
        query: parse_query(uri.query().unwrap_or_default()),
        authorized,
        content_type: content_type.as_deref(),
        body: &body,
    };
    let reply = answer(&state, &call);
    let status = match &reply {
        Reply::Json(status, _) => *status,
        Reply::Watch(response) => response.status(),
    };
    let recorded_body = (!body.is_empty()).then(|| {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    });
    state.lock().requests.push(KubeRequest {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        authorized,
        status: status.as_u16(),
        content_type,
        body: recorded_body,
    });
    match reply {
        Reply::Json(status, body) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        Reply::Watch(response) => response,
    }
}

fn answer(state: &Arc<Shared>, call: &Call<'_>) -> Reply {
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let route = route(&segments);
    // `/version` is readable by anyone (system:public-info-viewer); everything else needs a valid token.
    if matches!(route, Route::Version) && call.method == Method::GET {
        return Reply::Json(StatusCode::OK, version());
    }
    if !call.authorized {
        return Failure::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        )
        .into();
    }
    if let Some(fault) = take_fault(state, call) {
        return fault_reply(fault, &route, call).into();
    }
    match route {
        Route::Version => Failure::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
        .into(),
        Route::IssuerKeys | Route::IssuerDiscovery if call.method != Method::GET => {
            Failure::method_not_allowed("the server does not allow this method on the requested resource").into()
        }
        Route::IssuerKeys => {
            let keys = state.lock().issuer_keys.clone();
            if keys.is_empty() {
                return not_served();
            }
            Reply::Json(StatusCode::OK, json!({"keys": keys}))
        }
        Route::IssuerDiscovery => {
            if state.lock().issuer_keys.is_empty() {
                return not_served();
            }
            // As the API server writes it: the issuer, and the keys under the issuer's URL.
            Reply::Json(
                StatusCode::OK,
                json!({
                    "issuer": crate::KUBERNETES_ISSUER,
                    "jwks_uri": format!("{}{JWKS_PATH}", crate::KUBERNETES_ISSUER),
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }),
            )
        }
        Route::Api => Reply::Json(StatusCode::OK, resources::api_versions()),
        Route::Apis => Reply::Json(StatusCode::OK, resources::api_groups()),
        Route::Resources { group, version } => match resources::api_resources(&group, &version) {
            Some(list) => Reply::Json(StatusCode::OK, list),
            None => not_served(),
        },
        Route::Collection {
            resource,
            namespace,
        } => collection(state, call, resource, namespace),
        Route::Object {
            resource,
            namespace,
            name,
            subresource,
        } => object(
            state,
            call,
            resource,
            &namespace,
            &name,
            subresource.as_deref(),
        ),
        Route::Unknown => not_served(),
    }
}

fn not_served() -> Reply {
    Failure::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        None,
    )
    .into()
}

fn take_fault(state: &Shared, call: &Call<'_>) -> Option<KubeFault> {
    let mut inner = state.lock();
    let method = call.method.as_str();
    if let Some(injected) = inner
        .injected
        .iter_mut()
        .find(|f| f.remaining > 0 && f.method == method && f.path == call.path)
    {
        injected.remaining -= 1;
        return Some(injected.fault);
    }
    inner.fault
}

fn verb(route: &Route, call: &Call<'_>) -> &'static str {
    match (call.method.as_str(), route) {
        ("GET", Route::Collection { .. }) if call.flag("watch") => "watch",
        ("GET", Route::Collection { .. }) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Route::Collection { .. }) => "deletecollection",
        ("DELETE", _) => "delete",
        _ => "access",
    }
}

fn fault_reply(fault: KubeFault, route: &Route, call: &Call<'_>) -> Failure {
    match fault {
        KubeFault::Unavailable => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            None,
        ),
        KubeFault::Internal => Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: injected by the test",
            None,
        ),
        KubeFault::Conflict => {
            let (qualified, name) = match route {
                Route::Object { resource, name, .. } => (resource.qualified(), name.clone()),
                Route::Collection { resource, .. } => (resource.qualified(), String::new()),
                _ => (String::new(), String::new()),
            };
            Failure::new(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {qualified} {name:?}: the object has been modified; please apply \
                     your changes to the latest version and try again"
                ),
                None,
            )
        }
        KubeFault::Forbidden => forbidden(route, verb(route, call), call.path),
    }
}

fn forbidden(route: &Route, verb: &str, path: &str) -> Failure {
    let scope = |namespace: &str, namespaced: bool| {
        if namespaced && !namespace.is_empty() {
            format!("in the namespace {namespace:?}")
        } else {
            "at the cluster scope".to_owned()
        }
    };
    let (message, details) = match route {
        Route::Object {
            resource,
            namespace,
            name,
            ..
        } => (
            format!(
                "{} {name:?} is forbidden: User {CLIENT_USER:?} cannot {verb} resource {:?} in API group {:?} {}",
                resource.qualified(),
                resource.plural,
                resource.group,
                scope(namespace, resource.namespaced)
            ),
            Some(json!({"name": name, "kind": resource.plural})),
        ),
        Route::Collection {
            resource,
            namespace,
        } => (
            format!(
                "{} is forbidden: User {CLIENT_USER:?} cannot {verb} resource {:?} in API group {:?} {}",
                resource.qualified(),
                resource.plural,
                resource.group,
                scope(
                    namespace.as_deref().unwrap_or_default(),
                    resource.namespaced
                )
            ),
            Some(json!({"kind": resource.plural})),
        ),
        _ => (
            format!("forbidden: User {CLIENT_USER:?} cannot {verb} path {path:?}"),
            None,
        ),
    };
    Failure::new(StatusCode::FORBIDDEN, "Forbidden", &message, details)
}

fn collection(
    state: &Arc<Shared>,
    call: &Call<'_>,
    resource: KubeResource,
    namespace: Option<String>,
) -> Reply {
    match *call.method {
        Method::GET if call.flag("watch") => {
            match watch::WatchSpec::parse(resource, namespace, &call.query) {
                Ok(spec) => {
                    let stream = {
                        let inner = state.lock();
                        watch::open(Arc::clone(state), &inner.store, spec)
                    };
                    let response = Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/json")
                        .header(header::TRANSFER_ENCODING, "chunked")
                        .body(Body::from_stream(stream))
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
                    Reply::Watch(response)
                }
                Err(failure) => failure.into(),
            }
        }
        Method::GET => match list(&state.lock().store, resource, namespace.as_deref(), call) {
            Ok(list) => Reply::Json(StatusCode::OK, list),
            Err(failure) => failure.into(),
        },
        Method::POST => {
            let Some(namespace) = namespace.or_else(|| (!resource.namespaced).then(String::new))
            else {
                return Failure::method_not_allowed(&format!(
                    "POST to all namespaces is not allowed: create {} in a namespace",
                    resource.qualified()
                ))
                .into();
            };
            let created = call.json_body().and_then(|body| {
                state
                    .write(|store| store.create(&resource, &namespace, body, call.dry_run(), false))
            });
            match created {
                Ok(object) => Reply::Json(StatusCode::CREATED, outgoing(&resource, object)),
                Err(failure) => failure.into(),
            }
        }
        Method::DELETE => {
            Failure::method_not_allowed("this fake does not serve deletecollection").into()
        }
        _ => Failure::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
        .into(),
    }
}

fn object(
    state: &Arc<Shared>,
    call: &Call<'_>,
    resource: KubeResource,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
) -> Reply {
    let status_only = match subresource {
        None => false,
        Some("status") => true,
        Some("token") if resource == KubeResource::SERVICE_ACCOUNTS => {
            return token(state, call, namespace, name);
        }
        Some(_) => return not_served(),
    };
    let result = match *call.method {
        Method::GET => state
            .lock()
            .store
            .get(&resource, namespace, name)
            .cloned()
            .ok_or_else(|| Failure::not_found(&resource, name)),
        Method::PUT => call.json_body().and_then(|body| {
            state.write(|store| {
                if status_only {
                    store.update_status(&resource, namespace, name, &body, call.dry_run())
                } else {
                    store.update(&resource, namespace, name, body, call.dry_run())
                }
            })
        }),
        Method::PATCH => {
            let content_type = call.content_type.unwrap_or_default();
            call.json_body().and_then(|patch| {
                state.write(|store| {
                    store.patch(
                        &resource,
                        namespace,
                        name,
                        content_type,
                        &patch,
                        call.dry_run(),
                        status_only,
                    )
                })
            })
        }
        Method::DELETE if !status_only => {
            let options = if call.body.is_empty() {
                Ok(Value::Null)
            } else {
                call.json_body()
            };
            options.and_then(|options| {
                state.write(|store| {
                    store.delete(&resource, namespace, name, &options, call.dry_run())
                })
            })
        }
        _ => Err(Failure::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    };
    match result {
        Ok(object) => Reply::Json(StatusCode::OK, outgoing(&resource, object)),
        Err(failure) => failure.into(),
    }
}

/// `POST .../serviceaccounts/<name>/token`, when [`FakeKubeApi::serve_token_requests`] set a signer.
fn token(state: &Arc<Shared>, call: &Call<'_>, namespace: &str, name: &str) -> Reply {
    if *call.method != Method::POST {
        return Failure::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
        .into();
    }
    let Some(issuer) = state.lock().token_signer.clone() else {
        return not_served();
    };
    let result = call.json_body().and_then(|body| {
        let inner = state.lock();
        token_request::issue(&inner.store, &issuer, namespace, name, &body)
    });
    match result {
        Ok(answer) => Reply::Json(StatusCode::CREATED, answer),
        Err(failure) => failure.into(),
    }
}

/// An object as served in the requested version.
fn outgoing(resource: &KubeResource, mut object: Value) -> Value {
    if object.get("kind").and_then(Value::as_str) != Some("Status") {
        object["apiVersion"] = json!(resource.api_version());
    }
    object
}

fn list(
    store: &Store,
    resource: KubeResource,
    namespace: Option<&str>,
    call: &Call<'_>,
) -> Result<Value, Failure> {
    let labels = selector::LabelSelector::parse(call.param("labelSelector").unwrap_or_default())
        .map_err(|e| Failure::bad_request(&e))?;
    let fields =
        selector::FieldSelector::parse(call.param("fieldSelector").unwrap_or_default(), &resource)
            .map_err(|e| Failure::bad_request(&e))?;
    let limit = match call.param("limit") {
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| Failure::bad_request(&format!("limit: Invalid value: {text:?}")))?,
        None => 0,
    };
    let (list_version, after) = match call.param("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (version, key) = decode_continue(token)
                .ok_or_else(|| Failure::bad_request("continue key is not valid"))?;
            if version < store.compacted_below {
                return Err(Failure::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a \
                     new list without the continue parameter.",
                ));
            }
            (version, Some(key))
        }
        None => (store.last_resource_version, None),
    };
    let store_key = resource.store_key();
    let matching: Vec<(&String, &String, &Value)> = store
        .objects
        .iter()
        .filter(|((key, ns, name), object)| {
            *key == store_key
                && namespace.is_none_or(|want| want == ns)
                && after
                    .as_ref()
                    .is_none_or(|(a_ns, a_name)| (ns, name) > (a_ns, a_name))
                && labels.matches(object)
                && fields.matches(object)
        })
        .map(|((_, ns, name), object)| (ns, name, object))
        .collect();
    let page = if limit > 0 {
        limit.min(matching.len())
    } else {
        matching.len()
    };
    let items: Vec<Value> = matching[..page]
        .iter()
        .map(|(_, _, object)| {
            let mut item = outgoing(&resource, (*object).clone());
            // Lists of built-in types carry kind and apiVersion once, on the list; custom resources keep them.
            if !resource.is_custom()
                && let Value::Object(map) = &mut item
            {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    let mut metadata = json!({"resourceVersion": list_version.to_string()});
    if page < matching.len()
        && let Some((ns, name, _)) = matching.get(page.wrapping_sub(1))
    {
        metadata["continue"] = json!(encode_continue(list_version, ns, name));
        metadata["remainingItemCount"] = json!(matching.len() - page);
    }
    Ok(json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

fn encode_continue(version: u64, namespace: &str, name: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": version, "ns": namespace, "name": name}).to_string())
}

fn decode_continue(token: &str) -> Option<(u64, (String, String))> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        value["rv"].as_u64()?,
        (
            value["ns"].as_str()?.to_owned(),
            value["name"].as_str()?.to_owned(),
        ),
    ))
}

/// Splits and percent-decodes a query string (`+` is a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| char::from(b).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(high), Some(low)) => {
                            out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:03:00Z",
        "goVersion": "go1.23.8",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod secretsync_tests;
