//! Backend faults: a backend that hangs runs into `--mount-timeout` (DeadlineExceeded naming the backend), a
//! sealed one and a closed port become Unavailable after bounded retries, and the provider serves good mounts
//! right afterwards.

use std::time::{Duration, Instant};

use courier_tests::calls::{assert_status, mount, text};
use serde_json::json;
use tonic::Code;

use crate::support::{Access, Backend, Case, Obj, StalledListener, provider_builder, random_value};

/// The mount timeout of the stalled-backend test.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(2);
/// Catches a mount that hangs past its timeout; not a speed bound (that the mount timeout ended the call is shown
/// by the status, its message naming the timeout and the `deadline` count, none of which load can change).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Two retries with backoff (200 ms, then 400 ms, each plus jitter) come before "after 3 attempts".
const MIN_RETRY_TIME: Duration = Duration::from_millis(550);
/// A good mount after the fault succeeds (one stuck behind the fault would end in the fault's error, which the
/// value check catches) and is counted `ok`; the elapsed bound is [`HANG_LIMIT`], a hang catcher only.
async fn good_mount_is_quick(
    client: &mut courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient<
        tonic::transport::Channel,
    >,
    request: courier_proto::v1alpha1::MountRequest,
    expected: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let response = mount(client, request).await?;
    let took = started.elapsed();
    assert_eq!(text(&response, "password"), expected);
    assert!(took < HANG_LIMIT, "a good mount after the fault hung for {took:?}");
    Ok(())
}

/// Mounts `request` against a failing backend and expects `Unavailable` with `words`, after the retries with
/// backoff (a lower bound: each retry waits) and before [`HANG_LIMIT`] (a hang catcher only).
async fn unavailable_after_retries(
    client: &mut courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient<
        tonic::transport::Channel,
    >,
    request: courier_proto::v1alpha1::MountRequest,
    words: &[&str],
) -> tonic::Status {
    let started = Instant::now();
    let result = mount(client, request).await;
    let took = started.elapsed();
    let status = assert_status(result, Code::Unavailable, words);
    assert!(
        took >= MIN_RETRY_TIME,
        "three attempts with backoff took only {took:?}"
    );
    assert!(took < HANG_LIMIT, "hung for {took:?}");
    status
}

#[tokio::test]
async fn stalled_backend_hits_the_mount_timeout_and_names_the_backend() -> anyhow::Result<()> {
    let case = Case::shared("stalled").await?;
    let value = random_value("stalled");
    case.put("app", json!({"password": value})).await?;
    let identity = case.identity("app", Access::Allowed).await?;
    let objects = [Obj::new("password", &case.secret_path("app")).key("password")];
    let stalled = StalledListener::start().await?;
    let provider = provider_builder(&["vault"])
        .await?
        .arg("--mount-timeout")
        .arg("2s")
        .start()
        .await?;
    let mut client = provider.client("vault").await?;

    // Twice: the second mount of the identity may join the first one's login, still stuck; it must be bounded
    // all the same.
    for attempt in 1..=2 {
        let request = identity
            .request(&objects)?
            .parameter("vaultAddress", stalled.url())
            .build()?;
        let started = Instant::now();
        let result = mount(&mut client, request).await;
        let took = started.elapsed();
        assert_status(result, Code::DeadlineExceeded, &["vault backend", "2s"]);
        eprintln!(
            "stalled mount {attempt}: DeadlineExceeded after {took:?}; the listener accepted {} connection(s), {} still open",
            stalled.accepted(),
            stalled.open()
        );
        assert!(
            took >= MOUNT_TIMEOUT - Duration::from_millis(100) && took < HANG_LIMIT,
            "mount {attempt} ended after {took:?}, not at the {MOUNT_TIMEOUT:?} mount timeout"
        );
    }
    assert!(
        stalled.accepted() >= 1,
        "the provider never reached the stalled listener"
    );

    // The provider is not wedged: a good mount right away, on the same connection.
    good_mount_is_quick(&mut client, identity.request(&objects)?.build()?, &value).await?;
    let metrics = provider.metrics().await?;
    assert_eq!(
        metrics.count(
            "courier_mounts_total",
            &[("backend", "vault"), ("result", "deadline")]
        ),
        2,
        "{}",
        metrics.text()
    );
    Ok(())
}

#[tokio::test]
async fn closed_port_is_unavailable_after_three_attempts() -> anyhow::Result<()> {
    let case = Case::shared("closed").await?;
    let value = random_value("closed");
    case.put("app", json!({"password": value})).await?;
    let identity = case.identity("app", Access::Allowed).await?;
    let objects = [Obj::new("password", &case.secret_path("app")).key("password")];
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let provider = provider_builder(&["vault"]).await?.start().await?;
    let mut client = provider.client("vault").await?;

    let request = identity
        .request(&objects)?
        .parameter("vaultAddress", format!("http://127.0.0.1:{closed_port}"))
        .build()?;
    unavailable_after_retries(
        &mut client,
        request,
        &[
            "vault backend",
            "3 attempts",
            &format!("127.0.0.1:{closed_port}"),
        ],
    )
    .await;

    let metrics = provider.metrics().await?;
    assert_eq!(
        metrics.count(
            "courier_backend_requests_total",
            &[("operation", "login"), ("status", "error")]
        ),
        3,
        "each attempt is counted: {}",
        metrics.text()
    );
    assert_eq!(
        metrics.count("courier_logins_total", &[("result", "error")]),
        1
    );
    assert_eq!(
        metrics.count("courier_mounts_total", &[("result", "unavailable")]),
        1
    );

    good_mount_is_quick(&mut client, identity.request(&objects)?.build()?, &value).await?;
    Ok(())
}

/// Sealing breaks the server for everyone, so this test has an OpenBao of its own.
#[tokio::test]
async fn sealed_backend_is_unavailable_after_retries_and_recovers_when_unsealed()
-> anyhow::Result<()> {
    let server = Backend::start().await?;
    let case = Case::new(&server, "sealed").await?;
    let value = random_value("sealed");
    case.put("app", json!({"password": value})).await?;
    let identity = case.identity("app", Access::Allowed).await?;
    let objects = [Obj::new("password", &case.secret_path("app")).key("password")];
    // No static reuse: every mount reads the server.
    let provider = provider_builder(&["vault"])
        .await?
        .trust_issuer(&server.issuer)
        .static_reuse(Duration::ZERO)
        .start()
        .await?;
    let mut client = provider.client("vault").await?;
    good_mount_is_quick(&mut client, identity.request(&objects)?.build()?, &value).await?;

    server.bao.seal().await?;
    let status = unavailable_after_retries(
        &mut client,
        identity.request(&objects)?.build()?,
        &["vault backend", "3 attempts", "503"],
    )
    .await;
    assert!(
        !status.message().contains(&value),
        "the message carries the value: {}",
        status.message()
    );
    let metrics = provider.metrics().await?;
    assert_eq!(
        metrics.count(
            "courier_backend_requests_total",
            &[("operation", "read"), ("status", "5xx")]
        ),
        3,
        "the read was tried three times: {}",
        metrics.text()
    );

    server.bao.unseal().await?;
    good_mount_is_quick(&mut client, identity.request(&objects)?.build()?, &value).await?;
    Ok(())
}
