//! HTTP to Vault: one request with its bounded, jittered retry policy, the body
//! limits, and what a transport failure means for retrying.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::Value;

use super::session::Session;
use super::{Error, ErrorKind};
use crate::backend::Cause;
use crate::metrics::{OperationLabels, RequestLabels, status_class};
use crate::secret::SecretString;

/// Attempts per request on retryable failures (connect errors, 429, 5xx).
const MAX_ATTEMPTS: u32 = 3;
/// First retry delay; doubled per attempt, plus up to 50% jitter.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
/// Largest response body accepted; a larger one is refused rather than buffered.
/// (The driver takes at most 4 MiB of files for a whole mount.)
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes of response bodies one mount receives in all: JSON framing around
/// at most 4 MiB of files, with room for a retried read.
const MAX_MOUNT_RESPONSE_BYTES: usize = 12 * 1024 * 1024;

/// Why an attempt failed in transit; the HTTP client's error is kept as the
/// source, and classified by its type, never by its text.
#[derive(Debug, Clone)]
pub(super) enum TransportError {
    /// The HTTP client failed: no connection, a timeout, TLS, a cut connection.
    /// Shown with the chain of causes, as the mount's message has always shown it.
    Http(Arc<reqwest::Error>),
    /// The server sent a body larger than [`MAX_RESPONSE_BYTES`].
    BodyTooLarge,
    /// The server's answer is not JSON.
    NotJson {
        /// The answer's status code.
        status: u16,
        /// The parser's category of error, never the text around it.
        category: serde_json::error::Category,
    },
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => f.write_str(&describe_transport_error(e)),
            Self::BodyTooLarge => write!(f, "response larger than {MAX_RESPONSE_BYTES} bytes"),
            Self::NotJson { status, category } => write!(f, "HTTP {status}: the response is not JSON ({category:?} error)"),
        }
    }
}

/// The source is the HTTP client's error itself (not its shared handle), so
/// callers find it with `downcast_ref::<reqwest::Error>()`.
impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Http(e) => Some(&**e),
            Self::BodyTooLarge | Self::NotJson { .. } => None,
        }
    }
}

impl TransportError {
    /// The HTTP client's error.
    pub(super) fn http(e: reqwest::Error) -> Self {
        Self::Http(Arc::new(e))
    }
}

/// Outcome of one HTTP attempt.
pub(super) enum Attempt {
    Done(reqwest::StatusCode, Value),
    /// The server answered 429 or a 5xx: it was busy, sealed, or failed midway.
    Busy(u16),
    /// The request failed in transit. `unsent` when it provably never left this
    /// process (the connection was never established).
    Lost { cause: TransportError, unsent: bool },
    /// A failure retrying cannot fix (the server's certificate is not trusted).
    Fatal(TransportError),
    /// The mount's responses together passed [`MAX_MOUNT_RESPONSE_BYTES`].
    TooLarge,
}

/// Which failed attempts of a request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Sending it twice does no harm: a read, a lease renewal (the same increment
    /// again), a login (see [`Session::login`]).
    Always,
    /// The request issues something (a certificate, database credentials, any
    /// write-method secret read): sent again only when an attempt provably never
    /// reached the server, or the server refused it unprocessed (429). After a 5xx
    /// or a connection lost once the request was sent, the server may have issued
    /// it; a second attempt would issue a second certificate or lease nobody holds.
    UnsentOnly,
}

impl Replay {
    /// Whether a failed attempt with this outcome may be sent again.
    fn allows(self, outcome: &Attempt) -> bool {
        match outcome {
            // Vault's rate-limit quotas refuse a request before it is routed.
            Attempt::Busy(429) => true,
            Attempt::Busy(_) => self == Self::Always,
            Attempt::Lost { unsent, .. } => *unsent || self == Self::Always,
            Attempt::Done(..) | Attempt::Fatal(_) | Attempt::TooLarge => false,
        }
    }
}

