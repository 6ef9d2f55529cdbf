//! One accepted connection and how long it may stay without work.
//!
//! A connection is *busy* while a request on it is being served, and *idle*
//! otherwise. [`Connection`] closes it (its next read reports end of input, and
//! the HTTP/2 server lets go of it) once it has been idle for the idle timeout,
//! or, before its first request arrived, for the handshake timeout: a client
//! that never finishes its preface and first headers holds nothing for long.
//! [`TrackStreamsLayer`] counts the requests in progress; it finds the
//! connection's [`ConnectionHandle`] in each request's extensions, where tonic
//! puts the connect info of the connection it came on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// Why the provider closed a connection (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// No request in progress for the idle timeout.
    Idle,
    /// No first request within the handshake timeout.
    Handshake,
    /// Closed to make room for a new connection (cap reached or descriptors exhausted).
    Evicted,
}

impl CloseReason {
    /// The metric label.
    #[must_use]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Handshake => "handshake_timeout",
            Self::Evicted => "evicted",
        }
    }
}

/// What the listener and the requests of one connection share.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    open_streams: AtomicUsize,
    served: AtomicBool,
    /// When the last request finished, in milliseconds after `opened`.
    idle_since_ms: AtomicU64,
    evicted: AtomicBool,
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            open_streams: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// When the connection was accepted.
    #[must_use]
    pub(crate) fn opened(&self) -> Instant {
        self.opened
    }

    /// When the connection became idle, or `None` while a request is in progress.
    #[must_use]
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        if self.open_streams.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)))
    }

    /// Whether the connection is gone or on its way out (it no longer counts).
    #[must_use]
    pub(crate) fn is_leaving(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.evicted.load(Ordering::Acquire)
    }

    /// Asks the connection to close at its next chance; returns false if it is busy.
    pub(crate) fn evict(&self) -> bool {
        if self.idle_since().is_none() {
            return false;
        }
        self.evicted.store(true, Ordering::Release);
        self.waker.wake();
        true
    }
}

/// The connect info of a [`Connection`], found in every request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionHandle(Arc<Activity>);

/// How long a connection may go without work.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No request in progress for this long closes the connection.
    pub idle: Duration,
    /// No first request for this long after accepting closes the connection.
    pub handshake: Duration,
}

/// An accepted connection closed when it has no work for too long.
pub(crate) struct Connection<S> {
    io: S,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    closed: Option<CloseReason>,
    on_close: Box<dyn FnMut(Option<CloseReason>) + Send + Sync>,
}

impl<S> Connection<S> {
    /// Wraps a freshly accepted connection. `on_close` runs once, when the
    /// connection is dropped, with the reason if the provider closed it.
    pub(crate) fn new(io: S, timeouts: Timeouts, on_close: Box<dyn FnMut(Option<CloseReason>) + Send + Sync>) -> Self {
        let activity = Arc::new(Activity::new());
        let timer = Box::pin(tokio::time::sleep_until(activity.opened + timeouts.handshake));
        Self { io, activity, timeouts, timer, closed: None, on_close }
    }

