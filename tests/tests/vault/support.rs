//! The shared OpenBao servers of this binary, and per-test cases on them.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use courier_proto::v1alpha1::{MountRequest, MountResponse};
use courier_tests::calls::mount;
use courier_tests::{
    JwtRole, KUBERNETES_ISSUER, MintedToken, MountRequestBuilder, OpenBao, OpenBaoOptions,
    PodFixture, ProviderBuilder, ProviderProcess, TokenIssuer,
};
use serde_json::Value;
use tokio::sync::OnceCell;
use tonic::Status;

pub(crate) use courier_tests::objects::{Obj, obj, objects_yaml};

/// Where JWT auth is mounted on the shared servers.
pub(crate) const JWT_MOUNT: &str = "jwt";
/// The service account every case's pod runs as.
pub(crate) const SERVICE_ACCOUNT: &str = "app";

/// An OpenBao server with JWT auth trusting `issuer`.
pub(crate) struct Backend {
    pub(crate) bao: OpenBao,
    pub(crate) issuer: TokenIssuer,
}

static PLAIN: OnceCell<Backend> = OnceCell::const_new();
static TLS: OnceCell<Backend> = OnceCell::const_new();
static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

/// The shared plain-HTTP server, started on first use.
pub(crate) async fn plain() -> anyhow::Result<&'static Backend> {
    PLAIN
        .get_or_try_init(|| Backend::start(OpenBaoOptions::default()))
        .await
}

/// The shared TLS server (`-dev-tls`), started on first use.
pub(crate) async fn tls() -> anyhow::Result<&'static Backend> {
    TLS.get_or_try_init(|| Backend::start(OpenBaoOptions::default().tls()))
        .await
}

impl Backend {
    async fn start(options: OpenBaoOptions) -> anyhow::Result<Self> {
        let bao = OpenBao::start_with(options)
            .await
            .context("starting OpenBao")?;
        let issuer = TokenIssuer::new()?;
        bao.enable_jwt_auth(
            JWT_MOUNT,
            &[issuer.public_key_pem().to_owned()],
            KUBERNETES_ISSUER,
        )
        .await
        .context("configuring JWT auth")?;
        Ok(Self { bao, issuer })
    }

    /// A new case whose role admits tokens for the audience `vault`.
    pub(crate) async fn case(&'static self, label: &str) -> anyhow::Result<Case> {
        self.case_for_audiences(label, &["vault"]).await
    }

    /// A new case whose role admits tokens for `audiences`.
    pub(crate) async fn case_for_audiences(
        &'static self,
        label: &str,
        audiences: &[&str],
    ) -> anyhow::Result<Case> {
        let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
        let id = format!("{label}-{n}");
        let pod = PodFixture::new(format!("ns-{id}"), SERVICE_ACCOUNT);
        let policy = format!(
            r#"
path "secret/data/{id}/*" {{ capabilities = ["read"] }}
path "kv-{id}/*" {{ capabilities = ["read"] }}
path "pki-{id}/issue/*" {{ capabilities = ["create", "update"] }}
"#
        );
        self.bao.write_policy(&id, &policy).await?;
        self.bao
            .jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: id.clone(),
                    bound_audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
                    namespace: pod.namespace().to_owned(),
                    service_account: SERVICE_ACCOUNT.to_owned(),
                    policies: vec![id.clone()],
                },
            )
            .await?;
        Ok(Case {
            backend: self,
            role: id.clone(),
            id,
            pod,
        })
    }
}

/// One test's corner of a shared server.
pub(crate) struct Case {
    pub(crate) backend: &'static Backend,
    /// Unique per test; also the role and policy name.
    pub(crate) id: String,
    pub(crate) role: String,
    pub(crate) pod: PodFixture,
}

