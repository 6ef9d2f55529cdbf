//! How fetched values become files: encodings, modes and nested paths.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use courier_tests::calls::{file, text};
use serde_json::json;

use crate::support::{mount_on_vault, obj, plain};

/// Bytes that are not UTF-8, so a decoder that round-trips through a string would show.
const BINARY: &[u8] = &[0x00, 0xff, 0x10, b'A', 0xc3, 0x28];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn base64_and_hex_encodings_are_decoded_to_bytes() -> anyhow::Result<()> {
    let case = plain().await?.case("encodings").await?;
    case.put(
        "blob",
        json!({"b64": STANDARD.encode(BINARY), "hex": hex(BINARY), "plain": "héllo"}),
    )
    .await?;
    let path = case.secret_path("blob");
    let request = case
        .request(&[
            obj("from-base64", &path).key("b64").encoding("base64"),
            obj("from-hex", &path).key("hex").encoding("hex"),
            obj("utf8", &path).key("plain").encoding("utf-8"),
            obj("default", &path).key("plain"),
        ])?
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(file(&response, "from-base64").contents, BINARY);
    assert_eq!(file(&response, "from-hex").contents, BINARY);
    assert_eq!(text(&response, "utf8"), "héllo");
    assert_eq!(text(&response, "default"), "héllo");
    Ok(())
}

#[tokio::test]
async fn file_permission_overrides_the_volume_permission() -> anyhow::Result<()> {
    let case = plain().await?.case("modes").await?;
    case.put("app", json!({"a": "1", "b": "2", "c": "3"}))
        .await?;
    let path = case.secret_path("app");
    let request = case
        .request(&[
            obj("private", &path).key("a").file_permission("0600"),
            obj("decimal", &path).key("b").file_permission("256"),
            obj("inherited", &path).key("c"),
        ])?
        .permission(0o640)
        .build()?;
    assert_eq!(request.permission, "416");

    let response = mount_on_vault(request).await??;

    assert_eq!(
        file(&response, "private").mode,
        0o600,
        "filePermission: 0600 is octal as in YAML 1.1"
    );
    assert_eq!(
        file(&response, "decimal").mode,
        0o400,
        "filePermission: 256 is decimal"
    );
    assert_eq!(
        file(&response, "inherited").mode,
        0o640,
        "without filePermission the volume's permission applies"
    );
    Ok(())
}

#[tokio::test]
async fn nested_object_name_becomes_a_nested_path() -> anyhow::Result<()> {
    let case = plain().await?.case("nested").await?;
    case.put("app", json!({"cert": "CERT", "key": "KEY"}))
        .await?;
    let path = case.secret_path("app");
    let request = case
        .request(&[
            obj("tls/cert.pem", &path).key("cert"),
            obj("tls/private/key.pem", &path).key("key"),
        ])?
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(text(&response, "tls/cert.pem"), "CERT");
    assert_eq!(text(&response, "tls/private/key.pem"), "KEY");
    Ok(())
}
