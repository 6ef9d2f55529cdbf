//! This binary's OpenBao: JWT auth trusting a test issuer, a role for `ops/app` that reads its KV subtree and
//! issues certificates, and a provider builder pointed at it.

use anyhow::Context;
use courier_tests::objects::{Obj, objects_yaml};
use courier_tests::{JwtRole, KUBERNETES_ISSUER, MountRequestBuilder, OpenBao, PodFixture, ProviderBuilder, TokenIssuer};
use serde_json::json;
use tokio::sync::OnceCell;

pub(crate) const JWT_MOUNT: &str = "jwt";
pub(crate) const ROLE: &str = "ops-app";
pub(crate) const NAMESPACE: &str = "ops";
pub(crate) const SERVICE_ACCOUNT: &str = "app";
/// The value stored at `secret/data/ops/app` under `password`.
pub(crate) const PASSWORD: &str = "ops-password-7f3a";

pub(crate) struct Backend {
    pub(crate) bao: OpenBao,
    pub(crate) issuer: TokenIssuer,
}

static SERVER: OnceCell<Backend> = OnceCell::const_new();

pub(crate) async fn backend() -> anyhow::Result<&'static Backend> {
    SERVER
        .get_or_try_init(|| async {
            let bao = OpenBao::start().await.context("starting OpenBao")?;
            let issuer = TokenIssuer::new()?;
            bao.enable_jwt_auth(JWT_MOUNT, &[issuer.public_key_pem().to_owned()], KUBERNETES_ISSUER).await?;
            bao.write_policy(
                ROLE,
                r#"path "secret/data/ops/*" { capabilities = ["read"] }
path "pki/issue/ops" { capabilities = ["update"] }"#,
            )
            .await?;
            bao.jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: ROLE.to_owned(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: NAMESPACE.to_owned(),
                    service_account: SERVICE_ACCOUNT.to_owned(),
                    policies: vec![ROLE.to_owned()],
                },
            )
            .await?;
            bao.kv2_put("secret", "ops/app", json!({"password": PASSWORD})).await?;
            bao.enable_pki("pki", "ops.example.internal").await?;
            bao.pki_role("pki", "ops", "ops.example.internal").await?;
            Ok(Backend { bao, issuer })
        })
        .await
}

impl Backend {
    /// A mount request of a new pod of `ops/app` for `objects`.
    pub(crate) fn request(&self, objects: &[Obj]) -> anyhow::Result<MountRequestBuilder> {
        let pod = PodFixture::new(NAMESPACE, SERVICE_ACCOUNT);
        Ok(MountRequestBuilder::new(&pod)
            .parameter("roleName", ROLE)
            .parameter("vaultAddress", self.bao.addr())
            .parameter("vaultAuthMountPath", JWT_MOUNT)
            .parameter("objects", objects_yaml(objects))
            .token("vault", self.issuer.token(&pod, "vault")?))
    }

    /// A provider on the `vault` socket for this server, with health and metrics on an ephemeral port and no
    /// `RUST_LOG` from the environment.
    pub(crate) fn provider(&self) -> ProviderBuilder {
        ProviderBuilder::new()
            .provider("vault")
            .vault_addr(self.bao.addr())
            .trust_issuer(&self.issuer)
            .health_addr("127.0.0.1:0")
            .metrics_addr("127.0.0.1:0")
            .env("RUST_LOG", "")
    }
}

/// The password object and a certificate (a dynamic secret with a lifetime, so lease events are counted).
pub(crate) fn objects() -> Vec<Obj> {
    vec![
        Obj::new("password", "secret/data/ops/app").key("password"),
        Obj::new("tls.crt", "pki/issue/ops").put(json!({"common_name": "app.ops.example.internal"})).key("certificate"),
    ]
}
