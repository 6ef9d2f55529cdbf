//! Self-tests of the AWS test support: moto starts and answers the AWS API, the proxy records and injects
//! faults, the fake Kubernetes API satisfies the real `kube` client, and the Pod Identity agent stand-in refuses
//! what the real one refuses. No provider is involved.

use courier_tests::{
    AwsApiError, AwsFault, AwsProxy, AwsService, FakeKubeApi, KubeFault, MOTO_ACCOUNT_ID, Moto,
    POD_IDENTITY_AUDIENCE, ParameterType, PodFixture, PodIdentityAgent, STS_AUDIENCE, TokenIssuer,
    service_account_path,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

fn api_error(error: &anyhow::Error) -> Option<&AwsApiError> {
    error.downcast_ref::<AwsApiError>()
}

#[tokio::test]
async fn moto_serves_secrets_and_parameters_it_was_given() -> anyhow::Result<()> {
    let moto = Moto::start().await?;

    let created = moto
        .create_secret("us-east-1", "team-a/db", "first")
        .await?;
    assert!(
        created.arn.starts_with(&format!(
            "arn:aws:secretsmanager:us-east-1:{MOTO_ACCOUNT_ID}:secret:team-a/db-"
        )),
        "{created:?}"
    );
    let second = moto
        .put_secret_value("us-east-1", "team-a/db", "second")
        .await?;
    let current = moto
        .call(
            "us-east-1",
            AwsService::SecretsManager,
            "GetSecretValue",
            json!({"SecretId": "team-a/db"}),
        )
        .await?;
    assert_eq!(current["SecretString"], "second");
    assert_eq!(current["VersionId"], second.as_str());
    let previous = moto
        .call(
            "us-east-1",
            AwsService::SecretsManager,
            "GetSecretValue",
            json!({"SecretId": created.arn, "VersionStage": "AWSPREVIOUS"}),
        )
        .await?;
    assert_eq!(previous["SecretString"], "first");
    let stages = moto.secret_version_stages("us-east-1", "team-a/db").await?;
    assert_eq!(stages[&created.version_id], ["AWSPREVIOUS"]);
    assert_eq!(stages[&second], ["AWSCURRENT"]);

    moto.create_secret("us-east-1", "bin", vec![0u8, 159, 146, 150])
        .await?;
    let binary = moto
        .call(
            "us-east-1",
            AwsService::SecretsManager,
            "GetSecretValue",
            json!({"SecretId": "bin"}),
        )
        .await?;
    assert_eq!(binary["SecretBinary"], "AJ+Slg==");

    // Regions are separate stores on the one endpoint.
    let elsewhere = moto
        .call(
            "eu-west-1",
            AwsService::SecretsManager,
            "GetSecretValue",
            json!({"SecretId": "team-a/db"}),
        )
        .await
        .expect_err("the secret exists only in us-east-1");
    assert_eq!(
        api_error(&elsewhere).map(|e| e.code.as_str()),
        Some("ResourceNotFoundException"),
        "{elsewhere:#}"
    );

    let v1 = moto
        .put_parameter(
            "us-east-1",
            "/app/key",
            "one",
            ParameterType::SecureString,
            false,
        )
        .await?;
    let v2 = moto
        .put_parameter(
            "us-east-1",
            "/app/key",
            "two",
            ParameterType::SecureString,
            true,
        )
        .await?;
    assert_eq!((v1, v2), (1, 2));
    moto.label_parameter_version("us-east-1", "/app/key", 1, &["old"])
        .await?;
    let read = moto
        .call(
            "us-east-1",
            AwsService::Ssm,
            "GetParameters",
            json!({"Names": ["/app/key:old", "/app/key", "/missing"], "WithDecryption": true}),
        )
        .await?;
    // moto answers in its own order and without `Selector`, so compare (version, value) pairs as a set.
    let mut values: Vec<(i64, &str)> = read["Parameters"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|p| Some((p["Version"].as_i64()?, p["Value"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    values.sort_unstable();
    assert_eq!(values, [(1, "one"), (2, "two")], "{read}");
    assert_eq!(read["InvalidParameters"], json!(["/missing"]));

    moto.reset().await?;
    let gone = moto
        .call(
            "us-east-1",
            AwsService::SecretsManager,
            "GetSecretValue",
            json!({"SecretId": "team-a/db"}),
        )
        .await
        .expect_err("reset forgets every secret");
    assert_eq!(
        api_error(&gone).map(|e| e.code.as_str()),
        Some("ResourceNotFoundException")
    );
    Ok(())
}

/// `GetSecretValue` through the proxy, with an `Authorization` header whose credential scope names `region`
/// (moto reads the scope and does not check the signature).
async fn sm_through(proxy: &AwsProxy, region: &str, secret: &str) -> anyhow::Result<(u16, Value)> {
    let body = json!({"SecretId": secret}).to_string();
    let date = "20260101T000000Z";
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("{}/", proxy.endpoint()))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "secretsmanager.GetSecretValue")
        .header("x-amz-date", date)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=ASIATESTKEY/20260101/{region}/secretsmanager/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00"
            ),
        )
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn proxy_records_calls_and_fails_only_the_chosen_region() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    moto.create_secret("us-east-1", "s", "east").await?;
    moto.create_secret("us-west-2", "s", "west").await?;
    let proxy = AwsProxy::start(&moto.endpoint())?;
    proxy.inject(AwsFault::status(500).region("us-east-1"));

    let (east_status, _) = sm_through(&proxy, "us-east-1", "s").await?;
    let (west_status, west) = sm_through(&proxy, "us-west-2", "s").await?;

    assert_eq!(east_status, 500);
    assert_eq!(
        (west_status, west["SecretString"].as_str()),
        (200, Some("west"))
    );
    let calls = proxy.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].region.as_deref(), Some("us-east-1"));
    assert!(!calls[0].forwarded);
    assert!(calls[1].is("secretsmanager", "GetSecretValue"));
    assert_eq!(calls[1].access_key_id.as_deref(), Some("ASIATESTKEY"));
    assert_eq!(
        calls[1].json().map(|b| b["SecretId"].clone()),
        Some(json!("s"))
    );

    proxy.clear_faults();
    let (east_status, east) = sm_through(&proxy, "us-east-1", "s").await?;
    assert_eq!(
        (east_status, east["SecretString"].as_str()),
        (200, Some("east"))
    );
    Ok(())
}

