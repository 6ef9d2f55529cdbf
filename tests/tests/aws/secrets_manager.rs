//! Secrets Manager objects: by name and ARN, string and binary values, version ids and stages, jmesPath
//! fan-out, file modes, path translation and object versions.

use courier_tests::calls::{
    assert_status, file, file_paths, mount, normalized, object_version, text,
};
use serde_json::json;
use tonic::Code;

use crate::support::{REGION, arn, case, sm};

#[tokio::test]
async fn secret_by_name_is_written_under_its_translated_name() -> anyhow::Result<()> {
    let case = case("sm-name").await?;
    case.secret("db/password", "s3cr3t").await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("db/password"))])?.build()?,
    )
    .await?;

    // `/` becomes `_` by default (pathTranslation), and the object's id is its file name.
    let expected = case.name("db/password").replace('/', "_");
    assert_eq!(file_paths(&response), [expected.as_str()]);
    assert_eq!(text(&response, &expected), "s3cr3t");
    assert_eq!(file(&response, &expected).mode, 0o644);
    assert!(!object_version(&response, &expected).is_empty());
    assert_eq!(
        case.regions_of("secretsmanager", "GetSecretValue"),
        [REGION]
    );
    Ok(())
}

#[tokio::test]
async fn secret_by_full_arn_needs_no_object_type() -> anyhow::Result<()> {
    let case = case("sm-arn").await?;
    let created = case.secret("api-key", "by-arn").await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[arn(&created.arn).alias("api-key")])?
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "api-key"), "by-arn");
    let calls = case.calls("secretsmanager", "GetSecretValue");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].json().map(|b| b["SecretId"].clone()),
        Some(json!(created.arn))
    );
    Ok(())
}

#[tokio::test]
async fn secret_binary_is_written_as_raw_bytes() -> anyhow::Result<()> {
    let case = case("sm-binary").await?;
    let bytes: Vec<u8> = vec![0, 1, 2, 0xfe, 0xff, b'\n', 0x80];
    case.secret("keystore", bytes.clone()).await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("keystore")).alias("keystore.jks")])?
            .build()?,
    )
    .await?;

    assert_eq!(file(&response, "keystore.jks").contents, bytes);
    Ok(())
}

#[tokio::test]
async fn version_ids_and_stages_select_the_version() -> anyhow::Result<()> {
    let case = case("sm-versions").await?;
    let first = case.secret("token", "one").await?;
    let second = case
        .moto
        .put_secret_value(REGION, &case.name("token"), "two")
        .await?;
    let provider = case.provider(&["aws"]).await?;
    let name = case.name("token");

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            sm(&name).alias("current"),
            sm(&name).alias("previous").label("AWSPREVIOUS"),
            sm(&name).alias("explicit-current").label("AWSCURRENT"),
            sm(&name).alias("first").version(&first.version_id),
            sm(&name).alias("second").version(&second),
        ])?
        .build()?,
    )
    .await?;

    assert_eq!(text(&response, "current"), "two");
    assert_eq!(text(&response, "previous"), "one");
    assert_eq!(text(&response, "explicit-current"), "two");
    assert_eq!(text(&response, "first"), "one");
    assert_eq!(text(&response, "second"), "two");
    // Without a version, the provider asks for AWSCURRENT, as the AWS provider does.
    let stages: Vec<_> = case
        .calls("secretsmanager", "GetSecretValue")
        .iter()
        .filter_map(|c| c.json())
        .map(|b| (b["VersionStage"].clone(), b["VersionId"].clone()))
        .collect();
    assert!(
        stages.contains(&(json!("AWSCURRENT"), serde_json::Value::Null)),
        "{stages:?}"
    );
    Ok(())
}

#[tokio::test]
async fn jmes_paths_fan_a_json_secret_out_into_files() -> anyhow::Result<()> {
    let case = case("sm-jmes").await?;
    let document =
        json!({"username": "app", "password": "pw", "port": 5432, "conn": {"host": "db.internal"}});
    case.secret("db", document.to_string()).await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("db")).alias("db").jmes(&[
            ("username", "user", None),
            ("password", "pass", Some("0600")),
            ("conn.host", "host", None),
        ])])?
        .build()?,
    )
    .await?;

    assert_eq!(file_paths(&response), ["db", "host", "pass", "user"]);
    let whole: serde_json::Value = serde_json::from_str(&text(&response, "db"))?;
    assert_eq!(whole, document);
    assert_eq!(text(&response, "user"), "app");
    assert_eq!(text(&response, "pass"), "pw");
    assert_eq!(text(&response, "host"), "db.internal");
    assert_eq!(file(&response, "pass").mode, 0o600);
    assert_eq!(file(&response, "user").mode, 0o644);
    for id in ["db", "user", "pass", "host"] {
        assert!(!object_version(&response, id).is_empty(), "{id}");
    }
    assert_eq!(
        case.calls("secretsmanager", "GetSecretValue").len(),
        1,
        "one read feeds every jmesPath file"
    );
    Ok(())
}