    /// The state the listener watches.
    #[must_use]
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Decides whether to close now; otherwise moves the timer to the next moment to look again.
    fn expired(&mut self) -> Option<CloseReason> {
        if self.activity.evicted.load(Ordering::Acquire) {
            return Some(CloseReason::Evicted);
        }
        if !self.timer.is_elapsed() {
            return None;
        }
        let now = Instant::now();
        let Some(since) = self.activity.idle_since() else {
            self.timer.as_mut().reset(now + self.timeouts.idle);
            return None;
        };
        let (limit, reason) = if self.activity.served.load(Ordering::Acquire) {
            (self.timeouts.idle, CloseReason::Idle)
        } else {
            (self.timeouts.handshake, CloseReason::Handshake)
        };
        let deadline = since + limit;
        if now >= deadline {
            return Some(reason);
        }
        self.timer.as_mut().reset(deadline);
        None
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Connection<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.closed.is_some() {
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = this.expired() {
                tracing::debug!(reason = reason.label(), "closing connection");
                this.closed = Some(reason);
                continue;
            }
            if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
                return Poll::Ready(read);
            }
            this.activity.waker.register(cx.waker());
            if this.activity.evicted.load(Ordering::Acquire) {
                continue;
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Connection<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<S> Connected for Connection<S> {
    type ConnectInfo = ConnectionHandle;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionHandle(Arc::clone(&self.activity))
    }
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        self.activity.closed.store(true, Ordering::Release);
        (self.on_close)(self.closed);
    }
}

/// Counts a request as in progress on its connection until its handler finishes.
pub(crate) struct StreamGuard(Arc<Activity>);

impl StreamGuard {
    fn new(activity: Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Release);
        activity.open_streams.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let since = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(since, Ordering::Release);
        self.0.open_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a connection busy until the guard is dropped, as a request would.
#[cfg(test)]
pub(crate) fn busy_for_tests(activity: &Arc<Activity>) -> StreamGuard {
    StreamGuard::new(Arc::clone(activity))
}

/// Tower layer counting the requests in progress on each [`Connection`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TrackStreamsLayer;

impl<S> tower::Layer<S> for TrackStreamsLayer {
    type Service = TrackStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackStreams { inner }
    }
}

/// See [`TrackStreamsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct TrackStreams<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TrackStreams<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = request.extensions().get::<ConnectionHandle>().map(|h| StreamGuard::new(Arc::clone(&h.0)));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(guard);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const TIMEOUTS: Timeouts = Timeouts { idle: Duration::from_secs(60), handshake: Duration::from_secs(10) };

    /// The reasons `on_close` was called with.
    type Closes = Arc<std::sync::Mutex<Vec<Option<CloseReason>>>>;

    fn connection() -> (tokio::io::DuplexStream, Connection<tokio::io::DuplexStream>, Closes) {
        let (client, server) = tokio::io::duplex(1024);
        let closes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&closes);
        let conn = Connection::new(server, TIMEOUTS, Box::new(move |r| seen.lock().expect("lock").push(r)));
        (client, conn, closes)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_first_request_closes_after_the_handshake_timeout() {
        let (mut client, mut conn, closes) = connection();
        client.write_all(b"PRI").await.expect("write");
        let mut buf = [0u8; 16];
        assert_eq!(conn.read(&mut buf).await.expect("read"), 3);
        let started = Instant::now();
        assert_eq!(conn.read(&mut buf).await.expect("read"), 0, "end of input once the handshake timeout passed");
        assert_eq!(started.elapsed(), TIMEOUTS.handshake);
        drop(conn);
        assert_eq!(*closes.lock().expect("lock"), vec![Some(CloseReason::Handshake)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_stays_and_an_idle_one_closes_after_the_idle_timeout() {
        let (_client, mut conn, closes) = connection();
        let guard = StreamGuard::new(Arc::clone(conn.activity()));
        let mut buf = [0u8; 16];
        // Busy for five minutes: no close.
        assert!(tokio::time::timeout(Duration::from_secs(300), conn.read(&mut buf)).await.is_err());
        let finished = Instant::now();
        drop(guard);
        assert_eq!(conn.read(&mut buf).await.expect("read"), 0);
        assert!(finished.elapsed() >= TIMEOUTS.idle && finished.elapsed() <= TIMEOUTS.idle + Duration::from_secs(1));
        drop(conn);
        assert_eq!(*closes.lock().expect("lock"), vec![Some(CloseReason::Idle)]);
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_closes_an_idle_connection_at_once_and_never_a_busy_one() {
        let (_client, mut conn, closes) = connection();
        let activity = Arc::clone(conn.activity());
        let guard = StreamGuard::new(Arc::clone(&activity));
        assert!(!activity.evict(), "a busy connection is never evicted");
        drop(guard);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = conn.read(&mut buf).await.expect("read");
            (n, Instant::now())
        });
        tokio::task::yield_now().await;
        let evicted_at = Instant::now();
        assert!(activity.evict());
        let (n, closed_at) = reader.await.expect("reader");
        assert_eq!((n, closed_at), (0, evicted_at));
        assert!(activity.is_leaving());
        assert_eq!(*closes.lock().expect("lock"), vec![Some(CloseReason::Evicted)]);
    }
}
