//! A small, faithful fake of the Kubernetes API server, for the provider's service-account lookups.
//!
//! It serves over real HTTP what the real `kube` client asks for: `GET` of service accounts, pods and nodes,
//! plus `/version`, `/api` and `/api/v1`. Objects are real JSON objects (`kind`, `apiVersion`, `metadata` with
//! name, namespace, uid, resourceVersion, creationTimestamp, labels, annotations); every change bumps one
//! cluster-wide resourceVersion, as etcd's revision does. Errors are `Status` objects with the API server's
//! reasons and messages (`NotFound`, `Unauthorized`, `Forbidden`, `ServiceUnavailable`).
//!
//! Every request must carry `Authorization: Bearer <token>` with the token written into
//! [`kubeconfig_path`](FakeKubeApi::kubeconfig_path) (only `/version` is public, as on a real cluster). Every
//! request is recorded, so tests can count reads (for example, that a cached lookup happened once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pod::{PodFixture, random_uid};
use crate::server_thread::ServerThread;

/// The user the provider's kubeconfig names; it appears in `Forbidden` messages as the API server writes them.
const PROVIDER_USER: &str = "system:serviceaccount:kube-system:courier-provider";
/// The version `/version` reports.
const GIT_VERSION: &str = "v1.32.4";
/// The first resourceVersion handed out.
const FIRST_RESOURCE_VERSION: u64 = 1000;

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
}

/// A fault to answer every authenticated request with, instead of serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeFault {
    /// `403 Forbidden`: the provider's RBAC does not allow the read.
    Forbidden,
    /// `503 ServiceUnavailable`: the API server is overloaded or restarting.
    Unavailable,
}

/// A running fake API server; stops on drop.
#[derive(Debug)]
pub struct FakeKubeApi {
    server: ServerThread,
    state: Arc<Shared>,
    token: String,
    kubeconfig_path: PathBuf,
    _dir: TempDir,
}

#[derive(Debug)]
struct Shared {
    token: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (resource plural, namespace or "" for cluster-scoped, name) -> object.
    objects: BTreeMap<(String, String, String), Value>,
    last_resource_version: u64,
    requests: Vec<KubeRequest>,
    fault: Option<KubeFault>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeKubeApi {
    /// Starts the fake on 127.0.0.1 with a free port and a random bearer token, and writes its kubeconfig.
    pub fn start() -> anyhow::Result<Self> {
        let token = format!("courier-test-{}", random_uid());
        let state = Arc::new(Shared {
            token: token.clone(),
            inner: Mutex::new(Inner {
                last_resource_version: FIRST_RESOURCE_VERSION,
                ..Inner::default()
            }),
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

    /// A kubeconfig naming this server and token; start the provider with `KUBECONFIG=<this>`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

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
        self.put_object("serviceaccounts", namespace, name, uid, object)
    }

    /// Creates or replaces the pod `pod` (scheduled on `node_name`); returns its resourceVersion.
    pub fn put_pod(&self, pod: &PodFixture, node_name: &str) -> String {
        let object = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": pod.name(), "namespace": pod.namespace()},
            "spec": {"serviceAccountName": pod.service_account(), "nodeName": node_name},
            "status": {"phase": "Running"},
        });
        self.put_object("pods", pod.namespace(), pod.name(), Some(pod.uid()), object)
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
        let object = json!({
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"name": name, "labels": labels},
        });
        self.put_object("nodes", "", name, None, object)
    }