#[tokio::test]
async fn a_jmes_path_result_that_is_not_a_string_names_the_object() -> anyhow::Result<()> {
    let case = case("sm-jmes-number").await?;
    case.secret("ok", "plain").await?;
    case.secret("db", json!({"username": "app", "port": 5432}).to_string())
        .await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            sm(&case.name("ok")).alias("ok"),
            sm(&case.name("db"))
                .alias("db")
                .jmes(&[("username", "user", None), ("port", "port", None)]),
        ])?
        .build()?,
    )
    .await;

    let status = assert_status(result, Code::InvalidArgument, &["objects[1]", "port"]);
    assert!(
        !status.message().contains("5432"),
        "a value must never appear in an error: {}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn a_jmes_path_on_a_secret_that_is_not_json_names_the_object() -> anyhow::Result<()> {
    let case = case("sm-jmes-notjson").await?;
    case.secret("raw", "not json at all").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("raw"))
            .alias("raw")
            .jmes(&[("username", "user", None)])])?
            .build()?,
    )
    .await;

    let status = assert_status(result, Code::InvalidArgument, &["objects[0]"]);
    assert!(
        !status.message().contains("not json at all"),
        "{}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn file_permission_sets_the_mode_and_the_driver_permission_is_the_default()
-> anyhow::Result<()> {
    let case = case("sm-mode").await?;
    case.secret("a", "a").await?;
    case.secret("b", "b").await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            sm(&case.name("a")).alias("a").file_permission("0600"),
            sm(&case.name("b")).alias("b"),
        ])?
        .permission(0o640)
        .build()?,
    )
    .await?;

    assert_eq!(file(&response, "a").mode, 0o600);
    assert_eq!(file(&response, "b").mode, 0o640);
    Ok(())
}

#[tokio::test]
async fn path_translation_replaces_slashes_or_keeps_them() -> anyhow::Result<()> {
    let case = case("sm-paths").await?;
    case.secret("team/db", "x").await?;
    let provider = case.provider(&["aws"]).await?;
    let mut client = provider.client("aws").await?;
    let name = case.name("team/db");

    let default = mount(&mut client, case.request(&[sm(&name)])?.build()?).await?;
    let custom = mount(
        &mut client,
        case.request(&[sm(&name)])?
            .parameter("pathTranslation", "-")
            .build()?,
    )
    .await?;
    let off = mount(
        &mut client,
        case.request(&[sm(&name)])?
            .parameter("pathTranslation", "False")
            .build()?,
    )
    .await?;

    assert_eq!(file_paths(&default), [name.replace('/', "_")]);
    assert_eq!(file_paths(&custom), [name.replace('/', "-")]);
    // Translation off: the name's directories become directories below the mount.
    assert_eq!(file_paths(&off), [name.as_str()]);
    assert!(!object_version(&off, &name).is_empty());
    Ok(())
}

#[tokio::test]
async fn object_versions_are_stable_until_the_secret_changes() -> anyhow::Result<()> {
    let case = case("sm-objver").await?;
    case.secret("changing", "v1").await?;
    case.secret("steady", "same").await?;
    let provider = case.provider(&["aws"]).await?;
    let mut client = provider.client("aws").await?;
    let objects = [
        sm(&case.name("changing")).alias("changing"),
        sm(&case.name("steady")).alias("steady"),
    ];

    let first = mount(&mut client, case.request(&objects)?.build()?).await?;
    let again = mount(&mut client, case.request(&objects)?.build()?).await?;
    assert_eq!(normalized(&first), normalized(&again));

    case.moto
        .put_secret_value(REGION, &case.name("changing"), "v2")
        .await?;
    let after = mount(&mut client, case.request(&objects)?.build()?).await?;

    assert_eq!(text(&after, "changing"), "v2");
    assert_ne!(
        object_version(&first, "changing"),
        object_version(&after, "changing")
    );
    assert_eq!(
        object_version(&first, "steady"),
        object_version(&after, "steady")
    );
    // Versions are opaque: neither the value nor the AWS version id shows through.
    let stages = case
        .moto
        .secret_version_stages(REGION, &case.name("changing"))
        .await?;
    for id in stages.keys() {
        assert!(!object_version(&after, "changing").contains(id.as_str()));
    }
    Ok(())
}

#[tokio::test]
async fn a_missing_secret_is_not_found_and_names_the_object() -> anyhow::Result<()> {
    let case = case("sm-missing").await?;
    case.secret("present", "x").await?;
    let provider = case.provider(&["aws"]).await?;
    let missing = case.name("absent");

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            sm(&case.name("present")).alias("present"),
            sm(&missing).alias("absent"),
        ])?
        .build()?,
    )
    .await;

    assert_status(result, Code::NotFound, &["objects[1]", &missing]);
    Ok(())
}

#[tokio::test]
async fn a_missing_version_stage_is_not_found() -> anyhow::Result<()> {
    let case = case("sm-no-stage").await?;
    case.secret("only-one", "x").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("only-one"))
            .alias("prev")
            .label("AWSPREVIOUS")])?
            .build()?,
    )
    .await;

    assert_status(result, Code::NotFound, &["objects[0]"]);
    Ok(())
}

/// ASCP keeps names and aliases apart: one secret may be mounted under several aliases, and an alias may repeat
/// its own object's name. Only two objects writing the same file are a conflict.
#[tokio::test]
async fn one_secret_may_be_mounted_under_several_aliases() -> anyhow::Result<()> {
    let case = case("sm-aliases").await?;
    case.secret("shared", "same-value").await?;
    let provider = case.provider(&["aws"]).await?;
    let name = case.name("shared");

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&name).alias("one"), sm(&name).alias("two")])?
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "one"), "same-value");
    assert_eq!(text(&response, "two"), "same-value");
    Ok(())
}

#[tokio::test]
async fn an_alias_may_repeat_its_objects_name() -> anyhow::Result<()> {
    let case = case("sm-self-alias").await?;
    case.secret("token", "t").await?;
    let provider = case.provider(&["aws"]).await?;
    let name = case.name("token");

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&name).alias(&name)])?
            .parameter("pathTranslation", "False")
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, &name), "t");
    Ok(())
}
