//! Azure's REST calls on the provider's HTTP client: bounded answers, listed
//! retries that honour `Retry-After`, and the error shapes of Key Vault and of
//! Entra's token endpoint read as data.

use std::time::Duration;

use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::BACKEND;
use crate::backend::{Error, ErrorKind};

/// Largest answer read: a Key Vault secret is at most 25 KiB and a certificate
/// bundle a few KiB, so this leaves room for the envelope and a page of
/// versions, and refuses anything absurd before it is held in memory.
pub(super) const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Time allowed for one HTTP exchange; the mount's own deadline bounds the retries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts for a call that failed to connect or answered 429/5xx.
const ATTEMPTS: u32 = 4;
/// First pause between attempts without a `Retry-After`, doubled each time,
/// with up to as much again of jitter.
const BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause a `Retry-After` may ask for; a longer one is cut to this (the
/// mount's deadline still bounds the whole).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Longest piece of Azure's own error text repeated in our messages.
const MAX_ERROR_TEXT: usize = 300;

/// An HTTP answer whose body may hold a secret or a token: wiped on drop.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Zeroizing<Vec<u8>>,
}

impl Answer {
    /// The error Azure put into a non-2xx answer.
    pub(super) fn azure_error(&self) -> AzureError {
        AzureError::read(self.status, &self.body)
    }
}

/// The error of a failed Azure call: the HTTP status, the error code
/// (`SecretNotFound`, `Forbidden`, `invalid_client`), Key Vault's inner code
/// (`AccessDenied`, `SecretDisabled`), Entra's `AADSTS` code and the message.
#[derive(Debug, Clone)]
pub(crate) struct AzureError {
    pub(crate) http: u16,
    pub(crate) code: Option<String>,
    pub(crate) inner: Option<String>,
    /// The first `AADSTS` number of a token endpoint refusal.
    pub(crate) aadsts: Option<u64>,
    pub(crate) message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    KeyVault {
        error: KeyVaultError,
    },
    Entra {
        error: String,
        error_description: Option<String>,
        error_codes: Option<Vec<u64>>,
    },
}

#[derive(Deserialize)]
struct KeyVaultError {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    code: Option<String>,
}

/// Azure's text, without control characters and cut to [`MAX_ERROR_TEXT`];
/// Entra's descriptions end in trace and correlation ids on later lines, which
/// are dropped.
fn clean(text: &str) -> String {
    let first = text.split(['\r', '\n']).next().unwrap_or_default();
    first
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A short code from Azure, kept only when it looks like one.
fn code(text: Option<String>) -> Option<String> {
    text.filter(|c| {
        !c.is_empty()
            && c.len() <= 64
            && c.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
}

impl AzureError {
    pub(crate) fn read(status: StatusCode, body: &[u8]) -> Self {
        let mut error = Self {
            http: status.as_u16(),
            code: None,
            inner: None,
            aadsts: None,
            message: String::new(),
        };
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody::KeyVault { error: kv }) => {
                error.code = code(kv.code);
                error.inner = code(kv.innererror.and_then(|i| i.code));
                error.message = clean(&kv.message.unwrap_or_default());
            }
            Ok(ErrorBody::Entra {
                error: name,
                error_description,
                error_codes,
            }) => {
                error.code = code(Some(name));
                error.message = clean(&error_description.unwrap_or_default());
                error.aadsts = error_codes.and_then(|c| c.first().copied());
            }
            Err(_) => {}
        }
        error
    }

    /// `HTTP 403 Forbidden (AccessDenied): The user ... does not have secrets get permission`.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!("HTTP {}", self.http);
        if let Some(code) = &self.code {
            text.push(' ');
            text.push_str(code);
        }
        if let Some(inner) = &self.inner {
            text.push_str(&format!(" ({inner})"));
        }
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        } else if let Some(n) = self.aadsts {
            text.push_str(&format!(": AADSTS{n}"));
        }
        text
    }

    /// The kind of a refusal, by HTTP status.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self.http {
            401 | 403 => ErrorKind::Denied,
            404 => ErrorKind::NotFound,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ if self
                .code
                .as_deref()
                .is_some_and(|c| c.starts_with("invalid_") || c == "unauthorized_client") =>
            {
                ErrorKind::Denied
            }
            _ => ErrorKind::Invalid,
        }
    }
}

