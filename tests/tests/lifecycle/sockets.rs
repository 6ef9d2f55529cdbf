//! Sockets and process lifecycle: one socket per name, stale sockets, a second instance, SIGTERM.

use std::os::unix::fs::FileTypeExt as _;
use std::time::Duration;

use courier_proto::v1alpha1::MountRequest;
use courier_tests::calls::{assert_status, mount, version};
use courier_tests::{ProviderProcess, connect_unix};
use tonic::Code;

/// How long a provider that must refuse to start may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(15);

fn is_socket(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[tokio::test]
async fn serves_one_socket_per_name() -> anyhow::Result<()> {
    let provider = ProviderProcess::builder()
        .provider("vault")
        .provider("openbao")
        .provider("courier")
        .start()
        .await?;

    for name in ["vault", "openbao", "courier"] {
        let socket = provider.socket_path(name);
        assert!(is_socket(&socket), "{} is not a socket", socket.display());
        version(&mut provider.client(name).await?).await?;
    }
    Ok(())
}

#[tokio::test]
async fn default_name_is_courier() -> anyhow::Result<()> {
    let provider = ProviderProcess::builder().start().await?;

    assert!(is_socket(&provider.socket_path("courier")));
    let entries: Vec<_> = std::fs::read_dir(provider.providers_dir())?.collect::<Result<_, _>>()?;
    assert_eq!(entries.len(), 1, "only courier.sock: {entries:?}");
    Ok(())
}

#[tokio::test]
async fn stale_socket_is_replaced() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("courier.sock");
    // A socket left behind by a crashed provider: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&socket)?);
    assert!(is_socket(&socket));
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "nobody listens on the stale socket"
    );

    let provider = ProviderProcess::builder()
        .providers_dir(dir.path())
        .start()
        .await?;

    version(&mut provider.client("courier").await?).await?;
    Ok(())
}

#[tokio::test]
async fn regular_file_at_the_socket_path_is_left_alone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("courier.sock");
    std::fs::write(&path, "not a socket")?;

    let mut provider = ProviderProcess::builder()
        .providers_dir(dir.path())
        .spawn()?;
    let status = provider.wait_exit(REFUSAL_TIMEOUT).await?;

    assert!(
        !status.success(),
        "started over a regular file; log:\n{}",
        provider.logs()
    );
    assert_eq!(
        std::fs::read_to_string(&path)?,
        "not a socket",
        "the file was touched"
    );
    assert!(
        provider.logs().contains(&path.display().to_string()),
        "the error should name the path; log:\n{}",
        provider.logs()
    );
    Ok(())
}

#[tokio::test]
async fn second_provider_on_the_same_socket_refuses_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = ProviderProcess::builder()
        .providers_dir(dir.path())
        .start()
        .await?;

    let mut second = ProviderProcess::builder()
        .providers_dir(dir.path())
        .spawn()?;
    let status = second.wait_exit(REFUSAL_TIMEOUT).await?;

    assert!(
        !status.success(),
        "a second provider started on a live socket; log:\n{}",
        second.logs()
    );
    let logs = second.logs();
    let socket = first.socket_path("courier");
    assert!(
        logs.contains(&socket.display().to_string()),
        "the error should name the socket; log:\n{logs}"
    );
    // The refusal must not take the socket from the running provider.
    assert!(is_socket(&socket));
    version(&mut first.client("courier").await?).await?;
    Ok(())
}

#[tokio::test]
async fn sigterm_removes_the_sockets_and_exits_zero() -> anyhow::Result<()> {
    let mut provider = ProviderProcess::builder()
        .provider("vault")
        .provider("courier")
        .start()
        .await?;
    let sockets = [
        provider.socket_path("vault"),
        provider.socket_path("courier"),
    ];

    let status = provider.terminate().await?;

    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        provider.logs()
    );
    for socket in &sockets {
        assert!(!socket.exists(), "{} is left behind", socket.display());
    }
    assert!(connect_unix(&sockets[0]).await.is_err());
    Ok(())
}

#[tokio::test]
async fn duplicate_provider_names_are_refused() -> anyhow::Result<()> {
    let mut provider = ProviderProcess::builder()
        .provider("vault")
        .provider("vault")
        .spawn()?;

    let status = provider.wait_exit(REFUSAL_TIMEOUT).await?;

    assert!(!status.success(), "log:\n{}", provider.logs());
    Ok(())
}

#[tokio::test]
async fn malformed_attributes_are_invalid_argument() -> anyhow::Result<()> {
    let provider = ProviderProcess::builder().provider("vault").start().await?;
    let request = MountRequest {
        attributes: "this is not JSON".to_owned(),
        secrets: "null".to_owned(),
        target_path: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/secrets-store/mount"
            .to_owned(),
        permission: "420".to_owned(),
        current_object_version: Vec::new(),
    };

    let result = mount(&mut provider.client("vault").await?, request).await;

    assert_status(result, Code::InvalidArgument, &["attributes"]);
    Ok(())
}

#[tokio::test]
async fn health_endpoints_answer_when_enabled() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let provider = ProviderProcess::builder()
        .health_addr(format!("127.0.0.1:{port}"))
        .start()
        .await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;

    for path in ["/healthz", "/readyz"] {
        let response = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await?;
        assert!(
            response.status().is_success(),
            "{path}: {}; log:\n{}",
            response.status(),
            provider.logs()
        );
    }
    Ok(())
}
