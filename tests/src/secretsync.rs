//! The SecretSync controller as a process: `courier-driver-shim secret-sync` on a providers directory and a
//! fake Kubernetes API's kubeconfig, ready once `/healthz` answers, killed on drop.

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::provider::MetricsSnapshot;
use crate::tools;
use crate::watchdog::ExitWatchdog;

/// How long start-up may take.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often readiness and exit are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long SIGTERM may take (the Lease is released on the way out).
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment a developer's shell may carry that must not reach the controller.
const INHERITED_ENV_TO_CLEAR: &[&str] = &[
    "KUBECONFIG",
    "POD_NAME",
    "POD_NAMESPACE",
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

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

    /// Starts the process and waits for `/healthz`.
    pub async fn start(self) -> anyhow::Result<SecretSyncProcess> {
        let binary = tools::shim_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("courier-secretsync-")
            .tempdir()
            .context("cannot create the controller's directory")?;
        let log_path = dir.path().join("controller.log");
        let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log.try_clone().context("cannot duplicate the log handle")?;
        let http_addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
            listener.local_addr().context("bound socket has no address")?
        };
        let mut command = Command::new(&binary);
        for key in INHERITED_ENV_TO_CLEAR {
            command.env_remove(key);
        }
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
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command.spawn().with_context(|| format!("cannot run {}", binary.display()))?;
        let watchdog = ExitWatchdog::watch(child.id()).context("cannot start the controller's exit watchdog")?;
        let mut process = SecretSyncProcess {
            child,
            watchdog: Some(watchdog),
            log_path,
            http_addr,
            identity: self.identity,
            _dir: dir,
        };
        process.wait_ready().await?;
        Ok(process)
    }
}

/// A running controller replica.
#[derive(Debug)]
pub struct SecretSyncProcess {
    child: Child,
    watchdog: Option<ExitWatchdog>,
    log_path: PathBuf,
    http_addr: SocketAddr,
    identity: String,
    _dir: TempDir,
}

impl SecretSyncProcess {
    fn http() -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build()?)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = Self::http()?;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot poll the controller")? {
                bail!("the controller exited during start-up with {status}; log:\n{}", self.logs());
            }
            if let Ok(response) = client.get(format!("http://{}/healthz", self.http_addr)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the controller not ready after {READY_TIMEOUT:?}; log:\n{}", self.logs());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The identity it campaigns with.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<MetricsSnapshot> {
        let body = Self::http()?
            .get(format!("http://{}/metrics", self.http_addr))
            .send()
            .await
            .context("GET /metrics")?
            .text()
            .await?;
        MetricsSnapshot::parse(&body)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), Signal::SIGTERM).context("cannot signal the controller")?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot poll the controller")? {
                self.watchdog = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("the controller still running {EXIT_TIMEOUT:?} after SIGTERM; log:\n{}", self.logs());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for SecretSyncProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.watchdog = None;
    }
}
