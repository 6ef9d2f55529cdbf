//! KV v1 and v2 reads with JWT auth, as vault-csi-provider SecretProviderClasses describe them.

use courier_tests::calls::{file, mount, object_version, text};
use serde_json::{Value, json};

use crate::support::{mount_on_vault, obj, plain, provider};

#[tokio::test]
async fn kv2_secret_key_selects_one_value_each() -> anyhow::Result<()> {
    let case = plain().await?.case("kv2-keys").await?;
    case.put(
        "app",
        json!({"username": "alice", "password": "s3cret-kv2"}),
    )
    .await?;
    let request = case
        .request(&[
            obj("username", &case.secret_path("app")).key("username"),
            obj("password", &case.secret_path("app")).key("password"),
        ])?
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(text(&response, "username"), "alice");
    assert_eq!(text(&response, "password"), "s3cret-kv2");
    assert_eq!(
        file(&response, "username").mode,
        0o644,
        "mode comes from `permission` \"420\""
    );
    assert_eq!(response.files.len(), 2, "{:?}", response.files);
    assert_eq!(
        response.object_version.len(),
        2,
        "{:?}",
        response.object_version
    );
    assert!(!object_version(&response, "username").is_empty());
    assert!(!object_version(&response, "password").is_empty());
    assert_eq!(response.error, None);
    Ok(())
}

#[tokio::test]
async fn kv2_without_secret_key_writes_the_whole_response_json() -> anyhow::Result<()> {
    let case = plain().await?.case("kv2-whole").await?;
    case.put("app", json!({"username": "bob", "password": "whole-json"}))
        .await?;
    let request = case
        .request(&[obj("app.json", &case.secret_path("app"))])?
        .build()?;

    let response = mount_on_vault(request).await??;

    let written: Value = serde_json::from_str(&text(&response, "app.json"))?;
    assert_eq!(written["data"]["data"]["username"], "bob", "{written}");
    assert_eq!(
        written["data"]["data"]["password"], "whole-json",
        "{written}"
    );
    assert_eq!(written["data"]["metadata"]["version"], 1, "{written}");
    Ok(())
}

#[tokio::test]
async fn kv2_pinned_version_is_honoured() -> anyhow::Result<()> {
    let case = plain().await?.case("kv2-pinned").await?;
    assert_eq!(case.put("app", json!({"password": "first"})).await?, 1);
    assert_eq!(case.put("app", json!({"password": "second"})).await?, 2);
    let path = case.secret_path("app");
    let request = case
        .request(&[
            obj("latest", &path).key("password"),
            obj("pinned", &format!("{path}?version=1")).key("password"),
        ])?
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(text(&response, "latest"), "second");
    assert_eq!(text(&response, "pinned"), "first");
    Ok(())
}

#[tokio::test]
async fn kv2_non_string_values_are_written_as_json() -> anyhow::Result<()> {
    let case = plain().await?.case("kv2-json").await?;
    case.put(
        "app",
        json!({"port": 5432, "tags": ["a", "b"], "flags": {"tls": true}, "ratio": 0.5}),
    )
    .await?;
    let path = case.secret_path("app");
    let request = case
        .request(&[
            obj("port", &path).key("port"),
            obj("tags", &path).key("tags"),
            obj("flags", &path).key("flags"),
            obj("ratio", &path).key("ratio"),
        ])?
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(text(&response, "port"), "5432");
    assert_eq!(text(&response, "tags"), r#"["a","b"]"#);
    assert_eq!(text(&response, "flags"), r#"{"tls":true}"#);
    assert_eq!(text(&response, "ratio"), "0.5");
    Ok(())
}

#[tokio::test]
async fn v1_prefix_in_secret_path_is_tolerated() -> anyhow::Result<()> {
    let case = plain().await?.case("kv2-prefix").await?;
    case.put("app", json!({"password": "prefixed"})).await?;
    let request = case
        .request(&[obj("password", &format!("v1/{}", case.secret_path("app"))).key("password")])?
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(text(&response, "password"), "prefixed");
    Ok(())
}

#[tokio::test]
async fn kv1_static_secret_with_a_lease_duration() -> anyhow::Result<()> {
    let case = plain().await?.case("kv1").await?;
    let mount_path = format!("kv-{}", case.id);
    case.bao().enable_kv1(&mount_path).await?;
    case.bao()
        .kv1_put(
            &mount_path,
            "db",
            json!({"user": "dbuser", "password": "kv1-pass"}),
        )
        .await?;
    // KV v1 reads carry a lease_duration (the mount's default TTL) although nothing is leased.
    let raw = case
        .bao()
        .api(reqwest::Method::GET, &format!("{mount_path}/db"), None)
        .await?;
    assert!(
        raw["lease_duration"].as_u64().is_some_and(|d| d > 0),
        "{raw}"
    );

    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("db-user", &format!("{mount_path}/db")).key("user"),
            obj("db-password", &format!("{mount_path}/db")).key("password"),
        ])?
        .build()?;
    let mut client = provider.client("vault").await?;

    let first = mount(&mut client, request.clone()).await?;
    let second = mount(&mut client, request).await?;

    assert_eq!(text(&first, "db-user"), "dbuser");
    assert_eq!(text(&first, "db-password"), "kv1-pass");
    assert_eq!(
        object_version(&first, "db-password"),
        object_version(&second, "db-password"),
        "a static secret keeps its version"
    );
    Ok(())
}
