//! A recording, fault-injecting proxy between the provider and moto, standing in for "AWS" as a whole.
//!
//! moto answers every region and service on one port, so the provider is pointed at this proxy
//! (`AWS_ENDPOINT_URL`) and the proxy forwards to moto. On the way it:
//!
//! - records each call: service and region (from the SigV4 credential scope), action (`X-Amz-Target`, or the
//!   form's `Action` for STS), the access key that signed it, the request body and the status answered, so tests
//!   can prove which region, which identity and how many calls a mount used;
//! - injects faults by region, service and action (a 5xx for one region is how a test makes only the primary
//!   region fail, since moto serves both from one endpoint);
//! - optionally checks `AssumeRoleWithWebIdentity` the way STS does and moto does not: the token must verify
//!   against the cluster's signer, carry the audience `sts.amazonaws.com`, and the role must trust its subject.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::TokenIssuer;
use crate::server_thread::ServerThread;
use crate::sigv4;
use crate::tokens::TokenVerifier;
use crate::upstream::{Failure, Upstream};

/// The audience STS requires of web identity tokens from an EKS cluster's OIDC provider.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// One call the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCall {
    /// The signing name (`secretsmanager`, `ssm`, `sts`); `sts` for an unsigned web identity call.
    pub service: Option<String>,
    /// The region of the signature; `None` for unsigned calls.
    pub region: Option<String>,
    /// `GetSecretValue`, `GetParameters`, `AssumeRoleWithWebIdentity`, ...
    pub action: Option<String>,
    /// The access key that signed the call.
    pub access_key_id: Option<String>,
    /// The request body.
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
    /// False when the proxy answered itself (an injected fault or a refused web identity).
    pub forwarded: bool,
    /// For `AssumeRoleWithWebIdentity` answered with credentials: the credentials handed out.
    pub issued: Option<IssuedCredentials>,
}

/// Temporary AWS credentials handed to the provider (by STS or the Pod Identity agent). Debug shows only the
/// access key id.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    /// `ASIA...`.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
    /// The session token.
    pub session_token: String,
}

impl std::fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedCredentials({}, <redacted>)", self.access_key_id)
    }
}

impl AwsCall {
    /// The body as JSON (Secrets Manager and SSM calls).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// One field of a form body (STS calls).
    pub fn form(&self, name: &str) -> Option<String> {
        form_field(&self.body, name)
    }

    /// Whether this is `action` of `service`.
    pub fn is(&self, service: &str, action: &str) -> bool {
        self.service.as_deref() == Some(service) && self.action.as_deref() == Some(action)
    }
}

/// A fault the proxy answers instead of forwarding: every call matching all the set filters gets `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFault {
    status: u16,
    code: Option<String>,
    region: Option<String>,
    service: Option<String>,
    action: Option<String>,
    remaining: Option<usize>,
}

impl AwsFault {
    /// Every call gets `status` (narrow it down with the filters).
    pub fn status(status: u16) -> Self {
        Self {
            status,
            code: None,
            region: None,
            service: None,
            action: None,
            remaining: None,
        }
    }

    /// Only calls signed for `region`.
    #[must_use]
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    /// Only calls of `service` (signing name).
    #[must_use]
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// Only calls of `action`.
    #[must_use]
    pub fn action(mut self, action: &str) -> Self {
        self.action = Some(action.to_owned());
        self
    }

    /// The error code in the answer (default from the status: `InternalFailure`, `ServiceUnavailable`, ...).
    #[must_use]
    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    /// Only the next `n` matching calls.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, call: &AwsCall) -> bool {
        let field = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        self.remaining != Some(0)
            && field(&self.region, &call.region)
            && field(&self.service, &call.service)
            && field(&self.action, &call.action)
    }

    fn error_code(&self) -> String {
        self.code.clone().unwrap_or_else(|| {
            match self.status {
                400 => "ValidationException",
                403 => "AccessDeniedException",
                404 => "ResourceNotFoundException",
                429 => "ThrottlingException",
                503 => "ServiceUnavailable",
                _ => "InternalFailure",
            }
            .to_owned()
        })
    }
}

/// A running proxy; stops on drop.
#[derive(Debug)]
pub struct AwsProxy {
    server: ServerThread,
    state: Arc<Shared>,
}

