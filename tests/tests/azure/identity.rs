//! Whose identity reads: the pod's, one token request per identity in a burst, never shared between identities,
//! the application from the service account's annotation when the SecretProviderClass names none, and never a token
//! the cluster did not issue for the pod.

use courier_tests::calls::{assert_status, mount, text};
use courier_tests::{AZURE_TOKEN_AUDIENCE, AzureApi, MountRequestBuilder, PodFixture, TokenIssuer};
use tonic::Code;

use crate::support::{CLIENT_ID_ANNOTATION, TENANT, VAULT, case, client_id, obj, objects_yaml};

#[tokio::test]
async fn a_burst_of_mounts_asks_entra_once() -> anyhow::Result<()> {
    let case = case("burst").await?;
    case.secret("db", "burst-value");
    // Every token verified against the cluster's keys, so tokens of one service account share one identity.
    let provider = case
        .provider_builder(&["azure"])
        .token_verification("required")
        .start()
        .await?;
    let client = provider.client("azure").await?;

    let mounts: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            let request = case.request(&[obj("db", "secret")]).and_then(|r| r.build());
            async move {
                mount(&mut client, request?)
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .collect();
    for response in futures::future::join_all(mounts).await {
        assert_eq!(text(&response?, "db"), "burst-value");
    }
    // One more, later, with a freshly minted token: still the cached Key Vault token.
    mount(
        &mut client.clone(),
        case.request(&[obj("db", "secret")])?.build()?,
    )
    .await?;

    assert_eq!(
        case.calls(AzureApi::Token).len(),
        1,
        "{:?}",
        case.calls(AzureApi::Token)
    );
    let reads = case.calls(AzureApi::KeyVault);
    assert_eq!(reads.len(), 9);
    assert!(
        reads
            .iter()
            .all(|c| c.client_id.as_deref() == Some(case.client_id.as_str())),
        "{reads:?}"
    );
    Ok(())
}

#[tokio::test]
async fn two_identities_never_share_tokens() -> anyhow::Result<()> {
    let case = case("two").await?;
    let worker_vault = "kv-worker";
    case.secret("mine", "for-app");
    case.standin
        .set_secret(worker_vault, "theirs", "for-worker", None);
    let worker = PodFixture::new(case.pod.namespace(), "worker");
    case.kube
        .put_pod_service_account(&worker, std::iter::empty::<(&str, &str)>());
    let worker_client = client_id(9_000, 7);
    case.standin
        .federate(&worker_client, worker.namespace(), worker.service_account());
    case.standin.grant(worker_vault, &worker_client);
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;

    let mine = mount(
        &mut client,
        case.request(&[obj("mine", "secret")])?.build()?,
    )
    .await?;
    assert_eq!(text(&mine, "mine"), "for-app");
    let theirs = case
        .request_for(&worker, &worker_client, &[obj("theirs", "secret")])?
        .parameter("keyvaultName", worker_vault);
    assert_eq!(
        text(&mount(&mut client, theirs.build()?).await?, "theirs"),
        "for-worker"
    );
    // The worker reads only as itself: its token does not open the app's vault.
    let result = mount(
        &mut client,
        case.request_for(&worker, &worker_client, &[obj("mine", "secret")])?
            .build()?,
    )
    .await;
    assert_status(result, Code::PermissionDenied, &["HTTP 403"]);
    // And the app's pod naming the worker's application is refused by Entra: no federated credential for it.
    let result = mount(
        &mut client,
        case.request_for(&case.pod, &worker_client, &[obj("mine", "secret")])?
            .build()?,
    )
    .await;
    assert_status(result, Code::PermissionDenied, &["AADSTS70021"]);

    let token_clients: Vec<_> = case
        .calls(AzureApi::Token)
        .into_iter()
        .map(|c| (c.client_id, c.status))
        .collect();
    assert_eq!(
        token_clients,
        [
            (Some(case.client_id.clone()), 200),
            (Some(worker_client.clone()), 200),
            (Some(worker_client.clone()), 400),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn the_service_account_annotation_names_the_application() -> anyhow::Result<()> {
    let case = case("annotation").await?;
    case.secret("db", "annotated");
    case.kube
        .put_pod_service_account(&case.pod, [(CLIENT_ID_ANNOTATION, case.client_id.as_str())]);
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;

    let request = case
        .request(&[obj("db", "secret")])?
        .without_parameter("clientID");
    assert_eq!(
        text(&mount(&mut client, request.build()?).await?, "db"),
        "annotated"
    );
    assert_eq!(
        case.kube
            .service_account_reads(case.pod.namespace(), case.pod.service_account()),
        1
    );
    let calls = case.calls(AzureApi::Token);
    assert_eq!(calls[0].client_id.as_deref(), Some(case.client_id.as_str()));

    // Without clientID and without the annotation, the mount says where to set one.
    let plain = PodFixture::new(case.pod.namespace(), "plain");
    case.kube
        .put_pod_service_account(&plain, std::iter::empty::<(&str, &str)>());
    let request = MountRequestBuilder::new(&plain)
        .parameter("keyvaultName", VAULT)
        .parameter("tenantId", TENANT)
        .parameter("objects", objects_yaml(&[obj("db", "secret")]))
        .token(
            AZURE_TOKEN_AUDIENCE,
            case.issuer.token(&plain, AZURE_TOKEN_AUDIENCE)?,
        );
    let result = mount(&mut client, request.build()?).await;
    assert_status(
        result,
        Code::InvalidArgument,
        &["clientID", CLIENT_ID_ANNOTATION, "plain"],
    );
    Ok(())
}

#[tokio::test]
async fn a_token_from_another_signer_never_reaches_entra() -> anyhow::Result<()> {
    let case = case("forged").await?;
    case.secret("db", "x");
    let provider = case.provider().await?;
    let foreign = TokenIssuer::new()?;
    let request = case.request(&[obj("db", "secret")])?.token(
        AZURE_TOKEN_AUDIENCE,
        foreign.token(&case.pod, AZURE_TOKEN_AUDIENCE)?,
    );

    let result = mount(&mut provider.client("azure").await?, request.build()?).await;
    assert_status(result, Code::PermissionDenied, &[AZURE_TOKEN_AUDIENCE]);
    assert!(
        case.standin.calls().is_empty(),
        "{:?}",
        case.standin.calls()
    );

    // Without a token for the audience the mount says what the CSIDriver must request.
    let request = case.request(&[obj("db", "secret")])?.without_tokens();
    let result = mount(&mut provider.client("azure").await?, request.build()?).await;
    assert_status(
        result,
        Code::InvalidArgument,
        &[AZURE_TOKEN_AUDIENCE, "tokenRequests"],
    );
    Ok(())
}

#[tokio::test]
async fn a_token_key_vault_no_longer_accepts_is_replaced_within_the_mount() -> anyhow::Result<()> {
    let case = case("expired").await?;
    case.secret("db", "fresh");
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;
    mount(&mut client, case.request(&[obj("db", "secret")])?.build()?).await?;

    // Key Vault stops accepting the cached token (revoked, say): the mount logs in again once and reads.
    case.standin.expire_tokens();
    let response = mount(&mut client, case.request(&[obj("db", "secret")])?.build()?).await?;
    assert_eq!(text(&response, "db"), "fresh");
    assert_eq!(case.calls(AzureApi::Token).len(), 2);
    let statuses: Vec<u16> = case
        .calls(AzureApi::KeyVault)
        .into_iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [200, 401, 200]);
    Ok(())
}
