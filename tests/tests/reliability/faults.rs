//! Faults with real servers: a backend that is stopped, one that hangs past `--mount-timeout`, the provider killed
//! with SIGKILL in the middle of a burst of mounts and restarted on the same socket, a stale socket file at start,
//! and a second provider on a live socket.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use courier_proto::v1alpha1::MountRequest;
use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use courier_tests::calls::{assert_status, mount, text, version};
use courier_tests::{OpenBao, ProviderBuilder, ProviderProcess, SilentBackend, connect_unix};
use nix::sys::signal::Signal;
use serde_json::json;
use tonic::Code;

use crate::support::{
    AwsEnv, Figures, JWT_MOUNT, VaultEnv, exclusive, obj, random_value, role_arn, unique_id, vault,
};

/// The `--mount-timeout` of the hung-backend test: long enough that the good mounts made while the hung one is
/// in flight finish before it ends even on a loaded machine (they take tens of milliseconds when idle).
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// Catches a mount that hangs past the timeout, or a good one stuck behind the fault; not a speed bound (that
/// the mount timeout ended the hung mount is shown by the status naming the timeout, which load cannot change).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Pause between polls of a condition that has a deadline (pacing, not synchronisation).
const POLL: Duration = Duration::from_millis(20);
/// Mounts in the burst the provider is killed during.
const BURST: usize = 30;
/// The burst's mounts start this far apart, so some are in flight, some done and some not yet sent at the kill.
const BURST_SPACING: Duration = Duration::from_millis(20);
/// The provider is killed once this many of the burst's mounts are done: a count, not a time, so on any machine
/// some are done, some in flight and most not yet sent at the kill.
const KILL_AFTER_DONE: usize = 3;
/// How long a retrying client keeps trying one mount, as kubelet keeps retrying a volume.
const RETRY_BUDGET: Duration = Duration::from_secs(30);
/// Pause between a client's attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Deadline of one attempt.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(5);
/// How long a provider that must refuse to start may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(15);

/// A KV secret readable by one identity on `env`, and the objects that mount its `password`.
async fn kv_case(
    env: &VaultEnv,
    label: &str,
) -> anyhow::Result<(crate::support::Identity, String, String)> {
    let id = unique_id(label);
    let value = random_value(label);
    env.bao
        .kv2_put("secret", &format!("{id}/app"), json!({"password": value}))
        .await?;
    env.bao
        .read_only_policy(&id, &[&format!("secret/data/{id}/*")])
        .await?;
    let identity = env
        .identity(&format!("ns-{id}"), "app", &id, &[&id])
        .await?;
    Ok((identity, format!("secret/data/{id}/app"), value))
}

#[tokio::test]
async fn a_stopped_backend_is_unavailable_naming_it() -> anyhow::Result<()> {
    // Stopping a server breaks it for everyone: Vault gets an OpenBao of its own, AWS a proxy of its own.
    let bao = OpenBao::start().await?;
    let issuer = courier_tests::TokenIssuer::new()?;
    bao.enable_jwt_auth(
        JWT_MOUNT,
        &[issuer.public_key_pem().to_owned()],
        courier_tests::KUBERNETES_ISSUER,
    )
    .await?;
    let env = VaultEnv { bao, issuer };
    let (identity, path, value) = kv_case(&env, "stopped").await?;
    let objects = [obj("password", &path).key("password")];
    let address = env.bao.addr();
    // No static reuse: the second mount must ask the server.
    let provider = ProviderBuilder::new()
        .provider("vault")
        .static_reuse(Duration::ZERO)
        .start()
        .await?;
    let mut client = provider.client("vault").await?;
    let response = mount(&mut client, env.request(&identity, &objects)?.build()?).await?;
    assert_eq!(text(&response, "password"), value);

    let request = env.request(&identity, &objects)?.build()?;
    drop(env);
    let started = Instant::now();
    let result = mount(&mut client, request).await;
    let vault_took = started.elapsed();
    let status = assert_status(
        result,
        Code::Unavailable,
        &["vault backend", &address, "3 attempts"],
    );
    assert!(!status.message().contains(&value));

    // AWS: the endpoint goes away after a good mount (the pod's credentials are cached by then).
    let aws = AwsEnv::start().await?;
    let id = unique_id("stopped-aws");
    let secret_value = random_value("stopped-aws");
    aws.moto
        .create_secret(crate::support::REGION, &id, secret_value.as_str())
        .await?;
    let pod = courier_tests::PodFixture::new(format!("ns-{id}"), "app");
    aws.annotate(&pod, &role_arn(&id));
    aws.proxy.trust(&role_arn(&id), pod.namespace(), "app");
    let provider = aws.provider_builder().provider("aws").start().await?;
    let mut client = provider.client("aws").await?;
    let objects = format!("- {{objectName: {id}, objectType: secretsmanager, objectAlias: s}}\n");
    let response = mount(&mut client, aws.request(&pod, &objects)?.build()?).await?;
    assert_eq!(text(&response, "s"), secret_value);
    let request = aws.request(&pod, &objects)?.build()?;
    let AwsEnv { proxy, kube, .. } = aws;
    drop(proxy);
    let started = Instant::now();
    let result = mount(&mut client, request).await;
    let aws_took = started.elapsed();
    let status = assert_status(result, Code::Unavailable, &["aws backend"]);
    assert!(!status.message().contains(&secret_value));
    drop(kube);

    let mut figures = Figures::new("faults-stopped");
    figures.line(format!(
        "faults: stopped backend -> Unavailable naming it: vault after {} ms, aws after {} ms",
        vault_took.as_millis(),
        aws_took.as_millis()
    ));
    figures.print();
    Ok(())
}

