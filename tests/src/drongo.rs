//! A real `drongo` server (a Secret Manager REST emulator) on 127.0.0.1, and the Secret Manager calls tests use to
//! seed it.
//!
//! drongo serves the global `projects/*/secrets/*` REST paths only: no regional paths, no `dataCrc32c`, no auth,
//! and `versions/latest` with a disabled newest version answers an older enabled one where Google fails. The
//! [`GcpStandIn`](crate::GcpStandIn) in front of it covers the first three honestly; tests of `latest` use an
//! enabled newest version.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::process::{self, Probe, ServerProcess, Shutdown, StartError};
use crate::tools;

/// drongo answers in about 0.5 s when idle; far longer on a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// New ports tried when the server loses a race for its port.
const PORT_ATTEMPTS: usize = 5;
/// Every seeding call is local and quick; a stuck server must not hang a test forever.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `drongo server`, killed on drop.
#[derive(Debug)]
pub struct Drongo {
    // `drongo` is a Python entry point serving in-process, so this pid is the server itself.
    process: ServerProcess,
    port: u16,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Drongo {
    /// Starts drongo on a free port, retrying on new ports when the chosen one was taken meanwhile.
    pub async fn start() -> anyhow::Result<Self> {
        process::start_on_fresh_ports("drongo", PORT_ATTEMPTS, || async { Self::try_start(process::free_port()?).await })
            .await
    }

    async fn try_start(port: u16) -> Result<Self, StartError> {
        let program = tools::drongo_program()?;
        let dir = tempfile::Builder::new().prefix("courier-drongo-").tempdir().context("cannot create a directory for drongo")?;
        let mut command = Command::new(&program);
        command
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy");
        let process = ServerProcess::spawn("drongo", &mut command, &dir.path().join("drongo.log"), Shutdown::Kill)?;
        // No pooled connections: drongo (Python's http.server) drops idle keep-alive connections, and a pooled one
        // reused at that moment fails the request.
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(API_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        let server = Self { process, port, http, _dir: dir };
        let at = format!("127.0.0.1:{port}");
        server.process.wait_ready(&at, READY_TIMEOUT, READY_POLL, || server.probe()).await?;
        Ok(server)
    }

    /// A real API call: a 404 for an unknown secret is a Secret Manager ready to serve.
    async fn probe(&self) -> Probe {
        match self.http.get(format!("{}/v1/projects/ready/secrets/probe", self.endpoint())).send().await {
            Ok(response) if response.status().as_u16() == 404 => Probe::Ready,
            Ok(response) => Probe::Fatal(anyhow::anyhow!("the readiness probe answered {}", response.status())),
            Err(error) => Probe::NotYet(error.to_string()),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/v1/{path}", self.endpoint());
        let response = self.http.post(&url).json(&body).send().await.with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let answer: Value = response.json().await.with_context(|| format!("POST {url}: unreadable answer"))?;
        if !status.is_success() {
            bail!("POST {url}: {status}: {answer}");
        }
        Ok(answer)
    }

    /// Creates the secret `projects/{project}/secrets/{secret}`.
    pub async fn create_secret(&self, project: &str, secret: &str) -> anyhow::Result<()> {
        self.post(&format!("projects/{project}/secrets?secretId={secret}"), json!({"replication": {"automatic": {}}})).await?;
        Ok(())
    }

    /// Adds a version holding `data`; returns its full name (`projects/p/secrets/s/versions/N`).
    pub async fn add_version(&self, project: &str, secret: &str, data: impl AsRef<[u8]>) -> anyhow::Result<String> {
        let answer = self
            .post(&format!("projects/{project}/secrets/{secret}:addVersion"), json!({"payload": {"data": BASE64.encode(data)}}))
            .await?;
        answer["name"].as_str().map(str::to_owned).context("addVersion answered no name")
    }

    /// Creates a secret with one version holding `data`; returns the version's name.
    pub async fn secret_with(&self, project: &str, secret: &str, data: impl AsRef<[u8]>) -> anyhow::Result<String> {
        self.create_secret(project, secret).await?;
        self.add_version(project, secret, data).await
    }

    /// Disables the version `name` (a full version name).
    pub async fn disable(&self, name: &str) -> anyhow::Result<()> {
        self.post(&format!("{name}:disable"), json!({})).await.map(drop)
    }

    /// Destroys the version `name`.
    pub async fn destroy(&self, name: &str) -> anyhow::Result<()> {
        self.post(&format!("{name}:destroy"), json!({})).await.map(drop)
    }
}
