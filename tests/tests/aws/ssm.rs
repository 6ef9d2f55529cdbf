//! SSM Parameter Store objects: the three types, versions and labels, batching, missing names and ARNs.

use courier_tests::ParameterType;
use courier_tests::calls::{
    assert_message_mentions, assert_status, file_paths, mount, object_version, text,
};
use tonic::Code;

use crate::support::{Case, REGION, arn, case, ssm};

/// Writes `values` to the String parameter `name` as its versions 1, 2, … in order.
async fn put_versions(case: &Case, name: &str, values: &[&str]) -> anyhow::Result<()> {
    for (i, value) in values.iter().enumerate() {
        case.moto
            .put_parameter(REGION, name, value, ParameterType::String, i > 0)
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn string_string_list_and_decrypted_secure_string() -> anyhow::Result<()> {
    let case = case("ps-types").await?;
    let moto = case.moto;
    moto.put_parameter(
        REGION,
        &case.param("plain"),
        "hello",
        ParameterType::String,
        false,
    )
    .await?;
    moto.put_parameter(
        REGION,
        &case.param("list"),
        "a,b,c",
        ParameterType::StringList,
        false,
    )
    .await?;
    moto.put_parameter(
        REGION,
        &case.param("secure"),
        "hunter2",
        ParameterType::SecureString,
        false,
    )
    .await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            ssm(&case.param("plain")).alias("plain"),
            ssm(&case.param("list")).alias("list"),
            ssm(&case.param("secure")).alias("secure"),
        ])?
        .build()?,
    )
    .await?;

    assert_eq!(text(&response, "plain"), "hello");
    assert_eq!(text(&response, "list"), "a,b,c");
    // Read with decryption: the plaintext, not moto's `kms:alias/aws/ssm:...` ciphertext stand-in.
    assert_eq!(text(&response, "secure"), "hunter2");
    let calls = case.calls("ssm", "GetParameters");
    assert_eq!(calls.len(), 1, "three parameters, one call: {calls:?}");
    assert_eq!(
        calls[0].json().map(|b| b["WithDecryption"].clone()),
        Some(serde_json::json!(true))
    );
    Ok(())
}

#[tokio::test]
async fn a_parameter_name_with_slashes_is_translated() -> anyhow::Result<()> {
    let case = case("ps-path").await?;
    case.parameter("app/key", "v").await?;
    let provider = case.provider(&["aws"]).await?;
    let name = case.param("app/key");

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[ssm(&name)])?.build()?,
    )
    .await?;

    let expected = name.replace('/', "_");
    assert_eq!(file_paths(&response), [expected.as_str()]);
    assert!(!object_version(&response, &expected).is_empty());
    Ok(())
}

#[tokio::test]
async fn object_version_pins_a_parameter_version() -> anyhow::Result<()> {
    let case = case("ps-version").await?;
    let name = case.param("key");
    put_versions(&case, &name, &["one", "two"]).await?;
    let provider = case.provider(&["aws"]).await?;
    let mut client = provider.client("aws").await?;

    let pinned = mount(
        &mut client,
        case.request(&[ssm(&name).alias("key").version("1")])?
            .build()?,
    )
    .await?;
    let current = mount(
        &mut client,
        case.request(&[ssm(&name).alias("key")])?.build()?,
    )
    .await?;

    assert_eq!(text(&pinned, "key"), "one");
    assert_eq!(text(&current, "key"), "two");
    assert_ne!(
        object_version(&pinned, "key"),
        object_version(&current, "key")
    );
    let names: Vec<_> = case
        .calls("ssm", "GetParameters")
        .iter()
        .filter_map(|c| c.json())
        .map(|b| b["Names"].clone())
        .collect();
    assert_eq!(names[0], serde_json::json!([format!("{name}:1")]));
    Ok(())
}

#[tokio::test]
async fn object_version_label_selects_the_labelled_version() -> anyhow::Result<()> {
    let case = case("ps-label").await?;
    let name = case.param("key");
    put_versions(&case, &name, &["stable-value", "newer-value"]).await?;
    case.moto
        .label_parameter_version(REGION, &name, 1, &["stable"])
        .await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[ssm(&name).alias("key").label("stable")])?
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "key"), "stable-value");
    Ok(())
}

/// One mount reading the same parameter three ways. GetParameters answers each requested `name:selector` with
/// the parameter's plain `Name` (AWS adds a `Selector`; moto leaves it out), so the provider must not match
/// answers by name alone.
#[tokio::test]
async fn one_mount_may_read_several_versions_of_one_parameter() -> anyhow::Result<()> {
    let case = case("ps-multi").await?;
    let name = case.param("key");
    put_versions(&case, &name, &["one", "two", "three"]).await?;
    case.moto
        .label_parameter_version(REGION, &name, 2, &["blue"])
        .await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            ssm(&name).alias("v1").version("1"),
            ssm(&name).alias("current"),
            ssm(&name).alias("blue").label("blue"),
        ])?
        .build()?,
    )
    .await?;

    assert_eq!(
        [
            text(&response, "v1"),
            text(&response, "current"),
            text(&response, "blue")
        ],
        ["one", "three", "two"]
    );
    Ok(())
}

