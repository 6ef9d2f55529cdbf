//! The two ways to ask for AWS: `aws.sock` takes ASCP SecretProviderClasses unchanged; the native socket takes
//! the same keys with `backend: aws`, plus `roleArn` to name the IRSA role without the annotation.

use courier_tests::calls::{assert_status, mount, normalized, text};
use tonic::Code;

use crate::support::{case, role, sm, ssm};

#[tokio::test]
async fn the_native_socket_serves_aws_with_backend_aws() -> anyhow::Result<()> {
    let case = case("native").await?;
    case.secret("s", "native-value").await?;
    case.parameter("p", "param-value").await?;
    let provider = case.provider(&["courier", "aws"]).await?;
    let objects = [
        sm(&case.name("s")).alias("s"),
        ssm(&case.param("p")).alias("p"),
    ];

    let native = mount(
        &mut provider.client("courier").await?,
        case.request(&objects)?
            .parameter("backend", "aws")
            .build()?,
    )
    .await?;
    let compatible = mount(
        &mut provider.client("aws").await?,
        case.request(&objects)?.build()?,
    )
    .await?;

    assert_eq!(text(&native, "s"), "native-value");
    assert_eq!(text(&native, "p"), "param-value");
    let (native_files, native_versions) = normalized(&native);
    let (compatible_files, compatible_versions) = normalized(&compatible);
    assert_eq!(
        native_files, compatible_files,
        "same objects, same files on both sockets"
    );
    let ids = |versions: &[(String, String)]| {
        versions
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&native_versions), ids(&compatible_versions));
    Ok(())
}

#[tokio::test]
async fn role_arn_overrides_the_annotation_on_the_native_socket() -> anyhow::Result<()> {
    let case = case("native-role").await?;
    case.secret("s", "x").await?;
    let override_role = role(&format!("{}-override", case.id));
    case.proxy.trust(
        &override_role,
        case.pod.namespace(),
        case.pod.service_account(),
    );
    let provider = case.provider(&["courier"]).await?;

    let response = mount(
        &mut provider.client("courier").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .parameter("backend", "aws")
            .parameter("roleArn", &override_role)
            .build()?,
    )
    .await?;

    assert_eq!(text(&response, "s"), "x");
    let roles: Vec<_> = case
        .calls("sts", "AssumeRoleWithWebIdentity")
        .iter()
        .filter_map(|c| c.form("RoleArn"))
        .collect();
    assert_eq!(roles, [override_role]);
    assert!(
        case.kube.requests_beyond_issuer_keys().is_empty(),
        "with roleArn the service account is not read: {:?}",
        case.kube.requests()
    );
    Ok(())
}

#[tokio::test]
async fn role_arn_is_not_an_aws_provider_parameter() -> anyhow::Result<()> {
    let case = case("compat-role").await?;
    case.secret("s", "x").await?;
    let ignored = role(&format!("{}-ignored", case.id));
    case.proxy
        .trust(&ignored, case.pod.namespace(), case.pod.service_account());
    let provider = case.provider(&["aws"]).await?;

    mount(
        &mut provider.client("aws").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .parameter("roleArn", &ignored)
            .build()?,
    )
    .await?;

    let roles: Vec<_> = case
        .calls("sts", "AssumeRoleWithWebIdentity")
        .iter()
        .filter_map(|c| c.form("RoleArn"))
        .collect();
    assert_eq!(
        roles,
        [case.role_arn.as_str()],
        "aws.sock takes the role from the annotation, as ASCP does"
    );
    Ok(())
}

#[tokio::test]
async fn role_arn_with_pod_identity_is_invalid() -> anyhow::Result<()> {
    let case = case("native-role-podid").await?;
    let provider = case.provider(&["courier"]).await?;

    let result = mount(
        &mut provider.client("courier").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .parameter("backend", "aws")
            .parameter("roleArn", &case.role_arn)
            .parameter("usePodIdentity", "true")
            .build()?,
    )
    .await;

    assert_status(
        result,
        Code::InvalidArgument,
        &["roleArn", "usePodIdentity"],
    );
    Ok(())
}

#[tokio::test]
async fn a_malformed_role_arn_is_invalid() -> anyhow::Result<()> {
    let case = case("native-role-bad").await?;
    let provider = case.provider(&["courier"]).await?;

    let result = mount(
        &mut provider.client("courier").await?,
        case.request(&[sm(&case.name("s")).alias("s")])?
            .parameter("backend", "aws")
            .parameter("roleArn", "app-role")
            .build()?,
    )
    .await;

    assert_status(result, Code::InvalidArgument, &["roleArn", "app-role"]);
    assert!(case.proxy.calls().is_empty());
    Ok(())
}
