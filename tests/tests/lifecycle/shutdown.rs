//! SIGTERM while a mount is in flight: the socket name is given back at once, the mount is finished (within
//! --shutdown-timeout), then the process exits.

use std::time::{Duration, Instant};

use courier_tests::calls::{assert_status, mount};
use courier_tests::{MountRequestBuilder, PodFixture, ProviderProcess, TokenIssuer};
use nix::sys::signal::Signal;
use tonic::Code;

/// A backend that accepts connections and never answers: every request hangs until the provider gives up.
async fn silent_backend() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok((addr, task))
}

fn request(vault: &str) -> anyhow::Result<courier_proto::v1alpha1::MountRequest> {
    let pod = PodFixture::new("team-a", "app");
    let issuer = TokenIssuer::new()?;
    MountRequestBuilder::new(&pod)
        .parameter("roleName", "app")
        .parameter("vaultAddress", vault)
        .parameter("objects", "- {objectName: a, secretPath: secret/data/a, secretKey: k}")
        .token("vault", issuer.token(&pod, "vault")?)
        .build()
}

#[tokio::test]
async fn in_flight_mounts_finish_after_sigterm() -> anyhow::Result<()> {
    let (vault, _backend) = silent_backend().await?;
    let mut provider = ProviderProcess::builder()
        .arg("--mount-timeout")
        .arg("3s")
        .arg("--shutdown-timeout")
        .arg("20s")
        .start()
        .await?;
    let mut client = provider.client("courier").await?;
    let socket = provider.socket_path("courier");
    let in_flight = tokio::spawn(async move { mount(&mut client, request(&vault)?).await.map_err(anyhow::Error::from) });

    tokio::time::sleep(Duration::from_millis(500)).await;
    provider.signal(Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while socket.exists() {
        assert!(Instant::now() < deadline, "the socket was not given back promptly");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The mount in flight still gets its answer: the backend's silence, named.
    let result = in_flight.await?;
    let status = match result {
        Ok(response) => panic!("the mount cannot succeed against a silent backend: {response:?}"),
        Err(e) => e.downcast::<tonic::Status>().map_err(|e| anyhow::anyhow!("not a gRPC status: {e}"))?,
    };
    assert_status::<()>(Err(status), Code::DeadlineExceeded, &["did not finish within"]);
    let exit = provider.wait_exit(Duration::from_secs(10)).await?;
    assert!(exit.success(), "exit status {exit}");
    Ok(())
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_shutdown_timeout() -> anyhow::Result<()> {
    let (vault, _backend) = silent_backend().await?;
    let mut provider = ProviderProcess::builder()
        .arg("--mount-timeout")
        .arg("60s")
        .arg("--shutdown-timeout")
        .arg("1s")
        .start()
        .await?;
    let mut client = provider.client("courier").await?;
    let _in_flight = tokio::spawn(async move { mount(&mut client, request(&vault)?).await.map_err(anyhow::Error::from) });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    provider.signal(Signal::SIGTERM)?;
    provider.wait_exit(Duration::from_secs(15)).await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "a 60 s mount held shutdown for {took:?}; the bound is 1 s");
    Ok(())
}
