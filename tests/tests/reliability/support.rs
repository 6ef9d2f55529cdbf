//! The shared servers of this binary (one OpenBao, PostgreSQL behind its database engine when a test needs it,
//! one moto), per-test identities on them, and the figures each area prints.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use courier_tests::postgres::Postgres;
use courier_tests::{
    AwsProxy, FakeKubeApi, JwtRole, KUBERNETES_ISSUER, MOTO_ACCOUNT_ID, Moto, MountRequestBuilder,
    OpenBao, PodFixture, ProviderBuilder, STS_AUDIENCE, TokenIssuer,
};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use tokio::sync::OnceCell;

pub(crate) use courier_tests::objects::{Obj, obj, objects_yaml, quote};

/// Where JWT auth is mounted on the shared OpenBao.
pub(crate) const JWT_MOUNT: &str = "jwt";
/// Where the database secrets engine is mounted.
pub(crate) const DATABASE_MOUNT: &str = "database";
/// The database engine's connection to PostgreSQL.
const CONNECTION: &str = "pg";
/// The AWS region of every AWS case.
pub(crate) const REGION: &str = "us-east-1";
/// The annotation IRSA reads the role from.
pub(crate) const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

static VAULT: OnceCell<VaultEnv> = OnceCell::const_new();
static DATABASE: OnceCell<Postgres> = OnceCell::const_new();
static MOTO: OnceCell<Moto> = OnceCell::const_new();
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held by tests that load the CPU (the corpus) and by tests whose assertions are about timing, so the two never
/// run at once on a two-core machine. Other tests run alongside either.
pub(crate) async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// A value no log line, message or metric could contain by chance: `<label>-<32 random alphanumerics>`.
pub(crate) fn random_value(label: &str) -> String {
    let tail: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("{label}-{tail}")
}

/// A fresh id for a test's names, roles and namespaces.
pub(crate) fn unique_id(label: &str) -> String {
    format!("{label}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The figures one area prints: shown with `--nocapture`, and kept in `target/tmp/reliability/<area>.txt`.
pub(crate) struct Figures {
    area: String,
    lines: Vec<String>,
}

impl Figures {
    pub(crate) fn new(area: &str) -> Self {
        Self {
            area: area.to_owned(),
            lines: Vec::new(),
        }
    }

    pub(crate) fn line(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    pub(crate) fn print(&self) {
        let text = self.lines.join("\n");
        println!("{text}");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{}.txt", self.area)), format!("{text}\n"));
        }
    }
}

/// OpenBao with JWT auth trusting the cluster's token signer.
pub(crate) struct VaultEnv {
    pub(crate) bao: OpenBao,
    pub(crate) issuer: TokenIssuer,
}

/// The shared OpenBao, started on first use.
pub(crate) async fn vault() -> anyhow::Result<&'static VaultEnv> {
    VAULT
        .get_or_try_init(|| async {
            let bao = OpenBao::start().await.context("starting OpenBao")?;
            let issuer = TokenIssuer::new()?;
            bao.enable_jwt_auth(
                JWT_MOUNT,
                &[issuer.public_key_pem().to_owned()],
                KUBERNETES_ISSUER,
            )
            .await
            .context("configuring JWT auth")?;
            Ok(VaultEnv { bao, issuer })
        })
        .await
}

/// The shared OpenBao with its database engine connected to a PostgreSQL started on first use.
pub(crate) async fn vault_with_database() -> anyhow::Result<&'static VaultEnv> {
    let env = vault().await?;
    DATABASE
        .get_or_try_init(|| async {
            let pg = Postgres::start().await.context("starting PostgreSQL")?;
            env.bao
                .enable_postgres_database(DATABASE_MOUNT, CONNECTION, &pg)
                .await
                .context("connecting the database engine to PostgreSQL")?;
            Ok::<_, anyhow::Error>(pg)
        })
        .await?;
    Ok(env)
}

/// A pod and the auth role it logs in with.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) pod: PodFixture,
    pub(crate) role: String,
}

impl VaultEnv {
    /// A JWT role `role` for `namespace/service_account` with `policies`, and a pod of that service account.
    pub(crate) async fn identity(
        &self,
        namespace: &str,
        service_account: &str,
        role: &str,
        policies: &[&str],
    ) -> anyhow::Result<Identity> {
        let pod = PodFixture::new(namespace, service_account);
        self.bao
            .jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: role.to_owned(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: namespace.to_owned(),
                    service_account: service_account.to_owned(),
                    policies: policies.iter().map(|p| (*p).to_owned()).collect(),
                },
            )
            .await?;
        Ok(Identity {
            pod,
            role: role.to_owned(),
        })
    }

    /// The request a vault-csi-provider SecretProviderClass with `objects` makes for `identity`.
    pub(crate) fn request(
        &self,
        identity: &Identity,
        objects: &[Obj],
    ) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(&identity.pod)
            .parameter("roleName", &identity.role)
            .parameter("vaultAddress", self.bao.addr())
            .parameter("vaultAuthMountPath", JWT_MOUNT)
            .parameter("objects", objects_yaml(objects))
            .token("vault", self.issuer.token(&identity.pod, "vault")?))
    }
}

/// The shared moto server, started on first use.
pub(crate) async fn moto() -> anyhow::Result<&'static Moto> {
    MOTO.get_or_try_init(|| async { Moto::start().await.context("starting moto") })
        .await
}

/// One test's AWS world: its own recording proxy (checking web identity tokens as STS does) and Kubernetes API.
pub(crate) struct AwsEnv {
    pub(crate) moto: &'static Moto,
    pub(crate) issuer: TokenIssuer,
    pub(crate) proxy: AwsProxy,
    pub(crate) kube: FakeKubeApi,
}

impl AwsEnv {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let moto = moto().await?;
        let issuer = TokenIssuer::new()?;
        let proxy = AwsProxy::start_with_sts_checks(&moto.endpoint(), &issuer)?;
        let kube = FakeKubeApi::start()?;
        kube.publish_issuer_keys(&issuer);
        Ok(Self {
            moto,
            issuer,
            proxy,
            kube,
        })
    }

    /// A provider builder sending every AWS call through the proxy and reading service accounts from the fake API.
    pub(crate) fn provider_builder(&self) -> ProviderBuilder {
        ProviderBuilder::new()
            .aws_endpoint_url(self.proxy.endpoint())
            .kubeconfig(self.kube.kubeconfig_path())
    }

    /// Annotates `pod`'s service account with `role_arn` (IRSA) without making the role trust it.
    pub(crate) fn annotate(&self, pod: &PodFixture, role_arn: &str) {
        self.kube
            .put_pod_service_account(pod, [(ROLE_ANNOTATION, role_arn)]);
    }

    /// The request an ASCP SecretProviderClass with `objects` (YAML) makes for `pod`, with its IRSA token.
    pub(crate) fn request(
        &self,
        pod: &PodFixture,
        objects: &str,
    ) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(pod)
            .parameter("region", REGION)
            .parameter("objects", objects)
            .token(STS_AUDIENCE, self.issuer.token(pod, STS_AUDIENCE)?))
    }
}

/// An IAM role ARN in moto's account.
pub(crate) fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{MOTO_ACCOUNT_ID}:role/{name}")
}


