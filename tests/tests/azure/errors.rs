//! Failures named as Key Vault and Entra name them: missing objects and versions, disabled versions, missing grants,
//! refused assertions with their AADSTS code, throttling retried, and the service principal mode refused unless the
//! operator allows it.

use courier_tests::AzureApi;
use courier_tests::calls::{assert_status, mount, text};
use tonic::Code;

use crate::support::{VAULT, case, obj, quote};

#[tokio::test]
async fn missing_secret_or_version_is_not_found_and_named() -> anyhow::Result<()> {
    let case = case("missing").await?;
    case.secret("db", "one");
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;

    let result = mount(
        &mut client,
        case.request(&[obj("nope", "secret")])?.build()?,
    )
    .await;
    assert_status(
        result,
        Code::NotFound,
        &["objects[0]", "objectName:nope", "SecretNotFound", VAULT],
    );
    let version = "0123456789abcdef0123456789abcdef";
    let result = mount(
        &mut client,
        case.request(&[obj("db", "secret").field("objectVersion", quote(version))])?
            .build()?,
    )
    .await;
    assert_status(result, Code::NotFound, &["objectName:db", version]);
    let result = mount(&mut client, case.request(&[obj("db", "key")])?.build()?).await;
    assert_status(result, Code::NotFound, &["objectType:key", "KeyNotFound"]);
    Ok(())
}

#[tokio::test]
async fn a_disabled_version_is_named_as_disabled() -> anyhow::Result<()> {
    let case = case("disabled").await?;
    let version = case.secret("db", "one");
    case.standin.disable(VAULT, "db", &version);
    let provider = case.provider().await?;

    let result = mount(
        &mut provider.client("azure").await?,
        case.request(&[obj("db", "secret")])?.build()?,
    )
    .await;
    let status = assert_status(result, Code::NotFound, &["objectName:db", "disabled"]);
    assert!(
        status.message().contains("HTTP 403"),
        "{}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn without_a_grant_key_vault_refuses_with_its_reason() -> anyhow::Result<()> {
    let case = case("nogrant").await?;
    case.secret("db", "one");
    let stranger = crate::support::client_id(9_999, 2);
    case.standin
        .federate(&stranger, case.pod.namespace(), case.pod.service_account());
    let provider = case.provider().await?;

    let request = case.request_for(&case.pod, &stranger, &[obj("db", "secret")])?;
    let result = mount(&mut provider.client("azure").await?, request.build()?).await;
    let status = assert_status(
        result,
        Code::PermissionDenied,
        &["objectName:db", "HTTP 403", "Forbidden"],
    );
    assert!(
        status.message().contains("permission"),
        "Key Vault's own reason: {}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_then_succeeds() -> anyhow::Result<()> {
    let case = case("throttle").await?;
    case.secret("db", "one");
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;

    case.standin.throttle_token(1, 0);
    case.standin.throttle_keyvault(2, 0);
    let response = mount(&mut client, case.request(&[obj("db", "secret")])?.build()?).await?;
    assert_eq!(text(&response, "db"), "one");
    let statuses = |api| {
        case.calls(api)
            .into_iter()
            .map(|c| c.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(AzureApi::Token), [429, 200]);
    assert_eq!(statuses(AzureApi::KeyVault), [429, 429, 200]);

    // Throttled longer than the retries last: the mount fails as unavailable, naming the object.
    case.standin.throttle_keyvault(10, 0);
    let result = mount(&mut client, case.request(&[obj("db", "secret")])?.build()?).await;
    assert_status(result, Code::Unavailable, &["objectName:db", "429"]);
    Ok(())
}

#[tokio::test]
async fn an_assertion_without_a_federated_credential_is_refused_with_its_aadsts_code()
-> anyhow::Result<()> {
    let case = case("unfederated").await?;
    case.secret("db", "one");
    let lonely = crate::support::client_id(9_999, 3);
    case.standin.register_client(&lonely);
    case.standin.grant(VAULT, &lonely);
    let provider = case.provider().await?;

    let request = case.request_for(&case.pod, &lonely, &[obj("db", "secret")])?;
    let result = mount(&mut provider.client("azure").await?, request.build()?).await;
    let status = assert_status(
        result,
        Code::PermissionDenied,
        &["Entra refused", "AADSTS70021", &lonely],
    );
    assert!(
        status.message().contains("federated identity credential"),
        "{}",
        status.message()
    );
    assert!(
        case.calls(AzureApi::KeyVault).is_empty(),
        "no token, no Key Vault call"
    );
    assert!(case.standin.issued_tokens().is_empty());
    Ok(())
}

#[tokio::test]
async fn node_publish_secret_mode_is_refused_unless_the_operator_allows_it() -> anyhow::Result<()> {
    let case = case("sp").await?;
    case.secret("db", "one");
    let secrets =
        serde_json::json!({"clientid": case.client_id, "clientsecret": "sp-secret-canary-51c2"})
            .to_string();
    let build = || -> anyhow::Result<_> {
        let mut request = case
            .request(&[obj("db", "secret")])?
            .without_parameter("clientID")
            .build()?;
        request.secrets = secrets.clone();
        Ok(request)
    };

    let provider = case.provider().await?;
    let result = mount(&mut provider.client("azure").await?, build()?).await;
    let status = assert_status(
        result,
        Code::PermissionDenied,
        &["nodePublishSecretRef", "--azure-allow-node-publish-secret"],
    );
    assert!(!status.message().contains("sp-secret-canary"));
    assert!(
        case.standin.calls().is_empty(),
        "{:?}",
        case.standin.calls()
    );
    drop(provider);

    // Allowed: the service principal logs in with its secret. A secret Entra does not know for the app is refused
    // with Entra's reason and nothing of the secret.
    let allowed = case
        .provider_builder(&["azure"])
        .arg("--azure-allow-node-publish-secret=true")
        .start()
        .await?;
    let result = mount(&mut allowed.client("azure").await?, build()?).await;
    let status = assert_status(
        result,
        Code::PermissionDenied,
        &["Entra refused", "nodePublishSecretRef", "AADSTS7000215"],
    );
    assert!(!status.message().contains("sp-secret-canary"));
    let calls = case.calls(AzureApi::Token);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].client_id.as_deref(), Some(case.client_id.as_str()));

    // Once the app accepts that secret, the mount reads as the service principal.
    case.standin.add_client_secret(&case.client_id, "sp-secret-canary-51c2");
    let response = mount(&mut allowed.client("azure").await?, build()?).await?;
    assert_eq!(text(&response, "db"), "one");
    let calls = case.calls(AzureApi::Token);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].status, 200, "{calls:?}");
    Ok(())
}
