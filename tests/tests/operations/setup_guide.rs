//! The README's Vault/OpenBao set-up guide cannot rot: `examples/vault-setup.sh` runs as written (with `bao`)
//! against a fresh OpenBao and a real PostgreSQL, then a pod of `team-a/app` mounts the KV password, database
//! credentials that log in to PostgreSQL and a certificate through Courier, with exactly the parameters of
//! `examples/vault-setup-spc.yaml`, which `courier-provider check` accepts.

use std::process::{Command, Stdio};

use anyhow::Context;
use courier_tests::calls::mount;
use courier_tests::objects::Obj;
use courier_tests::postgres::Postgres;
use courier_tests::{
    KUBERNETES_ISSUER, MountRequestBuilder, OpenBao, PodFixture, ProviderBuilder, ROOT_TOKEN, TokenIssuer, TokenOptions,
    TokenReviewServer, tools,
};
use serde_json::json;

#[tokio::test]
async fn the_guide_configures_openbao_for_a_courier_mount() -> anyhow::Result<()> {
    let bao = OpenBao::start().await?;
    let postgres = Postgres::start().await?;
    let issuer = TokenIssuer::new()?;
    let dir = tempfile::tempdir()?;
    let pubkey = dir.path().join("sa.pub");
    std::fs::write(&pubkey, issuer.public_key_pem())?;
    let root = tools::workspace_root();

    let output = Command::new("bash")
        .arg(root.join("examples/vault-setup.sh"))
        .env("CLI", tools::bao_program()?)
        .env("BAO_ADDR", bao.addr())
        .env("BAO_TOKEN", ROOT_TOKEN)
        .env("VAULT_ADDR", bao.addr())
        .env("VAULT_TOKEN", ROOT_TOKEN)
        .env("HOME", dir.path())
        .env("ISSUER", KUBERNETES_ISSUER)
        .env("ISSUER_PUBKEY_FILE", &pubkey)
        .env("PG_HOST", "127.0.0.1")
        .env("PG_PORT", postgres.port().to_string())
        .env("PG_USER", postgres.superuser())
        .env("PG_PASSWORD", postgres.superuser_password())
        .env("PKI_DOMAIN", "example.internal")
        .stdin(Stdio::null())
        .output()
        .context("running examples/vault-setup.sh")?;
    let shown = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the guide failed:\n{shown}");
    assert!(!shown.contains(postgres.superuser_password()), "the script printed the database password");
    // Re-running is safe (engines kept, roles rewritten).
    let again = Command::new("bash")
        .arg(root.join("examples/vault-setup.sh"))
        .envs([("CLI", tools::bao_program()?.into_os_string()), ("BAO_ADDR", bao.addr().into()), ("BAO_TOKEN", ROOT_TOKEN.into())])
        .envs([("HOME", dir.path().as_os_str()), ("ISSUER_PUBKEY_FILE", pubkey.as_os_str())])
        .env("ISSUER", KUBERNETES_ISSUER)
        .stdin(Stdio::null())
        .output()?;
    assert!(again.status.success(), "a second run failed:\n{}", String::from_utf8_lossy(&again.stderr));

    // The guide's next step: the application's secret.
    bao.kv2_put("secret", "app/config", json!({"password": "guide-password-41c2"})).await?;

    // The example class is what the mount below sends.
    let check = Command::new(tools::provider_binary()?)
        .args(["check", "--output", "json"])
        .arg(root.join("examples/vault-setup-spc.yaml"))
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&check.stdout)?;
    assert_eq!(check.status.code(), Some(0), "{report}");
    let class = &report["classes"][0];
    assert_eq!(class["audiences"], json!(["vault"]));
    assert_eq!(class["backend"]["authMount"], "jwt");
    assert_eq!(class["backend"]["role"], "app");

    let pod = PodFixture::new("team-a", "app");
    let objects = [
        Obj::new("password", "secret/data/app/config").key("password").file_permission("0400"),
        Obj::new("db-username", "database/creds/app").key("username"),
        Obj::new("db-password", "database/creds/app").key("password").file_permission("0400"),
        Obj::new("tls.crt", "pki/issue/app").put(json!({"common_name": "app.team-a.example.internal"})).key("certificate"),
    ];
    let request = MountRequestBuilder::new(&pod)
        .parameter("vaultAddress", bao.addr())
        .parameter("vaultAuthMountPath", "jwt")
        .parameter("roleName", "app")
        .parameter("objects", courier_tests::objects::objects_yaml(&objects))
        .token("vault", issuer.token(&pod, "vault")?)
        .build()?;
    let provider = ProviderBuilder::new().provider("courier").vault_addr(bao.addr()).trust_issuer(&issuer).start().await?;
    let mut client = provider.client("courier").await?;
    let response = mount(&mut client, request).await?;
    let file = |path: &str| -> anyhow::Result<(String, i32)> {
        let f = response.files.iter().find(|f| f.path == path).with_context(|| format!("no file {path}"))?;
        Ok((String::from_utf8(f.contents.clone())?, f.mode))
    };
    assert_eq!(file("password")?, ("guide-password-41c2".to_owned(), 0o400));
    let (user, _) = file("db-username")?;
    let (password, mode) = file("db-password")?;
    assert_eq!(mode, 0o400);
    assert!(postgres.can_login(&user, &password).await?, "the issued database credentials log in");
    assert!(file("tls.crt")?.0.starts_with("-----BEGIN CERTIFICATE-----"));

    // A pod of another service account is refused by the role the guide made.
    let other = PodFixture::new("team-a", "intruder");
    let refused = MountRequestBuilder::new(&other)
        .parameter("vaultAddress", bao.addr())
        .parameter("vaultAuthMountPath", "jwt")
        .parameter("roleName", "app")
        .parameter("objects", courier_tests::objects::objects_yaml(&objects[..1]))
        .token("vault", issuer.token(&other, "vault")?)
        .build()?;
    let status = mount(&mut client, refused).await.expect_err("the role is bound to team-a/app");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    Ok(())
}

