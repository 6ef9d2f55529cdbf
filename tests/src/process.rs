//! The one way test support starts a server process: spawn it with its output in a log file, arm an exit
//! watchdog, poll a real readiness probe with a deadline (never a sleep), stop it on drop, and put its log into
//! every start-up error. OpenBao, moto and PostgreSQL fixtures all start through here.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::watchdog::ExitWatchdog;

/// How often a stopping server is checked on.
const STOP_POLL: Duration = Duration::from_millis(20);

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
    _watchdog: ExitWatchdog,
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
            _watchdog: watchdog,
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
                    Ok(None) => std::thread::sleep(STOP_POLL),
                    Ok(Some(_)) | Err(_) => return,
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
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
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn sh(script: &str, dir: &Path, shutdown: Shutdown) -> anyhow::Result<ServerProcess> {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        ServerProcess::spawn("test server", &mut command, &dir.join("log"), shutdown)
    }

    async fn never_ready(server: &ServerProcess) -> Result<(), StartError> {
        server
            .wait_ready(
                "nowhere",
                Duration::from_secs(30),
                Duration::from_millis(5),
                || async { Probe::NotYet("nothing".to_owned()) },
            )
            .await
    }

    #[tokio::test]
    async fn a_server_that_lost_its_port_is_worth_another_port_and_says_why() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let server = sh(
            "echo 'bind: Address already in use' >&2; exit 1",
            dir.path(),
            Shutdown::Kill,
        )?;
        match never_ready(&server).await {
            Err(StartError::PortTaken(error)) => {
                assert!(
                    format!("{error:#}").contains("Address already in use"),
                    "{error:#}"
                );
            }
            other => panic!("expected a lost port race, got {other:?}"),
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_server_that_dies_fails_the_start_with_its_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let server = sh(
            "echo 'fatal: bad config'; exit 3",
            dir.path(),
            Shutdown::Kill,
        )?;
        match never_ready(&server).await {
            Err(StartError::Fatal(error)) => {
                let text = format!("{error:#}");
                assert!(
                    text.contains("fatal: bad config") && text.contains("test server"),
                    "{text}"
                );
            }
            other => panic!("expected a fatal start, got {other:?}"),
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_with_the_last_probe_and_its_log()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let server = sh(
            "echo 'still booting'; exec sleep 600",
            dir.path(),
            Shutdown::Kill,
        )?;
        let probes = AtomicUsize::new(0);
        let result = server
            .wait_ready(
                "127.0.0.1:1",
                Duration::ZERO,
                Duration::from_millis(5),
                || async {
                    probes.fetch_add(1, Ordering::SeqCst);
                    Probe::NotYet("connection refused".to_owned())
                },
            )
            .await;
        match result {
            Err(StartError::Fatal(error)) => {
                let text = format!("{error:#}");
                assert!(
                    text.contains("not ready") && text.contains("connection refused"),
                    "{text}"
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(
            probes.load(Ordering::SeqCst),
            1,
            "a zero deadline still probes once"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_probe_that_answers_wrongly_is_fatal_at_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let server = sh("exec sleep 600", dir.path(), Shutdown::Kill)?;
        let result = server
            .wait_ready(
                "127.0.0.1:1",
                Duration::from_secs(30),
                Duration::from_millis(5),
                || async { Probe::Fatal(anyhow!("answered as someone else")) },
            )
            .await;
        assert!(matches!(result, Err(StartError::Fatal(_))), "{result:?}");
        Ok(())
    }

    #[tokio::test]
    async fn only_lost_port_races_are_retried_and_only_so_often() {
        let attempts = AtomicUsize::new(0);
        let result: anyhow::Result<()> = start_on_fresh_ports("test server", 3, || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(StartError::PortTaken(anyhow!("address already in use")))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 3);

        let attempts = AtomicUsize::new(0);
        let result: anyhow::Result<()> = start_on_fresh_ports("test server", 3, || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(StartError::Fatal(anyhow!("broken")))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            1,
            "a fatal start is not retried"
        );
    }

    #[test]
    fn a_polite_shutdown_sends_its_signal_before_killing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        // The shell says it is ready once its trap is set, so the signal cannot arrive before the trap.
        let server = sh(
            "trap 'echo got-quit; exit 0' QUIT; echo armed; while :; do sleep 0.05; done",
            dir.path(),
            Shutdown::Signal {
                signal: Signal::SIGQUIT,
                grace: Duration::from_secs(30),
            },
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.logs().contains("armed") {
            assert!(Instant::now() < deadline, "the shell never set its trap");
            std::thread::sleep(STOP_POLL);
        }
        drop(server);
        let log = std::fs::read_to_string(dir.path().join("log"))?;
        assert!(log.contains("got-quit"), "{log}");
        Ok(())
    }
}
