//! The SecretSync controller as a process: `courier-driver-shim secret-sync` on a providers directory and a
//! fake Kubernetes API's kubeconfig, ready once `/healthz` answers, killed on drop.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::process::{self, Probe, ServerProcess, Shutdown, StartError};
use crate::provider::{MetricsSnapshot, scrape_metrics};
use crate::tools;

/// How long start-up may take.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How the controller is named in start-up and exit errors.
const NAME: &str = "the SecretSync controller";
/// Environment a developer's shell may carry that must not reach the controller (proxies and `RUST_LOG` are
/// cleared for every process).
const CONTROLLER_ENV_TO_CLEAR: &[&str] = &["KUBECONFIG", "POD_NAME", "POD_NAMESPACE"];

/// Flags of one controller process.
#[derive(Debug, Clone)]
pub struct SecretSyncBuilder {
    identity: String,
    providers_dir: PathBuf,
    kubeconfig: PathBuf,
    lease_namespace: String,
    lease_duration: Duration,
    retry_period: Duration,
    backoff_base: Duration,
    min_refresh: Duration,
    extra_args: Vec<OsString>,
}

impl SecretSyncBuilder {
    /// A replica named `identity` calling providers in `providers_dir`, talking to the API in `kubeconfig`,
    /// with timings small enough for tests: Lease 3 s renewed every 100 ms, backoff from 200 ms, refresh
    /// intervals down to 1 s.
    pub fn new(identity: &str, providers_dir: impl Into<PathBuf>, kubeconfig: impl Into<PathBuf>) -> Self {
        Self {
            identity: identity.to_owned(),
            providers_dir: providers_dir.into(),
            kubeconfig: kubeconfig.into(),
            lease_namespace: "courier-system".to_owned(),
            lease_duration: Duration::from_secs(3),
            retry_period: Duration::from_millis(100),
            backoff_base: Duration::from_millis(200),
            min_refresh: Duration::from_secs(1),
            extra_args: Vec::new(),
        }
    }

    /// Adds a flag.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Starts the process and waits for `/healthz` (on a fresh port if it lost the one it was given).
    pub async fn start(self) -> anyhow::Result<SecretSyncProcess> {
        process::start_on_fresh_ports(NAME, process::PORT_ATTEMPTS, || self.clone().try_start()).await
    }

    async fn try_start(self) -> Result<SecretSyncProcess, StartError> {
        let binary = tools::shim_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("courier-secretsync-")
            .tempdir()
            .context("cannot create the controller's directory")?;
        let log_path = dir.path().join("controller.log");
        let http_addr = SocketAddr::from(([127, 0, 0, 1], process::free_port()?));
        let mut command = Command::new(&binary);
        process::clear_inherited_env(&mut command, CONTROLLER_ENV_TO_CLEAR);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--providers-dir")
            .arg(&self.providers_dir)
            .arg("--log-level")
            .arg("debug")
            .arg("secret-sync")
            .arg("--identity")
            .arg(&self.identity)
            .arg("--lease-namespace")
            .arg(&self.lease_namespace)
            .arg("--lease-duration")
            .arg(format!("{}ms", self.lease_duration.as_millis()))
            .arg("--lease-retry-period")
            .arg(format!("{}ms", self.retry_period.as_millis()))
            .arg("--backoff-base")
            .arg(format!("{}ms", self.backoff_base.as_millis()))
            .arg("--backoff-max")
            .arg("2s")
            .arg("--min-refresh-interval")
            .arg(format!("{}ms", self.min_refresh.as_millis()))
            .arg("--http-addr")
            .arg(http_addr.to_string())
            .args(&self.extra_args);
        let process = ServerProcess::spawn(NAME, &mut command, &log_path, Shutdown::Kill)?;
        let process = SecretSyncProcess {
            process,
            http_addr,
            identity: self.identity,
            _dir: dir,
        };
        process.wait_ready().await?;
        Ok(process)
    }
}

/// A running controller replica; killed on drop unless it already exited.
#[derive(Debug)]
pub struct SecretSyncProcess {
    // First, so that the process is gone before its directory.
    process: ServerProcess,
    http_addr: SocketAddr,
    identity: String,
    _dir: TempDir,
}

impl SecretSyncProcess {
    async fn wait_ready(&self) -> Result<(), StartError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build an HTTP client")?;
        let url = format!("http://{}/healthz", self.http_addr);
        self.process
            .wait_ready(&url, READY_TIMEOUT, process::POLL, || async {
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_success() => Probe::Ready,
                    Ok(response) => Probe::NotYet(format!("answered {}", response.status())),
                    Err(error) => Probe::NotYet(error.to_string()),
                }
            })
            .await
    }

    /// The identity it campaigns with.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<MetricsSnapshot> {
        scrape_metrics(self.http_addr).await
    }

    /// Sends SIGTERM and waits for the exit status (the Lease is released on the way out).
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.process.terminate(process::EXIT_TIMEOUT).await
    }
}
