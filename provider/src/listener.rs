//! Accepting connections on a provider socket, within bounds.
//!
//! - At most [`ConnectionLimits::max_connections`] connections are held per
//!   socket. A new connection over the cap takes the place of the connection
//!   idle the longest (no request in progress; an idle client loses nothing but
//!   a reconnect); when every connection is busy, it is closed at once. Both
//!   are counted in `courier_connections_closed_total`.
//! - An `accept` error (EMFILE and the like) backs off, from 10 ms doubling to
//!   1 s, instead of retrying in a busy loop, and is logged at most once a
//!   second with the number of errors not logged since. When the process is out
//!   of descriptors, the longest-idle connection accepted at least
//!   [`EVICTION_GRACE`] ago is closed to free one.
//! - Every connection is a [`Connection`] (idle and handshake timeouts) around
//!   an [`AuthorityFix`] (bounded frame and header-block buffering).

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

use crate::authority::AuthorityFix;
use crate::connection::{Activity, CloseReason, Connection, Timeouts};
use crate::metrics::{ConnectionCloseLabels, ConnectionLabels, Metrics};

/// Connections per socket: the driver opens one or a few; kubelet-driven bursts
/// multiplex over them. Each costs a few tens of KiB and a descriptor.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// A connection with no request in progress this long is closed; the driver
/// reconnects on its next call, which costs a millisecond on a unix socket.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client gets this long to send its preface and first request headers; the
/// driver sends both within milliseconds of connecting.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait after a failed `accept`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between `accept` attempts while they keep failing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Out of descriptors, a connection is not made to give way before it had this
/// long to send its first request: evicting the one just accepted to accept the
/// next would only churn.
const EVICTION_GRACE: Duration = Duration::from_millis(250);
/// The close reason of a connection refused over the cap (it never became a [`Connection`]).
const OVER_LIMIT: &str = "over_limit";
/// At most one log line per this interval for each kind of repeated event.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Bounds on the connections of one socket.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most connections held at once.
    pub max_connections: usize,
    /// Idle and handshake timeouts.
    pub timeouts: Timeouts,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeouts: Timeouts { idle: DEFAULT_IDLE_TIMEOUT, handshake: DEFAULT_HANDSHAKE_TIMEOUT },
        }
    }
}

/// A connection as the gRPC server gets it.
pub(crate) type ServedConnection = Connection<AuthorityFix<UnixStream>>;

/// The connections accepted on `listener`; the stream never yields an error
/// (failed accepts are retried after a back-off) and ends never.
pub(crate) fn incoming(
    listener: UnixListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    provider: String,
) -> impl Stream<Item = Result<ServedConnection, Infallible>> {
    let acceptor = Acceptor {
        listener,
        limits,
        metrics,
        provider,
        held: Vec::new(),
        backoff: None,
        accept_log: Throttle::default(),
        refuse_log: Throttle::default(),
    };
    futures::stream::unfold(acceptor, |mut acceptor| async move {
        let connection = acceptor.next().await;
        Some((Ok(connection), acceptor))
    })
}

struct Acceptor {
    listener: UnixListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    provider: String,
    held: Vec<Arc<Activity>>,
    backoff: Option<Duration>,
    accept_log: Throttle,
    refuse_log: Throttle,
}

