//! `failoverRegion` and `failoverObject`: a primary region that fails with 5xx hands the read to the failover
//! region; a 4xx answer is the answer and never fails over. (On the `aws` socket both regions are asked even
//! when the primary answers, as the AWS provider does; the compat suite covers that.)
//!
//! moto serves every region from one endpoint, so the proxy makes the primary region fail: calls signed for it
//! get an injected error, calls for the failover region reach moto.

use courier_proto::v1alpha1::MountResponse;
use courier_tests::calls::{assert_status, mount, text};
use courier_tests::{AwsFault, ProviderProcess};
use tonic::{Code, Status};

use crate::support::{Case, FAILOVER_REGION, REGION, case, sm, ssm};

/// A case whose secret `db` holds `from-primary` in the primary region and `from-failover` in the failover one.
async fn db_in_both_regions(label: &str) -> anyhow::Result<Case> {
    let case = case(label).await?;
    case.secret("db", "from-primary").await?;
    case.moto
        .create_secret(FAILOVER_REGION, &case.name("db"), "from-failover")
        .await?;
    Ok(case)
}

/// Mounts `db` from Secrets Manager on the `aws` socket with `failoverRegion` set.
async fn mount_db(
    case: &Case,
    provider: &ProviderProcess,
) -> anyhow::Result<Result<MountResponse, Status>> {
    let request = case
        .request(&[sm(&case.name("db")).alias("db")])?
        .parameter("failoverRegion", FAILOVER_REGION)
        .build()?;
    Ok(mount(&mut provider.client("aws").await?, request).await)
}

#[tokio::test]
async fn a_failing_primary_region_falls_over_to_the_same_name() -> anyhow::Result<()> {
    let case = db_in_both_regions("fo-5xx").await?;
    case.proxy.inject(
        AwsFault::status(500)
            .region(REGION)
            .service("secretsmanager"),
    );
    let provider = case.provider(&["aws"]).await?;

    let response = mount_db(&case, &provider).await??;

    assert_eq!(text(&response, "db"), "from-failover");
    let regions = case.regions_of("secretsmanager", "GetSecretValue");
    assert_eq!(
        regions.first().map(String::as_str),
        Some(REGION),
        "{regions:?}"
    );
    assert_eq!(
        regions.last().map(String::as_str),
        Some(FAILOVER_REGION),
        "{regions:?}"
    );
    Ok(())
}

/// On the native socket a healthy primary answers alone (the `aws` socket asks both regions, as the AWS
/// provider does; see the compat suite).
#[tokio::test]
async fn a_healthy_primary_region_is_used_without_touching_the_failover() -> anyhow::Result<()> {
    let case = db_in_both_regions("fo-healthy").await?;
    let provider = case.provider(&["courier"]).await?;

    let response = mount(
        &mut provider.client("courier").await?,
        case.request(&[sm(&case.name("db")).alias("db")])?
            .parameter("backend", "aws")
            .parameter("failoverRegion", FAILOVER_REGION)
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "db"), "from-primary");
    assert_eq!(
        case.regions_of("secretsmanager", "GetSecretValue"),
        [REGION]
    );
    Ok(())
}

#[tokio::test]
async fn failover_object_names_the_secret_in_the_failover_region() -> anyhow::Result<()> {
    let case = case("fo-object").await?;
    case.secret("db", "from-primary").await?;
    let replica = case.name("db-replica");
    case.moto
        .create_secret(FAILOVER_REGION, &replica, "from-replica")
        .await?;
    case.proxy.inject(AwsFault::status(503).region(REGION));
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("db"))
            .alias("db")
            .failover(&replica, None, None)])?
            .parameter("failoverRegion", FAILOVER_REGION)
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "db"), "from-replica");
    let last = case
        .calls("secretsmanager", "GetSecretValue")
        .pop()
        .and_then(|c| c.json());
    assert_eq!(
        last.map(|b| b["SecretId"].clone()),
        Some(serde_json::json!(replica))
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_secret_in_the_primary_region_does_not_fail_over() -> anyhow::Result<()> {
    let case = case("fo-4xx").await?;
    // Only the failover region has it: a 404 in the primary is an answer, not an outage.
    case.moto
        .create_secret(FAILOVER_REGION, &case.name("db"), "from-failover")
        .await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount_db(&case, &provider).await?;

    assert_status(
        result,
        Code::NotFound,
        &["objects[0]", &case.name("db"), REGION],
    );
    assert_eq!(
        case.regions_of("secretsmanager", "GetSecretValue"),
        [REGION]
    );
    Ok(())
}

#[tokio::test]
async fn access_denied_in_the_primary_region_does_not_fail_over() -> anyhow::Result<()> {
    let case = db_in_both_regions("fo-403").await?;
    case.proxy.inject(
        AwsFault::status(400)
            .code("AccessDeniedException")
            .region(REGION),
    );
    let provider = case.provider(&["aws"]).await?;

    let result = mount_db(&case, &provider).await?;

    assert_status(result, Code::PermissionDenied, &["objects[0]", REGION]);
    assert_eq!(
        case.regions_of("secretsmanager", "GetSecretValue"),
        [REGION]
    );
    Ok(())
}

#[tokio::test]
async fn both_regions_failing_is_unavailable_and_reports_both() -> anyhow::Result<()> {
    let case = case("fo-both").await?;
    case.secret("db", "x").await?;
    case.proxy
        .inject(AwsFault::status(500).service("secretsmanager"));
    let provider = case.provider(&["aws"]).await?;

    let result = mount_db(&case, &provider).await?;

    assert_status(
        result,
        Code::Unavailable,
        &["objects[0]", REGION, FAILOVER_REGION],
    );
    Ok(())
}

#[tokio::test]
async fn ssm_batches_fall_over_too() -> anyhow::Result<()> {
    let case = case("fo-params").await?;
    case.parameter("a", "primary-a").await?;
    case.moto
        .put_parameter(
            FAILOVER_REGION,
            &case.param("a"),
            "failover-a",
            courier_tests::ParameterType::String,
            false,
        )
        .await?;
    case.moto
        .put_parameter(
            FAILOVER_REGION,
            &case.param("b"),
            "failover-b",
            courier_tests::ParameterType::String,
            false,
        )
        .await?;
    case.proxy
        .inject(AwsFault::status(500).region(REGION).service("ssm"));
    let provider = case.provider(&["aws"]).await?;

    let response = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            ssm(&case.param("a")).alias("a"),
            ssm(&case.param("b")).alias("b"),
        ])?
        .parameter("failoverRegion", FAILOVER_REGION)
        .build()?,
    )
    .await?;

    assert_eq!(text(&response, "a"), "failover-a");
    assert_eq!(text(&response, "b"), "failover-b");
    Ok(())
}

#[tokio::test]
async fn failover_region_equal_to_the_region_is_invalid() -> anyhow::Result<()> {
    let case = case("fo-same").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("db")).alias("db")])?
            .parameter("failoverRegion", REGION)
            .build()?,
    )
    .await;

    assert_status(result, Code::InvalidArgument, &["failoverRegion", REGION]);
    Ok(())
}

#[tokio::test]
async fn failover_object_without_an_alias_is_invalid() -> anyhow::Result<()> {
    let case = case("fo-noalias").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request(&[
            sm(&case.name("ok")).alias("ok"),
            sm(&case.name("db")).failover(&case.name("db-replica"), None, None),
        ])?
        .parameter("failoverRegion", FAILOVER_REGION)
        .build()?,
    )
    .await;

    assert_status(
        result,
        Code::InvalidArgument,
        &["objects[1].objectAlias", "failoverObject"],
    );
    Ok(())
}
