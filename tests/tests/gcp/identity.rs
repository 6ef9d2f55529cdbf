//! Whose identity reads: the pod's, exchanged once per identity in a burst, never shared between identities, and
//! never a token the cluster did not issue for the pod.

use courier_tests::calls::{assert_status, mount, text};
use courier_tests::{GcpApi, PodFixture, TokenIssuer};
use tonic::Code;

use crate::support::{POOL, case, sec};

#[tokio::test]
async fn a_burst_of_mounts_exchanges_the_token_once() -> anyhow::Result<()> {
    let case = case("burst").await?;
    case.secret("s", "burst-value").await?;
    // Every token verified against the cluster's keys, so tokens of one service account share one identity.
    let provider = case.provider_builder(&["gcp"]).token_verification("required").start().await?;
    let client = provider.client("gcp").await?;

    let mounts: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            let request = case.request(&[sec(&case.version("s", "1"), "s")]).and_then(|r| r.build());
            async move { mount(&mut client, request?).await.map_err(anyhow::Error::from) }
        })
        .collect();
    for response in futures::future::join_all(mounts).await {
        assert_eq!(text(&response?, "s"), "burst-value");
    }
    // One more, later: still cached.
    mount(&mut client.clone(), case.request(&[sec(&case.version("s", "1"), "s")])?.build()?).await?;

    assert_eq!(case.calls(GcpApi::Sts).len(), 1, "{:?}", case.calls(GcpApi::Sts));
    assert_eq!(case.calls(GcpApi::IamCredentials).len(), 1);
    let reads = case.calls(GcpApi::SecretManager);
    assert_eq!(reads.len(), 9);
    assert!(reads.iter().all(|c| c.principal.as_deref() == Some(case.gsa.as_str())), "{reads:?}");
    assert_eq!(case.kube.service_account_reads(case.pod.namespace(), case.pod.service_account()), 1);
    Ok(())
}

#[tokio::test]
async fn two_identities_never_share_tokens() -> anyhow::Result<()> {
    let case = case("two").await?;
    case.secret("mine", "for-app").await?;
    case.secret("theirs", "for-worker").await?;
    let worker = PodFixture::new(case.pod.namespace(), "worker");
    let worker_gsa = format!("worker-{}", case.gsa);
    case.add_identity(&worker, &worker_gsa);
    case.standin.restrict(&format!("projects/{}/secrets/mine", case.project), &[&case.gsa]);
    case.standin.restrict(&format!("projects/{}/secrets/theirs", case.project), &[&worker_gsa]);
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;

    let mine = mount(&mut client, case.request(&[sec(&case.version("mine", "1"), "f")])?.build()?).await?;
    assert_eq!(text(&mine, "f"), "for-app");
    let theirs = mount(&mut client, case.request_for(&worker, &[sec(&case.version("theirs", "1"), "f")])?.build()?).await?;
    assert_eq!(text(&theirs, "f"), "for-worker");
    // Each pod reads only with its own identity: the worker's cached token does not open the app's secret.
    let result = mount(&mut client, case.request_for(&worker, &[sec(&case.version("mine", "1"), "f")])?.build()?).await;
    assert_status(result, Code::PermissionDenied, &["PERMISSION_DENIED"]);

    let principals: Vec<_> = case.calls(GcpApi::Sts).into_iter().filter_map(|c| c.principal).collect();
    assert_eq!(principals, [format!("{}/app", case.pod.namespace()), format!("{}/worker", case.pod.namespace())]);
    let readers: Vec<_> = case.calls(GcpApi::SecretManager).into_iter().filter_map(|c| c.principal).collect();
    assert_eq!(readers, [case.gsa.clone(), worker_gsa.clone(), worker_gsa]);
    Ok(())
}

#[tokio::test]
async fn without_an_annotation_the_federated_identity_reads() -> anyhow::Result<()> {
    let case = case("federated").await?;
    case.secret("s", "direct").await?;
    let plain = PodFixture::new(case.pod.namespace(), "plain");
    case.kube.put_pod_service_account(&plain, std::iter::empty::<(&str, &str)>());
    let provider = case.provider(&["gcp"]).await?;

    let response = mount(&mut provider.client("gcp").await?, case.request_for(&plain, &[sec(&case.version("s", "1"), "f")])?.build()?).await?;
    assert_eq!(text(&response, "f"), "direct");
    assert!(case.calls(GcpApi::IamCredentials).is_empty());
    let readers: Vec<_> = case.calls(GcpApi::SecretManager).into_iter().filter_map(|c| c.principal).collect();
    assert_eq!(readers, [format!("{}/plain", case.pod.namespace())]);
    Ok(())
}

#[tokio::test]
async fn a_token_from_another_signer_never_reaches_google() -> anyhow::Result<()> {
    let case = case("forged").await?;
    case.secret("s", "x").await?;
    let provider = case.provider(&["gcp"]).await?;
    let foreign = TokenIssuer::new()?;
    let request = courier_tests::MountRequestBuilder::new(&case.pod)
        .parameter("secrets", crate::support::secrets_yaml(&[sec(&case.version("s", "1"), "f")]))
        .token(POOL, foreign.token(&case.pod, POOL)?);

    let result = mount(&mut provider.client("gcp").await?, request.build()?).await;
    assert_status(result, Code::PermissionDenied, &[POOL]);
    assert!(case.standin.calls().is_empty(), "{:?}", case.standin.calls());
    Ok(())
}
