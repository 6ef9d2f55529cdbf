//! Every AWS call runs as the pod: IRSA (the role from the service account's annotation, read through the
//! Kubernetes API and cached briefly, assumed with the pod's token for `sts.amazonaws.com`) or EKS Pod Identity
//! (the pod's token for `pods.eks.amazonaws.com` traded at the agent). Refusals name what to fix.

use courier_proto::v1alpha1::MountResponse;
use courier_tests::calls::{assert_status, mount, text};
use courier_tests::{
    AwsFault, KubeFault, MountRequestBuilder, POD_IDENTITY_AUDIENCE, PodFixture, ProviderProcess,
    STS_AUDIENCE,
};
use tonic::{Code, Status};

use crate::support::{Case, ROLE_ANNOTATION, case, role, sm};

/// Mounts the case's secret `s` on the `aws` socket, the request shaped by `shape`.
async fn mount_s(
    case: &Case,
    provider: &ProviderProcess,
    shape: impl FnOnce(MountRequestBuilder) -> anyhow::Result<MountRequestBuilder>,
) -> anyhow::Result<Result<MountResponse, Status>> {
    let request = shape(case.request(&[sm(&case.name("s")).alias("s")])?)?.build()?;
    Ok(mount(&mut provider.client("aws").await?, request).await)
}

#[tokio::test]
async fn irsa_assumes_the_annotated_role_with_the_pods_token() -> anyhow::Result<()> {
    let case = case("irsa").await?;
    case.secret("s", "as-the-pod").await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount_s(&case, &provider, Ok).await??;

    assert_eq!(text(&response, "s"), "as-the-pod");
    // The proxy checked the token as STS does: signed by the cluster, audience sts.amazonaws.com, and a subject
    // the role trusts. So a passing mount proves the provider sent the pod's own token.
    let sts = case.calls("sts", "AssumeRoleWithWebIdentity");
    assert_eq!(sts.len(), 1, "{sts:?}");
    assert_eq!(sts[0].status, 200);
    assert_eq!(
        sts[0].form("RoleArn").as_deref(),
        Some(case.role_arn.as_str())
    );
    let issued = sts[0].issued.as_ref().map(|c| c.access_key_id.clone());
    assert!(issued.is_some());
    // The read was signed with the credentials STS issued for the pod, and nothing else.
    let reads = case.calls("secretsmanager", "GetSecretValue");
    assert!(!reads.is_empty());
    assert!(reads.iter().all(|c| c.access_key_id == issued), "{reads:?}");
    assert_eq!(
        case.kube
            .service_account_reads(case.pod.namespace(), case.pod.service_account()),
        1
    );
    assert!(
        case.agent.requests().is_empty(),
        "IRSA never asks the Pod Identity agent"
    );
    Ok(())
}

#[tokio::test]
async fn the_service_account_and_credentials_are_cached_across_mounts() -> anyhow::Result<()> {
    let case = case("irsa-cache").await?;
    case.secret("s", "x").await?;
    let provider = case.provider(&["aws"]).await?;
    let mut client = provider.client("aws").await?;

    for _ in 0..3 {
        mount(
            &mut client,
            case.request(&[sm(&case.name("s")).alias("s")])?.build()?,
        )
        .await?;
    }

    assert_eq!(
        case.kube
            .service_account_reads(case.pod.namespace(), case.pod.service_account()),
        1,
        "read through the Kubernetes API once, then cached: {:?}",
        case.kube.requests()
    );
    assert_eq!(case.calls("sts", "AssumeRoleWithWebIdentity").len(), 1);
    assert_eq!(case.calls("secretsmanager", "GetSecretValue").len(), 3);
    Ok(())
}

#[tokio::test]
async fn identities_never_share_roles_or_credentials() -> anyhow::Result<()> {
    let case = case("irsa-two").await?;
    case.secret("s", "x").await?;
    let other = PodFixture::new(case.pod.namespace(), "worker");
    let other_role = role(&format!("{}-worker", case.id));
    case.add_identity(&other, &other_role);
    let provider = case.provider(&["aws"]).await?;
    let mut client = provider.client("aws").await?;

    mount(
        &mut client,
        case.request(&[sm(&case.name("s")).alias("s")])?.build()?,
    )
    .await?;
    mount(
        &mut client,
        case.request_for(&other, &[sm(&case.name("s")).alias("s")])?
            .build()?,
    )
    .await?;

    let sts = case.calls("sts", "AssumeRoleWithWebIdentity");
    let roles: Vec<_> = sts.iter().filter_map(|c| c.form("RoleArn")).collect();
    assert_eq!(roles, [case.role_arn.clone(), other_role], "{sts:?}");
    let keys: Vec<_> = case
        .calls("secretsmanager", "GetSecretValue")
        .into_iter()
        .map(|c| c.access_key_id)
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "each pod reads with its own credentials");
    Ok(())
}

