//! Forged tokens right after a genuine mount of the same identity, for IRSA and EKS Pod Identity: the
//! credentials cached for the identity are never handed to them. With the cluster's issuer keys (the fake API
//! server's JWKS) the provider refuses them itself; without an API server (IRSA with `roleArn`) each token is
//! exchanged on its own, and the STS stand-in refuses it.

use courier_tests::calls::{mount, text};
use courier_tests::{MintedToken, POD_IDENTITY_AUDIENCE, PodFixture, STS_AUDIENCE, forged_tokens};
use tonic::Code;

use crate::support::{Case, case, sm};

/// Mounts the forged `tokens` (for `audience`) through `client` and asserts each is refused without the secret.
async fn assert_all_refused(
    case: &Case,
    client: &mut courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient<tonic::transport::Channel>,
    request: &dyn Fn() -> anyhow::Result<courier_tests::MountRequestBuilder>,
    audience: &str,
    tokens: &[(&str, MintedToken)],
    verifying: bool,
    secret: &str,
) -> anyhow::Result<()> {
    let exchanges = case.calls("sts", "AssumeRoleWithWebIdentity").len() + case.agent.requests().len();
    for (what, token) in tokens {
        match mount(client, request()?.token(audience, token.clone()).build()?).await {
            Ok(response) => panic!("{audience}, {what}: a forged token got {response:?}"),
            Err(status) => {
                if verifying {
                    assert_eq!(status.code(), Code::PermissionDenied, "{audience}, {what}: {}", status.message());
                }
                assert!(!status.message().contains(secret), "{what}: {}", status.message());
                assert!(!status.message().contains(token.jwt()));
            }
        }
    }
    if verifying {
        let now = case.calls("sts", "AssumeRoleWithWebIdentity").len() + case.agent.requests().len();
        assert_eq!(now, exchanges, "{audience}: a forged token was exchanged for credentials");
    }
    Ok(())
}

fn sibling_of(pod: &PodFixture) -> PodFixture {
    PodFixture::new(pod.namespace(), pod.service_account()).with_service_account_uid(pod.service_account_uid())
}

#[tokio::test]
async fn forged_tokens_never_ride_on_cached_irsa_or_pod_identity_credentials() -> anyhow::Result<()> {
    let case = case("forged").await?;
    let secret = format!("forged-{}", case.id);
    case.secret("s", secret.as_str()).await?;
    let provider = case.provider(&["aws"]).await?;
    let mut client = provider.client("aws").await?;
    let objects = [sm(&case.name("s")).alias("s")];

    for (audience, pod_identity) in [(STS_AUDIENCE, false), (POD_IDENTITY_AUDIENCE, true)] {
        let request = || {
            case.request(&objects).map(|r| if pod_identity { r.parameter("usePodIdentity", "true") } else { r })
        };
        let genuine = mount(&mut client, request()?.build()?).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        assert_eq!(text(&genuine, "s"), secret);
        let mut tokens = forged_tokens(case.issuer, &case.pod, audience)?;
        tokens.push(("bound to another pod", case.issuer.token(&sibling_of(&case.pod), audience)?));
        assert_all_refused(&case, &mut client, &request, audience, &tokens, true, &secret).await?;
        let again = mount(&mut client, request()?.build()?).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        assert_eq!(text(&again, "s"), secret);
    }
    Ok(())
}

#[tokio::test]
async fn without_an_api_server_each_irsa_token_is_exchanged_on_its_own() -> anyhow::Result<()> {
    let case = case("forged-nokube").await?;
    let secret = format!("forged-nokube-{}", case.id);
    case.secret("s", secret.as_str()).await?;
    // No kubeconfig: no issuer keys; the role comes from the SecretProviderClass.
    let provider = courier_tests::ProviderBuilder::new()
        .provider("courier")
        .aws_endpoint_url(case.proxy.endpoint())
        .start()
        .await?;
    let mut client = provider.client("courier").await?;
    let objects = [sm(&case.name("s")).alias("s")];
    let request =
        || case.request(&objects).map(|r| r.parameter("backend", "aws").parameter("roleArn", &case.role_arn));
    let genuine = mount(&mut client, request()?.build()?).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    assert_eq!(text(&genuine, "s"), secret);
    let tokens = forged_tokens(case.issuer, &case.pod, STS_AUDIENCE)?;
    assert_all_refused(&case, &mut client, &request, STS_AUDIENCE, &tokens, false, &secret).await?;
    // Every genuine token is its own exchange: one login per token.
    let before = case.calls("sts", "AssumeRoleWithWebIdentity").len();
    mount(&mut client, request()?.build()?).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    assert_eq!(case.calls("sts", "AssumeRoleWithWebIdentity").len(), before + 1);
    Ok(())
}
