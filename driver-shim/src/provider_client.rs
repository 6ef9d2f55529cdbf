//! Finding and calling a provider: `<dir>/<name>.sock` in the configured
//! directories, `:authority` `localhost`, a bounded receive size, retries on
//! Unavailable, and a deadline under kubelet's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use courier_proto::v1alpha1::{MountRequest, MountResponse};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Attempts per call when the provider answers Unavailable (as the upstream driver).
const ATTEMPTS: u32 = 3;
/// First retry delay; the upstream driver's service config uses 1 s, growing by 1.1.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Whether a failed call may succeed if repeated: Unavailable, as the upstream
/// driver retries, and a connection cut mid-call (a provider restarting), which
/// this client reports as Unknown with the transport's error as its source. A
/// provider's own answer is never retried on its wording: an Unknown status that
/// came over the wire has no source.
fn retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown => from_transport(status),
        _ => false,
    }
}

/// Whether the status was made on this side from a connection failure: its
/// source chain holds tonic's transport error, hyper's, or an OS error.
fn from_transport(status: &Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.is::<tonic::transport::Error>()
            || error.is::<hyper::Error>()
            || error.is::<std::io::Error>()
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Why no provider could be called.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name breaks the driver's rule.
    #[error("invalid provider name {0:?}: it must match ^[a-zA-Z0-9_-]{{0,30}}$")]
    InvalidName(String),
    /// No socket in any directory.
    #[error("provider not found: provider {name:?} (looked for {name}.sock in {dirs})")]
    NotFound {
        /// The provider.
        name: String,
        /// Where we looked.
        dirs: String,
    },
    /// The call failed.
    #[error("provider {name:?} at {socket}: {status}", socket = socket.display())]
    Call {
        /// The provider.
        name: String,
        /// Its socket.
        socket: PathBuf,
        /// The final status.
        status: Status,
    },
}

impl Error {
    /// The gRPC code this failure maps to.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidName(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::FailedPrecondition,
            Self::Call { status, .. } => status.code(),
        }
    }
}

/// Provider sockets and their channels.
#[derive(Debug)]
pub struct Providers {
    dirs: Vec<PathBuf>,
    max_recv: usize,
    timeout: Duration,
    channels: Mutex<HashMap<PathBuf, Channel>>,
}

impl Providers {
    /// Looks for sockets in `dirs`, in order.
    #[must_use]
    pub fn new(dirs: Vec<PathBuf>, max_recv: usize, timeout: Duration) -> Self {
        Self {
            dirs,
            max_recv,
            timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The socket of provider `name`.
    pub fn socket(&self, name: &str) -> Result<PathBuf, Error> {
        let valid = name.len() <= 30
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::InvalidName(name.to_owned()));
        }
        for dir in &self.dirs {
            let socket = dir.join(format!("{name}.sock"));
            if std::fs::metadata(&socket).is_ok() {
                return Ok(socket);
            }
        }
        Err(Error::NotFound {
            name: name.to_owned(),
            dirs: self
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    fn channel(&self, socket: &Path) -> Channel {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(channel) = channels.get(socket) {
            return channel.clone();
        }
        let path = socket.to_owned();
        // The authority is `localhost`, as drivers from v1.6 send it.
        let channel = Endpoint::from_static("http://localhost").connect_with_connector_lazy(
            tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(TokioIo::new)
                }
            }),
        );
        channels.insert(socket.to_owned(), channel.clone());
        channel
    }

    /// Calls `Mount` on provider `name`.
    pub async fn mount(&self, name: &str, request: MountRequest) -> Result<MountResponse, Error> {
        let socket = self.socket(name)?;
        let deadline = Instant::now() + self.timeout;
        let mut delay = RETRY_DELAY;
        let mut last = Status::unavailable("not called");
        for attempt in 0..ATTEMPTS {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let mut client = CsiDriverProviderClient::new(self.channel(&socket))
                .max_decoding_message_size(self.max_recv);
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(remaining);
            match tokio::time::timeout(remaining, client.mount(call)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if retryable(&status) && attempt + 1 < ATTEMPTS => {
                    tracing::debug!(provider = name, attempt, "provider unavailable; retrying");
                    last = status;
                    tokio::time::sleep(
                        delay.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    delay = delay.mul_f64(1.1);
                }
                Ok(Err(status)) => {
                    return Err(Error::Call {
                        name: name.to_owned(),
                        socket,
                        status,
                    });
                }
                Err(_) => {
                    last =
                        Status::deadline_exceeded(format!("no answer within {:?}", self.timeout));
                    break;
                }
            }
        }
        Err(Error::Call {
            name: name.to_owned(),
            socket,
            status: last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider socket that accepts each connection and closes it unanswered,
    /// as a provider killed mid-call does.
    async fn status_from_a_dropped_connection() -> Status {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("gone.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let providers = Providers::new(Vec::new(), 1 << 20, Duration::from_secs(30));
        let mut client = CsiDriverProviderClient::new(providers.channel(&socket));
        let status = client
            .mount(MountRequest::default())
            .await
            .expect_err("nobody answers");
        server.abort();
        status
    }

    #[tokio::test]
    async fn a_connection_cut_mid_call_is_retried() {
        let status = status_from_a_dropped_connection().await;
        assert!(
            matches!(status.code(), Code::Unknown | Code::Unavailable),
            "{status:?}"
        );
        assert!(retryable(&status), "{status:?}");
    }

    #[test]
    fn transport_failures_are_retried_provider_answers_are_not() {
        assert!(retryable(&Status::unavailable("provider restarting")));
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(retryable(&Status::from_error(Box::new(io))));
        // The words alone, as a provider could answer them, are not a transport failure.
        for words in ["transport error", "connection reset", "h2 protocol error"] {
            assert!(!retryable(&Status::unknown(words)), "{words}");
        }
        assert!(!retryable(&Status::unknown(
            "mount request failed with provider error code X"
        )));
        assert!(!retryable(&Status::invalid_argument("objects[0]: bad")));
        assert!(!retryable(&Status::permission_denied("login refused")));
    }
}
