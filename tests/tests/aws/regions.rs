//! Which region a mount reads from: the `region` parameter, else the provider's `AWS_REGION` / `--aws-region`,
//! else a clear error.

use courier_tests::ProviderBuilder;
use courier_tests::calls::{assert_status, mount, text};
use tonic::Code;

use crate::support::{REGION, case, sm};

/// A region no other constant names, so reads there prove where the provider went.
const OTHER_REGION: &str = "eu-west-1";

/// Where a case says the region: in the mount's `region` parameter or only in the provider's configuration.
enum RegionFrom {
    /// The `region` parameter names [`OTHER_REGION`]; the provider's default is [`REGION`].
    Parameter,
    /// No `region` parameter; `configure` gives the provider [`OTHER_REGION`] as its default.
    Provider(fn(ProviderBuilder) -> ProviderBuilder),
}

/// Mounts a secret that exists only in [`OTHER_REGION`], with the region taken from `from`, and checks that the
/// value came from there and every read went there.
async fn reads_from_the_other_region(
    label: &str,
    value: &str,
    from: RegionFrom,
) -> anyhow::Result<()> {
    let case = case(label).await?;
    case.moto
        .create_secret(OTHER_REGION, &case.name("s"), value)
        .await?;
    let builder = case.provider_builder(&["aws"]);
    let (builder, parameter) = match from {
        RegionFrom::Parameter => (builder.aws_region(REGION), Some(OTHER_REGION)),
        RegionFrom::Provider(configure) => (configure(builder), None),
    };
    let provider = builder.start().await?;

    let request = case.request(&[sm(&case.name("s")).alias("s")])?;
    let request = match parameter {
        Some(region) => request.parameter("region", region),
        None => request.without_parameter("region"),
    };
    let response = mount(&mut provider.client("aws").await?, request.build()?).await?;

    assert_eq!(text(&response, "s"), value, "{label}");
    assert_eq!(
        case.regions_of("secretsmanager", "GetSecretValue"),
        [OTHER_REGION],
        "{label}"
    );
    Ok(())
}

#[tokio::test]
async fn the_region_parameter_picks_the_region() -> anyhow::Result<()> {
    reads_from_the_other_region("region-param", "from-eu", RegionFrom::Parameter).await
}

#[tokio::test]
async fn aws_region_in_the_environment_is_the_default() -> anyhow::Result<()> {
    reads_from_the_other_region(
        "region-env",
        "from-env-region",
        RegionFrom::Provider(|builder| builder.env("AWS_REGION", OTHER_REGION)),
    )
    .await
}

#[tokio::test]
async fn the_aws_region_flag_is_the_default_too() -> anyhow::Result<()> {
    reads_from_the_other_region(
        "region-flag",
        "from-flag-region",
        RegionFrom::Provider(|builder| builder.aws_region(OTHER_REGION)),
    )
    .await
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
