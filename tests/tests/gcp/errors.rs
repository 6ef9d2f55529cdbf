//! Failures, each named as such: missing secrets and versions, disabled and destroyed versions, refusals by STS,
//! IAM Credentials and Secret Manager, the provider's own credentials, and a missing token.

use courier_tests::GcpApi;
use courier_tests::calls::{assert_status, mount};
use tonic::Code;

use crate::support::{POOL, case, sec};

#[tokio::test]
async fn missing_secrets_and_versions_are_not_found() -> anyhow::Result<()> {
    let case = case("missing").await?;
    case.secret("s", "x").await?;
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;

    for name in [case.version("nope", "latest"), case.version("s", "9")] {
        let result = mount(&mut client, case.request(&[sec(&name, "f")])?.build()?).await;
        assert_status(result, Code::NotFound, &[&name, "does not exist", "gcp"]);
    }
    Ok(())
}

#[tokio::test]
async fn disabled_and_destroyed_versions_are_named_as_such() -> anyhow::Result<()> {
    let case = case("states").await?;
    let first = case.secret("s", "old").await?;
    let second = case.global.add_version(&case.project, "s", "newer").await?;
    case.global.disable(&first).await?;
    case.global.destroy(&second).await?;
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;

    let result = mount(&mut client, case.request(&[sec(&first, "f")])?.build()?).await;
    assert_status(result, Code::NotFound, &[&first, "DISABLED", "enable it"]);
    let result = mount(&mut client, case.request(&[sec(&second, "f")])?.build()?).await;
    assert_status(result, Code::NotFound, &[&second, "DESTROYED"]);
    Ok(())
}

#[tokio::test]
async fn secret_manager_refusal_is_permission_denied() -> anyhow::Result<()> {
    let case = case("sm-denied").await?;
    case.secret("s", "x").await?;
    case.standin.restrict(&format!("projects/{}/secrets/s", case.project), &["someone-else@p1.iam.gserviceaccount.com"]);
    let provider = case.provider(&["gcp"]).await?;

    let result = mount(&mut provider.client("gcp").await?, case.request(&[sec(&case.version("s", "1"), "f")])?.build()?).await;
    assert_status(result, Code::PermissionDenied, &["PERMISSION_DENIED", "secretAccessor"]);
    Ok(())
}

#[tokio::test]
async fn impersonation_without_a_binding_is_permission_denied() -> anyhow::Result<()> {
    let case = case("iam-denied").await?;
    case.secret("s", "x").await?;
    let stranger = courier_tests::PodFixture::new(case.pod.namespace(), "stranger");
    // Annotated, but the Google service account does not trust this Kubernetes service account.
    case.kube.put_pod_service_account(&stranger, [(crate::support::GSA_ANNOTATION, case.gsa.as_str())]);
    let provider = case.provider(&["gcp"]).await?;

    let result = mount(&mut provider.client("gcp").await?, case.request_for(&stranger, &[sec(&case.version("s", "1"), "f")])?.build()?).await;
    assert_status(result, Code::PermissionDenied, &[&case.gsa, "PERMISSION_DENIED", "workloadIdentityUser"]);
    assert!(case.calls(GcpApi::SecretManager).is_empty());
    Ok(())
}

#[tokio::test]
async fn sts_refusal_is_permission_denied() -> anyhow::Result<()> {
    let case = case("sts-denied").await?;
    case.secret("s", "x").await?;
    case.standin.refuse(case.pod.namespace(), case.pod.service_account());
    let provider = case.provider(&["gcp"]).await?;

    let result = mount(&mut provider.client("gcp").await?, case.request(&[sec(&case.version("s", "1"), "f")])?.build()?).await;
    assert_status(result, Code::PermissionDenied, &["STS", POOL]);
    assert!(case.calls(GcpApi::IamCredentials).is_empty());
    Ok(())
}

#[tokio::test]
async fn provider_credentials_are_refused_unless_allowed() -> anyhow::Result<()> {
    let case = case("provider-adc").await?;
    case.secret("s", "x").await?;
    let provider = case.provider(&["gcp"]).await?;

    let result = mount(
        &mut provider.client("gcp").await?,
        case.request(&[sec(&case.version("s", "1"), "f")])?.parameter("auth", "provider-adc").build()?,
    )
    .await;
    assert_status(result, Code::PermissionDenied, &["provider-adc", "--gcp-allow-provider-adc"]);
    assert!(case.standin.calls().is_empty(), "{:?}", case.standin.calls());
    Ok(())
}

#[tokio::test]
async fn a_missing_pool_token_and_bad_parameters_are_invalid() -> anyhow::Result<()> {
    let case = case("invalid").await?;
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;

    let result = mount(&mut client, case.request(&[sec(&case.version("s", "1"), "f")])?.without_tokens().build()?).await;
    assert_status(result, Code::InvalidArgument, &[POOL, "tokenRequests"]);
    let result = mount(&mut client, case.request(&[sec("projects/p/secrets/s", "f")])?.build()?).await;
    assert_status(result, Code::InvalidArgument, &["secrets[0].resourceName"]);
    let result = mount(&mut client, case.request(&[sec(&case.version("s", "1"), "../f")])?.build()?).await;
    assert_status(result, Code::InvalidArgument, &["secrets[0].path"]);
    let result = mount(&mut client, case.request(&[sec(&case.version("s", "1"), "f")])?.parameter("auth", "node-adc").build()?).await;
    assert_status(result, Code::InvalidArgument, &["auth", "node-adc"]);
    assert!(case.standin.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn provider_credentials_when_allowed_read_as_the_node() -> anyhow::Result<()> {
    let case = case("provider-adc-on").await?;
    case.secret("s", "node-read").await?;
    let provider = case.provider_builder(&["gcp"]).arg("--gcp-allow-provider-adc").arg("true").start().await?;
    let mut client = provider.client("gcp").await?;
    let request = || -> anyhow::Result<_> {
        case.request(&[sec(&case.version("s", "1"), "f")])?.parameter("auth", "provider-adc").build()
    };

    assert_eq!(courier_tests::calls::text(&mount(&mut client, request()?).await?, "f"), "node-read");
    mount(&mut client, request()?).await?;
    // The node's token, fetched once and cached; no pod token was exchanged.
    assert_eq!(case.calls(GcpApi::Metadata).len(), 1);
    assert!(case.calls(GcpApi::Sts).is_empty());
    let readers: Vec<_> = case.calls(GcpApi::SecretManager).into_iter().filter_map(|c| c.principal).collect();
    assert_eq!(readers, [courier_tests::NODE_SERVICE_ACCOUNT, courier_tests::NODE_SERVICE_ACCOUNT]);
    Ok(())
}
