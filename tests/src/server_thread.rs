//! An in-process HTTP fake on its own thread and runtime.
//!
//! Fakes shared by a whole test binary outlive the per-test runtimes of `#[tokio::test]`, so each runs on a
//! current-thread runtime of its own and serves for as long as the value lives. Dropping it stops the server at
//! once: connections still open (a provider's keep-alive pool, a request held on purpose) are cut, never awaited.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use anyhow::Context;
use axum::Router;
use tokio::sync::oneshot;

/// A running fake server; stops on drop.
#[derive(Debug)]
pub(crate) struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Serves `app` on 127.0.0.1 with a port the kernel picks.
    pub(crate) fn start(name: &str, app: Router) -> anyhow::Result<Self> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        listener
            .set_nonblocking(true)
            .context("cannot make the listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("bound socket has no address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("cannot build the {name} runtime"))?;
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _ = started_tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(()));
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime here cancels every connection task still running.
            })
            .with_context(|| format!("cannot spawn the {name} thread"))?;
        started_rx
            .recv()
            .with_context(|| format!("the {name} thread died during start-up"))?
            .with_context(|| format!("cannot serve on the {name} listener"))?;
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
