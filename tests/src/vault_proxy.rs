//! A recording, fault-injecting HTTP proxy in front of OpenBao.
//!
//! The provider is pointed at the proxy (`vaultAddress`) and the proxy forwards every request to the real
//! server. It records each request (method, path, whether it reached OpenBao, what was answered), and injects
//! faults by method and path: an error status answered instead of forwarding, an error status answered after
//! OpenBao served the request (a load balancer timing out on a slow answer), or a connection cut after OpenBao
//! served it. The last two are how a test proves a request that issues something (a certificate) reached the
//! server exactly once.
//!
//! Every answer carries `Connection: close`, so each request opens a connection of its own: a stopped proxy
//! refuses the next request outright instead of leaving it on a dead pooled connection.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::server_thread::ServerThread;
use crate::upstream::{Failure, Upstream};

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultCall {
    /// `GET`, `PUT`, `POST`, ...
    pub method: String,
    /// The path without the query, e.g. `/v1/pki/issue/web`.
    pub path: String,
    /// Whether the request reached OpenBao.
    pub forwarded: bool,
    /// The status OpenBao answered, when forwarded and answered.
    pub upstream_status: Option<u16>,
    /// The status the proxy answered; `None` when it cut the connection instead.
    pub answered: Option<u16>,
}

/// What a fault does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultFaultKind {
    /// Answer this status without forwarding: the request never reaches OpenBao.
    Refuse(u16),
    /// Forward, then answer this status instead of OpenBao's answer.
    AfterForward(u16),
    /// Forward, then cut the connection instead of answering.
    CutAfterForward,
}

/// A fault for requests matching every set filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultFault {
    kind: VaultFaultKind,
    method: Option<Method>,
    path_prefix: Option<String>,
    remaining: Option<usize>,
}

impl VaultFault {
    /// Every request gets `kind` (narrow it down with the filters).
    pub fn new(kind: VaultFaultKind) -> Self {
        Self {
            kind,
            method: None,
            path_prefix: None,
            remaining: None,
        }
    }

    /// Only requests with `method`.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Only requests whose path (below `/v1/`) starts with `prefix`, e.g. `pki/issue/`.
    #[must_use]
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(format!("/v1/{}", prefix.trim_start_matches('/')));
        self
    }

    /// Only the next `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.remaining != Some(0)
            && self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|prefix| path.starts_with(prefix.as_str()))
    }
}

/// A running proxy; stops on drop, cutting the connections it holds.
#[derive(Debug)]
pub struct VaultProxy {
    server: ServerThread,
    state: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    upstream: Upstream,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<VaultCall>,
    faults: Vec<VaultFault>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl VaultProxy {
    /// A proxy forwarding everything to `upstream` (an OpenBao address, `http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Shared {
            upstream: Upstream::new("OpenBao", upstream)?,
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .fallback(forward)
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&state));
        let server = ServerThread::start("vault-proxy", app)?;
        Ok(Self { server, state })
    }

    /// The address for `vaultAddress`, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Adds a fault; faults are checked in the order added.
    pub fn inject(&self, fault: VaultFault) {
        self.state.lock().faults.push(fault);
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<VaultCall> {
        self.state.lock().calls.clone()
    }

    /// The requests with `method` whose path (below `/v1/`) starts with `prefix`.
    pub fn calls_to(&self, method: &str, prefix: &str) -> Vec<VaultCall> {
        let prefix = format!("/v1/{}", prefix.trim_start_matches('/'));
        self.calls()
            .into_iter()
            .filter(|call| call.method == method && call.path.starts_with(&prefix))
            .collect()
    }
}

async fn forward(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut call = VaultCall {
        method: method.to_string(),
        path: uri.path().to_owned(),
        forwarded: false,
        upstream_status: None,
        answered: None,
    };
    let fault = {
        let mut inner = state.lock();
        inner
            .faults
            .iter_mut()
            .find(|f| f.matches(&method, uri.path()))
            .map(|fault| {
                if let Some(n) = fault.remaining.as_mut() {
                    *n -= 1;
                }
                fault.kind
            })
    };
    if let Some(VaultFaultKind::Refuse(status)) = fault {
        call.answered = Some(status);
        state.lock().calls.push(call);
        return closing(error_response(status, "refused by the test proxy"));
    }

    let answer = match state.upstream.forward(method, &uri, &headers, body).await {
        Ok(answer) => answer,
        Err(failure) => {
            let message = match failure {
                Failure::Unreachable(message) => message,
                Failure::Lost(message) => {
                    call.forwarded = true;
                    message
                }
            };
            call.answered = Some(502);
            state.lock().calls.push(call);
            return closing(error_response(502, &message));
        }
    };
    let status = answer.status;
    call.forwarded = true;
    call.upstream_status = Some(status.as_u16());
    match fault {
        Some(VaultFaultKind::AfterForward(injected)) => {
            call.answered = Some(injected);
            state.lock().calls.push(call);
            closing(error_response(injected, "injected by the test proxy after OpenBao answered"))
        }
        Some(VaultFaultKind::CutAfterForward) => {
            state.lock().calls.push(call);
            cut()
        }
        Some(VaultFaultKind::Refuse(_)) | None => {
            call.answered = Some(status.as_u16());
            state.lock().calls.push(call);
            closing(answer.into_response())
        }
    }
}

/// Vault's error shape.
fn error_response(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = serde_json::json!({"errors": [message]}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Marks the answer as the connection's last.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// An answer whose body fails at once: the server aborts the connection instead of completing the answer.
fn cut() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "cut by the test proxy",
        ))
    });
    closing(Response::new(Body::from_stream(failing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_on_every_set_filter() {
        let any = VaultFault::new(VaultFaultKind::Refuse(502));
        assert!(any.matches(&Method::GET, "/v1/secret/data/app"));
        let issue = VaultFault::new(VaultFaultKind::CutAfterForward)
            .method(Method::PUT)
            .path_prefix("pki/issue/");
        assert!(issue.matches(&Method::PUT, "/v1/pki/issue/web"));
        assert!(!issue.matches(&Method::GET, "/v1/pki/issue/web"));
        assert!(!issue.matches(&Method::PUT, "/v1/pki/sign/web"));
        assert!(!any.times(0).matches(&Method::GET, "/v1/x"));
    }

    #[tokio::test]
    async fn a_cut_answer_reaches_the_client_as_a_transport_error_after_forwarding() -> anyhow::Result<()> {
        let upstream = ServerThread::start(
            "fake-upstream",
            Router::new().fallback(|| async { (StatusCode::OK, "{\"data\":{}}") }),
        )?;
        let proxy = VaultProxy::start(&format!("http://{}", upstream.addr()))?;
        proxy.inject(VaultFault::new(VaultFaultKind::CutAfterForward).times(1));
        let client = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("{}/v1/pki/issue/web", proxy.url());
        let cut = match client.put(&url).body("{}").send().await {
            Ok(response) => response.bytes().await.map(|_| ()),
            Err(error) => Err(error),
        };
        assert!(cut.is_err(), "the answer arrived whole");
        let after = client.put(&url).body("{}").send().await?;
        assert_eq!(after.status(), StatusCode::OK);
        let calls = proxy.calls_to("PUT", "pki/issue/");
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.iter().all(|c| c.forwarded), "{calls:?}");
        assert_eq!(calls[0].answered, None, "{calls:?}");
        Ok(())
    }
}