#[tokio::test]
async fn twenty_three_parameters_are_read_in_batches_of_ten() -> anyhow::Result<()> {
    let case = case("ps-batch").await?;
    for i in 0..23 {
        case.parameter(&format!("p{i:02}"), &format!("value-{i}"))
            .await?;
    }
    let provider = case.provider(&["aws"]).await?;
    let objects: Vec<_> = (0..23)
        .map(|i| ssm(&case.param(&format!("p{i:02}"))).alias(&format!("p{i:02}")))
        .collect();

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&objects)?.build()?,
    )
    .await?;

    assert_eq!(response.files.len(), 23);
    for i in 0..23 {
        assert_eq!(text(&response, &format!("p{i:02}")), format!("value-{i}"));
    }
    let sizes: Vec<usize> = case
        .calls("ssm", "GetParameters")
        .iter()
        .filter_map(|c| c.json())
        .map(|b| b["Names"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 23, "{sizes:?}");
    assert_eq!(
        sizes.len(),
        3,
        "GetParameters takes at most 10 names: {sizes:?}"
    );
    assert!(sizes.iter().all(|n| *n <= 10), "{sizes:?}");
    Ok(())
}

#[tokio::test]
async fn missing_parameters_are_listed_by_name() -> anyhow::Result<()> {
    let case = case("ps-missing").await?;
    case.parameter("here", "x").await?;
    case.parameter("also-here", "y").await?;
    let provider = case.provider(&["aws"]).await?;
    let gone = case.param("gone");
    let lost = case.param("lost");

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            ssm(&case.param("here")).alias("here"),
            ssm(&gone).alias("gone"),
            ssm(&case.param("also-here")).alias("also-here"),
            ssm(&lost).alias("lost"),
        ])?
        .build()?,
    )
    .await;

    let status = assert_status(
        result,
        Code::NotFound,
        &[&gone, &lost, "objects[1]", "objects[3]"],
    );
    assert!(
        !status.message().contains(&case.param("here")),
        "only the missing names are listed: {}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_version_is_not_found() -> anyhow::Result<()> {
    let case = case("ps-no-version").await?;
    case.parameter("key", "v").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[ssm(&case.param("key")).alias("key").version("7")])?
            .build()?,
    )
    .await;

    let status = assert_status(result, Code::NotFound, &["objects[0]"]);
    assert_message_mentions(status.message(), &[&case.param("key")]);
    Ok(())
}

#[tokio::test]
async fn parameter_by_full_arn() -> anyhow::Result<()> {
    let case = case("ps-arn").await?;
    case.parameter("by-arn", "arn-value").await?;
    let provider = case.provider(&["aws"]).await?;
    let parameter_arn = format!(
        "arn:aws:ssm:{REGION}:{}:parameter{}",
        courier_tests::MOTO_ACCOUNT_ID,
        case.param("by-arn")
    );

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[arn(&parameter_arn).alias("by-arn")])?
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "by-arn"), "arn-value");
    Ok(())
}

#[tokio::test]
async fn ssm_and_secrets_manager_mix_in_one_mount() -> anyhow::Result<()> {
    let case = case("ps-mixed").await?;
    case.parameter("p", "from-ssm").await?;
    case.secret("s", "from-sm").await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            ssm(&case.param("p")).alias("p"),
            crate::support::sm(&case.name("s")).alias("s"),
        ])?
        .build()?,
    )
    .await?;

    assert_eq!(text(&response, "p"), "from-ssm");
    assert_eq!(text(&response, "s"), "from-sm");
    // The driver records versions in object order.
    let ids: Vec<&str> = response
        .object_version
        .iter()
        .map(|v| v.id.as_str())
        .collect();
    assert_eq!(ids, ["p", "s"]);
    Ok(())
}

#[tokio::test]
async fn object_versions_follow_parameter_changes() -> anyhow::Result<()> {
    let case = case("ps-objver").await?;
    let name = case.param("key");
    case.parameter("key", "v1").await?;
    case.parameter("steady", "same").await?;
    let provider = case.provider(&["aws"]).await?;
    let mut client = provider.client("aws").await?;
    let objects = [
        ssm(&name).alias("key"),
        ssm(&case.param("steady")).alias("steady"),
    ];

    let first = mount(&mut client, case.request(&objects)?.build()?).await?;
    let again = mount(&mut client, case.request(&objects)?.build()?).await?;
    case.moto
        .put_parameter(REGION, &name, "v2", ParameterType::String, true)
        .await?;
    let after = mount(&mut client, case.request(&objects)?.build()?).await?;

    assert_eq!(object_version(&first, "key"), object_version(&again, "key"));
    assert_eq!(text(&after, "key"), "v2");
    assert_ne!(object_version(&first, "key"), object_version(&after, "key"));
    assert_eq!(
        object_version(&first, "steady"),
        object_version(&after, "steady")
    );
    Ok(())
}