#[tokio::test]
async fn the_guide_with_kubernetes_auth_and_static_secrets_only() -> anyhow::Result<()> {
    let bao = OpenBao::start().await?;
    let issuer = TokenIssuer::new()?;
    let review = TokenReviewServer::start(&issuer)?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, review.ca_certificate_pem())?;
    let reviewer = dir.path().join("reviewer.jwt");
    let reviewer_pod = PodFixture::new("kube-system", "token-reviewer");
    std::fs::write(&reviewer, issuer.token_with(&reviewer_pod, &TokenOptions::new([KUBERNETES_ISSUER]))?.jwt())?;

    let output = Command::new("bash")
        .arg(tools::workspace_root().join("examples/vault-setup.sh"))
        .env("CLI", tools::bao_program()?)
        .env("BAO_ADDR", bao.addr())
        .env("BAO_TOKEN", ROOT_TOKEN)
        .env("HOME", dir.path())
        .env("AUTH", "kubernetes")
        .env("KUBERNETES_HOST", review.url())
        .env("KUBERNETES_CA_FILE", &ca)
        .env("REVIEWER_JWT_FILE", &reviewer)
        .env("PG_HOST", "")
        .env("PKI_DOMAIN", "")
        .stdin(Stdio::null())
        .output()?;
    assert!(output.status.success(), "the guide failed:\n{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    bao.kv2_put("secret", "app/config", json!({"password": "guide-k8s-5d9e"})).await?;

    let provider = ProviderBuilder::new().provider("courier").vault_addr(bao.addr()).trust_issuer(&issuer).start().await?;
    let mut client = provider.client("courier").await?;
    let objects = [Obj::new("password", "secret/data/app/config").key("password")];
    let request_for = |pod: &PodFixture| -> anyhow::Result<_> {
        MountRequestBuilder::new(pod)
            .parameter("vaultAddress", bao.addr())
            .parameter("vaultAuthMountPath", "kubernetes")
            .parameter("roleName", "app")
            .parameter("objects", courier_tests::objects::objects_yaml(&objects))
            .token("vault", issuer.token(pod, "vault")?)
            .build()
    };
    let response = mount(&mut client, request_for(&PodFixture::new("team-a", "app"))?).await?;
    assert_eq!(response.files.first().map(|f| f.contents.as_slice()), Some(&b"guide-k8s-5d9e"[..]));
    // Another namespace's pod with the same service account name is refused.
    let status = mount(&mut client, request_for(&PodFixture::new("team-b", "app"))?).await.expect_err("bound to team-a");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(!review.reviews().is_empty(), "logins went through the TokenReview endpoint");
    Ok(())
}