    /// Deletes the service account `namespace/name`; true if it existed.
    pub fn delete_service_account(&self, namespace: &str, name: &str) -> bool {
        let key = (
            "serviceaccounts".to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        let mut inner = self.state.lock();
        let existed = inner.objects.remove(&key).is_some();
        if existed {
            inner.last_resource_version += 1;
        }
        existed
    }

    /// The service account `namespace/name` as served, if it exists.
    pub fn service_account(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = (
            "serviceaccounts".to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        self.state.lock().objects.get(&key).cloned()
    }

    /// Answers every authenticated request with `fault` from now on (`None` heals).
    pub fn set_fault(&self, fault: Option<KubeFault>) {
        self.state.lock().fault = fault;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<KubeRequest> {
        self.state.lock().requests.clone()
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

    fn put_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        mut object: Value,
    ) -> String {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let mut inner = self.state.lock();
        inner.last_resource_version += 1;
        let resource_version = inner.last_resource_version.to_string();
        // An update keeps the identity and age of the object it replaces, as a PUT does.
        let (kept_uid, kept_created) = match inner.objects.get(&key) {
            Some(old) => (
                old.pointer("/metadata/uid").cloned(),
                old.pointer("/metadata/creationTimestamp").cloned(),
            ),
            None => (None, None),
        };
        let uid = uid.map_or_else(
            || kept_uid.unwrap_or_else(|| json!(random_uid())),
            |u| json!(u),
        );
        let created = kept_created.unwrap_or_else(|| json!(now_rfc3339()));
        let metadata = &mut object["metadata"];
        metadata["uid"] = uid;
        metadata["resourceVersion"] = json!(resource_version);
        metadata["creationTimestamp"] = created;
        inner.objects.insert(key, object);
        resource_version
    }
}

/// `/api/v1/namespaces/<namespace>/serviceaccounts/<name>`.
pub fn service_account_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
}

async fn handle(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| token == state.token);
    let (status, body) = answer(&state, &method, &path, authorized);
    state.lock().requests.push(KubeRequest {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        authorized,
        status: status.as_u16(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn answer(state: &Shared, method: &Method, path: &str, authorized: bool) -> (StatusCode, Value) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/version` is readable by anyone (system:public-info-viewer); everything else needs a valid token.
    if segments == ["version"] && method == Method::GET {
        return (StatusCode::OK, version());
    }
    if !authorized {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    let fault = state.lock().fault;
    match fault {
        Some(KubeFault::Unavailable) => {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
                None,
            );
        }
        Some(KubeFault::Forbidden) => return forbidden(&segments, method),
        None => {}
    }
    let target = match segments.as_slice() {
        ["api"] => return (StatusCode::OK, api_versions()),
        ["api", "v1"] => return (StatusCode::OK, api_resources()),
        ["api", "v1", "namespaces", namespace, resource, name] => {
            Some((*resource, *namespace, *name))
        }
        ["api", "v1", resource @ "nodes", name] => Some((*resource, "", *name)),
        _ => None,
    };
    let Some((resource, namespace, name)) = target else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            None,
        );
    };
    if method != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{method} is not supported by this fake"),
            None,
        );
    }
    let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
    match state.lock().objects.get(&key) {
        Some(object) => (StatusCode::OK, object.clone()),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{resource} {name:?} not found"),
            Some(json!({"name": name, "kind": resource})),
        ),
    }
}

fn forbidden(segments: &[&str], method: &Method) -> (StatusCode, Value) {
    let verb = if method == Method::GET {
        "get"
    } else {
        "update"
    };
    let (message, details) = match segments {
        ["api", "v1", "namespaces", namespace, resource, name] => (
            format!(
                "{resource} {name:?} is forbidden: User {PROVIDER_USER:?} cannot {verb} resource {resource:?} \
                 in API group \"\" in the namespace {namespace:?}"
            ),
            Some(json!({"name": name, "kind": resource})),
        ),
        ["api", "v1", resource, name] => (
            format!(
                "{resource} {name:?} is forbidden: User {PROVIDER_USER:?} cannot {verb} resource {resource:?} \
                 in API group \"\" at the cluster scope"
            ),
            Some(json!({"name": name, "kind": resource})),
        ),
        _ => (
            format!(
                "forbidden: User {PROVIDER_USER:?} cannot {verb} path \"/{}\"",
                segments.join("/")
            ),
            None,
        ),
    };
    status(StatusCode::FORBIDDEN, "Forbidden", &message, details)
}

fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> (StatusCode, Value) {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    (code, body)
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

fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

fn api_resources() -> Value {
    let resource = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get"]});
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            resource("nodes", "Node", false),
            resource("pods", "Pod", true),
            resource("serviceaccounts", "ServiceAccount", true),
        ],
    })
}

fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(
        api: &FakeKubeApi,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!("{}{path}", api.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    #[tokio::test]
    async fn updates_bump_the_resource_version_and_keep_the_uid() -> anyhow::Result<()> {
        let api = FakeKubeApi::start()?;
        let first = api.put_service_account("team-a", "app", [("a", "1")]);
        let uid = api
            .service_account("team-a", "app")
            .and_then(|sa| sa["metadata"]["uid"].as_str().map(str::to_owned));
        let second = api.put_service_account("team-a", "app", [("a", "2")]);
        assert!(second.parse::<u64>()? > first.parse::<u64>()?);
        let (code, sa) = get(
            &api,
            "/api/v1/namespaces/team-a/serviceaccounts/app",
            Some(api.token()),
        )
        .await?;
        assert_eq!(code, 200);
        assert_eq!(sa["metadata"]["annotations"]["a"], "2");
        assert_eq!(sa["metadata"]["resourceVersion"], second.as_str());
        assert_eq!(sa["metadata"]["uid"].as_str(), uid.as_deref());
        Ok(())
    }

    #[tokio::test]
    async fn wrong_tokens_get_401_and_faults_answer_as_configured() -> anyhow::Result<()> {
        let api = FakeKubeApi::start()?;
        api.put_service_account("team-a", "app", [("a", "1")]);
        let path = service_account_path("team-a", "app");
        let (code, body) = get(&api, &path, Some("wrong")).await?;
        assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
        let (code, _) = get(&api, &path, None).await?;
        assert_eq!(code, 401);
        let (code, _) = get(&api, "/version", None).await?;
        assert_eq!(code, 200);

        api.set_fault(Some(KubeFault::Forbidden));
        let (code, body) = get(&api, &path, Some(api.token())).await?;
        assert_eq!(code, 403);
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("cannot get resource \"serviceaccounts\""),
            "{body}"
        );
        api.set_fault(Some(KubeFault::Unavailable));
        let (code, _) = get(&api, &path, Some(api.token())).await?;
        assert_eq!(code, 503);
        api.set_fault(None);
        let (code, _) = get(&api, &path, Some(api.token())).await?;
        assert_eq!(code, 200);

        assert_eq!(api.service_account_reads("team-a", "app"), 5);
        assert_eq!(api.requests().iter().filter(|r| !r.authorized).count(), 3);
        Ok(())
    }
}