impl std::fmt::Display for AzureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for AzureError {}

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
/// (after the pause Azure asks for, capped); `what` names the call in errors.
pub(super) async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
) -> Result<Answer, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= ATTEMPTS;
        let pause = match once(build().timeout(REQUEST_TIMEOUT)).await {
            Ok((answer, _)) if last || !retryable(answer.status) => return Ok(answer),
            Ok((_, asked)) => asked.unwrap_or_else(|| backoff(attempt)),
            Err(CallError::Transport(e)) if !last && (e.is_connect() || e.is_timeout()) => {
                backoff(attempt)
            }
            Err(e) => {
                let kind = match &e {
                    CallError::Transport(t) if t.is_timeout() => ErrorKind::Timeout,
                    CallError::Transport(_) => ErrorKind::Unavailable,
                    CallError::TooLarge => ErrorKind::Invalid,
                };
                let after = if attempt > 1 {
                    format!(" after {attempt} attempts")
                } else {
                    String::new()
                };
                let hint = match &e {
                    CallError::TooLarge => {
                        "the endpoint is not Azure's, or answered something else"
                    }
                    CallError::Transport(_) => {
                        "check the endpoint (cloudName, --azure-keyvault-endpoint, --azure-authority-host), its CA \
                         (--azure-ca-file) and that it is reachable from the node"
                    }
                };
                return Err(Error::new(
                    kind,
                    BACKEND,
                    format!("{what} failed{after}: {e}; {hint}"),
                )
                .caused_by(e));
            }
        };
        tracing::debug!(
            backend = BACKEND,
            call = what,
            attempt,
            pause_ms = pause.as_millis() as u64,
            "retrying"
        );
        tokio::time::sleep(pause).await;
    }
}

/// Exponential backoff with jitter for attempt `attempt` (1-based).
fn backoff(attempt: u32) -> Duration {
    let pause = BACKOFF * 2u32.pow(attempt.saturating_sub(1).min(8));
    let jitter = rand::rng().random_range(0..=u64::try_from(pause.as_millis()).unwrap_or(u64::MAX));
    pause + Duration::from_millis(jitter)
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The pause an answer asks for: `retry-after-ms`, `x-ms-retry-after-ms`, or
/// `Retry-After` in seconds or as an HTTP date; capped at [`MAX_RETRY_AFTER`].
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let asked = if let Some(ms) = text("retry-after-ms")
        .or_else(|| text("x-ms-retry-after-ms"))
        .and_then(|v| v.parse::<u64>().ok())
    {
        Duration::from_millis(ms)
    } else {
        let value = text("retry-after")?;
        match value.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => humantime::parse_rfc3339_weak(value)
                .ok()
                .or_else(|| httpdate(value))
                .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
                .unwrap_or_default(),
        }
    };
    Some(asked.min(MAX_RETRY_AFTER))
}

/// An IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`) as a time.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m == month)? + 1;
    humantime::parse_rfc3339_weak(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
}

async fn once(request: reqwest::RequestBuilder) -> Result<(Answer, Option<Duration>), CallError> {
    let mut response = request.send().await.map_err(CallError::Transport)?;
    let status = response.status();
    let asked = retry_after(response.headers());
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(CallError::TooLarge);
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await.map_err(CallError::Transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(CallError::TooLarge);
        }
        // Grow by hand so no copy of a secret is left behind in a freed buffer.
        if body.capacity() < body.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (body.len() + chunk.len()).max(body.capacity() * 2),
            ));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok((Answer { status, body }, asked))
}

/// An `Authorization: Bearer` value that HTTP logs never print.
pub(super) fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, Error> {
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                "an access token is not a valid header value",
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests;
