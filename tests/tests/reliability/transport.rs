//! Transport attacks on a provider socket: CONTINUATION floods, oversize frames and header blocks, slowloris
//! clients, a thousand idle connections, connections over the cap, and descriptor exhaustion (EMFILE).
//!
//! Each attack runs against a real provider process and checks the server's answer (the GOAWAY code, the reset, or
//! the closed connection). While it runs, `Version` is called again and again, each time on a fresh connection as
//! a driver would after a restart: every call must succeed, and the median must stay within [`VERSION_MEDIAN`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use courier_tests::h2_attack::{
    self, Answer, FLAG_END_HEADERS, TYPE_CONTINUATION, TYPE_DATA, TYPE_HEADERS, code, frame,
    frame_header, request_block,
};
use courier_tests::probe::{Probes, probe};
use courier_tests::{ProcessMemory, ProviderBuilder, ProviderProcess};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::support::{Figures, exclusive};

/// `Version` calls made during each attack.
const PROBES: usize = 15;
/// Attackers running at once.
const ATTACKERS: usize = 1;
/// How long the server may take to answer an attack or close a connection; only a hang comes near it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The handshake timeout of the slowloris test: short, so the test is quick.
const SHORT_HANDSHAKE: &str = "1s";
/// Connections held open in the idle-connection test.
const IDLE_CONNECTIONS: usize = 1000;
const MOUNT_PATH: &str = "/v1alpha1.CSIDriverProvider/Mount";

/// Runs `attack` in [`ATTACKERS`] loops while [`PROBES`] `Version` calls are made; returns the probes and every
/// attack's answer. The attackers run on a thread of their own, so the probes' latency is the provider's, not the
/// attackers' turn on the test's thread.
async fn under_attack<F, Fut>(socket: &Path, attack: F) -> anyhow::Result<(Probes, Vec<Answer>)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Answer>> + Send + 'static,
{
    let attack = Arc::new(attack);
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let attackers_stop = Arc::clone(&stop);
    let attackers = std::thread::spawn(move || -> anyhow::Result<Vec<Answer>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..ATTACKERS {
                let (attack, stop) = (Arc::clone(&attack), Arc::clone(&attackers_stop));
                tasks.spawn(async move {
                    let mut answers = Vec::new();
                    // At least one attack each, and attacks for as long as the probes run.
                    loop {
                        answers.push(attack().await?);
                        if stop.load(Ordering::Acquire) {
                            return anyhow::Ok(answers);
                        }
                    }
                });
            }
            let _ = started_tx.send(());
            let mut answers = Vec::new();
            while let Some(done) = tasks.join_next().await {
                answers.extend(done??);
            }
            Ok(answers)
        })
    });
    let _ = started_rx.await;
    let probes = probe(socket, PROBES).await;
    stop.store(true, Ordering::Release);
    let answers = tokio::task::spawn_blocking(move || attackers.join())
        .await?
        .map_err(|_| anyhow::anyhow!("an attacker panicked"))??;
    Ok((probes, answers))
}

fn assert_all(attack: &str, answers: &[Answer], expected: &[Answer], figures: &mut Figures) -> anyhow::Result<()> {
    figures.line(format!("{attack}: {} attacks, answers {:?}", answers.len(), dedup(answers)));
    let wrong: Vec<&Answer> = answers.iter().filter(|a| !expected.contains(a)).collect();
    ensure!(wrong.is_empty(), "{attack}: expected {expected:?}, got {wrong:?}");
    Ok(())
}

fn dedup(answers: &[Answer]) -> Vec<Answer> {
    let mut unique: Vec<Answer> = Vec::new();
    for a in answers {
        if !unique.contains(a) {
            unique.push(a.clone());
        }
    }
    unique
}

async fn provider(extra: &[&str]) -> anyhow::Result<ProviderProcess> {
    let mut builder = ProviderBuilder::new()
        .provider("courier")
        .provider("vault")
        .log_level("info")
        .metrics_addr("127.0.0.1:0");
    for arg in extra {
        builder = builder.arg(*arg);
    }
    builder.start().await
}

