//! A real OpenBao dev server on 127.0.0.1, and the API calls tests use to configure it.
//!
//! `bao server -dev` keeps everything in memory, unseals itself and accepts the root token `root`. It listens on
//! the API port and also on API port + 1 (the cluster port), so both must be free; a port can still be taken
//! between our check and the server's bind, so a start that fails with "address already in use" is retried on new
//! ports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;

use crate::process::{self, Probe, ServerProcess, Shutdown, StartError};
use crate::tools;

mod setup;

pub use setup::{JwtRole, KubernetesRole};

/// The dev server's root token; tests configure the server with it, the provider never sees it.
pub const ROOT_TOKEN: &str = "root";

/// A dev server answers health checks in about 0.2 s when idle; 30 s leaves room for a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled: short, because every test binary waits on it.
const READY_POLL: Duration = Duration::from_millis(25);
/// Every configuration call is local and quick; a stuck server must not hang a test forever.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct OpenBaoOptions {
    tls: bool,
}

impl OpenBaoOptions {
    /// Serve HTTPS with a self-made CA (`-dev-tls`); [`OpenBao::ca_path`] names the CA certificate.
    #[must_use]
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
}

/// A running `bao server -dev`, killed on drop.
#[derive(Debug)]
pub struct OpenBao {
    // `bao` execs the server binary, so this pid is the server itself.
    process: ServerProcess,
    port: u16,
    ca_path: Option<PathBuf>,
    _dir: TempDir,
}

impl OpenBao {
    /// Starts a plain-HTTP dev server.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(OpenBaoOptions::default()).await
    }

    /// Starts a dev server with `options`, retrying on new ports when the chosen ones were taken meanwhile.
    pub async fn start_with(options: OpenBaoOptions) -> anyhow::Result<Self> {
        process::start_on_fresh_ports("OpenBao", process::PORT_ATTEMPTS, || async {
            Self::try_start(free_port_pair()?, &options).await
        })
        .await
    }

    async fn try_start(port: u16, options: &OpenBaoOptions) -> Result<Self, StartError> {
        let bao = tools::bao_program()?;
        let dir = tempfile::Builder::new()
            .prefix("courier-openbao-")
            .tempdir()
            .context("cannot create a temporary directory for OpenBao")?;
        let mut command = Command::new(&bao);
        command
            .args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            // The dev server stores its CLI token under $HOME; keep it out of the developer's home.
            .env("HOME", dir.path());
        process::clear_inherited_env(&mut command, &["BAO_ADDR", "VAULT_ADDR"]);
        let ca_path = if options.tls {
            let cert_dir = dir.path().join("tls");
            std::fs::create_dir(&cert_dir)
                .with_context(|| format!("cannot create {}", cert_dir.display()))?;
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", cert_dir.display()));
            Some(cert_dir.join("vault-ca.pem"))
        } else {
            None
        };
        let process = ServerProcess::spawn(
            "OpenBao",
            &mut command,
            &dir.path().join("bao.log"),
            Shutdown::Kill,
        )?;
        // From here on, Drop cleans up whatever happens.
        let server = Self {
            process,
            port,
            ca_path,
            _dir: dir,
        };
        let at = format!("127.0.0.1:{port}");
        server
            .process
            .wait_ready(&at, READY_TIMEOUT, READY_POLL, || server.probe())
            .await?;
        Ok(server)
    }

    async fn probe(&self) -> Probe {
        // The CA file appears a moment after the process starts; until then there is nothing to trust.
        if !self.ca_path.as_deref().is_none_or(Path::exists) {
            return Probe::NotYet("no CA certificate written yet".to_owned());
        }
        match self.health().await {
            Ok(()) => Probe::Ready,
            Err(error) => Probe::NotYet(format!("{error:#}")),
        }
    }

    async fn health(&self) -> anyhow::Result<()> {
        let response = self
            .http_client()?
            .get(format!("{}/v1/sys/health", self.addr()))
            .send()
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            bail!("sys/health answered {}", response.status())
        }
    }

    /// The API address, e.g. `http://127.0.0.1:41234` (`https://` with TLS).
    pub fn addr(&self) -> String {
        let scheme = if self.ca_path.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The API port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (for reading its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The CA certificate of a TLS server (`vault-ca.pem`), `None` for plain HTTP.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    // A fresh client per call: a pooled connection belongs to the tokio runtime that opened it, and a shared server
    // outlives the per-test runtimes of `#[tokio::test]`.
    fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(API_TIMEOUT)
            .pool_max_idle_per_host(0);
        if let Some(ca_path) = &self.ca_path {
            let pem = std::fs::read(ca_path)
                .with_context(|| format!("cannot read {}", ca_path.display()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .context("OpenBao's CA is not a PEM certificate")?;
            builder = builder.tls_certs_only([ca]);
        }
        builder.build().context("cannot build an HTTP client")
    }

    /// Seals the server (`PUT sys/seal`): from now on it answers API calls with 503 until [`unseal`](Self::unseal).
    pub async fn seal(&self) -> anyhow::Result<()> {
        self.api(Method::PUT, "sys/seal", None).await?;
        Ok(())
    }

    /// Unseals a sealed dev server with the unseal key it printed at start-up.
    pub async fn unseal(&self) -> anyhow::Result<()> {
        let logs = self.logs();
        let key = logs
            .lines()
            .find_map(|line| line.trim().strip_prefix("Unseal Key:"))
            .map(str::trim)
            .with_context(|| format!("the dev server printed no unseal key; log:\n{logs}"))?;
        let response = self
            .api(
                Method::PUT,
                "sys/unseal",
                Some(serde_json::json!({"key": key})),
            )
            .await?;
        if response["sealed"] != Value::Bool(false) {
            bail!("sys/unseal left the server sealed: {response}");
        }
        Ok(())
    }

    /// Calls `/v1/<path>` with the root token. Returns the JSON body (`Null` when empty) and fails on a non-2xx
    /// status with the body's text.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let path = path.trim_start_matches('/');
        let url = format!("{}/v1/{path}", self.addr());
        let mut request = self
            .http_client()?
            .request(method.clone(), &url)
            .header("X-Vault-Token", ROOT_TOKEN);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {url}: reading the body"))?;
        if !status.is_success() {
            bail!("{method} {url} answered {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {url}: body is not JSON: {text}"))
    }
}

/// Picks a port whose successor (the dev server's cluster port) is free too.
fn free_port_pair() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let api = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        let port = api
            .local_addr()
            .context("bound socket has no address")?
            .port();
        let Some(cluster_port) = port.checked_add(1) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", cluster_port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no free pair of adjacent ports on 127.0.0.1")
}
