//! Which region a mount reads from: the `region` parameter, else the provider's `AWS_REGION` / `--aws-region`,
//! else a clear error.

use courier_tests::calls::{assert_status, mount, text};
use tonic::Code;

use crate::support::{REGION, case, sm};

/// A region no other constant names, so reads there prove where the provider went.
const OTHER_REGION: &str = "eu-west-1";

#[tokio::test]
async fn the_region_parameter_picks_the_region() -> anyhow::Result<()> {
    let case = case("region-param").await?;
    case.moto
        .create_secret(OTHER_REGION, &case.name("s"), "from-eu")
        .await?;
    let provider = case
        .provider_builder(&["aws"])
        .aws_region(REGION)
        .start()
        .await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .parameter("region", OTHER_REGION)
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "s"), "from-eu");
    assert_eq!(
        case.regions_of("secretsmanager", "GetSecretValue"),
        [OTHER_REGION]
    );
    Ok(())
}

#[tokio::test]
async fn aws_region_in_the_environment_is_the_default() -> anyhow::Result<()> {
    let case = case("region-env").await?;
    case.moto
        .create_secret(OTHER_REGION, &case.name("s"), "from-env-region")
        .await?;
    let provider = case
        .provider_builder(&["aws"])
        .env("AWS_REGION", OTHER_REGION)
        .start()
        .await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .without_parameter("region")
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "s"), "from-env-region");
    assert_eq!(
        case.regions_of("secretsmanager", "GetSecretValue"),
        [OTHER_REGION]
    );
    Ok(())
}

#[tokio::test]
async fn the_aws_region_flag_is_the_default_too() -> anyhow::Result<()> {
    let case = case("region-flag").await?;
    case.moto
        .create_secret(OTHER_REGION, &case.name("s"), "from-flag-region")
        .await?;
    let provider = case
        .provider_builder(&["aws"])
        .aws_region(OTHER_REGION)
        .start()
        .await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .without_parameter("region")
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "s"), "from-flag-region");
    Ok(())
}

#[tokio::test]
async fn no_region_anywhere_is_a_clear_error() -> anyhow::Result<()> {
    let case = case("region-none").await?;
    case.secret("s", "x").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .without_parameter("region")
            .build()?,
    )
    .await;

    assert_status(result, Code::InvalidArgument, &["region", "AWS_REGION"]);
    assert!(
        case.proxy.calls().is_empty(),
        "nothing may be called without a region"
    );
    Ok(())
}

#[tokio::test]
async fn an_arn_in_another_region_than_the_mount_is_refused() -> anyhow::Result<()> {
    let case = case("region-arn").await?;
    let created = case
        .moto
        .create_secret(OTHER_REGION, &case.name("s"), "x")
        .await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[crate::support::arn(&created.arn).alias("s")])?
            .build()?,
    )
    .await;

    assert_status(result, Code::InvalidArgument, &["objects[0]", OTHER_REGION]);
    Ok(())
}
