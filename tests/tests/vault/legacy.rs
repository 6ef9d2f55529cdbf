//! Mounts from drivers before v1.6, which send the socket path as `:authority`.

use courier_tests::calls::{mount, normalized};
use courier_tests::{Authority, LegacyOutcome, legacy_mount, legacy_mount_with};
use serde_json::json;
use tonic::Code;

use crate::support::{obj, plain, provider_builder};

#[tokio::test]
async fn legacy_driver_mount_returns_the_same_files() -> anyhow::Result<()> {
    let case = plain().await?.case("legacy").await?;
    case.put(
        "app",
        json!({"username": "dave", "password": "legacy-pass"}),
    )
    .await?;
    // One key, so versions from both clients are comparable.
    let provider = provider_builder(&["vault"]).await?.start().await?;
    let request = case
        .request(&[
            obj("username", &case.secret_path("app")).key("username"),
            obj("nested/password", &case.secret_path("app")).key("password"),
        ])?
        .build()?;
    let socket = provider.socket_path("vault");

    let modern = mount(&mut provider.client("vault").await?, request.clone()).await?;
    let legacy = legacy_mount(&socket, &request).await?.into_response()?;
    let percent_encoded = legacy_mount_with(&socket, &request, Authority::GrpcDefault)
        .await?
        .into_response()?;

    assert_eq!(
        normalized(&legacy),
        normalized(&modern),
        "socket-path authority"
    );
    assert_eq!(
        normalized(&percent_encoded),
        normalized(&modern),
        "grpc-core's default authority"
    );
    Ok(())
}

#[tokio::test]
async fn legacy_driver_gets_the_same_error_status() -> anyhow::Result<()> {
    let case = plain().await?.case("legacy-error").await?;
    let provider = provider_builder(&["vault"]).await?.start().await?;
    let request = case
        .request(&[obj("a", &case.secret_path("app")).key("a").method("DELETE")])?
        .build()?;

    let outcome = legacy_mount(&provider.socket_path("vault"), &request).await?;

    match outcome {
        LegacyOutcome::Status { code, message } => {
            assert_eq!(code, Code::InvalidArgument, "{message}");
            assert!(message.contains("objects[0].method"), "{message}");
        }
        LegacyOutcome::Response(response) => panic!("an invalid method was accepted: {response:?}"),
    }
    Ok(())
}
