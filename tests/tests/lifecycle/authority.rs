//! The two `:authority` forms: `localhost` (drivers since v1.6) and the socket path (older drivers).
//!
//! The first tests check the clients themselves on the wire, so the provider tests below cannot pass for the
//! wrong reason.

use std::time::Duration;

use anyhow::Context;
use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use courier_tests::calls::version;
use courier_tests::h2_capture::{capture_request_headers, header};
use courier_tests::legacy_client::spawn_version_call;
use courier_tests::{API_VERSION, Authority, ProviderProcess, connect_unix, legacy_version};
use tokio::net::UnixListener;

const CAPTURE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn legacy_client_sends_the_socket_path_as_authority() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("vault.sock");
    let listener = UnixListener::bind(&socket)?;
    let _client = spawn_version_call(&socket, Authority::SocketPath)?;

    let headers = capture_request_headers(&listener, CAPTURE_TIMEOUT).await?;

    let expected = socket.to_str().context("temp path is UTF-8")?;
    assert_eq!(
        header(&headers, ":authority"),
        Some(expected),
        "{headers:?}"
    );
    assert_eq!(
        header(&headers, ":path"),
        Some("/v1alpha1.CSIDriverProvider/Version"),
        "{headers:?}"
    );
    Ok(())
}

#[tokio::test]
async fn grpc_core_default_authority_is_the_percent_encoded_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("vault.sock");
    let listener = UnixListener::bind(&socket)?;
    let _client = spawn_version_call(&socket, Authority::GrpcDefault)?;

    let headers = capture_request_headers(&listener, CAPTURE_TIMEOUT).await?;

    let path = socket.to_str().context("temp path is UTF-8")?;
    let expected = path.trim_start_matches('/').replace('/', "%2F");
    assert_eq!(
        header(&headers, ":authority"),
        Some(expected.as_str()),
        "{headers:?}"
    );
    Ok(())
}

#[tokio::test]
async fn tonic_client_sends_localhost_as_authority() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("courier.sock");
    let listener = UnixListener::bind(&socket)?;
    let client_socket = socket.clone();
    // The capture never answers, so the call fails; only its headers matter.
    let call = tokio::spawn(async move {
        let channel = connect_unix(&client_socket).await?;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            version(&mut CsiDriverProviderClient::new(channel)),
        )
        .await;
        anyhow::Ok(())
    });

    let headers = capture_request_headers(&listener, CAPTURE_TIMEOUT).await?;
    call.abort();

    assert_eq!(
        header(&headers, ":authority"),
        Some("localhost"),
        "{headers:?}"
    );
    Ok(())
}

#[tokio::test]
async fn version_over_localhost_authority() -> anyhow::Result<()> {
    let provider = ProviderProcess::builder().start().await?;

    let response = version(&mut provider.client("courier").await?).await?;

    assert_eq!(response.version, API_VERSION, "{response:?}");
    assert!(!response.runtime_name.is_empty(), "{response:?}");
    assert!(!response.runtime_version.is_empty(), "{response:?}");
    Ok(())
}

#[tokio::test]
async fn version_over_socket_path_authority() -> anyhow::Result<()> {
    let provider = ProviderProcess::builder().provider("vault").start().await?;
    let modern = version(&mut provider.client("vault").await?).await?;

    let legacy = legacy_version(&provider.socket_path("vault"), Authority::SocketPath)
        .await?
        .into_response()?;

    assert_eq!(legacy, modern);
    Ok(())
}

#[tokio::test]
async fn version_over_grpc_core_default_authority() -> anyhow::Result<()> {
    let provider = ProviderProcess::builder()
        .provider("openbao")
        .start()
        .await?;
    let modern = version(&mut provider.client("openbao").await?).await?;

    let legacy = legacy_version(&provider.socket_path("openbao"), Authority::GrpcDefault)
        .await?
        .into_response()?;

    assert_eq!(legacy, modern);
    Ok(())
}
