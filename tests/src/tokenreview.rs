//! A fake Kubernetes API server that answers only TokenReviews, for OpenBao's kubernetes auth method.
//!
//! It answers like the real `POST /apis/authentication.k8s.io/v1/tokenreviews`:
//! - the caller must present a valid bearer token for the API server's own audience (OpenBao sends its
//!   `token_reviewer_jwt`), else 401 with a `Status`;
//! - the reviewed token must carry a valid signature from the [`TokenIssuer`](crate::TokenIssuer)'s key, the
//!   right issuer, and must not be expired;
//! - `status.audiences` is the intersection of `spec.audiences` (the API server's audiences when empty) with the
//!   token's `aud`; an empty intersection is a failed review with `status.error`, as the API server answers.
//!
//! It runs on its own thread and runtime, so it serves for as long as the value lives, whichever test runtime
//! is current.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::tokens::{ServiceAccountClaims, TokenVerifier};
use crate::{KUBERNETES_ISSUER, TokenIssuer, tools};

/// The path of the TokenReview collection.
const TOKENREVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// One review the server answered, for tests to check what OpenBao asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRecord {
    /// `spec.audiences` as requested.
    pub requested_audiences: Vec<String>,
    /// Whether the reviewed token was authenticated.
    pub authenticated: bool,
    /// The authenticated user name, if any.
    pub username: Option<String>,
}

/// A running fake; stops on drop.
#[derive(Debug)]
pub struct TokenReviewServer {
    addr: SocketAddr,
    ca_certificate_pem: String,
    records: Arc<Mutex<Vec<ReviewRecord>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct AppState {
    verifier: TokenVerifier,
    api_audiences: Arc<Vec<String>>,
    records: Arc<Mutex<Vec<ReviewRecord>>>,
}

impl TokenReviewServer {
    /// Starts the fake on 127.0.0.1 with a free port, trusting tokens from `issuer`.
    pub fn start(issuer: &TokenIssuer) -> anyhow::Result<Self> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        listener
            .set_nonblocking(true)
            .context("cannot make the listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("bound socket has no address")?;
        let ca_certificate_pem = make_ca_certificate()?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let state = AppState {
            verifier: issuer.verifier(),
            api_audiences: Arc::new(vec![KUBERNETES_ISSUER.to_owned()]),
            records: Arc::clone(&records),
        };
        let app = Router::new()
            .route(TOKENREVIEW_PATH, post(review))
            .with_state(state);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the TokenReview server's runtime")?;
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("tokenreview-fake".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _ = started_tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(()));
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = shutdown_rx.await;
                        })
                        .await;
                });
            })
            .context("cannot spawn the TokenReview server thread")?;
        started_rx
            .recv()
            .context("the TokenReview server thread died during start-up")?
            .context("cannot serve on the TokenReview listener")?;
        Ok(Self {
            addr,
            ca_certificate_pem,
            records,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The API server URL OpenBao's `kubernetes_host` takes, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A CA certificate to configure as `kubernetes_ca_cert`. OpenBao demands one; over plain HTTP it is unused.
    pub fn ca_certificate_pem(&self) -> &str {
        &self.ca_certificate_pem
    }

    /// The reviews answered so far (requests rejected with 401 are not reviews and are not recorded).
    pub fn reviews(&self) -> Vec<ReviewRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TokenReviewServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn review(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Authenticate the caller first, as the API server does before any handler runs.
    let caller = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| state.verifier.verify(token));
    match caller {
        Some(Ok(claims)) if intersect(&state.api_audiences, &claims.aud).is_empty() => {
            return unauthorized();
        }
        Some(Ok(_)) => {}
        Some(Err(_)) | None => return unauthorized(),
    }

    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return bad_request(&format!("the TokenReview body is not JSON: {error}")),
    };
    let Some(token) = request.pointer("/spec/token").and_then(Value::as_str) else {
        return bad_request("spec.token: Required value");
    };
    let requested: Vec<String> = request
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let target_audiences: &[String] = if requested.is_empty() {
        &state.api_audiences
    } else {
        &requested
    };

    let status = match state.verifier.verify(token) {
        Err(error) => failed_review(&format!("[invalid bearer token, {error}]")),
        Ok(claims) => {
            let audiences = intersect(target_audiences, &claims.aud);
            if audiences.is_empty() {
                failed_review(&format!(
                    "[invalid bearer token, token audiences {} is invalid for the target audiences {}]",
                    go_quoted_list(&claims.aud),
                    go_quoted_list(target_audiences)
                ))
            } else {
                authenticated_review(&claims, &audiences)
            }
        }
    };

    let record = ReviewRecord {
        requested_audiences: requested.clone(),
        authenticated: status["authenticated"].as_bool().unwrap_or(false),
        username: status
            .pointer("/user/username")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    state
        .records
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(record);

    let mut spec = json!({"token": token});
    if !requested.is_empty() {
        spec["audiences"] = json!(requested);
    }
    let answer = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    });
    json_response(StatusCode::CREATED, &answer)
}

