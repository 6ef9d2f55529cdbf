//! Object versions: the driver rewrites a file when its version changes, so a version must change when the
//! secret changes, and only then, also across provider restarts with the same key.

use std::io::Write as _;
use std::time::Duration;

use courier_tests::calls::{mount, object_version, text};
use rand::RngCore as _;
use serde_json::json;
use tempfile::NamedTempFile;

use crate::support::{obj, plain, provider_builder};

/// A file holding a fresh 32-byte version key.
fn key_file() -> anyhow::Result<NamedTempFile> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let mut file = NamedTempFile::new()?;
    file.write_all(&key)?;
    file.flush()?;
    Ok(file)
}

#[tokio::test]
async fn versions_are_stable_across_mounts_and_restarts() -> anyhow::Result<()> {
    let case = plain().await?.case("ver-stable").await?;
    case.put("app", json!({"password": "steady"})).await?;
    let key = key_file()?;
    let request = case.request(&[obj("password", &case.secret_path("app")).key("password")])?;

    let mut first_provider = provider_builder(&["vault"])
        .await?
        .hmac_key_file(key.path())
        .start()
        .await?;
    let mut client = first_provider.client("vault").await?;
    let first = mount(&mut client, request.build()?).await?;
    let first_version = object_version(&first, "password").to_owned();
    // A republish: the driver sends back what it recorded.
    let republish = request
        .clone()
        .current_object_version("password", &first_version)
        .build()?;
    let second = mount(&mut client, republish).await?;
    assert_eq!(
        object_version(&second, "password"),
        first_version,
        "second mount"
    );
    drop(client);
    assert!(
        first_provider.terminate().await?.success(),
        "{}",
        first_provider.logs()
    );

    let restarted = provider_builder(&["vault"])
        .await?
        .hmac_key_file(key.path())
        .start()
        .await?;
    let third = mount(&mut restarted.client("vault").await?, request.build()?).await?;
    assert_eq!(
        object_version(&third, "password"),
        first_version,
        "after a restart with the same key"
    );
    Ok(())
}

#[tokio::test]
async fn version_changes_when_the_secret_changes_and_only_then() -> anyhow::Result<()> {
    let case = plain().await?.case("ver-change").await?;
    case.put("rotating", json!({"password": "v1"})).await?;
    case.put("steady", json!({"password": "constant"})).await?;
    let key = key_file()?;
    // Without the static-read reuse window, so the second mount reads OpenBao again (see cache.rs).
    let provider = provider_builder(&["vault"])
        .await?
        .hmac_key_file(key.path())
        .static_reuse(Duration::ZERO)
        .start()
        .await?;
    let mut client = provider.client("vault").await?;
    let request = case
        .request(&[
            obj("rotating", &case.secret_path("rotating")).key("password"),
            obj("steady", &case.secret_path("steady")).key("password"),
        ])?
        .build()?;

    let before = mount(&mut client, request.clone()).await?;
    case.put("rotating", json!({"password": "v2"})).await?;
    let after = mount(&mut client, request.clone()).await?;
    let again = mount(&mut client, request).await?;

    assert_eq!(text(&after, "rotating"), "v2");
    assert_ne!(
        object_version(&before, "rotating"),
        object_version(&after, "rotating"),
        "the rotated secret must get a new version"
    );
    assert_eq!(
        object_version(&before, "steady"),
        object_version(&after, "steady"),
        "an untouched secret keeps its version"
    );
    assert_eq!(
        object_version(&after, "rotating"),
        object_version(&again, "rotating"),
        "no change, no new version"
    );
    Ok(())
}

#[tokio::test]
async fn different_objects_get_different_versions() -> anyhow::Result<()> {
    let case = plain().await?.case("ver-distinct").await?;
    case.put("app", json!({"username": "carol", "password": "distinct"}))
        .await?;
    let provider = provider_builder(&["vault"]).await?.start().await?;
    let request = case
        .request(&[
            obj("username", &case.secret_path("app")).key("username"),
            obj("password", &case.secret_path("app")).key("password"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_ne!(
        object_version(&response, "username"),
        object_version(&response, "password")
    );
    Ok(())
}

#[tokio::test]
async fn versions_are_keyed_not_bare_hashes() -> anyhow::Result<()> {
    let case = plain().await?.case("ver-keyed").await?;
    case.put("app", json!({"password": "keyed"})).await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .build()?;
    let (key_a, key_b) = (key_file()?, key_file()?);
    let provider_a = provider_builder(&["vault"])
        .await?
        .hmac_key_file(key_a.path())
        .start()
        .await?;
    let provider_b = provider_builder(&["vault"])
        .await?
        .hmac_key_file(key_b.path())
        .start()
        .await?;

    let a = mount(&mut provider_a.client("vault").await?, request.clone()).await?;
    let b = mount(&mut provider_b.client("vault").await?, request).await?;

    assert_eq!(text(&a, "password"), text(&b, "password"));
    assert_ne!(
        object_version(&a, "password"),
        object_version(&b, "password"),
        "the same content under different keys must give different versions"
    );
    assert!(!object_version(&a, "password").contains("keyed"));
    Ok(())
}

/// On the native socket a whole-response file leaves out `request_id`, so it keeps its version while the
/// secret is unchanged. (`vault.sock` writes `request_id` as vault-csi-provider does, so there the file and its
/// version change on every read, as they do with that provider.)
#[tokio::test]
async fn whole_response_objects_keep_their_version_while_unchanged() -> anyhow::Result<()> {
    let case = plain().await?.case("ver-whole").await?;
    case.put("app", json!({"password": "whole"})).await?;
    // No reuse window: both mounts read OpenBao, so the two responses differ in request_id.
    let provider = provider_builder(&["courier"])
        .await?
        .static_reuse(Duration::ZERO)
        .start()
        .await?;
    let mut client = provider.client("courier").await?;
    let request = case
        .request(&[obj("app.json", &case.secret_path("app"))])?
        .build()?;

    let first = mount(&mut client, request.clone()).await?;
    let second = mount(&mut client, request).await?;

    assert_eq!(
        object_version(&first, "app.json"),
        object_version(&second, "app.json"),
        "nothing changed in OpenBao between the mounts; first file: {}\nsecond file: {}",
        text(&first, "app.json"),
        text(&second, "app.json")
    );
    Ok(())
}
