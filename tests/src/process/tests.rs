//! The process fixture against `sh` scripts: start-up failures, readiness, signals, exits and logs.

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
async fn a_server_that_lost_its_port_is_worth_another_port_and_says_why() -> anyhow::Result<()> {
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
        std::thread::sleep(POLL);
    }
    drop(server);
    let log = std::fs::read_to_string(dir.path().join("log"))?;
    assert!(log.contains("got-quit"), "{log}");
    Ok(())
}

#[tokio::test]
async fn terminate_reports_the_exit_status_and_a_reaped_process_gets_no_signal()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = sh(
        "trap 'echo got-term; exit 7' TERM; echo armed; while :; do sleep 0.05; done",
        dir.path(),
        Shutdown::Kill,
    )?;
    server
        .wait_for_log(&["armed"], Duration::from_secs(30))
        .await?;
    let status = server.terminate(Duration::from_secs(30)).await?;
    assert_eq!(status.code(), Some(7), "{status}");
    assert!(server.logs().contains("got-term"), "{}", server.logs());
    let refused = server.signal(Signal::SIGTERM);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("already exited")),
        "{refused:?}"
    );
    // Waiting again answers the same status at once.
    assert_eq!(server.wait_exit(Duration::ZERO).await?.code(), Some(7));
    Ok(())
}

#[tokio::test]
async fn a_process_still_running_at_the_exit_deadline_fails_with_its_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = sh("echo 'busy'; exec sleep 600", dir.path(), Shutdown::Kill)?;
    server
        .wait_for_log(&["busy"], Duration::from_secs(30))
        .await?;
    let error = server
        .wait_exit(Duration::ZERO)
        .await
        .err()
        .ok_or_else(|| anyhow!("a running process was reported as exited"))?;
    let text = format!("{error:#}");
    assert!(
        text.contains("still running") && text.contains("busy"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn waiting_for_a_log_line_fails_at_once_when_the_process_exits_without_it()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = sh("echo 'something else'; exit 2", dir.path(), Shutdown::Kill)?;
    // The deadline is far away: only the exit can end the wait.
    let error = server
        .wait_for_log(&["listening"], Duration::from_secs(600))
        .await
        .err()
        .ok_or_else(|| anyhow!("a line never logged was found"))?;
    let text = format!("{error:#}");
    assert!(
        text.contains("exited") && text.contains("something else") && text.contains("listening"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_line_logged_just_before_the_exit_is_still_found() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = sh("echo 'ready now'; exit 0", dir.path(), Shutdown::Kill)?;
    server
        .wait_for_log(&["not this", "ready now"], Duration::from_secs(30))
        .await?;
    Ok(())
}

#[test]
fn only_the_inherited_variables_are_cleared() {
    let mut command = Command::new("true");
    command
        .env("HTTPS_PROXY", "http://elsewhere")
        .env("KEEP", "1");
    clear_inherited_env(&mut command, &["KUBECONFIG"]);
    let removed: Vec<_> = command
        .get_envs()
        .filter(|(_, value)| value.is_none())
        .map(|(key, _)| key.to_string_lossy().into_owned())
        .collect();
    for key in ["HTTPS_PROXY", "http_proxy", "RUST_LOG", "KUBECONFIG"] {
        assert!(
            removed.iter().any(|k| k == key),
            "{key} not cleared: {removed:?}"
        );
    }
    assert!(
        command
            .get_envs()
            .any(|(key, value)| key == "KEEP" && value.is_some()),
        "a variable set on purpose was removed"
    );
}