fn authenticated_review(claims: &ServiceAccountClaims, audiences: &[String]) -> Value {
    let namespace = &claims.kubernetes_io.namespace;
    json!({
        "authenticated": true,
        "user": {
            "username": claims.sub,
            "uid": claims.kubernetes_io.serviceaccount.uid,
            "groups": [
                "system:serviceaccounts",
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
            "extra": {
                "authentication.kubernetes.io/credential-id": [format!("JTI={}", claims.jti)],
                "authentication.kubernetes.io/pod-name": [claims.kubernetes_io.pod.name],
                "authentication.kubernetes.io/pod-uid": [claims.kubernetes_io.pod.uid],
            },
        },
        "audiences": audiences,
    })
}

fn failed_review(error: &str) -> Value {
    json!({"user": {}, "error": error})
}

fn unauthorized() -> Response {
    status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

fn bad_request(message: &str) -> Response {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, &body)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The members of `wanted` that `present` has, in `wanted`'s order.
fn intersect(wanted: &[String], present: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter(|audience| present.contains(audience))
        .cloned()
        .collect()
}

/// `["a","b"]`, the way Go's `%q` prints a string slice.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// A throwaway self-signed CA certificate.
fn make_ca_certificate() -> anyhow::Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("courier-fake-kube-ca-")
        .tempdir()
        .context("cannot create a temporary directory for the fake API server's CA")?;
    let key = dir.path().join("ca.key");
    let cert = dir.path().join("ca.crt");
    tools::run_openssl([
        OsStr::new("req"),
        OsStr::new("-x509"),
        OsStr::new("-newkey"),
        OsStr::new("ec"),
        OsStr::new("-pkeyopt"),
        OsStr::new("ec_paramgen_curve:prime256v1"),
        OsStr::new("-nodes"),
        OsStr::new("-subj"),
        OsStr::new("/CN=courier-test-kubernetes-ca"),
        OsStr::new("-days"),
        OsStr::new("2"),
        OsStr::new("-keyout"),
        key.as_os_str(),
        OsStr::new("-out"),
        cert.as_os_str(),
    ])?;
    std::fs::read_to_string(&cert).with_context(|| format!("cannot read {}", cert.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PodFixture, TokenOptions};

    struct Fixture {
        issuer: TokenIssuer,
        server: TokenReviewServer,
        reviewer: String,
    }

    fn fixture() -> anyhow::Result<Fixture> {
        let issuer = TokenIssuer::new()?;
        let server = TokenReviewServer::start(&issuer)?;
        let reviewer_pod = PodFixture::new("kube-system", "token-reviewer");
        let reviewer = issuer
            .token_with(&reviewer_pod, &TokenOptions::new([KUBERNETES_ISSUER]))?
            .jwt()
            .to_owned();
        Ok(Fixture {
            issuer,
            server,
            reviewer,
        })
    }

    async fn post(f: &Fixture, bearer: Option<&str>, spec: Value) -> anyhow::Result<(u16, Value)> {
        let mut request = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .post(format!("{}{TOKENREVIEW_PATH}", f.server.url()))
            .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    #[tokio::test]
    async fn valid_token_for_a_requested_audience_is_authenticated() -> anyhow::Result<()> {
        let f = fixture()?;
        let pod = PodFixture::new("team-a", "app");
        let token = f
            .issuer
            .token_with(&pod, &TokenOptions::new(["vault", "other"]))?;

        let (code, review) = post(
            &f,
            Some(&f.reviewer),
            json!({"token": token.jwt(), "audiences": ["vault"]}),
        )
        .await?;

        assert_eq!(code, 201, "{review}");
        assert_eq!(review["status"]["authenticated"], true, "{review}");
        assert_eq!(
            review["status"]["user"]["username"],
            "system:serviceaccount:team-a:app"
        );
        assert_eq!(review["status"]["user"]["uid"], pod.service_account_uid());
        assert_eq!(review["status"]["audiences"], json!(["vault"]));
        assert_eq!(f.server.reviews().len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn audience_mismatch_is_a_failed_review() -> anyhow::Result<()> {
        let f = fixture()?;
        let token = f.issuer.token(&PodFixture::new("team-a", "app"), "vault")?;

        let (_, explicit) = post(
            &f,
            Some(&f.reviewer),
            json!({"token": token.jwt(), "audiences": ["other"]}),
        )
        .await?;
        // Without spec.audiences the API server's own audience applies, which a `vault` token lacks.
        let (_, implicit) = post(&f, Some(&f.reviewer), json!({"token": token.jwt()})).await?;

        for review in [explicit, implicit] {
            assert_eq!(review["status"]["authenticated"], Value::Null, "{review}");
            let error = review["status"]["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("token audiences [\"vault\"] is invalid"),
                "{review}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn expired_or_foreign_tokens_fail_and_callers_must_authenticate() -> anyhow::Result<()> {
        let f = fixture()?;
        let pod = PodFixture::new("team-a", "app");
        let expired = f.issuer.token_with(
            &pod,
            &TokenOptions::new(["vault"])
                .issued_ago(std::time::Duration::from_secs(7200))
                .lifetime(std::time::Duration::from_secs(600)),
        )?;
        let foreign = TokenIssuer::new()?.token(&pod, "vault")?;

        for token in [expired.jwt(), foreign.jwt()] {
            let (code, review) = post(
                &f,
                Some(&f.reviewer),
                json!({"token": token, "audiences": ["vault"]}),
            )
            .await?;
            assert_eq!(code, 201);
            assert_ne!(review["status"]["authenticated"], true, "{review}");
            assert!(review["status"]["error"].is_string(), "{review}");
        }
        let (code, status) = post(&f, None, json!({"token": expired.jwt()})).await?;
        assert_eq!(code, 401, "{status}");
        let (code, _) = post(&f, Some(foreign.jwt()), json!({"token": expired.jwt()})).await?;
        assert_eq!(code, 401);
        Ok(())
    }
}