#[tokio::test]
async fn header_floods_and_oversize_frames_get_the_prescribed_goaway() -> anyhow::Result<()> {
    let _exclusive = exclusive().await;
    let provider = provider(&[]).await?;
    let mut figures = Figures::new("transport-frames");
    for socket_name in ["courier", "vault"] {
        let socket = provider.socket_path(socket_name);
        // The legacy driver's authority (the socket path) goes through the adapter's rewriting path.
        let authority = if socket_name == "vault" { socket.display().to_string() } else { "localhost".to_owned() };

        // CONTINUATION flood: a header block that never ends.
        let block = request_block(&authority, MOUNT_PATH, &[]);
        let mut flood = frame(TYPE_HEADERS, 0, 1, &block);
        let empty = frame(TYPE_CONTINUATION, 0, 1, &[]);
        for _ in 0..20_000 {
            flood.extend_from_slice(&empty);
        }
        let target = socket.clone();
        let (probes, answers) = under_attack(&socket, move || {
            let (target, bytes) = (target.clone(), flood.clone());
            async move { h2_attack::attack(&target, bytes, 1, ANSWER_TIMEOUT).await }
        })
        .await?;
        let name = format!("{socket_name}: CONTINUATION flood");
        assert_all(&name, &answers, &[Answer::GoAway(code::ENHANCE_YOUR_CALM)], &mut figures)?;
        figures.line(probes.check(&name)?);

        // A frame claiming 16 MiB, of which a little is sent; the connection stays open.
        let mut oversize = frame_header((1 << 24) - 1, TYPE_HEADERS, FLAG_END_HEADERS, 1);
        oversize.extend_from_slice(&[0u8; 1024]);
        let target = socket.clone();
        let (probes, answers) = under_attack(&socket, move || {
            let (target, bytes) = (target.clone(), oversize.clone());
            async move { h2_attack::attack(&target, bytes, 1, ANSWER_TIMEOUT).await }
        })
        .await?;
        let name = format!("{socket_name}: oversize HEADERS frame");
        assert_all(&name, &answers, &[Answer::GoAway(code::FRAME_SIZE_ERROR)], &mut figures)?;
        figures.line(probes.check(&name)?);

        // After a well-formed first request (the adapter has stepped aside or is rewriting), an oversize DATA frame.
        let mut after_request = frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block);
        after_request.extend(frame_header((1 << 24) - 1, TYPE_DATA, 0, 1));
        after_request.extend_from_slice(&[0u8; 1024]);
        let target = socket.clone();
        let (probes, answers) = under_attack(&socket, move || {
            let (target, bytes) = (target.clone(), after_request.clone());
            async move { h2_attack::attack(&target, bytes, 1, ANSWER_TIMEOUT).await }
        })
        .await?;
        let name = format!("{socket_name}: oversize DATA frame after a request");
        assert_all(&name, &answers, &[Answer::GoAway(code::FRAME_SIZE_ERROR)], &mut figures)?;
        figures.line(probes.check(&name)?);

        // A header list over SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB): that request is refused with 431.
        let big_value = vec![b'a'; 20 * 1024];
        let big = request_block(&authority, MOUNT_PATH, &[(b"x-big", &big_value)]);
        let (head, tail) = big.split_at(16 * 1024);
        let mut oversize_block = frame(TYPE_HEADERS, 0, 1, head);
        oversize_block.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, tail));
        let target = socket.clone();
        let (probes, answers) = under_attack(&socket, move || {
            let (target, bytes) = (target.clone(), oversize_block.clone());
            async move { h2_attack::attack(&target, bytes, 1, ANSWER_TIMEOUT).await }
        })
        .await?;
        let name = format!("{socket_name}: 20 KiB header list");
        assert_all(
            &name,
            &answers,
            &[Answer::Status { stream_id: 1, status: 431 }],
            &mut figures,
        )?;
        figures.line(probes.check(&name)?);

        // An HPACK bomb: a 4 KB field referenced a thousand times, a 5 KB block decoding to 4 MB.
        let mut bomb = request_block(&authority, MOUNT_PATH, &[]);
        bomb.extend_from_slice(&[0x40, 0x01, b'x', 0x7f, 0xa1, 0x1e]);
        bomb.extend_from_slice(&[b'v'; 4000]);
        bomb.extend_from_slice(&[0xbe; 1000]);
        let bomb_frames = frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &bomb);
        let target = socket.clone();
        let (probes, answers) = under_attack(&socket, move || {
            let (target, bytes) = (target.clone(), bomb_frames.clone());
            async move { h2_attack::attack(&target, bytes, 1, ANSWER_TIMEOUT).await }
        })
        .await?;
        let name = format!("{socket_name}: HPACK bomb");
        assert_all(&name, &answers, &[Answer::GoAway(code::ENHANCE_YOUR_CALM)], &mut figures)?;
        figures.line(probes.check(&name)?);
    }
    figures.print();
    Ok(())
}

