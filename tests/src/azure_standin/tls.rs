//! HTTPS for the stand-in: a fresh CA and a server certificate for `127.0.0.1` and `localhost`, and an axum server
//! on its own thread and runtime that speaks only TLS (HTTP/1.1).
//!
//! TLS handshakes run in tasks of their own with a deadline, so a client that connects and never finishes the
//! handshake holds up nobody. Dropping the server stops it at once and cuts every connection still open.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Router;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::der::pem_blocks;
use super::material::{REQ_CONFIG, openssl_in};

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes completed but not yet taken by the HTTP server.
const ACCEPT_BACKLOG: usize = 64;
/// Back-off after a failed `accept` (descriptor exhaustion), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The stand-in's CA (in memory and in a file) and the server's certificate chain and key.
pub(super) struct Pki {
    /// Holds `ca_file`.
    _dir: tempfile::TempDir,
    pub(super) ca_file: PathBuf,
    pub(super) ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("ca_file", &self.ca_file).finish_non_exhaustive()
    }
}

impl Pki {
    /// A fresh EC P-256 CA valid for two days and a server certificate it signed for `127.0.0.1`, `::1` and
    /// `localhost`.
    pub(super) fn generate() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("courier-azure-tls-")
            .tempdir()
            .context("cannot create the CA directory")?;
        let d = dir.path();
        write(d, "req.cnf", REQ_CONFIG)?;
        write(d, "server.ext", SERVER_EXT)?;
        openssl_in(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.key"])?;
        openssl_in(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "server.key"])?;
        openssl_in(
            d,
            &[
                "req",
                "-config",
                "req.cnf",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=Courier Azure Stand-in CA",
                "-days",
                "2",
                "-sha256",
                "-out",
                "ca.pem",
            ],
        )?;
        openssl_in(
            d,
            &[
                "req",
                "-config",
                "req.cnf",
                "-new",
                "-key",
                "server.key",
                "-subj",
                "/CN=localhost",
                "-out",
                "server.csr",
            ],
        )?;
        openssl_in(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        )?;
        let ca_pem = std::fs::read_to_string(d.join("ca.pem")).context("cannot read the CA certificate")?;
        let server_pem = std::fs::read_to_string(d.join("server.pem")).context("cannot read the server certificate")?;
        let key_pem = std::fs::read_to_string(d.join("server.key")).context("cannot read the server key")?;
        let mut server_chain: Vec<CertificateDer<'static>> =
            pem_blocks(&server_pem, "CERTIFICATE")?.into_iter().map(CertificateDer::from).collect();
        server_chain.extend(pem_blocks(&ca_pem, "CERTIFICATE")?.into_iter().map(CertificateDer::from));
        let server_key =
            pem_blocks(&key_pem, "PRIVATE KEY")?.into_iter().next().ok_or_else(|| anyhow!("no server key"))?;
        // Only the CA certificate stays on disk; the keys go with the directory's other files.
        for name in ["ca.key", "server.key", "server.csr", "server.pem", "ca.srl", "req.cnf", "server.ext"] {
            let _ = std::fs::remove_file(d.join(name));
        }
        Ok(Self { ca_file: d.join("ca.pem"), _dir: dir, ca_pem, server_chain, server_key })
    }

    fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("no TLS versions")?
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .context("rustls refuses the server certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

const SERVER_EXT: &str = "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
                          extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost\n";

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {name}"))
}

/// A running HTTPS server; stops on drop.
#[derive(Debug)]
pub(super) struct TlsServer {
    failed_handshakes: Arc<AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    /// Serves `app` over TLS with `pki` on `listener` (bound already, so the caller knows the port first).
    pub(super) fn start(name: &str, listener: std::net::TcpListener, pki: &Pki, app: Router) -> anyhow::Result<Self> {
        let acceptor = pki.acceptor()?;
        listener.set_nonblocking(true).context("cannot make the listener non-blocking")?;
        let addr = listener.local_addr().context("bound socket has no address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("cannot build the {name} runtime"))?;
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let failed_handshakes = Arc::new(AtomicU64::new(0));
        let failures = Arc::clone(&failed_handshakes);
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
                    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
                    tokio::spawn(accept_loop(listener, acceptor, tx, failures));
                    let _ = started_tx.send(Ok(()));
                    tokio::select! {
                        _ = axum::serve(TlsListener { rx, addr }, app) => {}
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
        Ok(Self { failed_handshakes, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// Connections whose TLS handshake failed or timed out (a client that does not trust the CA, say).
    pub(super) fn failed_handshakes(&self) -> u64 {
        self.failed_handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    failures: Arc<AtomicU64>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        let failures = Arc::clone(&failures);
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                _ => {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
}

/// Hands axum the connections whose handshake completed.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(connection) => connection,
            // The accept loop is gone only when the runtime shuts down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