impl Acceptor {
    async fn next(&mut self) -> ServedConnection {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    self.backoff = None;
                    if let Some(connection) = self.admit(stream) {
                        return connection;
                    }
                }
                Err(e) => {
                    self.metrics.accept_errors.get_or_create(&self.labels()).inc();
                    if let Some(suppressed) = self.accept_log.allow(Instant::now()) {
                        tracing::error!(
                            error = &e as &dyn std::error::Error,
                            suppressed,
                            "accepting a connection failed; retrying after a pause"
                        );
                    }
                    if out_of_descriptors(&e) {
                        self.evict_idlest(EVICTION_GRACE);
                    }
                    let delay = next_backoff(self.backoff);
                    self.backoff = Some(delay);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Takes `stream` within the cap, or closes it.
    fn admit(&mut self, stream: UnixStream) -> Option<ServedConnection> {
        self.held.retain(|a| !a.is_leaving());
        // Over the cap even a just-accepted connection may give way: in a flood of
        // new connections that is what lets the driver's own connection in.
        if self.held.len() >= self.limits.max_connections && !self.evict_idlest(Duration::ZERO) {
            self.count_close(OVER_LIMIT);
            if let Some(suppressed) = self.refuse_log.allow(Instant::now()) {
                tracing::warn!(
                    max_connections = self.limits.max_connections,
                    suppressed,
                    "connection refused: every connection on this socket is busy (--max-connections)"
                );
            }
            return None;
        }
        let metrics = Arc::clone(&self.metrics);
        let labels = self.labels();
        metrics.connections_open.get_or_create(&labels).inc();
        let on_close = Box::new(move |reason: Option<CloseReason>| {
            metrics.connections_open.get_or_create(&labels).dec();
            if let Some(reason) = reason {
                metrics
                    .connections_closed
                    .get_or_create(&ConnectionCloseLabels { provider: labels.provider.clone(), reason: reason.label() })
                    .inc();
            }
        });
        let connection = Connection::new(AuthorityFix::new(stream), self.limits.timeouts, on_close);
        self.held.push(Arc::clone(connection.activity()));
        Some(connection)
    }

    /// Closes the connection idle the longest among those accepted at least
    /// `grace` ago; false if every one is busy or younger.
    fn evict_idlest(&mut self, grace: Duration) -> bool {
        let now = Instant::now();
        let idlest = self
            .held
            .iter()
            .filter(|a| !a.is_leaving() && now.duration_since(a.opened()) >= grace)
            .filter_map(|a| a.idle_since().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, activity)) => activity.evict(),
            None => false,
        }
    }

    fn labels(&self) -> ConnectionLabels {
        ConnectionLabels { provider: self.provider.clone() }
    }

    fn count_close(&self, reason: &'static str) {
        self.metrics
            .connections_closed
            .get_or_create(&ConnectionCloseLabels { provider: self.provider.clone(), reason })
            .inc();
    }
}

/// The wait after a failed `accept`, given the previous one.
fn next_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(ACCEPT_BACKOFF_MIN, |d| (d * 2).min(ACCEPT_BACKOFF_MAX))
}

/// Whether `accept` failed for want of descriptors (per process or system-wide).
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
}

/// Lets one event through per [`LOG_INTERVAL`] and counts the others.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(events suppressed since the last one let through)` when this one may be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_event_a_second_through_and_counts_the_rest() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert_eq!(throttle.allow(start), Some(0));
        for ms in 1..1000 {
            assert_eq!(throttle.allow(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(throttle.allow(start + Duration::from_millis(1000)), Some(999));
        assert_eq!(throttle.allow(start + Duration::from_millis(1500)), None);
    }

    #[test]
    fn only_descriptor_exhaustion_frees_a_connection() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(nix::libc::EMFILE)));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(nix::libc::ENFILE)));
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(nix::libc::ECONNABORTED)));
    }

    #[tokio::test]
    async fn over_the_cap_the_idlest_connection_makes_room_and_busy_ones_refuse() {
        use futures::StreamExt as _;
        use tokio::io::AsyncReadExt as _;

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let metrics = Metrics::shared();
        let limits = ConnectionLimits { max_connections: 2, ..ConnectionLimits::default() };
        let incoming = incoming(listener, limits, Arc::clone(&metrics), "courier".to_owned());
        let mut incoming = Box::pin(incoming);

        let _c1 = UnixStream::connect(&path).await.expect("connect");
        let Some(Ok(mut first)) = incoming.next().await else { panic!("first") };
        let _c2 = UnixStream::connect(&path).await.expect("connect");
        let Some(Ok(second)) = incoming.next().await else { panic!("second") };
        // A third takes the first's place: the first reads end of input.
        let _c3 = UnixStream::connect(&path).await.expect("connect");
        let Some(Ok(third)) = incoming.next().await else { panic!("third") };
        let mut buf = [0u8; 8];
        assert_eq!(first.read(&mut buf).await.expect("read"), 0);
        drop(first);

        // Both held connections busy: a new one is closed at once.
        let busy: Vec<_> = [&second, &third]
            .iter()
            .map(|c| crate::connection::busy_for_tests(c.activity()))
            .collect();
        let mut refused = UnixStream::connect(&path).await.expect("connect");
        let accept_next = tokio::spawn(async move { incoming.next().await.map(|_| ()) });
        assert_eq!(refused.read(&mut buf).await.expect("read"), 0, "closed at once");
        accept_next.abort();
        drop(busy);
        let text = metrics.encode();
        assert!(text.contains("courier_connections_closed_total{provider=\"courier\",reason=\"evicted\"} 1"), "{text}");
        assert!(text.contains("courier_connections_closed_total{provider=\"courier\",reason=\"over_limit\"} 1"), "{text}");
    }

    #[test]
    fn accept_errors_back_off_from_10_ms_to_a_second() {
        let mut delays = Vec::new();
        let mut backoff: Option<Duration> = None;
        for _ in 0..10 {
            let delay = next_backoff(backoff);
            backoff = Some(delay);
            delays.push(delay.as_millis());
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }
}