impl Session {
    /// Sends one request with bounded, jittered retries on connect errors, 429 and
    /// 5xx, as far as `replay` allows.
    #[allow(clippy::too_many_arguments, reason = "one request's parts; a struct for them would only be unpacked here")]
    pub(super) async fn send(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
        token: Option<&SecretString>,
        replay: Replay,
    ) -> Result<(reqwest::StatusCode, Value), Error> {
        let mut url = self.endpoint.base.join(path).map_err(|e| {
            self.error(ErrorKind::Invalid, format!("path {path:?} does not form a URL: {e}"))
        })?;
        url.set_query(query);
        let mut last = String::new();
        let mut last_cause: Option<TransportError> = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let mut request = self.endpoint.http.request(method.clone(), url.clone());
            request = request.header("X-Vault-Request", "true");
            if let Some(ns) = &self.cfg.namespace {
                request = request.header("X-Vault-Namespace", ns);
            }
            if let Some(token) = token {
                let mut value = reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    self.error(ErrorKind::Unavailable, "the server issued a token that is not a valid header".into())
                })?;
                value.set_sensitive(true);
                request = request.header("X-Vault-Token", value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let started = Instant::now();
            let outcome = {
                let _permit = self.limit.acquire().await.map_err(|_| {
                    self.error(ErrorKind::Unavailable, "the provider is shutting down".into())
                })?;
                self.attempt(request).await
            };
            let status = match &outcome {
                Attempt::Done(status, _) => status_class(status.as_u16()),
                Attempt::Busy(_) => "5xx",
                Attempt::Lost { .. } | Attempt::Fatal(_) | Attempt::TooLarge => "error",
            };
            let metrics = &self.state.metrics;
            metrics.backend_requests.get_or_create(&RequestLabels { backend: self.name(), operation, status }).inc();
            metrics
                .backend_seconds
                .get_or_create(&OperationLabels { backend: self.name(), operation })
                .observe(started.elapsed().as_secs_f64());
            let replayable = replay.allows(&outcome);
            match outcome {
                Attempt::Done(status, value) => return Ok((status, value)),
                Attempt::Fatal(why) => {
                    return Err(self
                        .error(
                            ErrorKind::Unavailable,
                            format!(
                                "TLS verification of {} failed: {why}. Set vaultCACertPath or vaultCADirectory to the \
                                 CA that signed the server's certificate, or vaultTLSServerName to a name the \
                                 certificate holds",
                                self.cfg.address
                            ),
                        )
                        .caused_by(why));
                }
                Attempt::TooLarge => {
                    return Err(self.error(
                        ErrorKind::Invalid,
                        format!(
                            "{} {path}: the mount's responses from {} pass {MAX_MOUNT_RESPONSE_BYTES} bytes; \
                             the driver takes at most 4 MiB of files: split the objects across SecretProviderClasses",
                            method.as_str(),
                            self.cfg.address
                        ),
                    ));
                }
                Attempt::Busy(code) => {
                    last = format!("HTTP {code}");
                    last_cause = None;
                }
                Attempt::Lost { cause, .. } => {
                    last = cause.to_string();
                    last_cause = Some(cause);
                }
            }
            if !replayable {
                return Err(self.error(
                    ErrorKind::Unavailable,
                    format!(
                        "{} {path} failed after the request may have reached {} ({last}); it is not sent again, \
                         since a second attempt could issue a second secret. The next mount tries again; check \
                         that the server is healthy",
                        method.as_str(),
                        self.cfg.address
                    ),
                )
                .with_cause(last_cause.map(|c| Arc::new(c) as Cause)));
            }
            tracing::debug!(backend = self.name(), path, attempt, reason = %last, "retrying");
        }
        Err(self.error(
            ErrorKind::Unavailable,
            format!(
                "{} {path} failed after {MAX_ATTEMPTS} attempts: {last}. Check that {} is reachable from the \
                 node and unsealed",
                method.as_str(),
                self.cfg.address
            ),
        )
        .with_cause(last_cause.map(|c| Arc::new(c) as Cause)))
    }

    async fn attempt(&self, request: reqwest::RequestBuilder) -> Attempt {
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if is_certificate_error(&e) => return Attempt::Fatal(TransportError::http(e)),
            Err(e) => {
                let unsent = never_sent(&e);
                return Attempt::Lost { cause: TransportError::http(e), unsent };
            }
        };
        let status = response.status();
        if status.as_u16() == 429 || (status.is_server_error() && status.as_u16() != 501) {
            return Attempt::Busy(status.as_u16());
        }
        // From here on the server has answered: whatever is lost was sent.
        let lost = |cause: TransportError| Attempt::Lost { cause, unsent: false };
        let mut body = zeroize::Zeroizing::new(Vec::new());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return lost(TransportError::BodyTooLarge);
                    }
                    // Charged as it arrives, so a server that answers every read of a
                    // mount with megabytes is stopped before they are all held.
                    let received = self.received.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
                    if received > MAX_MOUNT_RESPONSE_BYTES {
                        return Attempt::TooLarge;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return lost(TransportError::http(e)),
            }
        }
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(e) => {
                    return lost(TransportError::NotJson { status: status.as_u16(), category: e.classify() });
                }
            }
        };
        Attempt::Done(status, value)
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BASE_DELAY * 2u32.saturating_pow(attempt.saturating_sub(1));
    let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
    base + Duration::from_millis(jitter)
}

/// Whether a transport error is the server's certificate being refused: a TLS
/// certificate error somewhere in the source chain.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(cause) = source {
        if is_tls_certificate_error(cause) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The TLS connector wraps the TLS library's error in I/O errors (nested), whose
/// own `source` skips the wrapped error, so I/O errors are opened by hand.
fn is_tls_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.get_ref().is_some_and(|inner| is_tls_certificate_error(inner));
    }
    matches!(
        e.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

/// Whether a failed request provably never reached the server: no connection was
/// established (refused, DNS, TLS handshake, connect timeout). The HTTP client
/// reports each of these as a connect error of its connector (found by type in the
/// error's source chain), before a byte of the request is written. Anything later (a
/// reset, a timeout while waiting for the answer) may follow a request the server
/// acted on.
fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect()
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "transport error".to_owned()
    };
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