#[tokio::test]
async fn slowloris_clients_are_closed_after_the_handshake_timeout() -> anyhow::Result<()> {
    let _exclusive = exclusive().await;
    let provider = provider(&["--handshake-timeout", SHORT_HANDSHAKE]).await?;
    let socket = provider.socket_path("courier");
    let mut figures = Figures::new("transport-slowloris");
    let target = socket.clone();
    let (probes, answers) = under_attack(&socket, move || {
        let target = target.clone();
        async move {
            // One byte of the preface, then a PING frame, every 100 ms, never a request.
            let mut stream = UnixStream::connect(&target).await?;
            let mut drip = h2_attack::PREFACE.to_vec();
            drip.extend(frame(0x4, 0, 0, &[]));
            for _ in 0..1000 {
                drip.extend(frame(0x6, 0, 0, &[0u8; 8]));
            }
            let started = Instant::now();
            for byte in drip {
                if stream.write_all(&[byte]).await.is_err() {
                    return Ok(Answer::Closed);
                }
                // Load pacing: the slowloris drip itself (one byte per 100 ms) is what is tested.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if started.elapsed() > ANSWER_TIMEOUT {
                    bail!("the slowloris client was not closed within {ANSWER_TIMEOUT:?}");
                }
            }
            bail!("the slowloris client finished its drip without being closed")
        }
    })
    .await?;
    assert_all("slowloris", &answers, &[Answer::Closed], &mut figures)?;
    figures.line(probes.check("slowloris")?);
    let metrics = provider.metrics().await?;
    let closed = metrics.count(
        "courier_connections_closed_total",
        &[("provider", "courier"), ("reason", "handshake_timeout")],
    );
    figures.line(format!("slowloris: {closed} connections closed by the handshake timeout"));
    ensure!(closed >= answers.len() as u64, "{closed} handshake-timeout closes for {} attacks", answers.len());

    // A connection that made a request and then idles is closed by the idle timeout.
    let idle_provider = self::provider(&["--idle-timeout", "1s"]).await?;
    let idle_socket = idle_provider.socket_path("courier");
    let mut stream = h2_attack::connect(&idle_socket).await?;
    let version_block = request_block("localhost", "/v1alpha1.CSIDriverProvider/Version", &[]);
    stream.write_all(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &version_block)).await?;
    // An empty gRPC message (flag 0, length 0) ends the request.
    stream.write_all(&frame(TYPE_DATA, 0x1, 1, &[0, 0, 0, 0, 0])).await?;
    h2_attack::wait_closed(&mut stream, ANSWER_TIMEOUT).await?;
    let metrics = idle_provider.metrics().await?;
    let idle = metrics.count("courier_connections_closed_total", &[("reason", "idle")]);
    ensure!(idle >= 1, "no idle close counted:\n{}", metrics.text());
    figures.line("idle: a connection idle after a request was closed by the idle timeout".to_owned());
    figures.print();
    Ok(())
}

