//! `vaultNamespace`: login, reads and revocations go to the namespace (`X-Vault-Namespace`); without it the
//! same SecretProviderClass talks to the root namespace and fails clearly.

use std::time::Duration;

use courier_tests::calls::{assert_status, mount, object_version, text};
use courier_tests::{KUBERNETES_ISSUER, PodFixture};
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

use crate::support::{Env, JWT_MOUNT, Provider, env, eventually, obj, provider_builder};

/// Creates namespace `ns` with JWT auth at `jwt` (trusting the test issuer), the policy `app` with `policy`,
/// and the JWT role `role` for `pod`'s service account with that policy.
async fn namespace_with_role(
    env: &Env,
    ns: &str,
    role: &str,
    pod: &PodFixture,
    policy: &str,
) -> anyhow::Result<()> {
    let bao = &env.bao;
    bao.create_namespace(ns).await?;
    let inside = |method: Method, path: String, body: Value| async move {
        bao.api_in_namespace(Some(ns), method, &path, Some(body))
            .await
    };
    inside(
        Method::POST,
        format!("sys/auth/{JWT_MOUNT}"),
        json!({"type": "jwt"}),
    )
    .await?;
    inside(
        Method::POST,
        format!("auth/{JWT_MOUNT}/config"),
        json!({"jwt_validation_pubkeys": [env.issuer.public_key_pem()], "bound_issuer": KUBERNETES_ISSUER}),
    )
    .await?;
    inside(
        Method::PUT,
        "sys/policies/acl/app".to_owned(),
        json!({"policy": policy}),
    )
    .await?;
    inside(
        Method::POST,
        format!("auth/{JWT_MOUNT}/role/{role}"),
        json!({
            "role_type": "jwt",
            "bound_audiences": ["vault"],
            "user_claim": "sub",
            "bound_subject": pod.subject(),
            "bound_claims": {
                "/kubernetes.io/namespace": pod.namespace(),
                "/kubernetes.io/serviceaccount/name": pod.service_account(),
            },
            "token_policies": ["app"],
            "token_ttl": "10m",
        }),
    )
    .await?;
    Ok(())
}

fn request(
    env: &Env,
    pod: &PodFixture,
    role: &str,
    objects: &[crate::support::Obj],
) -> anyhow::Result<courier_tests::MountRequestBuilder> {
    Ok(courier_tests::MountRequestBuilder::new(pod)
        .parameter("roleName", role)
        .parameter("vaultAddress", env.bao.addr())
        .parameter("vaultAuthMountPath", JWT_MOUNT)
        .parameter("objects", crate::support::objects_yaml(objects))
        .token("vault", env.issuer.token(pod, "vault")?))
}

