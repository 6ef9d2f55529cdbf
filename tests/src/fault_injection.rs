//! Fault injectors for reliability tests: a backend that accepts connections and never answers, and an address
//! where nothing listens.
//!
//! They stand in for a backend that has hung (a stuck load balancer, a server in a GC pause) and one that is down.
//! Both live on 127.0.0.1 only.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// How often the accept loop looks for new connections and for the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// **Fault injector**: a TCP listener that accepts every connection, reads nothing and answers nothing, holding
/// each connection open until it is dropped. A client sees its connect succeed and then waits forever for a
/// response, exactly as with a hung server.
#[derive(Debug)]
pub struct SilentBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentBackend {
    /// Starts listening on 127.0.0.1 with a port the kernel picks.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        listener
            .set_nonblocking(true)
            .context("cannot make the listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("bound socket has no address")?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, open, stop) =
                (Arc::clone(&accepted), Arc::clone(&open), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("silent-backend".to_owned())
                .spawn(move || hold_connections(&listener, &accepted, &open, &stop))
                .context("cannot start the silent backend's thread")?
        };
        Ok(Self {
            addr,
            accepted,
            open,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many accepted connections the client has not closed yet.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

fn hold_connections(
    listener: &TcpListener,
    accepted: &AtomicUsize,
    open: &AtomicUsize,
    stop: &AtomicBool,
) {
    let mut held: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(true);
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        // A connection the client closed reads as end-of-file; bytes it sent are read and dropped unanswered.
        held.retain(|stream| {
            let mut buf = [0u8; 4096];
            loop {
                match std::io::Read::read(&mut &*stream, &mut buf) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        });
        open.store(held.len(), Ordering::SeqCst);
        std::thread::sleep(ACCEPT_POLL);
    }
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An `http://127.0.0.1:PORT` address where nothing listens: every connection is refused. The port was free a
/// moment ago; the kernel hands out ephemeral ports in rotation, so it stays free for the length of a test.
pub fn closed_port_url() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    let port = listener
        .local_addr()
        .context("bound socket has no address")?
        .port();
    drop(listener);
    Ok(format!("http://127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    #[test]
    fn silent_backend_accepts_and_never_answers() -> anyhow::Result<()> {
        let backend = SilentBackend::start()?;
        let mut stream = TcpStream::connect(backend.addr())?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
        stream.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut buf = [0u8; 16];
        let read = stream.read(&mut buf);
        assert!(
            matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "expected no answer, got {read:?}"
        );
        assert_eq!(backend.accepted(), 1);
        drop(stream);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while backend.open_connections() != 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            backend.open_connections(),
            0,
            "a closed connection is noticed"
        );
        Ok(())
    }

    #[test]
    fn closed_port_refuses() -> anyhow::Result<()> {
        let url = closed_port_url()?;
        let addr = url.trim_start_matches("http://");
        assert!(TcpStream::connect(addr).is_err());
        Ok(())
    }
}
