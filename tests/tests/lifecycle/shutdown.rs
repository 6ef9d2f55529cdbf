//! SIGTERM while a mount is in flight: the socket name is given back at once, the mount is finished (within
//! --shutdown-timeout), then the process exits.
//!
//! "In flight" is observed, not waited for: the silent backend reports each connection the provider opens to it.

use std::time::Duration;

use courier_tests::calls::{assert_status, mount};
use courier_tests::{MountRequestBuilder, PodFixture, ProviderProcess, TokenIssuer};
use nix::sys::signal::Signal;
use tonic::Code;

/// Longest the provider may take to reach the backend once a mount was sent: a hang guard, not a measurement.
const REACH_BACKEND: Duration = Duration::from_secs(30);

/// A backend that accepts connections and never answers: every request hangs until the provider gives up. The
/// receiver gets one message per connection, so a test knows a mount has reached the backend.
struct SilentBackend {
    addr: String,
    connected: tokio::sync::mpsc::UnboundedReceiver<()>,
    _task: tokio::task::JoinHandle<()>,
}

impl SilentBackend {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        let (tx, connected) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
                let _ = tx.send(());
            }
        });
        Ok(Self { addr, connected, _task: task })
    }

    /// Returns once the provider has opened a connection to this backend: the mount is in flight.
    async fn reached(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(REACH_BACKEND, self.connected.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the mount never reached the backend"))?
            .ok_or_else(|| anyhow::anyhow!("the backend stopped accepting"))
    }
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
    let mut backend = SilentBackend::start().await?;
    let vault = backend.addr.clone();
    let mut provider = ProviderProcess::builder()
        .arg("--mount-timeout")
        .arg("3s")
        .arg("--shutdown-timeout")
        .arg("20s")
        .start()
        .await?;
    let mut client = provider.client("courier").await?;
    let socket = provider.socket_path("courier");
    let mut in_flight = tokio::spawn(async move { mount(&mut client, request(&vault)?).await.map_err(anyhow::Error::from) });

    backend.reached().await?;
    provider.signal(Signal::SIGTERM)?;
    // Given back at once: the socket is gone while the mount (3 s against a silent backend) is still running.
    // The socket is polled, racing the mount's own end.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    while socket.exists() {
        tokio::select! {
            _ = poll.tick() => {}
            _ = &mut in_flight => panic!("the mount ended before the socket was given back"),
        }
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
    let mut backend = SilentBackend::start().await?;
    let vault = backend.addr.clone();
    let mut provider = ProviderProcess::builder()
        .arg("--mount-timeout")
        .arg("60s")
        .arg("--shutdown-timeout")
        .arg("1s")
        .start()
        .await?;
    let mut client = provider.client("courier").await?;
    let in_flight = tokio::spawn(async move { mount(&mut client, request(&vault)?).await.map_err(anyhow::Error::from) });
    backend.reached().await?;

    provider.signal(Signal::SIGTERM)?;
    // The 15 s wait is only a hang guard; what bounds shutdown is shown by order: the process is gone before the
    // mount got the answer its own 60 s timeout would give, so shutdown did not wait for it.
    provider.wait_exit(Duration::from_secs(15)).await?;
    let logs = provider.logs();
    assert!(
        logs.contains("in-flight mounts did not finish in time; exiting"),
        "the provider exited other than through its shutdown bound; log:\n{logs}"
    );
    let result = tokio::time::timeout(Duration::from_secs(15), in_flight)
        .await
        .map_err(|_| anyhow::anyhow!("the mount outlived the provider"))??;
    match result {
        Ok(response) => panic!("the mount cannot succeed against a silent backend: {response:?}"),
        Err(e) => {
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                assert!(
                    !status.message().contains("did not finish within"),
                    "shutdown waited for the 60 s mount timeout: {status:?}"
                );
            }
        }
    }
    Ok(())
}