#[tokio::test]
async fn vault_namespace_selects_the_namespace_and_without_it_the_mount_fails_clearly()
-> anyhow::Result<()> {
    let env = env().await?;
    let ns = "team-a";
    let role = "app-in-team-a";
    let pod = PodFixture::new("ns-team-a", "app");
    namespace_with_role(
        env,
        ns,
        role,
        &pod,
        r#"path "kv/data/*" { capabilities = ["read"] }"#,
    )
    .await?;
    env.bao
        .api_in_namespace(
            Some(ns),
            Method::POST,
            "sys/mounts/kv",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await?;
    env.bao
        .api_in_namespace(
            Some(ns),
            Method::POST,
            "kv/data/app",
            Some(json!({"data": {"password": "from-team-a"}})),
        )
        .await?;
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let objects = [obj("password", "kv/data/app").key("password")];
    let with_ns = request(env, &pod, role, &objects)?.parameter("vaultNamespace", ns);

    let response = mount(&mut client, with_ns.build()?).await?;
    assert_eq!(text(&response, "password"), "from-team-a");
    assert!(!object_version(&response, "password").is_empty());
    // The other spelling works the same.
    let openbao_spelling = request(env, &pod, role, &objects)?.parameter("openbaoNamespace", ns);
    assert_eq!(
        text(
            &mount(&mut client, openbao_spelling.build()?).await?,
            "password"
        ),
        "from-team-a"
    );

    // Without the namespace the login goes to the root namespace's jwt mount, which has no such role.
    let without = request(env, &pod, role, &objects)?.build()?;
    assert_status(
        mount(&mut client, without).await,
        Code::PermissionDenied,
        &["login refused", role, "auth/jwt/login"],
    );

    // A namespace that does not exist: the login path is not there either.
    let wrong = request(env, &pod, role, &objects)?
        .parameter("vaultNamespace", "team-nope")
        .build()?;
    let status = mount(&mut client, wrong).await;
    let status = match status {
        Ok(response) => panic!("a mount in a missing namespace succeeded: {response:?}"),
        Err(status) => status,
    };
    assert!(
        matches!(status.code(), Code::PermissionDenied | Code::NotFound),
        "{:?}: {}",
        status.code(),
        status.message()
    );
    // OpenBao's own reason ("namespace not found") is passed on.
    courier_tests::calls::assert_message_mentions(status.message(), &["namespace", role]);
    eprintln!(
        "missing namespace: {:?}: {}",
        status.code(),
        status.message()
    );
    Ok(())
}

/// A lease issued inside a namespace is revoked inside it: the revocation carries the namespace too.
#[tokio::test]
async fn leases_in_a_namespace_are_kept_and_revoked_there() -> anyhow::Result<()> {
    let env = env().await?;
    let ns = "team-b";
    let role = "app-in-team-b";
    let pod = PodFixture::new("ns-team-b", "app");
    namespace_with_role(
        env,
        ns,
        role,
        &pod,
        r#"
path "pki/issue/*" { capabilities = ["create", "update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#,
    )
    .await?;
    let inside = |method: Method, path: &'static str, body: Value| async move {
        env.bao
            .api_in_namespace(Some(ns), method, path, Some(body))
            .await
    };
    inside(Method::POST, "sys/mounts/pki", json!({"type": "pki"})).await?;
    inside(
        Method::POST,
        "sys/mounts/pki/tune",
        json!({"max_lease_ttl": "87600h"}),
    )
    .await?;
    inside(
        Method::POST,
        "pki/root/generate/internal",
        json!({"common_name": "Team B Root", "key_type": "ec", "key_bits": 256, "ttl": "87600h"}),
    )
    .await?;
    inside(
        Method::POST,
        "pki/roles/leased",
        json!({"allowed_domains": ["team-b.internal"], "allow_subdomains": true, "key_type": "ec",
               "key_bits": 256, "max_ttl": "1h", "generate_lease": true}),
    )
    .await?;
    let provider = Provider::start(
        provider_builder().await?
            .arg("--lease-revoke-grace")
            .arg("2s")
            .arg("--lease-sweep-interval")
            .arg("500ms"),
    )
    .await?;
    let mut client = provider.client().await?;
    let objects = [obj("tls.crt", "pki/issue/leased")
        .key("certificate")
        .method("PUT")
        .args(json!({"common_name": "app.team-b.internal", "ttl": "10m"}))];
    let request = request(env, &pod, role, &objects)?
        .parameter("vaultNamespace", ns)
        .parameter("revokeOnUnmount", "true")
        .build()?;

    let first = mount(&mut client, request.clone()).await?;
    let again = mount(&mut client, request).await?;
    assert_eq!(
        text(&again, "tls.crt"),
        text(&first, "tls.crt"),
        "the certificate was not kept"
    );
    let held = env.bao.lease_ids_in(Some(ns), "pki/issue/leased").await?;
    assert_eq!(held.len(), 1, "{held:?}");

    eventually(
        Duration::from_secs(12),
        "the idle lease revoked inside the namespace",
        || async {
            Ok(env
                .bao
                .lease_ids_in(Some(ns), "pki/issue/leased")
                .await?
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    assert_eq!(provider.lease_events("revoked").await?, 1.0);
    Ok(())
}