struct Shared {
    upstream: Upstream,
    web_identity: Option<TokenVerifier>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<AwsCall>,
    faults: Vec<AwsFault>,
    /// Role ARN -> subjects (`system:serviceaccount:<ns>:<name>`) its trust policy admits.
    trust: BTreeMap<String, Vec<String>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AwsProxy {
    /// A proxy forwarding everything to `upstream` (moto's endpoint), checking nothing.
    pub fn start(upstream: &str) -> anyhow::Result<Self> {
        Self::start_inner(upstream, None)
    }

    /// A proxy that also checks web identity tokens as STS does: signed by `issuer`, audience
    /// `sts.amazonaws.com`, and a role that trusts the token's subject (see [`trust`](Self::trust)).
    pub fn start_with_sts_checks(upstream: &str, issuer: &TokenIssuer) -> anyhow::Result<Self> {
        Self::start_inner(upstream, Some(issuer.verifier()))
    }

    fn start_inner(upstream: &str, web_identity: Option<TokenVerifier>) -> anyhow::Result<Self> {
        let state = Arc::new(Shared {
            upstream: Upstream::new("moto", upstream)?,
            web_identity,
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .fallback(forward)
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&state));
        let server = ServerThread::start("aws-proxy", app)?;
        Ok(Self { server, state })
    }

    /// The endpoint for `AWS_ENDPOINT_URL`, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Lets `role_arn` be assumed with web identity tokens of `namespace/service_account` (only checked by a
    /// proxy started with [`start_with_sts_checks`](Self::start_with_sts_checks)).
    pub fn trust(&self, role_arn: &str, namespace: &str, service_account: &str) {
        self.state
            .lock()
            .trust
            .entry(role_arn.to_owned())
            .or_default()
            .push(format!(
                "system:serviceaccount:{namespace}:{service_account}"
            ));
    }

    /// Adds a fault; faults are checked in the order added.
    pub fn inject(&self, fault: AwsFault) {
        self.state.lock().faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<AwsCall> {
        self.state.lock().calls.clone()
    }

    /// The calls of `action` of `service`.
    pub fn calls_of(&self, service: &str, action: &str) -> Vec<AwsCall> {
        self.calls()
            .into_iter()
            .filter(|call| call.is(service, action))
            .collect()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.state.lock().calls.clear();
    }
}

async fn forward(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut call = describe(&headers, &body);

    if let Some(response) = injected_fault(&state, &mut call) {
        state.lock().calls.push(call);
        return response;
    }
    if call.action.as_deref() == Some("AssumeRoleWithWebIdentity")
        && let Some(verifier) = &state.web_identity
        && let Some(response) = check_web_identity(&state, verifier, &mut call)
    {
        state.lock().calls.push(call);
        return response;
    }

    let answer = match state.upstream.forward(method, &uri, &headers, body).await {
        Ok(answer) => answer,
        Err(failure) => {
            call.status = 502;
            let message = match failure {
                Failure::Unreachable(message) => {
                    call.forwarded = false;
                    message
                }
                Failure::Lost(message) => message,
            };
            state.lock().calls.push(call);
            return (StatusCode::BAD_GATEWAY, message).into_response();
        }
    };
    let status = answer.status;
    call.status = status.as_u16();
    call.forwarded = true;
    if call.action.as_deref() == Some("AssumeRoleWithWebIdentity") && status.is_success() {
        call.issued = Some(IssuedCredentials {
            access_key_id: xml_element(&answer.body, "AccessKeyId").unwrap_or_default(),
            secret_access_key: xml_element(&answer.body, "SecretAccessKey").unwrap_or_default(),
            session_token: xml_element(&answer.body, "SessionToken").unwrap_or_default(),
        });
    }
    state.lock().calls.push(call);
    answer.into_response()
}

/// What a request is, read from its signature, target header and body.
fn describe(headers: &HeaderMap, body: &[u8]) -> AwsCall {
    let scope = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(sigv4::parse_scope);
    let target_action = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned);
    let form_action = form_field(body, "Action");
    let action = target_action.or(form_action);
    let service = scope.as_ref().map(|s| s.service.clone()).or_else(|| {
        // The SDKs send AssumeRoleWithWebIdentity unsigned: it is authenticated by its token.
        (action.as_deref() == Some("AssumeRoleWithWebIdentity")).then(|| "sts".to_owned())
    });
    AwsCall {
        service,
        region: scope.as_ref().map(|s| s.region.clone()),
        action,
        access_key_id: scope.map(|s| s.access_key_id),
        body: body.to_vec(),
        status: 0,
        forwarded: false,
        issued: None,
    }
}

fn injected_fault(state: &Shared, call: &mut AwsCall) -> Option<Response> {
    let fault = {
        let mut inner = state.lock();
        let fault = inner.faults.iter_mut().find(|f| f.matches(call))?;
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
        }
        fault.clone()
    };
    call.status = fault.status;
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = format!(
        "injected by the test proxy for region {}",
        call.region.as_deref().unwrap_or("(none)")
    );
    Some(error_response(call, status, &fault.error_code(), &message))
}

