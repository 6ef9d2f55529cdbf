//! A stand-in for Google's Security Token Service and IAM Credentials, and an authorising front for Secret Manager
//! (served by [`Drongo`](crate::Drongo)).
//!
//! - `POST /v1/token` (STS) checks the Kubernetes token as Google does for GKE Workload Identity: signature by the
//!   cluster's signer, issuer and expiry; the token's audience must be the workload pool and the request's
//!   `audience` `identitynamespace:POOL:PROVIDER`. It hands out a federated token for the service account.
//! - `POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken` (IAM Credentials) takes a federated token and
//!   impersonates EMAIL only when the Kubernetes service account is bound to it (`roles/iam.workloadIdentityUser`);
//!   otherwise it answers `PERMISSION_DENIED`.
//! - Every other `/v1/...` request is Secret Manager's: it needs an access token this stand-in handed out, may be
//!   refused with `PERMISSION_DENIED` per secret and identity, and is forwarded to drongo. drongo has no regional
//!   paths, so `projects/P/locations/L/secrets/...` goes to a second drongo as `projects/P/secrets/...` (the names
//!   in its answers are mapped back); drongo sends no `dataCrc32c`, so the front adds it (or a wrong one, on request).
//!
//! Every call is recorded with the identity it ran as.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::Rng;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::TokenIssuer;
use crate::server_thread::ServerThread;
use crate::tokens::TokenVerifier;

/// The cluster's identity provider the stand-in expects in STS audiences.
pub const GKE_IDENTITY_PROVIDER: &str = "https://container.googleapis.com/v1/projects/p1/locations/us-central1/clusters/c1";
/// Lifetime of the tokens handed out: an hour, as Google's.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Time allowed for a forwarded call to drongo.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Which API a call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcpApi {
    /// STS `token`.
    Sts,
    /// IAM Credentials `generateAccessToken`.
    IamCredentials,
    /// Secret Manager.
    SecretManager,
    /// Parameter Manager `render`.
    ParameterManager,
    /// The metadata server's token (the provider's own credentials).
    Metadata,
}

/// One call the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpCall {
    /// The API.
    pub api: GcpApi,
    /// Who the call ran as: `namespace/name` of a Kubernetes service account, or a Google service account email.
    pub principal: Option<String>,
    /// The request path.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

/// What the front puts into `dataCrc32c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The payload's CRC32C, as Google sends it.
    Correct,
    /// Nothing, as drongo.
    Omitted,
    /// A wrong value, as a corrupted answer would carry.
    Wrong,
}

/// The running stand-in; stops on drop.
#[derive(Debug)]
pub struct GcpStandIn {
    server: ServerThread,
    state: Arc<Shared>,
}

struct Shared {
    verifier: TokenVerifier,
    pool: String,
    global: String,
    regional: String,
    http: reqwest::Client,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("pool", &self.pool).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    /// Handed-out token -> principal.
    tokens: BTreeMap<String, String>,
    /// Tokens that came from STS (federated), as opposed to impersonation.
    federated: BTreeSet<String>,
    /// (Google service account, `namespace/name`) pairs allowed to impersonate.
    bindings: BTreeSet<(String, String)>,
    /// Secret (`projects/p/[locations/l/]secrets/s`) -> the only principals allowed to read it.
    readers: BTreeMap<String, BTreeSet<String>>,
    /// Kubernetes service accounts STS refuses.
    refused: BTreeSet<String>,
    checksum: Checksum,
    /// Parameter version name -> rendered payload.
    parameters: BTreeMap<String, Vec<u8>>,
    calls: Vec<GcpCall>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl GcpStandIn {
    /// Starts the stand-in on 127.0.0.1, trusting tokens of `issuer` for the workload pool `pool`, and forwarding
    /// Secret Manager calls to `global` (and regional ones to `regional`), both drongo endpoints.
    pub fn start(issuer: &TokenIssuer, pool: &str, global: &str, regional: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Shared {
            verifier: issuer.verifier(),
            pool: pool.to_owned(),
            global: global.trim_end_matches('/').to_owned(),
            regional: regional.trim_end_matches('/').to_owned(),
            // No pooled connections to drongo: it drops idle keep-alive connections (see `Drongo`).
            http: reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(FORWARD_TIMEOUT).build()?,
            inner: Mutex::new(Inner {
                tokens: BTreeMap::new(),
                federated: BTreeSet::new(),
                bindings: BTreeSet::new(),
                readers: BTreeMap::new(),
                refused: BTreeSet::new(),
                checksum: Checksum::Correct,
                parameters: BTreeMap::new(),
                calls: Vec::new(),
            }),
        });
        let app = Router::new().fallback(handle).with_state(Arc::clone(&state));
        let server = ServerThread::start("gcp-stand-in", app)?;
        Ok(Self { server, state })
    }

