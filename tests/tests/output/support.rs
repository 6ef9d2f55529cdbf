//! The shared servers of this binary (one OpenBao with JWT auth, one moto, one token signer), and per-test cases
//! on them: every case has its own id, namespace, role, policy, secret names and, for AWS, its own recording
//! proxy and Kubernetes API fake. Every test runs its own provider process.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use courier_proto::v1alpha1::MountResponse;
use courier_tests::calls::mount;
use courier_tests::{
    AwsProxy, FakeKubeApi, JwtRole, KUBERNETES_ISSUER, MOTO_ACCOUNT_ID, Moto, MountRequestBuilder,
    OpenBao, ParameterType, PodFixture, ProviderBuilder, ProviderProcess, STS_AUDIENCE,
    SecretValue, TokenIssuer,
};
use serde_json::Value;
use tokio::sync::OnceCell;
use tonic::Status;

pub(crate) use courier_tests::objects::{Obj, obj, objects_yaml, quote, sm, ssm};

/// Where JWT auth is mounted on the shared OpenBao.
pub(crate) const JWT_MOUNT: &str = "jwt";
/// The service account every case's pod runs as.
pub(crate) const SERVICE_ACCOUNT: &str = "app";
/// The region of every AWS case.
pub(crate) const REGION: &str = "us-east-1";
/// The annotation IRSA reads the role from on `aws.sock`.
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

static ISSUER: OnceCell<TokenIssuer> = OnceCell::const_new();
static BAO: OnceCell<OpenBao> = OnceCell::const_new();
static MOTO: OnceCell<Moto> = OnceCell::const_new();
static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

fn unique(label: &str) -> String {
    format!("{label}-{}", NEXT_CASE.fetch_add(1, Ordering::Relaxed))
}

/// The cluster's service-account token signer, shared by both backends.
pub(crate) async fn issuer() -> anyhow::Result<&'static TokenIssuer> {
    ISSUER
        .get_or_try_init(|| async { TokenIssuer::new() })
        .await
}

/// The shared OpenBao, with JWT auth at [`JWT_MOUNT`] trusting [`issuer`].
pub(crate) async fn bao() -> anyhow::Result<&'static OpenBao> {
    let issuer = issuer().await?;
    BAO.get_or_try_init(|| async {
        let bao = OpenBao::start().await.context("starting OpenBao")?;
        bao.enable_jwt_auth(
            JWT_MOUNT,
            &[issuer.public_key_pem().to_owned()],
            KUBERNETES_ISSUER,
        )
        .await
        .context("configuring JWT auth")?;
        Ok(bao)
    })
    .await
}

/// The shared moto server.
pub(crate) async fn moto() -> anyhow::Result<&'static Moto> {
    MOTO.get_or_try_init(|| async { Moto::start().await.context("starting moto") })
        .await
}

/// A provider serving every socket this binary uses (`vault`, `openbao`, `courier`, `aws`), with the shared
/// OpenBao as default address and no static reuse (so a second mount reads again).
pub(crate) async fn vault_provider() -> anyhow::Result<ProviderProcess> {
    ProviderBuilder::new()
        .provider("vault")
        .provider("openbao")
        .provider("courier")
        .vault_addr(bao().await?.addr())
        .static_reuse(Duration::ZERO)
        .start()
        .await
}

// ---------------------------------------------------------------------------------------------------------------
// Vault / OpenBao

/// The sockets (and native `backend` values) that serve Vault and OpenBao.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VaultSocket {
    /// `vault.sock`, vault-csi-provider parameters.
    Vault,
    /// `openbao.sock`, OpenBao provider parameters (audience `openbao`).
    OpenBao,
    /// `courier.sock` with `backend: vault`.
    NativeVault,
    /// `courier.sock` with `backend: openbao`.
    NativeOpenBao,
}

impl VaultSocket {
    pub(crate) const ALL: [Self; 4] = [
        Self::Vault,
        Self::OpenBao,
        Self::NativeVault,
        Self::NativeOpenBao,
    ];

    pub(crate) fn socket(self) -> &'static str {
        match self {
            Self::Vault => "vault",
            Self::OpenBao => "openbao",
            Self::NativeVault | Self::NativeOpenBao => "courier",
        }
    }
}

/// One test's corner of the shared OpenBao.
pub(crate) struct VaultCase {
    /// Unique per test; also the role and policy name.
    pub(crate) id: String,
    pub(crate) role: String,
    pub(crate) pod: PodFixture,
    pub(crate) bao: &'static OpenBao,
    pub(crate) issuer: &'static TokenIssuer,
}

/// A new case whose role admits this case's pod with tokens for `vault` and `openbao`.
pub(crate) async fn vault_case(label: &str) -> anyhow::Result<VaultCase> {
    vault_case_with(label, &["vault", "openbao"], SERVICE_ACCOUNT).await
}

