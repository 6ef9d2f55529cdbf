//! A node for the shim tests: a temporary kubelet root and providers directory, a fake Kubernetes API, the
//! test provider `fakeprovider`, and the shim binary serving CSI; plus the shared OpenBao for tests that run the
//! real provider.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use courier_tests::{
    FakeKubeApi, FakeProvider, InlineVolume, JwtRole, KUBERNETES_ISSUER, KubeResource, Kubelet,
    MintedToken, MountCleanup, OpenBao, PodFixture, ProviderBuilder, ShimBuilder, ShimProcess,
    TokenIssuer,
};
use serde_json::Value;
use tokio::sync::OnceCell;

/// The name the test provider serves (`spec.provider` of the test SecretProviderClasses).
pub(crate) const FAKE_PROVIDER: &str = "fakeprovider";
/// The SecretProviderClass most tests use.
pub(crate) const SPC: &str = "app-secrets";
/// The node the shim runs on.
pub(crate) const NODE: &str = "node-1";
/// Where JWT auth is mounted on the shared OpenBao.
pub(crate) const JWT_MOUNT: &str = "jwt";

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A unique label for one test's namespace, roles and paths.
pub(crate) fn unique(label: &str) -> String {
    format!("{label}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// One node. Fields drop in order: the shim stops first, then the providers, then leftover mounts are
/// unmounted, then the directory goes.
pub(crate) struct Node {
    pub(crate) shim: ShimProcess,
    pub(crate) provider: FakeProvider,
    pub(crate) kube: FakeKubeApi,
    pub(crate) kubelet_dir: PathBuf,
    pub(crate) providers_dir: PathBuf,
    pub(crate) cleanup: MountCleanup,
    _dir: tempfile::TempDir,
}

impl Node {
    /// A node with the default shim flags (rotation poll 0s, report mode, 1Mi tmpfs).
    pub(crate) async fn start() -> anyhow::Result<Self> {
        Self::start_with(|shim| shim).await
    }

    /// A node whose shim flags `configure` adjusts.
    pub(crate) async fn start_with(
        configure: impl FnOnce(ShimBuilder) -> ShimBuilder,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("courier-node-")
            .tempdir()
            .context("cannot create the node directory")?;
        let cleanup = MountCleanup::new(dir.path());
        let kubelet_dir = dir.path().join("kubelet");
        let providers_dir = dir.path().join("providers");
        std::fs::create_dir_all(kubelet_dir.join("pods"))?;
        std::fs::create_dir_all(&providers_dir)?;
        let kube = FakeKubeApi::start()?;
        let provider = FakeProvider::start(&providers_dir, FAKE_PROVIDER)?;
        let shim = configure(
            ShimBuilder::new()
                .node_id(NODE)
                .providers_dir(&providers_dir)
                .kubelet_pods_dir(kubelet_dir.join("pods"))
                .kubeconfig(kube.kubeconfig_path()),
        )
        .start()
        .await?;
        Ok(Self {
            shim,
            provider,
            kube,
            kubelet_dir,
            providers_dir,
            cleanup,
            _dir: dir,
        })
    }

    /// A new pod in `namespace`, stored in the fake API as scheduled on this node.
    pub(crate) fn pod(&self, namespace: &str) -> PodFixture {
        let pod = PodFixture::new(namespace, "app");
        self.kube.put_pod(&pod, NODE);
        pod
    }

    /// The SecretProviderClass `pod.namespace/SPC` for the test provider with `parameters`.
    pub(crate) fn fake_spc(&self, pod: &PodFixture, parameters: &[(&str, &str)]) {
        self.kube.put_secret_provider_class(
            pod.namespace(),
            SPC,
            FAKE_PROVIDER,
            parameters.iter().copied(),
        );
    }

    /// The pod's inline volume naming `SPC`.
    pub(crate) fn volume(&self, pod: &PodFixture) -> InlineVolume {
        InlineVolume::new(pod, SPC, &self.kubelet_dir)
    }

    /// A kubelet connected to the shim.
    pub(crate) async fn kubelet(&self) -> anyhow::Result<Kubelet> {
        self.shim.kubelet().await
    }

    /// Publishes `volume` once the shim's SecretProviderClass cache shows what the fake API holds: a
    /// publish answering NotFound is retried for a few seconds (the watch may trail a write by a moment).
    pub(crate) async fn publish_when_synced(
        &self,
        kubelet: &mut Kubelet,
        volume: &InlineVolume,
    ) -> Result<(), tonic::Status> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match kubelet.publish(volume).await {
                Err(status)
                    if status.code() == tonic::Code::NotFound
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// The SecretProviderClassPodStatus of `pod` for `SPC`, if there is one.
    pub(crate) fn spcps(&self, pod: &PodFixture) -> Option<Value> {
        self.kube.get(
            KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES,
            pod.namespace(),
            &spcps_name(pod),
        )
    }

    /// The shim's log, for failure messages.
    pub(crate) fn logs(&self) -> String {
        self.shim.logs()
    }
}

/// `<pod>-<namespace>-<spc>`.
pub(crate) fn spcps_name(pod: &PodFixture) -> String {
    format!("{}-{}-{SPC}", pod.name(), pod.namespace())
}

/// The file `relative` under `target`, as a pod reads it.
pub(crate) fn read(target: &Path, relative: &str) -> String {
    std::fs::read_to_string(target.join(relative))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", target.join(relative).display()))
}

/// Where `..data` points.
pub(crate) fn data_dir(target: &Path) -> PathBuf {
    std::fs::read_link(target.join("..data"))
        .unwrap_or_else(|e| panic!("{}/..data: {e}", target.display()))
}

/// The modification time of `path` with nanoseconds, and its inode.
pub(crate) fn stamp(path: &Path) -> (SystemTime, u64) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.ino(),
    )
}

/// Sets the modification time of `path` (a link is followed) to `by` ago: content then looks that old to the
/// shim, and any rewrite shows as a newer time whatever the clock's granularity, with no waiting.
pub(crate) fn backdate(path: &Path, by: std::time::Duration) -> anyhow::Result<()> {
    let then = SystemTime::now()
        .checked_sub(by)
        .ok_or_else(|| anyhow::anyhow!("cannot go back {by:?}"))?;
    std::fs::File::open(path)?.set_times(
        std::fs::FileTimes::new()
            .set_accessed(then)
            .set_modified(then),
    )?;
    Ok(())
}

/// The entries directly in `dir`, sorted.
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    names.sort();
    names
}