/// STS's checks of `AssumeRoleWithWebIdentity`, which moto skips. `None` lets the call through.
fn check_web_identity(
    state: &Shared,
    verifier: &TokenVerifier,
    call: &mut AwsCall,
) -> Option<Response> {
    let token = call.form("WebIdentityToken").unwrap_or_default();
    let role_arn = call.form("RoleArn").unwrap_or_default();
    let refusal = match verifier.verify(&token) {
        Err(problem) => Some((
            StatusCode::BAD_REQUEST,
            "InvalidIdentityToken",
            format!("Couldn't verify the web identity token: {problem}"),
        )),
        Ok(claims) if !claims.aud.iter().any(|a| a == STS_AUDIENCE) => Some((
            StatusCode::BAD_REQUEST,
            "InvalidIdentityToken",
            "Incorrect token audience".to_owned(),
        )),
        Ok(claims) => {
            let trusted = state
                .lock()
                .trust
                .get(&role_arn)
                .is_some_and(|subjects| subjects.contains(&claims.sub));
            (!trusted).then(|| {
                (
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "Not authorized to perform sts:AssumeRoleWithWebIdentity".to_owned(),
                )
            })
        }
    };
    let (status, code, message) = refusal?;
    call.status = status.as_u16();
    Some(error_response(call, status, code, &message))
}

/// An error in the protocol of the call's service: XML for STS (query protocol), JSON otherwise.
fn error_response(call: &AwsCall, status: StatusCode, code: &str, message: &str) -> Response {
    if call.service.as_deref() == Some("sts") {
        let kind = if status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>{kind}</Type>\
             <Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        );
        (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
    } else {
        let body = json!({"__type": code, "message": message}).to_string();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            body,
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(code) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("x-amzn-errortype"), value);
        }
        response
    }
}

/// The decoded value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name).then(|| percent_decode(value))?
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The text of the first `<name>...</name>` in an XML answer.
fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        let body = b"Action=AssumeRoleWithWebIdentity&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa+b&Version=2011-06-15";
        assert_eq!(
            form_field(body, "Action").as_deref(),
            Some("AssumeRoleWithWebIdentity")
        );
        assert_eq!(
            form_field(body, "RoleArn").as_deref(),
            Some("arn:aws:iam::1:role/a b")
        );
        assert_eq!(form_field(body, "Missing"), None);
        assert_eq!(form_field(b"{\"json\":1}", "Action"), None);
    }

    #[test]
    fn faults_match_on_every_set_filter() {
        let call = AwsCall {
            service: Some("secretsmanager".to_owned()),
            region: Some("us-east-1".to_owned()),
            action: Some("GetSecretValue".to_owned()),
            access_key_id: None,
            body: Vec::new(),
            status: 0,
            forwarded: false,
            issued: None,
        };
        assert!(AwsFault::status(500).matches(&call));
        assert!(
            AwsFault::status(500)
                .region("us-east-1")
                .service("secretsmanager")
                .matches(&call)
        );
        assert!(!AwsFault::status(500).region("eu-west-1").matches(&call));
        assert!(!AwsFault::status(500).action("GetParameters").matches(&call));
        assert!(!AwsFault::status(500).times(0).matches(&call));
    }

    #[test]
    fn xml_elements_are_found() {
        let body = b"<R><Credentials><AccessKeyId>ASIAX</AccessKeyId></Credentials></R>";
        assert_eq!(xml_element(body, "AccessKeyId").as_deref(), Some("ASIAX"));
        assert_eq!(xml_element(body, "Nope"), None);
    }
}