impl Case {
    /// A request spelt as the OpenBao provider's SecretProviderClasses spell it (`roleName`, `openbaoAddress`,
    /// `openbaoAuthMountPath`, `objects`), with a token for the `openbao` audience only.
    pub(crate) fn openbao_request(&self, objects: &[Obj]) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(&self.pod)
            .parameter("roleName", &self.role)
            .parameter("openbaoAddress", self.bao().addr())
            .parameter("openbaoAuthMountPath", JWT_MOUNT)
            .parameter("objects", objects_yaml(objects))
            .token("openbao", self.token("openbao")?))
    }

    pub(crate) fn bao(&self) -> &OpenBao {
        &self.backend.bao
    }

    /// `secret/data/<id>/<name>`: a KV v2 path this case's policy can read.
    pub(crate) fn secret_path(&self, name: &str) -> String {
        format!("secret/data/{}/{name}", self.id)
    }

    /// Writes `data` at [`secret_path`](Self::secret_path)`(name)` and returns the KV version.
    pub(crate) async fn put(&self, name: &str, data: Value) -> anyhow::Result<u64> {
        self.bao()
            .kv2_put("secret", &format!("{}/{name}", self.id), data)
            .await
    }

    /// A token for this case's pod.
    pub(crate) fn token(&self, audience: &str) -> anyhow::Result<MintedToken> {
        self.backend.issuer.token(&self.pod, audience)
    }

    /// The request a vault-csi-provider SecretProviderClass with `objects` makes: `roleName`, `vaultAddress`,
    /// `vaultAuthMountPath` (JWT auth), and the pod's token for the audience `vault`.
    pub(crate) fn request(&self, objects: &[Obj]) -> anyhow::Result<MountRequestBuilder> {
        self.request_for(&self.pod, &self.role, objects)
    }

    /// Like [`request`](Self::request), for another pod and role on this case's server.
    pub(crate) fn request_for(
        &self,
        pod: &PodFixture,
        role: &str,
        objects: &[Obj],
    ) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(pod)
            .parameter("roleName", role)
            .parameter("vaultAddress", self.bao().addr())
            .parameter("vaultAuthMountPath", JWT_MOUNT)
            .parameter("objects", objects_yaml(objects))
            .token("vault", self.backend.issuer.token(pod, "vault")?))
    }

    /// A second service account in this case's namespace, with its own role and this case's policy.
    pub(crate) async fn second_identity(
        &self,
        service_account: &str,
    ) -> anyhow::Result<(PodFixture, String)> {
        let pod = PodFixture::new(self.pod.namespace(), service_account);
        let role = format!("{}-{service_account}", self.id);
        self.bao()
            .jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: role.clone(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: pod.namespace().to_owned(),
                    service_account: service_account.to_owned(),
                    policies: vec![self.id.clone()],
                },
            )
            .await?;
        Ok((pod, role))
    }
}

/// A provider serving `names`, with the plain server as its default address.
pub(crate) async fn provider(names: &[&str]) -> anyhow::Result<ProviderProcess> {
    provider_builder(names).await?.start().await
}

/// Mounts `request` on `vault.sock` of a fresh [`provider`] (gone when this returns).
pub(crate) async fn mount_on_vault(request: MountRequest) -> anyhow::Result<Result<MountResponse, Status>> {
    mount_on_socket("vault", request).await
}

/// Mounts `request` on `<name>.sock` of a fresh [`provider`] serving `name` (gone when this returns).
pub(crate) async fn mount_on_socket(
    name: &str,
    request: MountRequest,
) -> anyhow::Result<Result<MountResponse, Status>> {
    let provider = provider(&[name]).await?;
    Ok(mount(&mut provider.client(name).await?, request).await)
}

/// A provider builder for `names`, with the plain server as its default address.
pub(crate) async fn provider_builder(names: &[&str]) -> anyhow::Result<ProviderBuilder> {
    let mut builder = ProviderBuilder::new().vault_addr(plain().await?.bao.addr());
    for name in names {
        builder = builder.provider(*name);
    }
    Ok(builder)
}


