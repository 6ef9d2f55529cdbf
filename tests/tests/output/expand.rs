//! `expandKeys: true` on Vault and OpenBao objects: one file per top-level key of the secret's data map, under
//! `<objectName>/<key>`, on every socket that serves Vault.

use courier_tests::calls::{file, file_paths, mount, object_version, text};
use serde_json::json;

use crate::support::{
    VaultSocket, b64, mount_on, obj, vault_case, vault_provider, version_ids, versions,
};

#[tokio::test]
async fn kv2_data_map_fans_out_on_every_vault_socket() -> anyhow::Result<()> {
    let case = vault_case("expand-kv2").await?;
    case.put(
        "db",
        json!({"username": format!("user-{}", case.id), "password": format!("pw-{}", case.id)}),
    )
    .await?;
    let provider = vault_provider().await?;

    for socket in VaultSocket::ALL {
        let request = case.request(
            socket,
            &[
                obj("db", &case.path("db")).expand().mode("0600"),
                obj("plain", &case.path("db")).key("username"),
            ],
        )?;
        let response = mount_on(&provider, socket.socket(), &request)
            .await?
            .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;

        // The data map of KV v2 (data.data), not the response's metadata.
        assert_eq!(
            file_paths(&response),
            ["db/password", "db/username", "plain"],
            "{socket:?}"
        );
        assert_eq!(text(&response, "db/username"), format!("user-{}", case.id));
        assert_eq!(text(&response, "db/password"), format!("pw-{}", case.id));
        assert_eq!(
            file(&response, "db/username").mode,
            0o600,
            "filePermission applies to every key"
        );
        assert_eq!(file(&response, "db/password").mode, 0o600);
        assert_eq!(file(&response, "plain").mode, 0o644);
        // Each expanded file is its own object for the driver.
        assert_eq!(
            version_ids(&response),
            ["db/password", "db/username", "plain"],
            "{socket:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn kv1_data_map_fans_out() -> anyhow::Result<()> {
    let case = vault_case("expand-kv1").await?;
    let path = case
        .kv1(
            "app",
            json!({"api-key": "k-1", "endpoint": "https://api.internal"}),
        )
        .await?;
    let provider = vault_provider().await?;

    let response = mount(
        &mut provider.client("vault").await?,
        case.request(VaultSocket::Vault, &[obj("app", &path).expand()])?
            .build()?,
    )
    .await?;

    // KV v1 has no data.data: the `data` map itself is expanded (no lease_duration or other response fields).
    assert_eq!(file_paths(&response), ["app/api-key", "app/endpoint"]);
    assert_eq!(text(&response, "app/api-key"), "k-1");
    assert_eq!(text(&response, "app/endpoint"), "https://api.internal");
    Ok(())
}

#[tokio::test]
async fn secret_key_with_expand_keys_expands_the_map_at_that_key() -> anyhow::Result<()> {
    let case = vault_case("expand-key").await?;
    case.put(
        "app",
        json!({"db": {"user": "u1", "port": 5432}, "other": "not-expanded"}),
    )
    .await?;
    let provider = vault_provider().await?;
    let path = case.path("app");

    for socket in VaultSocket::ALL {
        let response = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[
                    obj("db", &path).key("db").expand(),
                    obj("db.json", &path).key("db"),
                ],
            )?,
        )
        .await?
        .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;

        assert_eq!(
            file_paths(&response),
            ["db.json", "db/port", "db/user"],
            "{socket:?}: only the map at secretKey is expanded"
        );
        assert_eq!(text(&response, "db/user"), "u1");
        assert_eq!(text(&response, "db/port"), "5432");
        // Without expandKeys the same key is one file of JSON.
        let whole: serde_json::Value = serde_json::from_str(&text(&response, "db.json"))?;
        assert_eq!(whole, json!({"user": "u1", "port": 5432}));
    }
    Ok(())
}

#[tokio::test]
async fn non_string_values_are_written_as_json() -> anyhow::Result<()> {
    let case = vault_case("expand-json").await?;
    case.put(
        "mixed",
        json!({
            "text": "plain text",
            "port": 5432,
            "ratio": 0.5,
            "enabled": true,
            "nothing": null,
            "tags": ["a", "b"],
            "nested": {"x": 1, "y": "z"},
        }),
    )
    .await?;
    let provider = vault_provider().await?;

    let response = mount(
        &mut provider.client("openbao").await?,
        case.request(
            VaultSocket::OpenBao,
            &[obj("m", &case.path("mixed")).expand()],
        )?
        .build()?,
    )
    .await?;

    assert_eq!(
        file_paths(&response),
        [
            "m/enabled",
            "m/nested",
            "m/nothing",
            "m/port",
            "m/ratio",
            "m/tags",
            "m/text"
        ]
    );
    assert_eq!(
        text(&response, "m/text"),
        "plain text",
        "strings are written as they are, unquoted"
    );
    assert_eq!(text(&response, "m/port"), "5432");
    assert_eq!(text(&response, "m/ratio"), "0.5");
    assert_eq!(text(&response, "m/enabled"), "true");
    assert_eq!(text(&response, "m/nothing"), "null");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text(&response, "m/tags"))?,
        json!(["a", "b"])
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text(&response, "m/nested"))?,
        json!({"x": 1, "y": "z"})
    );
    Ok(())
}

#[tokio::test]
async fn encoding_applies_to_each_expanded_value() -> anyhow::Result<()> {
    let case = vault_case("expand-encoding").await?;
    let keystore: &[u8] = &[0xfe, 0xed, 0xfe, 0xed, 0x00, 0x00, 0x00, 0x02, 0xff];
    let truststore: &[u8] = &[0x30, 0x82, 0x01, 0x00, 0x80, 0x81];
    case.put(
        "stores",
        json!({"keystore.jks": b64(keystore), "truststore.p12": b64(truststore)}),
    )
    .await?;
    let provider = vault_provider().await?;

    let response = mount(
        &mut provider.client("courier").await?,
        case.request(
            VaultSocket::NativeVault,
            &[obj("stores", &case.path("stores"))
                .expand()
                .encoding("base64")],
        )?
        .build()?,
    )
    .await?;

    assert_eq!(file(&response, "stores/keystore.jks").contents, keystore);
    assert_eq!(
        file(&response, "stores/truststore.p12").contents,
        truststore
    );
    Ok(())
}

#[tokio::test]
async fn expanded_versions_follow_each_key() -> anyhow::Result<()> {
    let case = vault_case("expand-versions").await?;
    case.put("app", json!({"a": "1", "b": "2"})).await?;
    let provider = vault_provider().await?;
    let request = case.request(
        VaultSocket::Vault,
        &[obj("app", &case.path("app")).expand()],
    )?;
    let mut client = provider.client("vault").await?;

    let first = mount(&mut client, request.build()?).await?;
    let again = mount(&mut client, request.build()?).await?;
    assert_eq!(
        versions(&first),
        versions(&again),
        "nothing changed, no version changed"
    );

    case.put("app", json!({"a": "1", "b": "changed", "c": "new"}))
        .await?;
    let second = mount(&mut client, request.build()?).await?;

    assert_eq!(file_paths(&second), ["app/a", "app/b", "app/c"]);
    assert_eq!(
        object_version(&first, "app/a"),
        object_version(&second, "app/a"),
        "an unchanged key keeps its version"
    );
    assert_ne!(
        object_version(&first, "app/b"),
        object_version(&second, "app/b"),
        "a changed key gets a new version"
    );
    assert_eq!(text(&second, "app/c"), "new");
    Ok(())
}
