//! Parameter problems are `InvalidArgument` naming the parameter and object (`objects[1].objectType`), found
//! before any AWS call; an unreachable AWS is `Unavailable`.

use courier_proto::v1alpha1::MountResponse;
use courier_tests::calls::{assert_status, mount};
use tonic::{Code, Status};

use crate::support::{AwsObj, Case, case, quote, sm, ssm, unreachable_endpoint};

/// Mounts `objects` on `aws.sock` and expects `InvalidArgument` mentioning `words`, with no AWS call made.
async fn expect_invalid(label: &str, objects: &[AwsObj], words: &[&str]) -> anyhow::Result<()> {
    let case = case(label).await?;
    let provider = case.provider(&["aws"]).await?;
    let result = mount(
        &mut provider.client("aws").await?,
        case.request(objects)?.build()?,
    )
    .await;
    assert_status(result, Code::InvalidArgument, words);
    assert!(
        case.proxy.calls().is_empty(),
        "a parameter problem is found before any AWS call: {:?}",
        case.proxy.calls()
    );
    Ok(())
}

#[tokio::test]
async fn both_version_and_label_on_an_ssm_parameter() -> anyhow::Result<()> {
    expect_invalid(
        "err-ssm-both",
        &[
            ssm("/ok").alias("ok"),
            ssm("/x").alias("x").version("1").label("prod"),
        ],
        &["objects[1]", "objectVersion", "objectVersionLabel"],
    )
    .await
}

#[tokio::test]
async fn duplicate_alias() -> anyhow::Result<()> {
    expect_invalid(
        "err-dup-alias",
        &[sm("a").alias("same"), sm("b").alias("same")],
        &["objects[1].objectAlias", "same"],
    )
    .await
}

#[tokio::test]
async fn duplicate_name() -> anyhow::Result<()> {
    expect_invalid(
        "err-dup-name",
        &[sm("team/db"), ssm("team/db")],
        &["objects[1].objectName", "team/db"],
    )
    .await
}

#[tokio::test]
async fn an_alias_equal_to_another_objects_file() -> anyhow::Result<()> {
    // `team/db` is written to `team_db`; an alias of that name would overwrite it.
    expect_invalid(
        "err-dup-file",
        &[sm("team/db"), sm("other").alias("team_db")],
        &["objects[1]", "team_db"],
    )
    .await
}

#[tokio::test]
async fn unknown_object_type() -> anyhow::Result<()> {
    expect_invalid(
        "err-type",
        &[
            sm("a").alias("first"),
            AwsObj::named("b").field("objectType", quote("parameterstore")),
        ],
        &["objects[1]", "objectType", "parameterstore"],
    )
    .await
}

#[tokio::test]
async fn missing_object_type_for_a_plain_name() -> anyhow::Result<()> {
    expect_invalid(
        "err-notype",
        &[AwsObj::named("just-a-name")],
        &["objects[0]", "objectType"],
    )
    .await
}

#[tokio::test]
async fn missing_object_name() -> anyhow::Result<()> {
    expect_invalid(
        "err-noname",
        &[
            sm("a").alias("first"),
            AwsObj::named("x")
                .field("objectName", "\"\"".to_owned())
                .field("objectType", quote("secretsmanager")),
        ],
        &["objects[1].objectName"],
    )
    .await
}

#[tokio::test]
async fn a_jmes_path_entry_without_an_alias() -> anyhow::Result<()> {
    expect_invalid(
        "err-jmes-alias",
        &[sm("db").field("jmesPath", r#"[{"path": "username"}]"#.to_owned())],
        &["objects[0].jmesPath[0].objectAlias"],
    )
    .await
}

#[tokio::test]
async fn a_bad_file_permission() -> anyhow::Result<()> {
    expect_invalid(
        "err-mode",
        &[sm("a").alias("first").file_permission("rw-r--r--")],
        &["objects[0].filePermission"],
    )
    .await
}

#[tokio::test]
async fn an_alias_escaping_the_mount() -> anyhow::Result<()> {
    expect_invalid(
        "err-escape",
        &[sm("a").alias("../etc/passwd")],
        &["objects[0].objectAlias"],
    )
    .await
}

#[tokio::test]
async fn objects_must_be_given() -> anyhow::Result<()> {
    let case = case("err-noobjects").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[])?.without_parameter("objects").build()?,
    )
    .await;

    assert_status(result, Code::InvalidArgument, &["objects"]);
    Ok(())
}

#[tokio::test]
async fn use_pod_identity_must_be_a_boolean() -> anyhow::Result<()> {
    let case = case("err-podid").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm("a").alias("first")])?
            .parameter("usePodIdentity", "yes please")
            .build()?,
    )
    .await;

    assert_status(
        result,
        Code::InvalidArgument,
        &["usePodIdentity", "yes please"],
    );
    Ok(())
}

/// Mounts secret `s` with every AWS endpoint unreachable, with `parameters` added; returns the case (for names)
/// and the result.
async fn mount_without_aws(
    label: &str,
    parameters: &[(&str, &str)],
) -> anyhow::Result<(Case, Result<MountResponse, Status>)> {
    let case = case(label).await?;
    let provider = case
        .provider_builder(&["aws"])
        .aws_endpoint_url(unreachable_endpoint()?)
        .start()
        .await?;
    let mut request = case.request(&[sm(&case.name("s")).alias("s")])?;
    for (name, value) in parameters {
        request = request.parameter(*name, *value);
    }
    let result = mount(&mut provider.client("aws").await?, request.build()?).await;
    Ok((case, result))
}

#[tokio::test]
async fn an_unreachable_aws_is_unavailable_and_names_the_object() -> anyhow::Result<()> {
    // Pod Identity, so the first AWS call is the read itself.
    let (case, result) =
        mount_without_aws("err-unreachable", &[("usePodIdentity", "true")]).await?;

    assert_status(result, Code::Unavailable, &["objects[0]", &case.name("s")]);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_sts_is_unavailable() -> anyhow::Result<()> {
    let (_case, result) = mount_without_aws("err-sts-unreachable", &[]).await?;

    assert_status(result, Code::Unavailable, &["AssumeRoleWithWebIdentity"]);
    Ok(())
}
