//! Logging in as the pod: JWT auth and kubernetes auth (against the fake TokenReview API), and refusals.

use courier_tests::calls::{assert_status, text};
use courier_tests::{
    KUBERNETES_ISSUER, KubernetesRole, PodFixture, TokenIssuer, TokenOptions, TokenReviewServer,
};
use serde_json::json;
use tonic::Code;

use crate::support::{Case, SERVICE_ACCOUNT, mount_on_vault, obj, plain};

/// A case whose role lives on a kubernetes auth mount backed by a fresh TokenReview fake.
struct KubernetesCase {
    case: Case,
    review: TokenReviewServer,
    mount: String,
}

async fn kubernetes_case(
    label: &str,
    bound_namespaces: Option<Vec<String>>,
) -> anyhow::Result<KubernetesCase> {
    let backend = plain().await?;
    let case = backend.case(label).await?;
    let review = TokenReviewServer::start(&backend.issuer)?;
    // OpenBao calls the TokenReview API as a reviewer service account, with a token for the API server.
    let reviewer = PodFixture::new("kube-system", "token-reviewer");
    let reviewer_token = backend
        .issuer
        .token_with(&reviewer, &TokenOptions::new([KUBERNETES_ISSUER]))?;
    let mount = format!("k8s-{}", case.id);
    case.bao()
        .enable_kubernetes_auth(
            &mount,
            &review.url(),
            review.ca_certificate_pem(),
            reviewer_token.jwt(),
        )
        .await?;
    case.bao()
        .kubernetes_role(
            &mount,
            &KubernetesRole {
                name: case.role.clone(),
                service_account_names: vec![SERVICE_ACCOUNT.to_owned()],
                namespaces: bound_namespaces
                    .unwrap_or_else(|| vec![case.pod.namespace().to_owned()]),
                audience: Some("vault".to_owned()),
                policies: vec![case.id.clone()],
            },
        )
        .await?;
    case.put("app", json!({"password": format!("k8s-{label}")}))
        .await?;
    Ok(KubernetesCase {
        case,
        review,
        mount,
    })
}

#[tokio::test]
async fn kubernetes_auth_reviews_the_pods_token() -> anyhow::Result<()> {
    let k = kubernetes_case("k8s-auth", None).await?;
    let request = k
        .case
        .request(&[obj("password", &k.case.secret_path("app")).key("password")])?
        .parameter("vaultAuthMountPath", &k.mount)
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(text(&response, "password"), "k8s-k8s-auth");
    let reviews = k.review.reviews();
    let subject = k.case.pod.subject();
    assert!(
        reviews.iter().any(|r| r.authenticated
            && r.requested_audiences == ["vault"]
            && r.username.as_deref() == Some(subject.as_str())),
        "OpenBao never had the pod's token reviewed for audience vault: {reviews:?}"
    );
    Ok(())
}

#[tokio::test]
async fn vault_kubernetes_mount_path_is_the_older_spelling() -> anyhow::Result<()> {
    let k = kubernetes_case("k8s-old-key", None).await?;
    let request = k
        .case
        .request(&[obj("password", &k.case.secret_path("app")).key("password")])?
        .without_parameter("vaultAuthMountPath")
        .parameter("vaultKubernetesMountPath", &k.mount)
        .build()?;

    let response = mount_on_vault(request).await??;

    assert_eq!(text(&response, "password"), "k8s-k8s-old-key");
    Ok(())
}

#[tokio::test]
async fn kubernetes_role_for_another_namespace_is_permission_denied() -> anyhow::Result<()> {
    let k = kubernetes_case("k8s-wrong-ns", Some(vec!["elsewhere".to_owned()])).await?;
    let request = k
        .case
        .request(&[obj("password", &k.case.secret_path("app")).key("password")])?
        .parameter("vaultAuthMountPath", &k.mount)
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::PermissionDenied,
        &[&k.case.role, &k.mount, "vault"],
    );
    Ok(())
}

#[tokio::test]
async fn jwt_role_not_bound_to_the_pods_namespace_is_permission_denied() -> anyhow::Result<()> {
    let mut case = plain().await?.case("jwt-wrong-ns").await?;
    case.put("app", json!({"password": "unreachable"})).await?;
    // The same service account name, in a namespace the role does not admit.
    case.pod = PodFixture::new(
        format!("other-{}", case.id),
        crate::support::SERVICE_ACCOUNT,
    );
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::PermissionDenied,
        &[&case.role, "jwt", "vault"],
    );
    Ok(())
}

#[tokio::test]
async fn token_only_for_another_audience_is_invalid_argument() -> anyhow::Result<()> {
    let case = plain().await?.case("aud-missing").await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .without_tokens()
        .token("not-vault", case.token("not-vault")?)
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(result, Code::InvalidArgument, &["tokenRequests", "vault"]);
    Ok(())
}

#[tokio::test]
async fn audience_the_role_does_not_accept_is_permission_denied() -> anyhow::Result<()> {
    let case = plain().await?.case("aud-rejected").await?;
    case.put("app", json!({"password": "unreachable"})).await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .parameter("audience", "wrong-aud")
        .without_tokens()
        .token("wrong-aud", case.token("wrong-aud")?)
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(
        result,
        Code::PermissionDenied,
        &[&case.role, "jwt", "wrong-aud"],
    );
    Ok(())
}

#[tokio::test]
async fn token_from_an_untrusted_signer_is_permission_denied() -> anyhow::Result<()> {
    let case = plain().await?.case("untrusted").await?;
    let stranger = TokenIssuer::new()?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .token("vault", stranger.token(&case.pod, "vault")?)
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(result, Code::PermissionDenied, &[&case.role, "jwt"]);
    Ok(())
}

#[tokio::test]
async fn read_outside_the_policy_is_permission_denied() -> anyhow::Result<()> {
    let case = plain().await?.case("policy").await?;
    let forbidden = format!("forbidden-{}/app", case.id);
    case.bao()
        .kv2_put("secret", &forbidden, json!({"password": "not-for-you"}))
        .await?;
    let request = case
        .request(&[obj("stolen", &format!("secret/data/{forbidden}")).key("password")])?
        .build()?;

    let result = mount_on_vault(request).await?;

    let status = assert_status(result, Code::PermissionDenied, &["stolen"]);
    assert!(!status.message().contains("not-for-you"));
    Ok(())
}