/// A new case whose role admits tokens for `audiences` of the service account `bound_sa` in the pod's namespace.
pub(crate) async fn vault_case_with(
    label: &str,
    audiences: &[&str],
    bound_sa: &str,
) -> anyhow::Result<VaultCase> {
    let bao = bao().await?;
    let issuer = issuer().await?;
    let id = unique(label);
    let pod = PodFixture::new(format!("ns-{id}"), SERVICE_ACCOUNT);
    let policy = format!(
        r#"
path "secret/data/{id}/*" {{ capabilities = ["read"] }}
path "kv-{id}/*" {{ capabilities = ["read"] }}
"#
    );
    bao.write_policy(&id, &policy).await?;
    bao.jwt_role(
        JWT_MOUNT,
        &JwtRole {
            name: id.clone(),
            bound_audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            namespace: pod.namespace().to_owned(),
            service_account: bound_sa.to_owned(),
            policies: vec![id.clone()],
        },
    )
    .await?;
    Ok(VaultCase {
        role: id.clone(),
        id,
        pod,
        bao,
        issuer,
    })
}

impl VaultCase {
    /// `secret/data/<id>/<name>`: a KV v2 path this case may read.
    pub(crate) fn path(&self, name: &str) -> String {
        format!("secret/data/{}/{name}", self.id)
    }

    /// Writes `data` at [`path`](Self::path)`(name)`; returns the KV version.
    pub(crate) async fn put(&self, name: &str, data: Value) -> anyhow::Result<u64> {
        self.bao
            .kv2_put("secret", &format!("{}/{name}", self.id), data)
            .await
    }

    /// Mounts a KV v1 engine at `kv-<id>` and writes `data` at `name`; returns the read path.
    pub(crate) async fn kv1(&self, name: &str, data: Value) -> anyhow::Result<String> {
        let mount = format!("kv-{}", self.id);
        self.bao.enable_kv1(&mount).await?;
        self.bao.kv1_put(&mount, name, data).await?;
        Ok(format!("{mount}/{name}"))
    }

    /// The request a SecretProviderClass with `objects` makes on `socket`, with tokens for `vault` and `openbao`.
    pub(crate) fn request(
        &self,
        socket: VaultSocket,
        objects: &[Obj],
    ) -> anyhow::Result<MountRequestBuilder> {
        let mut builder = MountRequestBuilder::new(&self.pod)
            .parameter("roleName", &self.role)
            .parameter("objects", objects_yaml(objects))
            .token("vault", self.issuer.token(&self.pod, "vault")?)
            .token("openbao", self.issuer.token(&self.pod, "openbao")?);
        // Each socket with its own provider's spelling of the address and auth mount.
        builder = match socket {
            VaultSocket::Vault | VaultSocket::NativeVault => builder
                .parameter("vaultAddress", self.bao.addr())
                .parameter("vaultAuthMountPath", JWT_MOUNT),
            VaultSocket::OpenBao | VaultSocket::NativeOpenBao => builder
                .parameter("openbaoAddress", self.bao.addr())
                .parameter("openbaoAuthMountPath", JWT_MOUNT),
        };
        builder = match socket {
            VaultSocket::NativeVault => builder.parameter("backend", "vault"),
            VaultSocket::NativeOpenBao => builder.parameter("backend", "openbao"),
            VaultSocket::Vault | VaultSocket::OpenBao => builder,
        };
        Ok(builder)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AWS

/// The sockets that serve AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwsSocket {
    /// `aws.sock`: ASCP parameters; IRSA role from the service account's annotation.
    Aws,
    /// `courier.sock` with `backend: aws` and the IRSA role in `roleArn`.
    Native,
}

impl AwsSocket {
    pub(crate) const ALL: [Self; 2] = [Self::Aws, Self::Native];

    pub(crate) fn socket(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Native => "courier",
        }
    }
}

/// One test's AWS world: its names on the shared moto, its own proxy (checking web identity tokens as STS does)
/// and its own Kubernetes API fake holding the pod's annotated service account.
pub(crate) struct AwsCase {
    pub(crate) id: String,
    pub(crate) pod: PodFixture,
    pub(crate) role_arn: String,
    pub(crate) moto: &'static Moto,
    pub(crate) issuer: &'static TokenIssuer,
    pub(crate) proxy: AwsProxy,
    pub(crate) kube: FakeKubeApi,
}

/// A new AWS case.
pub(crate) async fn aws_case(label: &str) -> anyhow::Result<AwsCase> {
    let moto = moto().await?;
    let issuer = issuer().await?;
    let id = unique(label);
    let pod = PodFixture::new(format!("ns-{id}"), SERVICE_ACCOUNT);
    let role_arn = format!("arn:aws:iam::{MOTO_ACCOUNT_ID}:role/{id}");
    let proxy = AwsProxy::start_with_sts_checks(&moto.endpoint(), issuer)?;
    proxy.trust(&role_arn, pod.namespace(), pod.service_account());
    let kube = FakeKubeApi::start()?;
    kube.publish_issuer_keys(issuer);
    kube.put_pod_service_account(&pod, [(ROLE_ANNOTATION, role_arn.as_str())]);
    Ok(AwsCase {
        id,
        pod,
        role_arn,
        moto,
        issuer,
        proxy,
        kube,
    })
}

