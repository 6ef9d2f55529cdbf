//! A stand-in for the EKS Pod Identity agent, the node-local endpoint that trades a pod's service-account token
//! for AWS credentials.
//!
//! Like the real agent it serves `GET /v1/credentials`, takes the raw token (no `Bearer`) in `Authorization`,
//! checks it as EKS Auth does (signature by the cluster's signer, issuer, expiry, audience
//! `pods.eks.amazonaws.com`), looks up the pod identity association of the token's service account, and answers
//! the container-credentials JSON the AWS SDKs read. Refusals are JSON errors: 400 without a token, 401 for a
//! token that does not verify, 403 for a wrong audience or a service account without an association.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::TokenIssuer;
use crate::aws_proxy::IssuedCredentials;
use crate::moto::MOTO_ACCOUNT_ID;
use crate::server_thread::ServerThread;
use crate::tokens::TokenVerifier;

/// The audience EKS Pod Identity tokens carry.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// The agent's credentials path.
const CREDENTIALS_PATH: &str = "/v1/credentials";
/// How long handed-out credentials are valid: one hour, a usual session length.
const CREDENTIALS_LIFETIME: Duration = Duration::from_secs(3600);

/// One request the agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequest {
    /// `namespace/name` of the token's service account, when the token verified.
    pub service_account: Option<String>,
    /// The status code answered.
    pub status: u16,
    /// The credentials handed out, on success.
    pub issued: Option<IssuedCredentials>,
}

/// A running agent; stops on drop.
#[derive(Debug)]
pub struct PodIdentityAgent {
    server: ServerThread,
    state: Arc<Shared>,
}

struct Shared {
    verifier: TokenVerifier,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// `namespace/name` -> role ARN.
    associations: BTreeMap<String, String>,
    requests: Vec<AgentRequest>,
    fault: Option<u16>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PodIdentityAgent {
    /// Starts the agent on 127.0.0.1 with a free port, trusting tokens signed by `issuer`. No service account
    /// has an association yet.
    pub fn start(issuer: &TokenIssuer) -> anyhow::Result<Self> {
        let state = Arc::new(Shared {
            verifier: issuer.verifier(),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route(CREDENTIALS_PATH, get(credentials))
            .with_state(Arc::clone(&state));
        let server = ServerThread::start("pod-identity-agent-fake", app)?;
        Ok(Self { server, state })
    }

    /// The credentials URL, `http://127.0.0.1:PORT/v1/credentials`.
    pub fn url(&self) -> String {
        format!("http://{}{CREDENTIALS_PATH}", self.server.addr())
    }

    /// Associates the service account `namespace/service_account` with `role_arn`, as
    /// `aws eks create-pod-identity-association` does.
    pub fn associate(&self, namespace: &str, service_account: &str, role_arn: &str) {
        self.state.lock().associations.insert(
            format!("{namespace}/{service_account}"),
            role_arn.to_owned(),
        );
    }

    /// Removes the association of `namespace/service_account`.
    pub fn disassociate(&self, namespace: &str, service_account: &str) {
        self.state
            .lock()
            .associations
            .remove(&format!("{namespace}/{service_account}"));
    }

    /// Answers every request with this HTTP status from now on (`None` heals), e.g. 500 for an agent whose
    /// upstream (EKS Auth) fails.
    pub fn set_fault(&self, status: Option<u16>) {
        self.state.lock().fault = status;
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<AgentRequest> {
        self.state.lock().requests.clone()
    }

    /// The service accounts (`namespace/name`) that received credentials, in order.
    pub fn served_service_accounts(&self) -> Vec<String> {
        self.state
            .lock()
            .requests
            .iter()
            .filter(|r| r.issued.is_some())
            .filter_map(|r| r.service_account.clone())
            .collect()
    }

    /// The access key ids handed out, in order.
    pub fn issued_access_key_ids(&self) -> Vec<String> {
        self.state
            .lock()
            .requests
            .iter()
            .filter_map(|r| r.issued.as_ref().map(|c| c.access_key_id.clone()))
            .collect()
    }

    /// The credentials handed out, in order.
    pub fn issued_credentials(&self) -> Vec<IssuedCredentials> {
        self.state
            .lock()
            .requests
            .iter()
            .filter_map(|r| r.issued.clone())
            .collect()
    }
}

async fn credentials(State(state): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let (status, service_account, body, issued) = answer(&state, &headers);
    state.lock().requests.push(AgentRequest {
        service_account,
        status: status.as_u16(),
        issued,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

type Answer = (StatusCode, Option<String>, Value, Option<IssuedCredentials>);

fn answer(state: &Shared, headers: &HeaderMap) -> Answer {
    if let Some(code) = state.lock().fault {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            None,
            error("ServiceUnavailableException", "injected fault"),
            None,
        );
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
    else {
        return (
            StatusCode::BAD_REQUEST,
            None,
            error(
                "InvalidParameterException",
                "Service account token cannot be empty",
            ),
            None,
        );
    };
    let claims = match state.verifier.verify(token) {
        Ok(claims) => claims,
        Err(problem) => {
            return (
                StatusCode::UNAUTHORIZED,
                None,
                error(
                    "InvalidTokenException",
                    &format!("The service account token is not valid: {problem}"),
                ),
                None,
            );
        }
    };
    let service_account = format!(
        "{}/{}",
        claims.kubernetes_io.namespace, claims.kubernetes_io.serviceaccount.name
    );
    if !claims.aud.iter().any(|aud| aud == POD_IDENTITY_AUDIENCE) {
        return (
            StatusCode::FORBIDDEN,
            Some(service_account),
            error(
                "AccessDeniedException",
                &format!(
                    "The service account token's audience {:?} does not include {POD_IDENTITY_AUDIENCE}",
                    claims.aud
                ),
            ),
            None,
        );
    }
    let role_arn = state.lock().associations.get(&service_account).cloned();
    let Some(role_arn) = role_arn else {
        return (
            StatusCode::FORBIDDEN,
            Some(service_account.clone()),
            error(
                "AccessDeniedException",
                &format!("No Pod Identity Association for service account {service_account}"),
            ),
            None,
        );
    };
    let issued = IssuedCredentials {
        access_key_id: format!(
            "ASIA{}",
            random_text(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        ),
        secret_access_key: random_text(
            40,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        ),
        session_token: format!(
            "pod-identity-session-{}-for-{}",
            random_text(24, b"abcdefghijklmnopqrstuvwxyz0123456789"),
            role_arn.rsplit('/').next().unwrap_or("role")
        ),
    };
    let expiration = OffsetDateTime::now_utc() + CREDENTIALS_LIFETIME;
    let expiration = expiration
        .replace_nanosecond(0)
        .unwrap_or(expiration)
        .format(&Rfc3339)
        .unwrap_or_default();
    let body = json!({
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "Token": issued.session_token,
        "AccountId": MOTO_ACCOUNT_ID,
        "Expiration": expiration,
    });
    (StatusCode::OK, Some(service_account), body, Some(issued))
}

fn error(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}
