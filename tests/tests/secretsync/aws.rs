//! A SecretSync on AWS Secrets Manager (moto): the TokenRequest token for `sts.amazonaws.com`, bound to no
//! pod, is exchanged by IRSA for the service account's role; a service account the role does not trust
//! gets nothing.

use std::sync::Arc;

use anyhow::Context;
use courier_tests::{
    AwsProxy, FakeKubeApi, MOTO_ACCOUNT_ID, Moto, ProviderBuilder, STS_AUDIENCE, SecretSyncBuilder, TokenIssuer,
};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::support::{WAIT, b64};

const REGION: &str = "us-east-1";
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

static MOTO: OnceCell<Moto> = OnceCell::const_new();

#[tokio::test]
async fn a_secret_sync_reads_aws_as_its_service_account() -> anyhow::Result<()> {
    let moto = MOTO.get_or_try_init(|| async { Moto::start().await.context("starting moto") }).await?;
    let issuer = Arc::new(TokenIssuer::new()?);
    let namespace = "ns-aws-sync";
    let role = format!("arn:aws:iam::{MOTO_ACCOUNT_ID}:role/aws-sync");
    let proxy = AwsProxy::start_with_sts_checks(&moto.endpoint(), &issuer)?;
    proxy.trust(&role, namespace, "app");
    let kube = FakeKubeApi::start()?;
    kube.serve_token_requests(Arc::clone(&issuer));
    kube.put_service_account(namespace, "app", [(ROLE_ANNOTATION, role.as_str())]);
    // Annotated with the same role, but the role does not trust it.
    kube.put_service_account(namespace, "other", [(ROLE_ANNOTATION, role.as_str())]);
    let dir = tempfile::Builder::new().prefix("courier-secretsync-aws-").tempdir()?;
    let providers_dir = dir.path().join("providers");
    std::fs::create_dir_all(&providers_dir)?;
    let provider = ProviderBuilder::new()
        .provider("aws")
        .providers_dir(&providers_dir)
        .aws_endpoint_url(proxy.endpoint())
        .kubeconfig(kube.kubeconfig_path())
        .token_verification("required")
        .log_level("info")
        .start()
        .await?;
    let name = "aws-sync/db";
    moto.create_secret(REGION, name, "first-aws-value").await?;
    kube.put_secret_provider_class_spec(
        namespace,
        "aws-db",
        json!({
            "provider": "aws",
            "parameters": {
                "region": REGION,
                "objects": format!("- objectName: \"{name}\"\n  objectType: \"secretsmanager\"\n  objectAlias: \"dbpass\"\n"),
            },
            "secretObjects": [{"secretName": "aws-creds", "type": "Opaque",
                               "data": [{"objectName": "dbpass", "key": "pass"}]}],
        }),
    );
    let sync = |sync_name: &str, account: &str| {
        kube.create(
            courier_tests::KubeResource::SECRET_SYNCS,
            namespace,
            json!({
                "apiVersion": "courier.dev/v1alpha1",
                "kind": "SecretSync",
                "metadata": {"name": sync_name, "namespace": namespace},
                "spec": {"secretProviderClassName": "aws-db", "serviceAccountRef": {"name": account},
                         "refreshInterval": "1s", "audiences": [STS_AUDIENCE]},
            }),
        )
    };
    sync("db", "app")?;
    let controller = SecretSyncBuilder::new("replica-a", &providers_dir, kube.kubeconfig_path()).start().await?;
    let explain = |e: anyhow::Error| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}\nprovider log:\n{}", controller.logs(), provider.logs())
    };
    let has = |value: &str| {
        let wanted = b64(value.as_bytes());
        move |kube: &FakeKubeApi| {
            kube.get(courier_tests::KubeResource::SECRETS, namespace, "aws-creds")
                .filter(|s| s["data"]["pass"].as_str() == Some(wanted.as_str()))
        }
    };
    kube.wait_for(WAIT, "the Secret from Secrets Manager", has("first-aws-value")).await.map_err(explain)?;
    let assumed = proxy.calls_of("sts", "AssumeRoleWithWebIdentity");
    assert!(!assumed.is_empty(), "IRSA through STS");

    moto.put_secret_value(REGION, name, "second-aws-value").await?;
    kube.wait_for(WAIT, "the refreshed Secret", has("second-aws-value")).await.map_err(explain)?;

    // `other` may not assume the role: its SecretSync fails, the Secret it names stays as `app` wrote it.
    sync("intruder", "other")?;
    kube.wait_for(WAIT, "the intruder refused", |kube| {
        kube.get(courier_tests::KubeResource::SECRET_SYNCS, namespace, "intruder").filter(|o| {
            o["status"]["conditions"][0]["status"] == "False"
        })
    })
    .await
    .map_err(explain)?;
    let secret = kube
        .get(courier_tests::KubeResource::SECRETS, namespace, "aws-creds")
        .ok_or_else(|| anyhow::anyhow!("the Secret is gone"))?;
    assert_eq!(secret["data"]["pass"].as_str(), Some(b64(b"second-aws-value").as_str()));
    for text in [controller.logs(), provider.logs(), kube.events().iter().map(|e| e.to_string()).collect()] {
        assert!(!text.contains("first-aws-value") && !text.contains("second-aws-value"), "{text}");
    }
    Ok(())
}