    /// `http://127.0.0.1:PORT`: the STS, IAM Credentials and Secret Manager endpoint (global and regional).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The STS audience the provider must send: `identitynamespace:POOL:PROVIDER`.
    pub fn sts_audience(&self) -> String {
        format!("identitynamespace:{}:{GKE_IDENTITY_PROVIDER}", self.state.pool)
    }

    /// Lets the Kubernetes service account `namespace/name` impersonate `email`.
    pub fn bind(&self, email: &str, namespace: &str, name: &str) {
        self.state.lock().bindings.insert((email.to_owned(), format!("{namespace}/{name}")));
    }

    /// Only `principals` may read `secret` (`projects/p/secrets/s`) from now on; others get `PERMISSION_DENIED`.
    pub fn restrict(&self, secret: &str, principals: &[&str]) {
        self.state.lock().readers.insert(secret.to_owned(), principals.iter().map(|p| (*p).to_owned()).collect());
    }

    /// STS refuses tokens of `namespace/name` with `PERMISSION_DENIED`.
    pub fn refuse(&self, namespace: &str, name: &str) {
        self.state.lock().refused.insert(format!("{namespace}/{name}"));
    }

    /// What `dataCrc32c` carries from now on.
    pub fn set_checksum(&self, checksum: Checksum) {
        self.state.lock().checksum = checksum;
    }

    /// Serves `rendered` for the Parameter Manager version `name`
    /// (`projects/p/locations/l/parameters/x/versions/v`); drongo has no Parameter Manager.
    pub fn put_parameter_version(&self, name: &str, rendered: &[u8]) {
        self.state.lock().parameters.insert(name.to_owned(), rendered.to_vec());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<GcpCall> {
        self.state.lock().calls.clone()
    }

    /// Calls to `api` so far.
    pub fn calls_to(&self, api: GcpApi) -> Vec<GcpCall> {
        self.calls().into_iter().filter(|c| c.api == api).collect()
    }

    /// Every token handed out, for leak searches.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().tokens.keys().cloned().collect()
    }
}