#[tokio::test]
async fn a_hung_backend_hits_the_mount_timeout_and_the_provider_keeps_serving() -> anyhow::Result<()>
{
    let _exclusive = exclusive().await;
    let env = vault().await?;
    let (identity, path, value) = kv_case(env, "hung").await?;
    let objects = [obj("password", &path).key("password")];
    let hung = SilentBackend::start()?;
    let provider = ProviderBuilder::new()
        .provider("vault")
        .arg("--mount-timeout")
        .arg(format!("{}s", MOUNT_TIMEOUT.as_secs()))
        .start()
        .await?;
    let mut client = provider.client("vault").await?;

    // A hung mount, and while it hangs the provider answers Version and mounts of a healthy backend.
    let hung_request = env
        .request(&identity, &objects)?
        .parameter("vaultAddress", hung.url())
        .build()?;
    let mut hung_client = client.clone();
    let started = Instant::now();
    let hung_mount = tokio::spawn(async move {
        let result = mount(&mut hung_client, hung_request).await;
        (result, started.elapsed())
    });
    // The hang has begun once the provider has connected to the hung backend.
    while hung.accepted() == 0 {
        assert!(
            started.elapsed() < HANG_LIMIT && !hung_mount.is_finished(),
            "the provider never reached the hung backend"
        );
        tokio::time::sleep(POLL).await;
    }
    let during = Instant::now();
    version(&mut client).await?;
    let response = mount(&mut client, env.request(&identity, &objects)?.build()?).await?;
    assert_eq!(text(&response, "password"), value);
    let good_during = during.elapsed();
    assert!(
        !hung_mount.is_finished(),
        "the good mount ({good_during:?}) was not served while the hung one was in flight"
    );

    let (result, took) = hung_mount.await?;
    let timeout_text = format!("{}s", MOUNT_TIMEOUT.as_secs());
    assert_status(
        result,
        Code::DeadlineExceeded,
        &["vault backend", &timeout_text],
    );
    assert!(
        took >= MOUNT_TIMEOUT - Duration::from_millis(50) && took < HANG_LIMIT,
        "DeadlineExceeded after {took:?}; expected at the {MOUNT_TIMEOUT:?} timeout"
    );

    // Right after: a good mount is quick (nothing left over from the hung one blocks it).
    let after = Instant::now();
    let response = mount(&mut client, env.request(&identity, &objects)?.build()?).await?;
    assert_eq!(text(&response, "password"), value);
    let good_after = after.elapsed();
    assert!(
        good_after < HANG_LIMIT,
        "a good mount after the hang was stuck for {good_after:?}"
    );
    let held = hung.open_connections();

    let mut figures = Figures::new("faults-hung");
    figures.line(format!(
        "faults: hung backend with --mount-timeout {timeout_text} -> DeadlineExceeded after {} ms; good mounts during {} ms, after {} ms; \
         connections still held to the hung backend: {held}",
        took.as_millis(),
        good_during.as_millis(),
        good_after.as_millis()
    ));
    figures.print();
    Ok(())
}

/// What a retrying client saw for one mount of the burst.
struct BurstResult {
    attempts: usize,
    codes: Vec<String>,
}

/// Whether `status` means the connection was lost rather than that the provider answered. grpc-go (the upstream
/// driver) reports a call whose connection dies as `Unavailable`; tonic reports it as `Unknown` with the message
/// "transport error" (or an h2 error), so this client treats those as the driver sees them.
fn connection_lost(status: &tonic::Status) -> bool {
    status.code() == Code::Unknown
        && (status.message().starts_with("transport error")
            || status.message().contains("h2 protocol error"))
}