async fn assume_role_with_web_identity(
    proxy: &AwsProxy,
    role_arn: &str,
    token: &str,
) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("{}/", proxy.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=s&RoleArn={}&WebIdentityToken={token}",
            role_arn.replace(':', "%3A").replace('/', "%2F")
        ))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn proxy_checks_web_identity_tokens_as_sts_does() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let issuer = TokenIssuer::new()?;
    let proxy = AwsProxy::start_with_sts_checks(&moto.endpoint(), &issuer)?;
    let pod = PodFixture::new("team-a", "app");
    let role = format!("arn:aws:iam::{MOTO_ACCOUNT_ID}:role/app");

    let sts_token = issuer.token(&pod, STS_AUDIENCE)?;
    let (status, body) = assume_role_with_web_identity(&proxy, &role, sts_token.jwt()).await?;
    assert_eq!(status, 403, "an untrusted subject is refused: {body}");
    assert!(body.contains("AccessDenied"), "{body}");

    proxy.trust(&role, "team-a", "app");
    let wrong_audience = issuer.token(&pod, "vault")?;
    let (status, body) = assume_role_with_web_identity(&proxy, &role, wrong_audience.jwt()).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Incorrect token audience"), "{body}");

    let (status, body) = assume_role_with_web_identity(&proxy, &role, sts_token.jwt()).await?;
    assert_eq!(status, 200, "{body}");
    let calls = proxy.calls_of("sts", "AssumeRoleWithWebIdentity");
    assert_eq!(calls.len(), 3);
    let issued = calls[2]
        .issued
        .as_ref()
        .map(|c| c.access_key_id.clone())
        .unwrap_or_default();
    assert!(
        calls[2]
            .issued
            .as_ref()
            .is_some_and(|c| !c.secret_access_key.is_empty() && !c.session_token.is_empty())
    );
    assert!(issued.starts_with("ASIA"), "moto's credentials: {body}");
    assert_eq!(calls[2].form("RoleArn").as_deref(), Some(role.as_str()));
    Ok(())
}

async fn kube_client(api: &FakeKubeApi) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(api.kubeconfig_path())?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

