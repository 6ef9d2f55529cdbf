//! The `courier-provider` binary as a child process on a temporary providers directory.
//!
//! The provider is ready when, for every name it serves, the socket file exists and a `Version` call over it
//! succeeds; that is what the driver relies on, so it is what we wait for.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use courier_proto::v1alpha1::VersionRequest;
use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::tools;
use crate::watchdog::ExitWatchdog;

/// How long start-up may take; a debug build on a busy machine starts well within this.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often readiness and exit are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long one connection attempt or readiness `Version` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the provider may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Variables the provider (or its HTTP client) reads that a developer's shell may set; the tests pass everything
/// as flags, and a proxy would take requests away from 127.0.0.1.
const INHERITED_ENV_TO_CLEAR: &[&str] = &[
    "VAULT_ADDR",
    "BAO_ADDR",
    "RUST_LOG",
    "COURIER_PROVIDERS_DIR",
    "COURIER_PROVIDERS",
    "COURIER_HEALTH_ADDR",
    "COURIER_LOG_FORMAT",
    "COURIER_LOG_LEVEL",
    "COURIER_HMAC_KEY_FILE",
    "COURIER_MOUNT_TIMEOUT",
    "COURIER_SHUTDOWN_TIMEOUT",
    "COURIER_METRICS_ADDR",
    "COURIER_STATIC_REUSE",
    "COURIER_BACKEND_CONCURRENCY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];
/// The API version the driver sends in `VersionRequest`.
pub const API_VERSION: &str = "v1alpha1";

/// Flags, environment and directory for one provider process.
#[derive(Debug, Clone)]
pub struct ProviderBuilder {
    names: Vec<String>,
    vault_addr: Option<String>,
    hmac_key_file: Option<PathBuf>,
    health_addr: Option<String>,
    log_level: String,
    log_format: Option<String>,
    providers_dir: Option<PathBuf>,
    extra_args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Default for ProviderBuilder {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            vault_addr: None,
            hmac_key_file: None,
            health_addr: None,
            log_level: "debug".to_owned(),
            log_format: None,
            providers_dir: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl ProviderBuilder {
    /// A provider with default flags: the name `courier` unless [`provider`](Self::provider) adds names.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider name (`--provider NAME`); the socket is `<providers-dir>/<name>.sock`.
    #[must_use]
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// The default backend address (`--vault-addr`).
    #[must_use]
    pub fn vault_addr(mut self, addr: impl Into<String>) -> Self {
        self.vault_addr = Some(addr.into());
        self
    }

    /// The object-version key (`--hmac-key-file`).
    #[must_use]
    pub fn hmac_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.hmac_key_file = Some(path.into());
        self
    }

    /// The health endpoint (`--health-addr HOST:PORT`).
    #[must_use]
    pub fn health_addr(mut self, addr: impl Into<String>) -> Self {
        self.health_addr = Some(addr.into());
        self
    }

    /// How long a static read is reused for the same identity (`--static-reuse`; zero disables reuse).
    #[must_use]
    pub fn static_reuse(self, window: Duration) -> Self {
        self.arg("--static-reuse")
            .arg(format!("{}ms", window.as_millis()))
    }

    /// `--log-level` (default `debug`).
    #[must_use]
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    /// `--log-format text|json`.
    #[must_use]
    pub fn log_format(mut self, format: impl Into<String>) -> Self {
        self.log_format = Some(format.into());
        self
    }

    /// Serves in `dir` instead of a fresh temporary directory (the caller keeps it alive).
    #[must_use]
    pub fn providers_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.providers_dir = Some(dir.into());
        self
    }

    /// Adds a raw argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Sets an environment variable for the process.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the process and waits until every socket answers `Version`.
    pub async fn start(self) -> anyhow::Result<ProviderProcess> {
        let mut process = self.spawn()?;
        process.wait_ready().await?;
        Ok(process)
    }

    /// Starts the process without waiting for it, for tests that expect it to fail.
    pub fn spawn(self) -> anyhow::Result<ProviderProcess> {
        let binary = tools::provider_binary()?;
        let (providers_dir, owned_dir) = match self.providers_dir {
            Some(dir) => (dir, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("courier-providers-")
                    .tempdir()
                    .context("cannot create a temporary providers directory")?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let log_dir = tempfile::Builder::new()
            .prefix("courier-provider-log-")
            .tempdir()
            .context("cannot create a temporary directory for the provider's log")?;
        let log_path = log_dir.path().join("provider.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .context("cannot duplicate the log file handle")?;

        let names = if self.names.is_empty() {
            vec!["courier".to_owned()]
        } else {
            self.names
        };
        let mut command = Command::new(&binary);
        command.arg("--providers-dir").arg(&providers_dir);
        for name in &names {
            command.arg("--provider").arg(name);
        }
        if let Some(addr) = &self.vault_addr {
            command.arg("--vault-addr").arg(addr);
        }
        if let Some(path) = &self.hmac_key_file {
            command.arg("--hmac-key-file").arg(path);
        }
        if let Some(addr) = &self.health_addr {
            command.arg("--health-addr").arg(addr);
        }
        command.arg("--log-level").arg(&self.log_level);
        if let Some(format) = &self.log_format {
            command.arg("--log-format").arg(format);
        }
        for key in INHERITED_ENV_TO_CLEAR {
            command.env_remove(key);
        }
        command
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let pid = child.id();
        let mut process = ProviderProcess {
            child,
            watchdog: None,
            names,
            providers_dir,
            log_path,
            _owned_dir: owned_dir,
            _log_dir: log_dir,
        };
        process.watchdog =
            Some(ExitWatchdog::watch(pid).context("cannot start the provider's exit watchdog")?);
        Ok(process)
    }
}

/// A running provider; killed on drop unless it already exited.
#[derive(Debug)]
pub struct ProviderProcess {
    child: Child,
    watchdog: Option<ExitWatchdog>,
    names: Vec<String>,
    providers_dir: PathBuf,
    log_path: PathBuf,
    _owned_dir: Option<TempDir>,
    _log_dir: TempDir,
}

impl ProviderProcess {
    /// Shorthand for `ProviderBuilder::new()`.
    pub fn builder() -> ProviderBuilder {
        ProviderBuilder::new()
    }

    /// Starts a provider as `builder` describes and waits until it is ready.
    pub async fn start(builder: ProviderBuilder) -> anyhow::Result<Self> {
        builder.start().await
    }

    /// Waits until every socket exists and answers `Version`; fails with the log if the process exits first.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for name in self.names.clone() {
            let socket = self.socket_path(&name);
            let mut last_error = String::from("socket file not there yet");
            loop {
                if let Some(status) = self
                    .child
                    .try_wait()
                    .context("cannot poll the provider process")?
                {
                    bail!(
                        "courier-provider exited during start-up with {status}; log:\n{}",
                        self.logs()
                    );
                }
                if socket.exists() {
                    match version_once(&socket).await {
                        Ok(()) => break,
                        Err(error) => last_error = format!("{error:#}"),
                    }
                }
                if Instant::now() >= deadline {
                    bail!(
                        "courier-provider not ready on {} after {READY_TIMEOUT:?} ({last_error}); log:\n{}",
                        socket.display(),
                        self.logs()
                    );
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        Ok(())
    }

    /// The provider names served.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The providers directory.
    pub fn providers_dir(&self) -> &Path {
        &self.providers_dir
    }

    /// `<providers-dir>/<name>.sock`.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.providers_dir.join(format!("{name}.sock"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the provider wrote to stderr and stdout so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// A client on socket `name`, with `:authority` `localhost` as drivers since v1.6 send it.
    pub async fn client(&self, name: &str) -> anyhow::Result<CsiDriverProviderClient<Channel>> {
        Ok(CsiDriverProviderClient::new(
            connect_unix(&self.socket_path(name)).await?,
        ))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(EXIT_TIMEOUT).await
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("cannot send {signal} to the provider"))
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("cannot poll the provider process")?
            {
                // The pid is gone; the watchdog must not outlive it.
                self.watchdog = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "courier-provider still running after {timeout:?}; log:\n{}",
                    self.logs()
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.watchdog = None;
    }
}

/// A channel over the unix socket at `path`, sending `:authority` `localhost`.
pub async fn connect_unix(path: &Path) -> anyhow::Result<Channel> {
    let socket = path.to_path_buf();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
    });
    let endpoint = Endpoint::from_static("http://localhost");
    tokio::time::timeout(CALL_TIMEOUT, endpoint.connect_with_connector(connector))
        .await
        .with_context(|| format!("connecting to {} timed out", path.display()))?
        .with_context(|| format!("cannot connect to {}", path.display()))
}

async fn version_once(socket: &Path) -> anyhow::Result<()> {
    let mut client = CsiDriverProviderClient::new(connect_unix(socket).await?);
    let call = client.version(VersionRequest {
        version: API_VERSION.to_owned(),
    });
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .context("Version timed out")?
        .context("Version failed")?;
    Ok(())
}
