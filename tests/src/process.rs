//! The one way test support starts a process: spawn it with its output in a log file, arm an exit watchdog, poll
//! a real readiness probe (a request, a socket, a log line) with a deadline (never a sleep), signal it and wait for
//! its exit status, stop it on drop, and put its log into every start-up or exit error. OpenBao, moto, PostgreSQL,
//! drongo, the provider, the driver shim and the SecretSync controller all start through here.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::watchdog::ExitWatchdog;

/// How often a stopping server, or a log awaited, is checked on.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// New ports tried when a server loses a race for its port.
pub(crate) const PORT_ATTEMPTS: usize = 5;
/// How long a server may take to exit after SIGTERM.
pub(crate) const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Variables that would send a child's HTTP requests away from 127.0.0.1, or change its log filter: no process the
/// tests start inherits them from a developer's shell.
const INHERITED_ENV_TO_CLEAR: &[&str] = &[
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// Removes from `command`'s environment the proxy and log variables, and `more` (what that binary also reads).
pub(crate) fn clear_inherited_env(command: &mut Command, more: &[&str]) {
    for key in INHERITED_ENV_TO_CLEAR.iter().chain(more) {
        command.env_remove(key);
    }
}

/// Why one start attempt failed: only a lost port race is worth another attempt.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The server could not bind the port it was given; a fresh port may work.
    PortTaken(anyhow::Error),
    /// Anything else: the test fails with this.
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(error: anyhow::Error) -> Self {
        Self::Fatal(error)
    }
}

impl StartError {
    /// The error either way, for a server started on a path or port of the test's choosing (no retry).
    pub(crate) fn into_error(self) -> anyhow::Error {
        match self {
            Self::PortTaken(error) | Self::Fatal(error) => error,
        }
    }
}

/// What one readiness probe found.
#[derive(Debug)]
pub(crate) enum Probe {
    /// The server answered a real request.
    Ready,
    /// Not yet; the text says what the probe saw, for the timeout message.
    NotYet(String),
    /// The server answered in a way that waiting will not fix.
    Fatal(anyhow::Error),
}

/// How a server is stopped.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shutdown {
    /// SIGKILL: for servers whose state is thrown away with them.
    Kill,
    /// `signal`, then SIGKILL if it is still running after `grace`.
    Signal {
        /// The polite signal (PostgreSQL's immediate shutdown is SIGQUIT).
        signal: Signal,
        /// How long it may take.
        grace: Duration,
    },
}

/// A spawned server: output in a log file, killed on drop and, through its watchdog, when the test process dies.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: &'static str,
    // A mutex so that readiness probes can borrow the fixture that owns this while the child is polled.
    child: Mutex<Child>,
    // Disarmed once the process is reaped: its pid may then name someone else.
    watchdog: Option<ExitWatchdog>,
    log_path: PathBuf,
    shutdown: Shutdown,
}