#[tokio::test]
async fn a_thousand_idle_connections_are_held_in_bounded_memory() -> anyhow::Result<()> {
    let _exclusive = exclusive().await;
    let provider = provider(&["--max-connections", "1100", "--handshake-timeout", "10m"]).await?;
    let socket = provider.socket_path("courier");
    let before = ProcessMemory::of(provider.pid())?;
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        held.push(h2_attack::connect(&socket).await?);
    }
    let probes = probe(&socket, PROBES).await;
    let open = wait_for_open(&provider, |open| open >= IDLE_CONNECTIONS as u64).await?;
    let during = ProcessMemory::of(provider.pid())?;
    let mut figures = Figures::new("transport-idle");
    figures.line(format!(
        "{IDLE_CONNECTIONS} idle connections: provider RSS {} KiB before, {} KiB with them ({} KiB per connection), \
         {open} connections open on the socket",
        before.rss_bytes / 1024,
        during.rss_bytes / 1024,
        during.rss_bytes.saturating_sub(before.rss_bytes) / 1024 / IDLE_CONNECTIONS as u64,
    ));
    figures.line(probes.check("1000 idle connections")?);

    // With the default cap (256), the same thousand never hold more than the cap: the idlest make room.
    let capped = self::provider(&["--handshake-timeout", "10m"]).await?;
    let capped_socket = capped.socket_path("courier");
    let mut capped_held = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        // Over the cap the provider may close a connection before its preface is written: not an error here.
        let mut stream = UnixStream::connect(&capped_socket).await?;
        let _ = stream.write_all(h2_attack::PREFACE).await;
        capped_held.push(stream);
    }
    let probes = probe(&capped_socket, PROBES).await;
    // Evicted connections leave as soon as their task runs; wait for that rather than race it.
    let open = wait_for_open(&capped, |open| open <= 256).await?;
    let memory = ProcessMemory::of(capped.pid())?;
    let metrics = capped.metrics().await?;
    let evicted = metrics.count("courier_connections_closed_total", &[("reason", "evicted")]);
    let refused = metrics.count("courier_connections_closed_total", &[("reason", "over_limit")]);
    figures.line(format!(
        "{IDLE_CONNECTIONS} idle connections, default cap: {open} open, {evicted} evicted, {refused} refused, \
         RSS {} KiB",
        memory.rss_bytes / 1024
    ));
    figures.line(probes.check("1000 idle connections over the default cap")?);
    ensure!(
        evicted + refused >= (IDLE_CONNECTIONS - 256) as u64,
        "only {evicted} evicted and {refused} refused"
    );
    figures.print();
    Ok(())
}

/// A connection whose Mount request is in progress: headers sent, the body never finished. A complete `Version`
/// request follows on stream 3; the server takes streams in order, so its answer proves the Mount is in progress.
async fn start_busy_connection(socket: &Path) -> anyhow::Result<UnixStream> {
    let mut stream = h2_attack::connect(socket).await?;
    let mount = request_block("localhost", MOUNT_PATH, &[]);
    stream.write_all(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &mount)).await?;
    // A second block from a fresh encoder: no dynamic-table references into the first.
    let version = request_block("localhost", "/v1alpha1.CSIDriverProvider/Version", &[]);
    stream.write_all(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &version)).await?;
    // An empty gRPC message (flag 0, length 0) ends the Version request.
    stream.write_all(&frame(TYPE_DATA, 0x1, 3, &[0, 0, 0, 0, 0])).await?;
    Ok(stream)
}

async fn busy_connection(socket: &Path) -> anyhow::Result<UnixStream> {
    let mut stream = start_busy_connection(socket).await?;
    tokio::time::timeout(ANSWER_TIMEOUT, h2_attack::wait_response(&mut stream, 3))
        .await
        .context("no answer on a busy connection")??;
    Ok(stream)
}

