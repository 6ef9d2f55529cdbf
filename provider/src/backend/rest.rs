//! REST calls of the backends that speak plain HTTP (Google, Azure) on the
//! provider's HTTP client: answers bounded before they are held, bodies wiped
//! when dropped, retries of connect failures, 429 and 5xx with jittered
//! exponential backoff or the pause the service asks for (capped), and every
//! failure typed, with the `reqwest` error as its source.

use std::time::Duration;

use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use zeroize::Zeroizing;

use super::{Error, ErrorKind};

/// Time allowed for one HTTP exchange; the mount's own deadline bounds the retries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest pause a `Retry-After` may ask for; a longer one is cut to this (the
/// mount's deadline still bounds the whole).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How one backend calls its service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The backend, named in errors.
    pub(crate) backend: &'static str,
    /// Largest answer read, checked before and while it is received.
    pub(crate) max_answer_bytes: usize,
    /// Attempts for a call that failed to connect or answered 429/5xx.
    pub(crate) attempts: u32,
    /// First pause between attempts without a `Retry-After`, doubled each
    /// time, with up to as much again of jitter.
    pub(crate) backoff: Duration,
    /// What to check when the service cannot be reached.
    pub(crate) unreachable_hint: &'static str,
    /// What an oversized answer suggests.
    pub(crate) too_large_hint: &'static str,
}

/// An HTTP answer whose body may hold a secret or a token: wiped on drop.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

/// Why no answer arrived.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The connection or the exchange failed.
    #[error("the request failed")]
    Transport(#[source] reqwest::Error),
    /// The answer was larger than the policy allows.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// Sends the request `build` makes under `policy`; `what` names the call in
/// errors (`the STS token exchange`). An answer of any status is returned once
/// it is final (not 429/5xx, or the attempts are spent).
pub(crate) async fn send(policy: &Policy, build: impl Fn() -> reqwest::RequestBuilder, what: &str) -> Result<Answer, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= policy.attempts;
        let pause = match once(policy, build().timeout(REQUEST_TIMEOUT)).await {
            Ok((answer, _)) if last || !retryable(answer.status) => return Ok(answer),
            Ok((_, asked)) => asked.unwrap_or_else(|| backoff(policy.backoff, attempt)),
            Err(CallError::Transport(e)) if !last && (e.is_connect() || e.is_timeout()) => backoff(policy.backoff, attempt),
            Err(e) => {
                let kind = match &e {
                    CallError::Transport(t) if t.is_timeout() => ErrorKind::Timeout,
                    CallError::Transport(_) => ErrorKind::Unavailable,
                    CallError::TooLarge(_) => ErrorKind::Invalid,
                };
                let after = if attempt > 1 { format!(" after {attempt} attempts") } else { String::new() };
                let hint = match &e {
                    CallError::TooLarge(_) => policy.too_large_hint,
                    CallError::Transport(_) => policy.unreachable_hint,
                };
                return Err(Error::new(kind, policy.backend, format!("{what} failed{after}: {e}; {hint}")).caused_by(e));
            }
        };
        tracing::debug!(backend = policy.backend, call = what, attempt, pause_ms = pause.as_millis() as u64, "retrying");
        tokio::time::sleep(pause).await;
    }
}

/// Exponential backoff from `first` with jitter, for attempt `attempt` (1-based).
fn backoff(first: Duration, attempt: u32) -> Duration {
    let pause = first * 2u32.pow(attempt.saturating_sub(1).min(8));
    let jitter = rand::rng().random_range(0..=u64::try_from(pause.as_millis()).unwrap_or(u64::MAX));
    pause + Duration::from_millis(jitter)
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The pause an answer asks for: `retry-after-ms`, `x-ms-retry-after-ms`, or
/// `Retry-After` in seconds or as an HTTP date; capped at [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let asked = if let Some(ms) =
        text("retry-after-ms").or_else(|| text("x-ms-retry-after-ms")).and_then(|v| v.parse::<u64>().ok())
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
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months.iter().position(|m| m == month)? + 1;
    humantime::parse_rfc3339_weak(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
}

async fn once(policy: &Policy, request: reqwest::RequestBuilder) -> Result<(Answer, Option<Duration>), CallError> {
    let limit = policy.max_answer_bytes;
    let mut response = request.send().await.map_err(CallError::Transport)?;
    let status = response.status();
    let asked = retry_after(response.headers());
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(CallError::TooLarge(limit));
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await.map_err(CallError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(CallError::TooLarge(limit));
        }
        // Grow by hand so no copy of a secret is left behind in a freed buffer.
        if body.capacity() < body.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((body.len() + chunk.len()).max(body.capacity() * 2)));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok((Answer { status, body }, asked))
}

/// An `Authorization: Bearer` value that HTTP logs never print.
pub(crate) fn bearer(backend: &'static str, token: &str) -> Result<reqwest::header::HeaderValue, Error> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::new(ErrorKind::Unavailable, backend, "an access token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests;
