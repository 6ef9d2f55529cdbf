//! Google's REST calls on the provider's HTTP client: bounded answers, listed
//! retries, and Google's two error shapes read as data.

use std::time::Duration;

use rand::Rng as _;
use reqwest::StatusCode;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::BACKEND;
use crate::backend::{Error, ErrorKind};

/// Largest answer read: a Secret Manager payload is at most 64 KiB (about 88 KiB
/// in base64), so this leaves room for the envelope and refuses anything absurd
/// before it is held in memory.
pub(super) const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Time allowed for one HTTP exchange; the mount's own deadline bounds the retries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts for a call that failed to connect or answered 429/5xx.
const ATTEMPTS: u32 = 3;
/// First pause between attempts, doubled each time, with up to as much again of jitter.
const BACKOFF: Duration = Duration::from_millis(100);
/// Longest piece of Google's own error text repeated in our messages.
const MAX_ERROR_TEXT: usize = 300;

/// An HTTP answer whose body may hold a secret or a token: wiped on drop.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Zeroizing<Vec<u8>>,
}

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

/// Why no answer arrived.
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    /// The connection or the exchange failed.
    #[error("the request failed")]
    Transport(#[source] reqwest::Error),
    /// The answer was larger than [`MAX_ANSWER_BYTES`].
    #[error("the answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
}

/// Sends the request `build` makes, retrying connect failures, 429 and 5xx
/// with backoff; `what` names the call in errors (`STS token exchange`).
pub(super) async fn send(build: impl Fn() -> reqwest::RequestBuilder, what: &str) -> Result<Answer, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= ATTEMPTS;
        match once(build().timeout(REQUEST_TIMEOUT)).await {
            Ok(answer) if last || !retryable(answer.status) => return Ok(answer),
            Ok(_) => {}
            Err(CallError::Transport(e)) if !last && (e.is_connect() || e.is_timeout()) => {}
            Err(e) => {
                let kind = match &e {
                    CallError::Transport(t) if t.is_timeout() => ErrorKind::Timeout,
                    CallError::Transport(_) => ErrorKind::Unavailable,
                    CallError::TooLarge => ErrorKind::Invalid,
                };
                let after = if attempt > 1 { format!(" after {attempt} attempts") } else { String::new() };
                let hint = match &e {
                    CallError::TooLarge => "the endpoint is not Google's API, or answered something else".to_owned(),
                    CallError::Transport(_) => "check the endpoint flags and that Google's API is reachable from the node".to_owned(),
                };
                return Err(Error::new(kind, BACKEND, format!("{what} failed{after}: {e}; {hint}")).caused_by(e));
            }
        }
        let pause = BACKOFF * 2u32.pow(attempt - 1);
        let jitter = rand::rng().random_range(0..=pause.as_millis().try_into().unwrap_or(u64::MAX));
        tokio::time::sleep(pause + Duration::from_millis(jitter)).await;
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

async fn once(request: reqwest::RequestBuilder) -> Result<Answer, CallError> {
    let mut response = request.send().await.map_err(CallError::Transport)?;
    let status = response.status();
    if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
        return Err(CallError::TooLarge);
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await.map_err(CallError::Transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(CallError::TooLarge);
        }
        // Grow by hand so no copy of a secret is left behind in a freed buffer.
        if body.capacity() < body.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((body.len() + chunk.len()).max(body.capacity() * 2)));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

/// An `Authorization: Bearer` value that HTTP logs never print.
pub(super) fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, Error> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::new(ErrorKind::Unavailable, BACKEND, "an access token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
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
