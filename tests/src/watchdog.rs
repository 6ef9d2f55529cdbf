//! Kills a server process when the test process ends, however it ends.
//!
//! Fixtures kill their server in `Drop`, but a fixture shared by a whole test binary sits in a `static`, and Rust
//! never drops statics; a test process killed by a signal drops nothing at all. Each server therefore gets a tiny
//! `sh` watcher that blocks reading a pipe only we hold open: when our process exits, the kernel closes the pipe,
//! the read returns and the watcher kills the server.

use std::io;
use std::process::{Child, Command, Stdio};

/// Waits for EOF on stdin, then kills the pid given as `$1`.
const WATCH_SCRIPT: &str = r#"read -r _line; kill -KILL "$1" 2>/dev/null; exit 0"#;

/// A watcher process; dropping it disarms it without touching the watched process.
#[derive(Debug)]
pub(crate) struct ExitWatchdog {
    watcher: Child,
}

impl ExitWatchdog {
    /// Starts a watcher that kills `pid` once this process has exited.
    pub(crate) fn watch(pid: u32) -> io::Result<Self> {
        // Rust opens the pipe close-on-exec, so no other child inherits its write end and keeps it open.
        let watcher = Command::new("sh")
            .args(["-c", WATCH_SCRIPT, "courier-watchdog", &pid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self { watcher })
    }
}

impl Drop for ExitWatchdog {
    fn drop(&mut self) {
        // SIGKILL first: `wait` closes stdin, and a watcher still alive at that point would kill the pid, which
        // may by then belong to an unrelated process.
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
    }
}
