//! `expandKeys: true` on AWS objects: a Secrets Manager JSON secret fans out into one file per key, and an SSM
//! path ending in `/` mounts every parameter under it (recursively, across pages).

use courier_tests::ParameterType;
use courier_tests::calls::{assert_status, file, file_paths, mount, object_version, text};
use serde_json::json;
use tonic::Code;

use crate::support::{AwsSocket, assert_no_secret, aws_case, mount_on, sm, ssm, version_ids};

#[tokio::test]
async fn secrets_manager_json_fans_out_under_alias_or_translated_name() -> anyhow::Result<()> {
    let case = aws_case("sm-expand").await?;
    case.secret(
        "db",
        json!({"username": "app", "password": "pw-sm", "port": 5432, "opts": {"ssl": true}})
            .to_string(),
    )
    .await?;
    case.secret("api", json!({"key": "k-sm"}).to_string())
        .await?;
    let provider = case.provider().await?;
    let translated = case.name("db").replace('/', "_");

    for socket in AwsSocket::ALL {
        let response = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[
                    sm(&case.name("db")).expand().mode("\"0600\""),
                    sm(&case.name("api")).alias("api").expand(),
                ],
            )?,
        )
        .await?
        .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;

        let mut expected = vec![
            "api/key".to_owned(),
            format!("{translated}/opts"),
            format!("{translated}/password"),
            format!("{translated}/port"),
            format!("{translated}/username"),
        ];
        expected.sort();
        assert_eq!(file_paths(&response), expected, "{socket:?}");
        assert_eq!(text(&response, &format!("{translated}/username")), "app");
        assert_eq!(text(&response, &format!("{translated}/password")), "pw-sm");
        assert_eq!(text(&response, &format!("{translated}/port")), "5432");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text(
                &response,
                &format!("{translated}/opts")
            ))?,
            json!({"ssl": true})
        );
        assert_eq!(
            file(&response, &format!("{translated}/password")).mode,
            0o600
        );
        assert_eq!(text(&response, "api/key"), "k-sm");
        assert_eq!(file(&response, "api/key").mode, 0o644);
        assert_eq!(version_ids(&response), expected, "{socket:?}");
    }
    Ok(())
}

/// Twelve parameters, two of them nested one level deeper, so a listing needs two pages (SSM returns at most ten
/// per page).
async fn seed_tree(case: &crate::support::AwsCase) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for i in 1..=10 {
        let local = format!("k{i:02}");
        case.parameter(
            &format!("app/{local}"),
            &format!("value-{i}"),
            ParameterType::String,
        )
        .await?;
        names.push(local);
    }
    case.parameter("app/db/user", "db-user", ParameterType::String)
        .await?;
    case.parameter("app/db/password", "db-pass", ParameterType::SecureString)
        .await?;
    names.push("db/user".to_owned());
    names.push("db/password".to_owned());
    // A sibling outside the path must not be picked up.
    case.parameter("application", "outside", ParameterType::String)
        .await?;
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn ssm_path_mounts_every_parameter_under_it_across_pages() -> anyhow::Result<()> {
    let case = aws_case("param-tree").await?;
    let relative = seed_tree(&case).await?;
    let provider = case.provider().await?;
    let path = format!("{}/", case.param("app"));

    for socket in AwsSocket::ALL {
        case.proxy.clear_calls();
        let at_root = mount_on(
            &provider,
            socket.socket(),
            &case.request(socket, &[ssm(&path).expand()])?,
        )
        .await?
        .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;
        let aliased = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[ssm(&path).alias("conf").expand().mode("\"0640\"")],
            )?,
        )
        .await?
        .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;

        // Without objectAlias the files sit at the mount root, named relative to the path, nested as the names
        // are.
        assert_eq!(file_paths(&at_root), relative, "{socket:?}");
        assert_eq!(version_ids(&at_root), relative, "{socket:?}");
        assert_eq!(text(&at_root, "k01"), "value-1");
        assert_eq!(text(&at_root, "k10"), "value-10");
        assert_eq!(text(&at_root, "db/user"), "db-user");
        assert_eq!(
            text(&at_root, "db/password"),
            "db-pass",
            "SecureStrings are decrypted"
        );
        // With objectAlias they sit under it.
        let under_alias: Vec<String> = relative.iter().map(|r| format!("conf/{r}")).collect();
        assert_eq!(file_paths(&aliased), under_alias, "{socket:?}");
        assert_eq!(text(&aliased, "conf/db/user"), "db-user");
        assert_eq!(file(&aliased, "conf/k05").mode, 0o640);

        let listings = case.proxy.calls_of("ssm", "GetParametersByPath");
        assert!(
            listings.len() >= 4,
            "two mounts of twelve parameters need at least two pages each: {listings:?}"
        );
        for call in &listings {
            let body = call.json().unwrap_or_default();
            assert_eq!(body["Path"], json!(path), "{body}");
            assert_eq!(body["Recursive"], json!(true), "{body}");
            assert_eq!(body["WithDecryption"], json!(true), "{body}");
        }
        assert!(
            listings
                .iter()
                .any(|c| c.json().is_some_and(|b| b.get("NextToken").is_some())),
            "the second page is asked for with NextToken: {listings:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn ssm_path_versions_follow_each_parameter() -> anyhow::Result<()> {
    let case = aws_case("param-tree-versions").await?;
    case.parameter("app/a", "1", ParameterType::String).await?;
    case.parameter("app/b", "2", ParameterType::String).await?;
    let provider = case.provider().await?;
    let request = case.request(
        AwsSocket::Aws,
        &[ssm(&format!("{}/", case.param("app"))).expand()],
    )?;
    let mut client = provider.client("aws").await?;

    let first = mount(&mut client, request.build()?).await?;
    case.moto
        .put_parameter(
            crate::support::REGION,
            &case.param("app/b"),
            "changed",
            ParameterType::String,
            true,
        )
        .await?;
    let second = mount(&mut client, request.build()?).await?;

    assert_eq!(text(&second, "b"), "changed");
    assert_eq!(object_version(&first, "a"), object_version(&second, "a"));
    assert_ne!(object_version(&first, "b"), object_version(&second, "b"));
    Ok(())
}