/// Mounts `request` on the socket at `socket` like a driver that retries: a fresh connection per attempt, another
/// attempt after a connection error or `Unavailable`, any other failure final.
async fn mount_with_retries(
    socket: std::path::PathBuf,
    request: MountRequest,
    expected: String,
) -> anyhow::Result<BurstResult> {
    let deadline = Instant::now() + RETRY_BUDGET;
    let mut result = BurstResult {
        attempts: 0,
        codes: Vec::new(),
    };
    loop {
        result.attempts += 1;
        let attempt = async {
            let channel = connect_unix(&socket)
                .await
                .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
            let mut client = CsiDriverProviderClient::new(channel);
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(ATTEMPT_DEADLINE);
            client.mount(call).await.map(tonic::Response::into_inner)
        };
        match attempt.await {
            Ok(response) => {
                assert_eq!(text(&response, "password"), expected);
                return Ok(result);
            }
            Err(status) if status.code() == Code::Unavailable => {
                result.codes.push("Unavailable".to_owned());
            }
            Err(status) if connection_lost(&status) => {
                result.codes.push("connection lost".to_owned());
            }
            Err(status) => anyhow::bail!(
                "attempt {} failed with {:?}, which a driver does not retry: {}",
                result.attempts,
                status.code(),
                status.message()
            ),
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "no success within {RETRY_BUDGET:?}; codes seen: {:?}",
                result.codes
            );
        }
        // Pacing of a retrying client (as kubelet pauses between attempts), bounded by `RETRY_BUDGET`.
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

#[tokio::test]
async fn sigkill_during_a_burst_and_a_restart_on_the_same_socket_lose_no_mount()
-> anyhow::Result<()> {
    let _exclusive = exclusive().await;
    let env = vault().await?;
    let (identity, path, value) = kv_case(env, "burst").await?;
    let objects = [obj("password", &path).key("password")];
    let dir = tempfile::tempdir()?;
    let builder = ProviderBuilder::new()
        .provider("vault")
        .providers_dir(dir.path());
    let first = builder.clone().start().await?;
    let socket = first.socket_path("vault");

    let started = Instant::now();
    let done_before_kill = Arc::new(AtomicUsize::new(0));
    let mut mounts = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let request = env.request(&identity, &objects)?.build()?;
        let (socket, expected, done) =
            (socket.clone(), value.clone(), Arc::clone(&done_before_kill));
        mounts.spawn(async move {
            // Load pacing, not synchronisation: staggers the burst's mounts.
            tokio::time::sleep(BURST_SPACING * u32::try_from(i).unwrap_or(u32::MAX)).await;
            let result = mount_with_retries(socket, request, expected).await;
            if matches!(&result, Ok(r) if r.attempts == 1) {
                done.fetch_add(1, Ordering::SeqCst);
            }
            result
        });
    }

    while done_before_kill.load(Ordering::SeqCst) < KILL_AFTER_DONE {
        assert!(
            started.elapsed() < HANG_LIMIT,
            "fewer than {KILL_AFTER_DONE} mounts of the burst done within {HANG_LIMIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let mut first = first;
    first.signal(Signal::SIGKILL)?;
    first.wait_exit(Duration::from_secs(5)).await?;
    let killed_at = started.elapsed();
    assert!(
        std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()),
        "SIGKILL leaves the socket file behind"
    );
    let restart = Instant::now();
    let second = builder.start().await?;
    let restart_took = restart.elapsed();

    let mut results = Vec::new();
    while let Some(done) = mounts.join_next().await {
        results.push(done??);
    }
    let retried = results.iter().filter(|r| r.attempts > 1).count();
    let count = |what: &str| {
        results
            .iter()
            .flat_map(|r| &r.codes)
            .filter(|c| *c == what)
            .count()
    };
    let (unavailable, lost) = (count("Unavailable"), count("connection lost"));
    let most = results.iter().map(|r| r.attempts).max().unwrap_or(0);
    assert_eq!(results.len(), BURST);
    assert!(
        retried > 0,
        "no mount needed a retry: the kill at {killed_at:?} missed the burst"
    );
    version(&mut second.client("vault").await?).await?;
    assert!(!second.logs().contains("panicked"));

    let mut figures = Figures::new("faults-sigkill");
    figures.line(format!(
        "faults: SIGKILL at {} ms into a burst of {BURST} mounts, restart on the same socket in {} ms: {BURST} succeeded, \
         {retried} needed retries (at most {most} attempts; {unavailable} Unavailable, {lost} calls cut by the kill), 0 lost",
        killed_at.as_millis(),
        restart_took.as_millis()
    ));
    figures.print();
    Ok(())
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("vault.sock");
    // A crashed provider's socket: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&socket)?);

    let first = ProviderProcess::builder()
        .provider("vault")
        .providers_dir(dir.path())
        .start()
        .await?;
    version(&mut first.client("vault").await?).await?;
    let mode = std::fs::metadata(&socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the replacement socket is owner-only");
    assert!(
        first.logs().contains("stale"),
        "the replacement is logged:\n{}",
        first.logs()
    );

    let mut second = ProviderProcess::builder()
        .provider("vault")
        .providers_dir(dir.path())
        .spawn()?;
    let status = second.wait_exit(REFUSAL_TIMEOUT).await?;
    assert!(
        !status.success(),
        "a second provider started on a live socket:\n{}",
        second.logs()
    );
    let logs = second.logs();
    assert!(
        logs.contains(&socket.display().to_string()) && logs.contains("another process is serving"),
        "the refusal names the socket and the reason:\n{logs}"
    );
    // The first provider keeps its socket.
    version(&mut first.client("vault").await?).await?;

    let mut figures = Figures::new("faults-sockets");
    figures.line(format!(
        "faults: stale socket replaced (mode {mode:o}); second provider refused with {status}"
    ));
    figures.print();
    Ok(())
}
