//! Refusals: each error has the right gRPC code and a message that names what to fix.

use courier_tests::calls::{assert_message_mentions, assert_status, mount};
use serde_json::json;
use tonic::Code;

use crate::support::{Obj, mount_on_vault, obj, plain, provider};

#[tokio::test]
async fn missing_role_name_is_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("no-role").await?;
    let request = case
        .request(&[obj("a", &case.secret_path("app")).key("a")])?
        .without_parameter("roleName")
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(result, Code::InvalidArgument, &["roleName"]);
    Ok(())
}

#[tokio::test]
async fn missing_secret_path_names_the_object_index() -> anyhow::Result<()> {
    let case = plain().await?.case("no-path").await?;
    let request = case
        .request(&[
            obj("a", &case.secret_path("app")).key("a"),
            Obj::bare().field("objectName", "\"b\"".to_owned()).key("b"),
        ])?
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(result, Code::InvalidArgument, &["objects[1].secretPath"]);
    Ok(())
}

#[tokio::test]
async fn unknown_method_is_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("bad-method").await?;
    let request = case
        .request(&[
            obj("a", &case.secret_path("app")).key("a"),
            obj("b", &case.secret_path("app")).key("b").method("DELETE"),
        ])?
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::InvalidArgument,
        &["objects[1].method", "DELETE"],
    );
    Ok(())
}

#[tokio::test]
async fn unknown_encoding_is_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("bad-encoding").await?;
    let request = case
        .request(&[obj("a", &case.secret_path("app"))
            .key("a")
            .encoding("rot13")])?
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::InvalidArgument,
        &["objects[0].encoding", "rot13"],
    );
    Ok(())
}

#[tokio::test]
async fn duplicate_object_name_is_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("dup-name").await?;
    let request = case
        .request(&[
            obj("same", &case.secret_path("app")).key("a"),
            obj("same", &case.secret_path("app")).key("b"),
        ])?
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(result, Code::InvalidArgument, &["same", "objectName"]);
    Ok(())
}

#[tokio::test]
async fn unsafe_object_names_are_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("unsafe").await?;
    let provider = provider(&["vault"]).await?;
    let mut client = provider.client("vault").await?;

    for name in ["../x", "/abs", "", "a/../../b", "a//b"] {
        let request = case
            .request(&[obj(name, &case.secret_path("app")).key("a")])?
            .build()?;
        let result = mount(&mut client, request).await;
        let status = match result {
            Ok(response) => panic!("objectName {name:?} was accepted: {response:?}"),
            Err(status) => status,
        };
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "objectName {name:?}: {}",
            status.message()
        );
        assert_message_mentions(status.message(), &["objects[0].objectName"]);
        eprintln!("objectName {name:?}: {}", status.message());
    }
    Ok(())
}

#[tokio::test]
async fn both_auth_mount_path_keys_is_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("two-mounts").await?;
    let request = case
        .request(&[obj("a", &case.secret_path("app")).key("a")])?
        .parameter("vaultKubernetesMountPath", "kubernetes")
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::InvalidArgument,
        &["vaultAuthMountPath", "vaultKubernetesMountPath"],
    );
    Ok(())
}

#[tokio::test]
async fn malformed_objects_yaml_is_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("bad-yaml").await?;
    let request = case
        .request(&[])?
        .parameter("objects", "- objectName: [unclosed\n  secretPath: x\n")
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(result, Code::InvalidArgument, &["objects"]);
    Ok(())
}

#[tokio::test]
async fn missing_secret_is_not_found_naming_the_object() -> anyhow::Result<()> {
    let case = plain().await?.case("not-found").await?;
    case.put("present", json!({"a": "here"})).await?;
    let request = case
        .request(&[
            obj("present", &case.secret_path("present")).key("a"),
            obj("absent-object", &case.secret_path("absent")).key("a"),
        ])?
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::NotFound,
        &["absent-object", &case.secret_path("absent")],
    );
    Ok(())
}

#[tokio::test]
async fn missing_key_in_an_existing_secret_is_reported() -> anyhow::Result<()> {
    let case = plain().await?.case("no-key").await?;
    case.put("app", json!({"a": "here"})).await?;
    let request = case
        .request(&[obj("wanted", &case.secret_path("app")).key("nope")])?
        .build()?;

    let result = mount_on_vault(request).await?;

    let status = result.expect_err("a secretKey the secret lacks must fail the mount");
    eprintln!("{:?}: {}", status.code(), status.message());
    assert!(
        matches!(status.code(), Code::NotFound | Code::InvalidArgument),
        "{:?}: {}",
        status.code(),
        status.message()
    );
    assert_message_mentions(status.message(), &["wanted", "nope"]);
    Ok(())
}

#[tokio::test]
async fn unreachable_backend_is_unavailable() -> anyhow::Result<()> {
    let case = plain().await?.case("unreachable").await?;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let address = format!("http://127.0.0.1:{closed_port}");
    let request = case
        .request(&[obj("a", &case.secret_path("app")).key("a")])?
        .parameter("vaultAddress", &address)
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::Unavailable,
        &[&format!("127.0.0.1:{closed_port}")],
    );
    Ok(())
}