impl ServerProcess {
    /// Spawns `command` (stdin closed, stdout and stderr into `log_path`) and arms its watchdog. `name` names the
    /// server in every error.
    pub(crate) fn spawn(
        name: &'static str,
        command: &mut Command,
        log_path: &Path,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let log = File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .context("cannot duplicate the log file handle")?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("cannot run {name} ({:?})", command.get_program()))?;
        let watchdog = match ExitWatchdog::watch(child.id()) {
            Ok(watchdog) => watchdog,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(
                    anyhow!(error).context(format!("cannot start the {name} exit watchdog"))
                );
            }
        };
        Ok(Self {
            name,
            child: Mutex::new(child),
            watchdog: Some(watchdog),
            log_path: log_path.to_owned(),
            shutdown,
        })
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything the server has logged so far.
    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// The process id (still the same number after the process exited).
    pub(crate) fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Sends `signal`; fails, sending nothing, once the process has exited and been reaped (its pid may have been
    /// reused).
    pub(crate) fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let mut child = self.child();
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot check on {}", self.name))?
        {
            bail!(
                "{} already exited with {status}; not sending {signal}",
                self.name
            );
        }
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("cannot send {signal} to {}", self.name))
    }

    /// Waits up to `timeout` for the process to exit, and disarms its watchdog once it has.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .child
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait()
                .with_context(|| format!("cannot check on {}", self.name))?;
            if let Some(status) = status {
                self.watchdog = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running after {timeout:?}; log:\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub(crate) async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(timeout).await.context("after SIGTERM")
    }

    /// Waits up to `timeout` until the log holds one of `needles`; fails at once, with the log, if the process
    /// exits without having logged any.
    pub(crate) async fn wait_for_log(
        &self,
        needles: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Checked before reading: a line written just before the exit is still found.
            let exited = self
                .child()
                .try_wait()
                .with_context(|| format!("cannot check on {}", self.name))?;
            let logs = self.logs();
            if needles.iter().any(|needle| logs.contains(needle)) {
                return Ok(());
            }
            if let Some(status) = exited {
                bail!(
                    "{} exited with {status} without logging any of {needles:?}; log:\n{logs}",
                    self.name
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} logged none of {needles:?} within {timeout:?}; log:\n{logs}",
                    self.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fails if the server has exited: with [`StartError::PortTaken`] when its log says its address was in use.
    pub(crate) fn check_running(&self) -> Result<(), StartError> {
        let status = self
            .child()
            .try_wait()
            .with_context(|| format!("cannot check on {}", self.name))?;
        match status {
            None => Ok(()),
            Some(status) => Err(self.exited_early(status)),
        }
    }

    fn exited_early(&self, status: ExitStatus) -> StartError {
        let logs = self.logs();
        let error = anyhow!(
            "{} exited during start-up with {status}; log:\n{logs}",
            self.name
        );
        if logs.to_ascii_lowercase().contains("address already in use") {
            StartError::PortTaken(error)
        } else {
            StartError::Fatal(error)
        }
    }

    /// Runs `probe` every `poll` until it answers [`Probe::Ready`] with the server still running, the server
    /// exits, or `timeout` passes. `at` names where the server should answer, for the error.
    pub(crate) async fn wait_ready<F, Fut>(
        &self,
        at: &str,
        timeout: Duration,
        poll: Duration,
        mut probe: F,
    ) -> Result<(), StartError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Probe>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last_probe = match probe().await {
                Probe::Ready => {
                    // Whatever answered may be someone else on a port we lost; make sure ours is alive.
                    self.check_running()?;
                    return Ok(());
                }
                Probe::NotYet(seen) => seen,
                Probe::Fatal(error) => {
                    return Err(StartError::Fatal(error.context(format!(
                        "{} on {at}; log:\n{}",
                        self.name,
                        self.logs()
                    ))));
                }
            };
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(anyhow!(
                    "{} on {at} not ready after {timeout:?} (last probe: {last_probe}); log:\n{}",
                    self.name,
                    self.logs()
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Shutdown::Signal { signal, grace } = self.shutdown
            && matches!(child.try_wait(), Ok(None))
            // Not yet reaped, so the pid still names our child.
            && let Ok(pid) = i32::try_from(child.id())
            && kill(Pid::from_raw(pid), signal).is_ok()
        {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(POLL),
                    Ok(Some(_)) | Err(_) => return,
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        self.watchdog = None;
    }
}

/// Runs `start` on fresh ports until it does not lose a port race, at most `attempts` times.
pub(crate) async fn start_on_fresh_ports<T, F, Fut>(
    name: &str,
    attempts: usize,
    mut start: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StartError>>,
{
    let mut last_error = None;
    for _ in 0..attempts {
        match start().await {
            Ok(server) => return Ok(server),
            Err(StartError::PortTaken(error)) => last_error = Some(error),
            Err(StartError::Fatal(error)) => return Err(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow!("no attempt was made"))
        .context(format!(
            "{name} did not start after {attempts} attempts on fresh ports"
        )))
}

/// A port nobody listens on right now; the server may still lose it before binding, hence the retries.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("bound socket has no address")?
        .port())
}

#[cfg(test)]
mod tests;
