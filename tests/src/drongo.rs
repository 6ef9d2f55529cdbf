//! A real `drongo` server (a Secret Manager REST emulator) on 127.0.0.1, and the Secret Manager calls tests use to
//! seed it.
//!
//! drongo serves the global `projects/*/secrets/*` REST paths only: no regional paths, no `dataCrc32c`, no auth,
//! and `versions/latest` with a disabled newest version answers an older enabled one where Google fails. The
//! [`GcpStandIn`](crate::GcpStandIn) in front of it covers the first three honestly; tests of `latest` use an
//! enabled newest version.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::moto::free_port;
use crate::tools;
use crate::watchdog::ExitWatchdog;

/// drongo answers in about 0.5 s when idle; far longer on a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// New ports tried when the server exits during start-up (usually a lost port race).
const PORT_ATTEMPTS: usize = 5;
/// Every seeding call is local and quick; a stuck server must not hang a test forever.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `drongo server`, killed on drop.
#[derive(Debug)]
pub struct Drongo {
    child: Child,
    _watchdog: ExitWatchdog,
    port: u16,
    log_path: PathBuf,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Drop for Drongo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drongo {
    /// Starts drongo on a free port, trying fresh ports when it exits during start-up.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(free_port()?).await {
                Ok(server) => return Ok(server),
                Err(Failure::Exited(error)) => last = Some(error),
                Err(Failure::Fatal(error)) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt was made")).context(format!("drongo did not start after {PORT_ATTEMPTS} attempts")))
    }

    async fn try_start(port: u16) -> Result<Self, Failure> {
        let program = tools::drongo_program().map_err(Failure::Fatal)?;
        let dir = tempfile::Builder::new().prefix("courier-drongo-").tempdir().context("cannot create a directory for drongo").map_err(Failure::Fatal)?;
        let log_path = dir.path().join("drongo.log");
        let log = File::create(&log_path).context("cannot create drongo's log").map_err(Failure::Fatal)?;
        let log_err = log.try_clone().context("cannot duplicate the log handle").map_err(Failure::Fatal)?;
        let child = Command::new(&program)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("cannot run {}", program.display()))
            .map_err(Failure::Fatal)?;
        let watchdog = match ExitWatchdog::watch(child.id()) {
            Ok(watchdog) => watchdog,
            Err(error) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Fatal(anyhow!(error).context("cannot start drongo's exit watchdog")));
            }
        };
        // No pooled connections: drongo (Python's http.server) drops idle keep-alive connections, and a pooled one
        // reused at that moment fails the request.
        let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(API_TIMEOUT).build().context("cannot build an HTTP client").map_err(Failure::Fatal)?;
        let mut server = Self { child, _watchdog: watchdog, port, log_path, http, _dir: dir };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| Failure::Fatal(e.into()))? {
                return Err(Failure::Exited(anyhow!("drongo exited during start-up with {status}; log:\n{}", self.logs())));
            }
            // A real API call: a 404 for an unknown secret is a ready Secret Manager.
            let probe = self.http.get(format!("{}/v1/projects/ready/secrets/probe", self.endpoint())).send().await;
            match probe {
                Ok(response) if response.status().as_u16() == 404 => return Ok(()),
                Ok(response) => {
                    return Err(Failure::Fatal(anyhow!("drongo's readiness probe answered {}; log:\n{}", response.status(), self.logs())));
                }
                Err(_) if Instant::now() < deadline => tokio::time::sleep(READY_POLL).await,
                Err(error) => {
                    return Err(Failure::Fatal(anyhow!("drongo on port {} not ready after {READY_TIMEOUT:?}: {error}; log:\n{}", self.port, self.logs())));
                }
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
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

/// Why one start attempt failed.
enum Failure {
    Exited(anyhow::Error),
    Fatal(anyhow::Error),
}