#[tokio::test]
async fn a_role_that_does_not_trust_the_pod_is_permission_denied() -> anyhow::Result<()> {
    let case = case("irsa-untrusted").await?;
    case.secret("s", "x").await?;
    let stranger = PodFixture::new(case.pod.namespace(), "stranger");
    // Annotated with a role whose trust policy does not name this service account.
    let untrusting = role(&format!("{}-untrusting", case.id));
    case.kube
        .put_pod_service_account(&stranger, [(ROLE_ANNOTATION, untrusting.as_str())]);
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request_for(&stranger, &[sm(&case.name("s")).alias("s")])?
            .build()?,
    )
    .await;

    assert_status(
        result,
        Code::PermissionDenied,
        &[&untrusting, "AssumeRoleWithWebIdentity", "trust"],
    );
    assert!(case.calls("secretsmanager", "GetSecretValue").is_empty());
    Ok(())
}

#[tokio::test]
async fn a_service_account_without_the_annotation_is_a_clear_error() -> anyhow::Result<()> {
    let case = case("irsa-noannot").await?;
    case.secret("s", "x").await?;
    let plain = PodFixture::new(case.pod.namespace(), "plain");
    case.kube
        .put_pod_service_account(&plain, std::iter::empty::<(&str, &str)>());
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request_for(&plain, &[sm(&case.name("s")).alias("s")])?
            .build()?,
    )
    .await;

    assert_status(
        result,
        Code::InvalidArgument,
        &[ROLE_ANNOTATION, &format!("{}/plain", case.pod.namespace())],
    );
    assert!(case.proxy.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_missing_service_account_is_a_clear_error() -> anyhow::Result<()> {
    let case = case("irsa-nosa").await?;
    let ghost = PodFixture::new(case.pod.namespace(), "ghost");
    let provider = case.provider(&["aws"]).await?;

    let result = mount(
        &mut provider.client("aws").await?,
        case.request_for(&ghost, &[sm(&case.name("s")).alias("s")])?
            .build()?,
    )
    .await;

    let status = match result {
        Ok(response) => panic!("a mount for a missing service account succeeded: {response:?}"),
        Err(status) => status,
    };
    courier_tests::calls::assert_message_mentions(
        status.message(),
        &[&format!("{}/ghost", case.pod.namespace())],
    );
    assert_ne!(status.code(), Code::Ok);
    Ok(())
}

#[tokio::test]
async fn a_provider_without_rbac_for_service_accounts_is_permission_denied() -> anyhow::Result<()> {
    let case = case("irsa-rbac").await?;
    case.kube.set_fault(Some(KubeFault::Forbidden));
    let provider = case.provider(&["aws"]).await?;

    let result = mount_s(&case, &provider, Ok).await?;

    assert_status(
        result,
        Code::PermissionDenied,
        &["serviceaccounts", case.pod.namespace()],
    );
    Ok(())
}

#[tokio::test]
async fn an_unavailable_kubernetes_api_is_unavailable() -> anyhow::Result<()> {
    let case = case("irsa-kube-down").await?;
    case.kube.set_fault(Some(KubeFault::Unavailable));
    // A shorter mount deadline than the default 45 s keeps the test quick; the lookup must give up well before it
    // and say which service account it could not read.
    let provider = case
        .provider_builder(&["aws"])
        .arg("--mount-timeout")
        .arg("20s")
        .start()
        .await?;

    let result = mount_s(&case, &provider, Ok).await?;

    assert_status(result, Code::Unavailable, &["service account"]);
    Ok(())
}

#[tokio::test]
async fn sts_unavailable_is_unavailable_not_denied() -> anyhow::Result<()> {
    let case = case("irsa-sts-down").await?;
    case.proxy.inject(AwsFault::status(503).service("sts"));
    let provider = case.provider(&["aws"]).await?;

    let result = mount_s(&case, &provider, Ok).await?;

    assert_status(result, Code::Unavailable, &["AssumeRoleWithWebIdentity"]);
    Ok(())
}

#[tokio::test]
async fn without_a_token_for_sts_the_error_points_at_token_requests() -> anyhow::Result<()> {
    let case = case("irsa-notoken").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount_s(&case, &provider, |r| {
        Ok(r.without_tokens()
            .token("vault", case.token(&case.pod, "vault")?))
    })
    .await?;

    assert_status(
        result,
        Code::InvalidArgument,
        &[STS_AUDIENCE, "tokenRequests"],
    );
    assert!(case.proxy.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn pod_identity_trades_the_pods_token_at_the_agent() -> anyhow::Result<()> {
    let case = case("podid").await?;
    case.secret("s", "via-agent").await?;
    let provider = case.provider(&["aws"]).await?;

    let response = mount_s(&case, &provider, |r| {
        Ok(r.parameter("usePodIdentity", "true"))
    })
    .await??;

    assert_eq!(text(&response, "s"), "via-agent");
    assert_eq!(
        case.agent.served_service_accounts(),
        [format!(
            "{}/{}",
            case.pod.namespace(),
            case.pod.service_account()
        )]
    );
    let issued = case.agent.issued_access_key_ids();
    let reads = case.calls("secretsmanager", "GetSecretValue");
    assert!(!reads.is_empty());
    assert!(
        reads
            .iter()
            .all(|c| c.access_key_id.as_ref() == issued.first()),
        "reads are signed with the agent's credentials: {reads:?}"
    );
    assert!(case.calls("sts", "AssumeRoleWithWebIdentity").is_empty());
    assert!(
        case.kube.requests_beyond_issuer_keys().is_empty(),
        "Pod Identity reads nothing from the Kubernetes API but the issuer's keys"
    );
    Ok(())
}

#[tokio::test]
async fn pod_identity_refused_by_the_agent_is_permission_denied() -> anyhow::Result<()> {
    let case = case("podid-refused").await?;
    case.agent
        .disassociate(case.pod.namespace(), case.pod.service_account());
    let provider = case.provider(&["aws"]).await?;

    let result = mount_s(&case, &provider, |r| {
        Ok(r.parameter("usePodIdentity", "true"))
    })
    .await?;

    assert_status(
        result,
        Code::PermissionDenied,
        &["Pod Identity", "association"],
    );
    assert!(case.proxy.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn pod_identity_with_only_an_sts_token_points_at_token_requests() -> anyhow::Result<()> {
    let case = case("podid-notoken").await?;
    let provider = case.provider(&["aws"]).await?;

    let result = mount_s(&case, &provider, |r| {
        Ok(r.parameter("usePodIdentity", "true")
            .without_tokens()
            .token(STS_AUDIENCE, case.token(&case.pod, STS_AUDIENCE)?))
    })
    .await?;

    assert_status(
        result,
        Code::InvalidArgument,
        &[POD_IDENTITY_AUDIENCE, "tokenRequests"],
    );
    assert!(case.agent.requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_failing_agent_is_unavailable() -> anyhow::Result<()> {
    let case = case("podid-500").await?;
    case.agent.set_fault(Some(500));
    let provider = case.provider(&["aws"]).await?;

    let result = mount_s(&case, &provider, |r| {
        Ok(r.parameter("usePodIdentity", "true"))
    })
    .await?;

    assert_status(result, Code::Unavailable, &["Pod Identity"]);
    Ok(())
}

#[tokio::test]
async fn concurrent_mounts_of_one_identity_share_one_exchange() -> anyhow::Result<()> {
    let case = case("irsa-burst").await?;
    case.secret("s", "x").await?;
    let provider = case.provider(&["aws"]).await?;
    let mut mounts = Vec::new();
    for _ in 0..8 {
        let mut client = provider.client("aws").await?;
        let request = case.request(&[sm(&case.name("s")).alias("s")])?.build()?;
        mounts.push(tokio::spawn(
            async move { mount(&mut client, request).await },
        ));
    }

    for handle in mounts {
        let response = handle.await??;
        assert_eq!(text(&response, "s"), "x");
    }

    assert_eq!(
        case.calls("sts", "AssumeRoleWithWebIdentity").len(),
        1,
        "a burst of mounts of one pod costs one credential exchange"
    );
    assert_eq!(
        case.kube
            .service_account_reads(case.pod.namespace(), case.pod.service_account()),
        1,
        "and one service-account read: {:?}",
        case.kube.requests()
    );
    Ok(())
}