#[tokio::test]
async fn over_the_cap_busy_sockets_refuse_at_once_and_accept_errors_back_off() -> anyhow::Result<()> {
    let _exclusive = exclusive().await;
    let mut figures = Figures::new("transport-cap");
    let provider = provider(&["--max-connections", "8"]).await?;
    let socket = provider.socket_path("courier");
    let mut busy = Vec::new();
    for n in 0..8 {
        busy.push(busy_connection(&socket).await.with_context(|| format!("busy connection {n} under the cap"))?);
    }
    // Every connection busy: the next ones are closed at once.
    for _ in 0..5 {
        let mut extra = UnixStream::connect(&socket).await?;
        h2_attack::wait_closed(&mut extra, ANSWER_TIMEOUT).await?;
    }
    let metrics = provider.metrics().await?;
    let refused = metrics.count("courier_connections_closed_total", &[("reason", "over_limit")]);
    ensure!(refused >= 5, "{refused} refusals counted");
    drop(busy);
    wait_for_open(&provider, |open| open == 0).await?;
    let probes = probe(&socket, PROBES).await;
    figures.line(probes.check("after the busy connections left")?);
    figures.line(format!("cap 8: 8 busy connections held, {refused} refused at once"));

    // Descriptor exhaustion: the provider's limit lowered to what it uses now plus a few, then filled with busy
    // connections and a backlog of more; it must back off rather than spin, and log a bounded number of lines.
    let emfile = self::provider(&["--handshake-timeout", "10m"]).await?;
    let socket = emfile.socket_path("courier");
    let pid = emfile.pid();
    let in_use = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let limit = in_use + 8;
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .context("running prlimit")?;
    ensure!(status.success(), "prlimit failed: {status}");

    // Descriptors taken by idle connections: the idlest makes room, so Version is still served.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(UnixStream::connect(&socket).await?);
        if accept_failures(&emfile) > 0 {
            break;
        }
    }
    wait_for_accept_failures(&emfile, 1).await?;
    let probes = probe(&socket, PROBES).await;
    figures.line(probes.check("EMFILE, idle connections")?);
    drop(idle);

    // Descriptors taken by busy connections, and a backlog of more: nothing can make room, so accept keeps
    // failing; the provider must back off rather than spin, and log a bounded number of lines.
    let failures_before = accept_failures(&emfile);
    let mut busy = Vec::new();
    let mut pending = Vec::new();
    while pending.is_empty() {
        ensure!(busy.len() < 40, "40 busy connections and no accept failed");
        let mut stream = start_busy_connection(&socket).await?;
        tokio::select! {
            answered = h2_attack::wait_response(&mut stream, 3) => {
                answered.with_context(|| format!("busy connection {} before EMFILE:\n{}", busy.len(), emfile.logs()))?;
                busy.push(stream);
            }
            failed = wait_for_accept_failures(&emfile, failures_before + 1) => {
                failed?;
                pending.push(stream);
            }
        }
    }
    for _ in 0..20 {
        pending.push(UnixStream::connect(&socket).await?);
    }
    let cpu_before = cpu_time(pid)?;
    let window_start = Instant::now();
    // Two seconds of a failing accept: a busy loop would burn them both. A measurement window, not
    // synchronisation: CPU time and log lines are read over it.
    let lines_before = accept_failures(&emfile);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = window_start.elapsed();
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
    let lines = accept_failures(&emfile) - lines_before;
    let (busy_count, pending_count) = (busy.len(), pending.len());
    ensure!(cpu < window / 4, "the provider used {cpu:?} of CPU in {window:?} while accept failed");
    ensure!(lines as u128 <= window.as_millis() / 1000 + 2, "{lines} accept-error lines in {window:?}");
    // Once the busy clients leave, the backlog is served and Version works again.
    drop(busy);
    drop(pending);
    wait_for_open(&emfile, |open| open == 0).await?;
    let probes = probe(&socket, PROBES).await;
    ensure!(probes.failures.is_empty(), "Version failed after EMFILE: {:?}", probes.failures);
    // Out of descriptors, the metrics listener cannot accept either: scrape only now.
    let metrics = emfile.metrics().await?;
    let errors = metrics.count("courier_accept_errors_total", &[("provider", "courier")]);
    figures.line(format!(
        "EMFILE (nofile {limit}, {busy_count} busy connections, {pending_count} pending): {} ms CPU over {} ms, \
         {lines} log lines, {errors} accept errors counted",
        cpu.as_millis(),
        window.as_millis()
    ));
    figures.line(format!("after EMFILE: Version median {} ms", probes.median().as_millis()));
    figures.print();
    Ok(())
}

/// Waits until the number of open connections on the `courier` socket satisfies `done`; returns it.
async fn wait_for_open(provider: &ProviderProcess, done: impl Fn(u64) -> bool) -> anyhow::Result<u64> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let metrics = provider.metrics().await?;
        let open = metrics.count("courier_connections_open", &[("provider", "courier")]);
        if done(open) {
            return Ok(open);
        }
        if Instant::now() >= deadline {
            bail!("{open} connections open after {ANSWER_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lines the provider logged about a failed accept.
fn accept_failures(provider: &ProviderProcess) -> usize {
    provider.logs().lines().filter(|l| l.contains("accepting a connection failed")).count()
}

/// Waits until the provider logged at least `count` failed accepts.
async fn wait_for_accept_failures(provider: &ProviderProcess, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while accept_failures(provider) < count {
        if Instant::now() >= deadline {
            bail!("the provider never failed to accept:\n{}", provider.logs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// User plus system CPU time of `pid`, from `/proc/<pid>/stat` (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()? + fields.get(12).context("no stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}