async fn handle(State(state): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let (api, principal, status, body) = if method == Method::POST && path == "/v1/token" {
        let (principal, status, body) = sts(&state, &body);
        (GcpApi::Sts, principal, status, body)
    } else if method == Method::POST && path.starts_with("/v1/projects/-/serviceAccounts/") && path.ends_with(":generateAccessToken") {
        let (principal, status, body) = impersonate(&state, &path, &headers, &body);
        (GcpApi::IamCredentials, principal, status, body)
    } else if method == Method::GET && path == METADATA_TOKEN_PATH {
        let (principal, status, body) = metadata_token(&state, &headers);
        (GcpApi::Metadata, principal, status, body)
    } else if method == Method::GET && path.starts_with("/v1/projects/") && path.contains("/parameters/") {
        let (principal, status, body) = render(&state, &path, &headers);
        (GcpApi::ParameterManager, principal, status, body)
    } else if method == Method::GET && path.starts_with("/v1/projects/") {
        let (principal, status, body) = secret_manager(&state, &path, &headers).await;
        (GcpApi::SecretManager, principal, status, body)
    } else {
        (GcpApi::SecretManager, None, StatusCode::NOT_FOUND, rpc_error(404, "NOT_FOUND", "no such method"))
    };
    state.lock().calls.push(GcpCall { api, principal, path, status: status.as_u16() });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

type Answer = (Option<String>, StatusCode, Value);

fn sts(state: &Shared, body: &[u8]) -> Answer {
    let invalid = |what: &str| (None, StatusCode::BAD_REQUEST, json!({"error": "invalid_grant", "error_description": what}));
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return (None, StatusCode::BAD_REQUEST, json!({"error": "invalid_request", "error_description": "body is not JSON"}));
    };
    let field = |name: &str| request[name].as_str().unwrap_or_default().to_owned();
    if field("grantType") != "urn:ietf:params:oauth:grant-type:token-exchange"
        || field("subjectTokenType") != "urn:ietf:params:oauth:token-type:jwt"
        || field("requestedTokenType") != "urn:ietf:params:oauth:token-type:access_token"
    {
        return (None, StatusCode::BAD_REQUEST, json!({"error": "invalid_request", "error_description": "unsupported grant"}));
    }
    let expected = format!("identitynamespace:{}:{GKE_IDENTITY_PROVIDER}", state.pool);
    if field("audience") != expected {
        return invalid("The audience in the request is not a workload identity pool provider of this project");
    }
    let claims = match state.verifier.verify(&field("subjectToken")) {
        Ok(claims) => claims,
        Err(problem) => return invalid(&format!("The subject token could not be verified: {problem}")),
    };
    let principal = format!("{}/{}", claims.kubernetes_io.namespace, claims.kubernetes_io.serviceaccount.name);
    if !claims.aud.iter().any(|a| a == &state.pool) {
        return invalid("The audience of the subject token is not the workload pool");
    }
    if state.lock().refused.contains(&principal) {
        return (Some(principal), StatusCode::FORBIDDEN, rpc_error(403, "PERMISSION_DENIED", "The caller does not have permission"));
    }
    let token = format!("fed.{}", random_text(32));
    {
        let mut inner = state.lock();
        inner.tokens.insert(token.clone(), principal.clone());
        inner.federated.insert(token.clone());
    }
    let body = json!({
        "access_token": token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME.as_secs(),
    });
    (Some(principal), StatusCode::OK, body)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn impersonate(state: &Shared, path: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
    let email = path.trim_start_matches("/v1/projects/-/serviceAccounts/").trim_end_matches(":generateAccessToken").to_owned();
    let inner = state.lock();
    let Some(principal) = bearer(headers).filter(|t| inner.federated.contains(*t)).and_then(|t| inner.tokens.get(t)).cloned() else {
        return (None, StatusCode::UNAUTHORIZED, rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials"));
    };
    drop(inner);
    let scoped = serde_json::from_slice::<Value>(body).ok().and_then(|b| b["scope"].as_array().cloned()).unwrap_or_default();
    if !scoped.iter().any(|s| s == "https://www.googleapis.com/auth/cloud-platform") {
        return (Some(principal), StatusCode::BAD_REQUEST, rpc_error(400, "INVALID_ARGUMENT", "Scope required"));
    }
    if !state.lock().bindings.contains(&(email.clone(), principal.clone())) {
        let message = format!("Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist): {email}");
        return (Some(principal), StatusCode::FORBIDDEN, rpc_error(403, "PERMISSION_DENIED", &message));
    }
    let token = format!("ya29.{}", random_text(40));
    state.lock().tokens.insert(token.clone(), email.clone());
    let expires = OffsetDateTime::now_utc() + TOKEN_LIFETIME;
    let expires = expires.replace_nanosecond(0).unwrap_or(expires).format(&Rfc3339).unwrap_or_default();
    (Some(email), StatusCode::OK, json!({"accessToken": token, "expireTime": expires}))
}

/// The `(project, location)` of a regional secret.
type Regional = Option<(String, String)>;

/// Where a Secret Manager path goes: the secret it names (`projects/p/[locations/l/]secrets/s`), the
/// `(project, location)` of a regional one, and the path drongo serves it at.
fn route(path: &str) -> Option<(String, Regional, String)> {
    let rest = path.strip_prefix("/v1/")?;
    let parts: Vec<&str> = rest.splitn(7, '/').collect();
    match parts.as_slice() {
        ["projects", p, "locations", l, "secrets", s, tail] => Some((
            format!("projects/{p}/locations/{l}/secrets/{s}"),
            Some(((*p).to_owned(), (*l).to_owned())),
            format!("/v1/projects/{p}/secrets/{s}/{tail}"),
        )),
        ["projects", p, "secrets", s, ..] => Some((format!("projects/{p}/secrets/{s}"), None, path.to_owned())),
        _ => None,
    }
}

async fn secret_manager(state: &Shared, path: &str, headers: &HeaderMap) -> Answer {
    let principal = {
        let inner = state.lock();
        bearer(headers).and_then(|t| inner.tokens.get(t)).cloned()
    };
    let Some(principal) = principal else {
        return (None, StatusCode::UNAUTHORIZED, rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials"));
    };
    let Some((secret, regional, upstream_path)) = route(path) else {
        return (Some(principal), StatusCode::NOT_FOUND, rpc_error(404, "NOT_FOUND", "no such resource"));
    };
    let allowed = state.lock().readers.get(&secret).is_none_or(|readers| readers.contains(&principal));
    if !allowed {
        let message = format!("Permission 'secretmanager.versions.access' denied for resource '{secret}' (or it may not exist).");
        return (Some(principal), StatusCode::FORBIDDEN, rpc_error(403, "PERMISSION_DENIED", &message));
    }
    let base = if regional.is_some() { &state.regional } else { &state.global };
    let forwarded = state.http.get(format!("{base}{upstream_path}")).send().await;
    let response = match forwarded {
        Ok(response) => response,
        Err(_) => return (Some(principal), StatusCode::BAD_GATEWAY, rpc_error(502, "UNAVAILABLE", "drongo unreachable")),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut body: Value = response.json().await.unwrap_or(Value::Null);
    if let Some((project, location)) = &regional
        && let Some(name) = body["name"].as_str()
    {
        let mapped = name.replacen(&format!("projects/{project}/secrets/"), &format!("projects/{project}/locations/{location}/secrets/"), 1);
        body["name"] = Value::String(mapped);
    }
    if status.is_success() && path.ends_with(":access") {
        let checksum = state.lock().checksum;
        let data = body["payload"]["data"].as_str().and_then(|d| BASE64.decode(d).ok()).unwrap_or_default();
        match checksum {
            Checksum::Correct => body["payload"]["dataCrc32c"] = Value::String(crc32c(&data).to_string()),
            Checksum::Wrong => body["payload"]["dataCrc32c"] = Value::String((crc32c(&data) ^ 1).to_string()),
            Checksum::Omitted => {}
        }
    }
    (Some(principal), status, body)
}

/// The metadata server's token path.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Who the node's own token reads as.
pub const NODE_SERVICE_ACCOUNT: &str = "node-default@p1.iam.gserviceaccount.com";

/// The node's own token, as the metadata server hands it out (only with `Metadata-Flavor: Google`).
fn metadata_token(state: &Shared, headers: &HeaderMap) -> Answer {
    if headers.get("Metadata-Flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (None, StatusCode::FORBIDDEN, json!({"error": "Missing Metadata-Flavor:Google header"}));
    }
    let token = format!("ya29.node.{}", random_text(32));
    state.lock().tokens.insert(token.clone(), NODE_SERVICE_ACCOUNT.to_owned());
    let body = json!({"access_token": token, "expires_in": TOKEN_LIFETIME.as_secs(), "token_type": "Bearer"});
    (Some(NODE_SERVICE_ACCOUNT.to_owned()), StatusCode::OK, body)
}

/// Parameter Manager `:render` of a version put with [`GcpStandIn::put_parameter_version`].
fn render(state: &Shared, path: &str, headers: &HeaderMap) -> Answer {
    let inner = state.lock();
    let Some(principal) = bearer(headers).and_then(|t| inner.tokens.get(t)).cloned() else {
        return (None, StatusCode::UNAUTHORIZED, rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials"));
    };
    let Some(name) = path.strip_prefix("/v1/").and_then(|p| p.strip_suffix(":render")) else {
        return (Some(principal), StatusCode::NOT_FOUND, rpc_error(404, "NOT_FOUND", "no such method"));
    };
    match inner.parameters.get(name) {
        Some(rendered) => {
            let body = json!({"parameterVersion": name, "renderedPayload": BASE64.encode(rendered)});
            (Some(principal), StatusCode::OK, body)
        }
        None => (Some(principal), StatusCode::NOT_FOUND, rpc_error(404, "NOT_FOUND", &format!("Parameter version [{name}] not found."))),
    }
}

fn rpc_error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

/// CRC32C (Castagnoli), bit by bit: the test side's own, independent of the provider's table-driven one.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

#[cfg(test)]
mod tests;