impl AwsCase {
    /// A Secrets Manager name unique to this case: `<id>/<local>`.
    pub(crate) fn name(&self, local: &str) -> String {
        format!("{}/{local}", self.id)
    }

    /// An SSM parameter name unique to this case: `/<id>/<local>`.
    pub(crate) fn param(&self, local: &str) -> String {
        format!("/{}/{local}", self.id)
    }

    /// Creates the secret [`name`](Self::name)`(local)`.
    pub(crate) async fn secret(
        &self,
        local: &str,
        value: impl Into<SecretValue>,
    ) -> anyhow::Result<()> {
        self.moto
            .create_secret(REGION, &self.name(local), value)
            .await?;
        Ok(())
    }

    /// Creates the parameter [`param`](Self::param)`(local)` of type `kind`.
    pub(crate) async fn parameter(
        &self,
        local: &str,
        value: &str,
        kind: ParameterType,
    ) -> anyhow::Result<()> {
        self.moto
            .put_parameter(REGION, &self.param(local), value, kind, false)
            .await?;
        Ok(())
    }

    /// A provider serving `aws` and `courier`, sending every AWS call through this case's proxy.
    pub(crate) async fn provider(&self) -> anyhow::Result<ProviderProcess> {
        ProviderBuilder::new()
            .provider("aws")
            .provider("courier")
            .aws_endpoint_url(self.proxy.endpoint())
            .kubeconfig(self.kube.kubeconfig_path())
            .static_reuse(Duration::ZERO)
            .start()
            .await
    }

    /// The request an ASCP SecretProviderClass with `objects` and `region` makes on `socket`, with the pod's
    /// token for `sts.amazonaws.com`.
    pub(crate) fn request(
        &self,
        socket: AwsSocket,
        objects: &[Obj],
    ) -> anyhow::Result<MountRequestBuilder> {
        let builder = MountRequestBuilder::new(&self.pod)
            .parameter("region", REGION)
            .parameter("objects", objects_yaml(objects))
            .token(STS_AUDIENCE, self.issuer.token(&self.pod, STS_AUDIENCE)?);
        Ok(match socket {
            AwsSocket::Aws => builder,
            AwsSocket::Native => builder
                .parameter("backend", "aws")
                .parameter("roleArn", &self.role_arn),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Parameters


/// One entry of `templates`.
#[derive(Debug, Clone)]
pub(crate) struct Tpl {
    path: String,
    template: String,
    mode: Option<String>,
}

/// A template writing `template` to `path`.
pub(crate) fn tpl(path: &str, template: &str) -> Tpl {
    Tpl {
        path: path.to_owned(),
        template: template.to_owned(),
        mode: None,
    }
}

impl Tpl {
    /// `filePermission`, written verbatim.
    pub(crate) fn mode(mut self, raw: &str) -> Self {
        self.mode = Some(raw.to_owned());
        self
    }
}

/// The `templates` parameter: a YAML block list with the sources as double-quoted scalars.
pub(crate) fn templates_yaml(templates: &[Tpl]) -> String {
    let mut yaml = String::new();
    for t in templates {
        yaml.push_str(&format!("- path: {}\n", quote(&t.path)));
        yaml.push_str(&format!("  template: {}\n", quote(&t.template)));
        if let Some(mode) = &t.mode {
            yaml.push_str(&format!("  filePermission: {mode}\n"));
        }
    }
    yaml
}


// ---------------------------------------------------------------------------------------------------------------
// Calls and checks

/// `Mount` on `socket` of `provider`.
pub(crate) async fn mount_on(
    provider: &ProviderProcess,
    socket: &str,
    request: &MountRequestBuilder,
) -> anyhow::Result<Result<MountResponse, Status>> {
    Ok(mount(&mut provider.client(socket).await?, request.build()?).await)
}

/// Asserts that none of `secrets` appears in `status`'s message.
#[track_caller]
pub(crate) fn assert_no_secret(status: &Status, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !status.message().contains(secret),
            "the message shows the secret value {secret:?}: {}",
            status.message()
        );
    }
}

/// The object versions of a response as (id, version), sorted.
pub(crate) fn versions(response: &MountResponse) -> Vec<(String, String)> {
    let mut versions: Vec<_> = response
        .object_version
        .iter()
        .map(|v| (v.id.clone(), v.version.clone()))
        .collect();
    versions.sort();
    versions
}

/// The object ids of a response, sorted.
pub(crate) fn version_ids(response: &MountResponse) -> Vec<String> {
    versions(response).into_iter().map(|(id, _)| id).collect()
}

/// Writes `STANDARD` base64.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