/// The shared OpenBao with JWT auth trusting [`Bao::issuer`].
pub(crate) struct Bao {
    pub(crate) bao: OpenBao,
    pub(crate) issuer: TokenIssuer,
}

static BAO: OnceCell<Bao> = OnceCell::const_new();

/// The OpenBao of this binary, started on first use.
pub(crate) async fn bao() -> anyhow::Result<&'static Bao> {
    BAO.get_or_try_init(|| async {
        let bao = OpenBao::start().await.context("starting OpenBao")?;
        let issuer = TokenIssuer::new()?;
        bao.enable_jwt_auth(
            JWT_MOUNT,
            &[issuer.public_key_pem().to_owned()],
            KUBERNETES_ISSUER,
        )
        .await
        .context("configuring JWT auth")?;
        Ok(Bao { bao, issuer })
    })
    .await
}

/// One test's identity on the shared OpenBao: its pod, a role of the same name bound to the pod's service
/// account for audience `vault`, and a policy reading `secret/data/<id>/*`.
pub(crate) struct BaoCase {
    pub(crate) backend: &'static Bao,
    pub(crate) id: String,
    pub(crate) pod: PodFixture,
}

impl Bao {
    pub(crate) async fn case(&'static self, label: &str) -> anyhow::Result<BaoCase> {
        let id = unique(label);
        let pod = PodFixture::new(format!("ns-{id}"), "app");
        self.bao
            .read_only_policy(&id, &[&format!("secret/data/{id}/*")])
            .await?;
        self.bao
            .jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: id.clone(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: pod.namespace().to_owned(),
                    service_account: pod.service_account().to_owned(),
                    policies: vec![id.clone()],
                },
            )
            .await?;
        Ok(BaoCase {
            backend: self,
            id,
            pod,
        })
    }
}

impl BaoCase {
    /// Writes `data` at `secret/<id>/<name>` (KV v2); returns the version.
    pub(crate) async fn put(&self, name: &str, data: Value) -> anyhow::Result<u64> {
        self.backend
            .bao
            .kv2_put("secret", &format!("{}/{name}", self.id), data)
            .await
    }

    /// A token for the case's pod and audience `vault`.
    pub(crate) fn token(&self) -> anyhow::Result<MintedToken> {
        self.backend.issuer.token(&self.pod, "vault")
    }

    /// SecretProviderClass parameters in the vault-csi-provider dialect reading `secret/data/<id>/app`'s keys
    /// `username` and `password` (0400).
    pub(crate) fn vault_parameters(&self) -> Vec<(String, String)> {
        let path = format!("secret/data/{}/app", self.id);
        let objects = format!(
            "- objectName: \"username\"\n  secretPath: \"{path}\"\n  secretKey: \"username\"\n\
             - objectName: \"creds/password\"\n  secretPath: \"{path}\"\n  secretKey: \"password\"\n  filePermission: 0400\n"
        );
        vec![
            ("roleName".to_owned(), self.id.clone()),
            ("vaultAddress".to_owned(), self.backend.bao.addr()),
            ("vaultAuthMountPath".to_owned(), JWT_MOUNT.to_owned()),
            ("objects".to_owned(), objects),
        ]
    }
}

/// The real provider serving `vault.sock` in `providers_dir`, reading every secret afresh (no reuse window),
/// so a changed secret shows on the next republish.
pub(crate) async fn real_provider(
    providers_dir: &Path,
) -> anyhow::Result<courier_tests::ProviderProcess> {
    ProviderBuilder::new()
        .provider("vault")
        .providers_dir(providers_dir)
        .vault_addr(bao().await?.bao.addr())
        .static_reuse(Duration::ZERO)
        .log_level("info")
        .start()
        .await
}