#[tokio::test]
async fn fake_kube_api_serves_service_accounts_to_the_kube_client() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let pod = PodFixture::new("team-a", "app");
    let version = api.put_pod_service_account(
        &pod,
        [(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::123456789012:role/app",
        )],
    );
    let client = kube_client(&api).await?;
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");

    let sa = service_accounts.get("app").await?;
    assert_eq!(sa.metadata.name.as_deref(), Some("app"));
    assert_eq!(sa.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(sa.metadata.uid.as_deref(), Some(pod.service_account_uid()));
    assert_eq!(
        sa.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(
        sa.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("eks.amazonaws.com/role-arn"))
            .map(String::as_str),
        Some("arn:aws:iam::123456789012:role/app")
    );
    assert!(sa.metadata.creation_timestamp.is_some());

    let missing = service_accounts
        .get("nobody")
        .await
        .expect_err("no such service account");
    match &missing {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 404, "{status:?}");
            assert_eq!(status.reason, "NotFound");
            assert!(status.is_not_found());
            assert_eq!(status.message, "serviceaccounts \"nobody\" not found");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(service_accounts.get_opt("nobody").await?, None);

    let version_info = client.apiserver_version().await?;
    assert_eq!(version_info.git_version, "v1.32.4");

    api.set_fault(Some(KubeFault::Forbidden));
    let forbidden = service_accounts.get("app").await.expect_err("forbidden");
    assert!(
        matches!(&forbidden, kube::Error::Api(status) if status.code == 403 && status.reason == "Forbidden"),
        "{forbidden:?}"
    );
    api.set_fault(None);

    let requests = api.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/version" || r.authorized),
        "{requests:?}"
    );
    assert_eq!(api.get_count(&service_account_path("team-a", "app")), 2);
    assert_eq!(api.service_account_reads("team-a", "nobody"), 2);
    Ok(())
}

#[tokio::test]
async fn fake_kube_api_refuses_a_wrong_token() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    api.put_service_account("team-a", "app", [("a", "b")]);
    let text =
        std::fs::read_to_string(api.kubeconfig_path())?.replace(api.token(), "not-the-token");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, text)?;
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let service_accounts: Api<ServiceAccount> =
        Api::namespaced(Client::try_from(config)?, "team-a");

    let error = service_accounts.get("app").await.expect_err("wrong token");

    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 401),
        "{error:?}"
    );
    Ok(())
}

async fn ask_agent(agent: &PodIdentityAgent, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(agent.url());
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn pod_identity_agent_hands_out_credentials_only_for_the_right_token() -> anyhow::Result<()> {
    let issuer = TokenIssuer::new()?;
    let agent = PodIdentityAgent::start(&issuer)?;
    let pod = PodFixture::new("team-a", "app");
    let good = issuer.token(&pod, POD_IDENTITY_AUDIENCE)?;

    let (status, body) = ask_agent(&agent, Some(good.jwt())).await?;
    assert_eq!(status, 403, "no association yet: {body}");

    agent.associate("team-a", "app", "arn:aws:iam::123456789012:role/app");
    let (status, body) = ask_agent(&agent, Some(good.jwt())).await?;
    assert_eq!(status, 200, "{body}");
    let key = body["AccessKeyId"].as_str().unwrap_or_default();
    assert!(key.starts_with("ASIA"), "{body}");
    assert_eq!(body["AccountId"], MOTO_ACCOUNT_ID);
    assert!(body["SecretAccessKey"].is_string() && body["Token"].is_string());
    assert!(
        body["Expiration"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z')),
        "{body}"
    );

    let wrong_audience = issuer.token(&pod, STS_AUDIENCE)?;
    let (status, body) = ask_agent(&agent, Some(wrong_audience.jwt())).await?;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(POD_IDENTITY_AUDIENCE),
        "{body}"
    );

    let foreign = TokenIssuer::new()?.token(&pod, POD_IDENTITY_AUDIENCE)?;
    let (status, _) = ask_agent(&agent, Some(foreign.jwt())).await?;
    assert_eq!(status, 401);
    let (status, _) = ask_agent(&agent, Some(&format!("Bearer {}", good.jwt()))).await?;
    assert_eq!(
        status, 401,
        "the agent takes the raw token, not a Bearer header"
    );
    let (status, _) = ask_agent(&agent, None).await?;
    assert_eq!(status, 400);

    assert_eq!(agent.served_service_accounts(), ["team-a/app"]);
    assert_eq!(agent.issued_access_key_ids(), [key.to_owned()]);
    Ok(())
}
