//! Google's REST calls (on the shared `backend::rest` transport: bounded
//! answers, retries), and Google's two error shapes read as data.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::BACKEND;
use crate::backend::rest::{self, Policy};
pub(super) use crate::backend::rest::Answer;
use crate::backend::{Error, ErrorKind};

/// Largest answer read: a Secret Manager payload is at most 64 KiB (about 88 KiB
/// in base64), so this leaves room for the envelope and refuses anything absurd
/// before it is held in memory.
pub(super) const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longest piece of Google's own error text repeated in our messages.
const MAX_ERROR_TEXT: usize = 300;

impl Answer {
    /// The error Google put into a non-2xx answer.
    pub(super) fn google_error(&self) -> GoogleError {
        GoogleError::read(self.status, &self.body)
    }
}

/// The error of a failed Google call: the HTTP status, Google's canonical
/// status name (`NOT_FOUND`, `FAILED_PRECONDITION`) and its message.
#[derive(Debug, Clone)]
pub(super) struct GoogleError {
    pub(super) http: u16,
    /// `error.status` of the JSON error, or `error` of an OAuth error (STS).
    pub(super) status: Option<String>,
    pub(super) message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Rpc { error: RpcError },
    OAuth { error: String, error_description: Option<String> },
}

#[derive(Deserialize)]
struct RpcError {
    status: Option<String>,
    message: Option<String>,
}

impl GoogleError {
    fn read(status: StatusCode, body: &[u8]) -> Self {
        let (name, message) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody::Rpc { error }) => (error.status, error.message.unwrap_or_default()),
            Ok(ErrorBody::OAuth { error, error_description }) => (Some(error), error_description.unwrap_or_default()),
            Err(_) => (None, String::new()),
        };
        let message: String = message.chars().filter(|c| !c.is_control()).take(MAX_ERROR_TEXT).collect();
        Self { http: status.as_u16(), status: name, message }
    }

    /// `HTTP 404 NOT_FOUND: Secret [...] not found.`
    pub(super) fn describe(&self) -> String {
        let mut text = format!("HTTP {}", self.http);
        if let Some(status) = &self.status {
            text.push(' ');
            text.push_str(status);
        }
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        }
        text
    }

    /// The kind of a refusal, by HTTP status and Google's status name.
    pub(super) fn kind(&self) -> ErrorKind {
        match (self.http, self.status.as_deref()) {
            (401 | 403, _) | (_, Some("PERMISSION_DENIED" | "UNAUTHENTICATED" | "invalid_grant")) => ErrorKind::Denied,
            (404, _) | (_, Some("NOT_FOUND")) => ErrorKind::NotFound,
            (429, _) | (500..=599, _) => ErrorKind::Unavailable,
            _ => ErrorKind::Invalid,
        }
    }
}

impl std::fmt::Display for GoogleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for GoogleError {}

/// How Google is called.
const POLICY: Policy = Policy {
    backend: BACKEND,
    max_answer_bytes: MAX_ANSWER_BYTES,
    attempts: 3,
    backoff: Duration::from_millis(100),
    unreachable_hint: "check the endpoint flags and that Google's API is reachable from the node",
    too_large_hint: "the endpoint is not Google's API, or answered something else",
};

/// Sends the request `build` makes, retrying connect failures, 429 and 5xx
/// with backoff (or the pause Google asks for, capped); `what` names the call
/// in errors (`STS token exchange`).
pub(super) async fn send(build: impl Fn() -> reqwest::RequestBuilder, what: &str) -> Result<Answer, Error> {
    rest::send(&POLICY, build, what).await
}

/// An `Authorization: Bearer` value that HTTP logs never print.
pub(super) fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, Error> {
    rest::bearer(BACKEND, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_error_shapes() {
        let rpc = GoogleError::read(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":400,"message":"Cannot access.","status":"FAILED_PRECONDITION"}}"#,
        );
        assert_eq!(rpc.status.as_deref(), Some("FAILED_PRECONDITION"));
        assert_eq!(rpc.kind(), ErrorKind::Invalid);
        let oauth = GoogleError::read(StatusCode::BAD_REQUEST, br#"{"error":"invalid_grant","error_description":"bad"}"#);
        assert_eq!(oauth.kind(), ErrorKind::Denied);
        assert_eq!(oauth.describe(), "HTTP 400 invalid_grant: bad");
        let junk = GoogleError::read(StatusCode::NOT_FOUND, b"<html>");
        assert_eq!((junk.kind(), junk.describe()), (ErrorKind::NotFound, "HTTP 404".to_owned()));
        let unavailable = GoogleError::read(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(unavailable.kind(), ErrorKind::Unavailable);
    }
}