#[tokio::test]
async fn ssm_path_at_the_root_works_without_path_translation() -> anyhow::Result<()> {
    let case = aws_case("param-tree-notranslate").await?;
    case.parameter("app/x", "x-value", ParameterType::String)
        .await?;
    case.parameter("app/sub/y", "y-value", ParameterType::String)
        .await?;
    let provider = case.provider().await?;

    for socket in AwsSocket::ALL {
        let response = mount_on(
            &provider,
            socket.socket(),
            &case
                .request(socket, &[ssm(&format!("{}/", case.param("app"))).expand()])?
                .parameter("pathTranslation", "False"),
        )
        .await?
        .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;

        assert_eq!(file_paths(&response), ["sub/y", "x"], "{socket:?}");
    }
    Ok(())
}

#[tokio::test]
async fn ssm_json_parameter_fans_out_like_a_secret() -> anyhow::Result<()> {
    let case = aws_case("param-json-expand").await?;
    case.parameter(
        "settings",
        &json!({"region": "eu-west-1", "retries": 3}).to_string(),
        ParameterType::SecureString,
    )
    .await?;
    let provider = case.provider().await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(
            AwsSocket::Aws,
            &[ssm(&case.param("settings")).alias("settings").expand()],
        )?
        .build()?,
    )
    .await?;

    assert_eq!(
        file_paths(&response),
        ["settings/region", "settings/retries"]
    );
    assert_eq!(text(&response, "settings/region"), "eu-west-1");
    assert_eq!(text(&response, "settings/retries"), "3");
    Ok(())
}

#[tokio::test]
async fn ssm_path_without_expand_keys_is_refused() -> anyhow::Result<()> {
    let case = aws_case("param-tree-noexpand").await?;
    case.parameter("app/x", "x-value", ParameterType::String)
        .await?;
    let provider = case.provider().await?;
    let path = format!("{}/", case.param("app"));

    for socket in AwsSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[sm(&case.name("unused")).alias("first"), ssm(&path)],
            )?,
        )
        .await?;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["objects[1].objectName", &path, "expandKeys"],
        );
        assert_no_secret(&status, &["x-value"]);
    }
    assert!(
        case.proxy.calls().is_empty(),
        "a refused SecretProviderClass makes no AWS call: {:?}",
        case.proxy.calls()
    );
    Ok(())
}

#[tokio::test]
async fn empty_ssm_path_is_not_found() -> anyhow::Result<()> {
    let case = aws_case("param-tree-empty").await?;
    // Something next to the path, but nothing under it.
    case.parameter("appendix", "v", ParameterType::String)
        .await?;
    let provider = case.provider().await?;
    let path = format!("{}/", case.param("app"));

    for socket in AwsSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(socket, &[ssm(&path).alias("conf").expand()])?,
        )
        .await?;
        assert_status(result, Code::NotFound, &["objects[0]", "no parameters"]);
    }
    Ok(())
}
