//! The `courier-driver-shim` binary as kubelet meets it: a child process serving CSI on a unix socket, a
//! kubelet-like client that calls it exactly as kubelet does for an ephemeral inline CSI volume, and the mount
//! table checks and clean-up the tests need around it.
//!
//! - [`ShimBuilder`] / [`ShimProcess`]: flags, environment (`KUBECONFIG` of a [`FakeKubeApi`](crate::FakeKubeApi)),
//!   readiness (the socket answers `Probe`), logs and `/metrics`.
//! - [`Kubelet`] and [`InlineVolume`]: the CSI calls, with the `volume_id`, `target_path`, capability,
//!   `readonly` and `volume_context` kubelet sends (pod info and service-account tokens included).
//! - [`MountCleanup`]: unmounts whatever is still mounted under a directory when dropped, so a failing test
//!   never leaves a tmpfs behind; [`mount_entry`] and [`is_tmpfs`] read the mount table and `statfs`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::Context;
use courier_proto::csi::v1::identity_client::IdentityClient;
use courier_proto::csi::v1::node_client::NodeClient;
use courier_proto::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume, access_mode};
use courier_proto::csi::v1::{
    GetPluginInfoRequest, GetPluginInfoResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeGetInfoRequest, NodeGetInfoResponse, NodePublishVolumeRequest,
    NodeUnpublishVolumeRequest, ProbeRequest, VolumeCapability,
};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use tonic::Status;
use tonic::transport::Channel;

use crate::process::{self, Probe, ServerProcess, Shutdown, StartError};
use crate::provider::{MetricsSnapshot, connect_unix, scrape_metrics};
use crate::tools;
use crate::{MintedToken, PodFixture};

/// How long start-up may take.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// kubelet's deadline for NodePublishVolume (`csiTimeout`, 2 minutes).
pub const KUBELET_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// `TMPFS_MAGIC` from `linux/magic.h`, as `statfs` reports a tmpfs.
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
/// The key of the service-account tokens in the volume context.
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// Variables the shim reads that a developer's shell (or a pod) may set (proxies and `RUST_LOG` are cleared for
/// every process); tests pass everything explicitly.
const SHIM_ENV_TO_CLEAR: &[&str] = &[
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "CSI_ENDPOINT",
    "KUBE_NODE_NAME",
    "COURIER_DRIVER_NAME",
];

/// Flags and environment for one shim process.
#[derive(Debug, Clone)]
pub struct ShimBuilder {
    node_id: String,
    providers_dirs: Vec<PathBuf>,
    rotation_poll_interval: Duration,
    republish_errors: String,
    tmpfs_size: String,
    metrics: bool,
    kubeconfig: Option<PathBuf>,
    kubelet_pods_dir: Option<PathBuf>,
    extra_args: Vec<OsString>,
}

impl Default for ShimBuilder {
    fn default() -> Self {
        Self {
            node_id: "node-1".to_owned(),
            providers_dirs: Vec::new(),
            rotation_poll_interval: Duration::ZERO,
            republish_errors: "report".to_owned(),
            tmpfs_size: "1Mi".to_owned(),
            metrics: false,
            kubeconfig: None,
            kubelet_pods_dir: None,
            extra_args: Vec::new(),
        }
    }
}

impl ShimBuilder {
    /// Node `node-1`, rotation poll interval 0s, `--republish-errors report`, `--tmpfs-size 1Mi`.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--node-id`.
    #[must_use]
    pub fn node_id(mut self, node: impl Into<String>) -> Self {
        self.node_id = node.into();
        self
    }

    /// `--providers-dir` (first call), then `--additional-providers-dir` for each further call.
    #[must_use]
    pub fn providers_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.providers_dirs.push(dir.into());
        self
    }

    /// `--rotation-poll-interval`.
    #[must_use]
    pub fn rotation_poll_interval(mut self, interval: Duration) -> Self {
        self.rotation_poll_interval = interval;
        self
    }

    /// `--republish-errors report|fail`.
    #[must_use]
    pub fn republish_errors(mut self, mode: &str) -> Self {
        self.republish_errors = mode.to_owned();
        self
    }

    /// `--tmpfs-size`.
    #[must_use]
    pub fn tmpfs_size(mut self, size: &str) -> Self {
        self.tmpfs_size = size.to_owned();
        self
    }

    /// Serves `/metrics` on a free 127.0.0.1 port (`--metrics-addr`).
    #[must_use]
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// The kubeconfig of the cluster (`KUBECONFIG`), e.g. a [`FakeKubeApi`](crate::FakeKubeApi)'s.
    #[must_use]
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// `--kubelet-pods-dir`: the directory targets must resolve below (the shim's default is
    /// `/var/lib/kubelet/pods`).
    #[must_use]
    pub fn kubelet_pods_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.kubelet_pods_dir = Some(dir.into());
        self
    }

    /// Adds a raw argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Starts the shim and waits until its socket answers `Probe` (on a fresh metrics port if it lost the one
    /// it was given).
    pub async fn start(self) -> anyhow::Result<ShimProcess> {
        process::start_on_fresh_ports(NAME, process::PORT_ATTEMPTS, || self.clone().try_start())
            .await
    }

    async fn try_start(self) -> Result<ShimProcess, StartError> {
        let binary = tools::shim_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("courier-shim-")
            .tempdir()
            .context("cannot create the shim's directory")?;
        let endpoint = dir.path().join("csi.sock");
        let log_path = dir.path().join("shim.log");
        let metrics_addr = if self.metrics {
            Some(SocketAddr::from(([127, 0, 0, 1], process::free_port()?)))
        } else {
            None
        };

        let mut command = Command::new(&binary);
        command
            .arg("--endpoint")
            .arg(format!("unix://{}", endpoint.display()))
            .arg("--node-id")
            .arg(&self.node_id)
            .arg("--rotation-poll-interval")
            .arg(format!("{}ms", self.rotation_poll_interval.as_millis()))
            .arg("--republish-errors")
            .arg(&self.republish_errors)
            .arg("--tmpfs-size")
            .arg(&self.tmpfs_size)
            .arg("--log-level")
            .arg("debug");
        let mut dirs = self.providers_dirs.iter();
        if let Some(first) = dirs.next() {
            command.arg("--providers-dir").arg(first);
        }
        for more in dirs {
            command.arg("--additional-providers-dir").arg(more);
        }
        if let Some(addr) = metrics_addr {
            command.arg("--metrics-addr").arg(addr.to_string());
        }
        if let Some(pods) = &self.kubelet_pods_dir {
            command.arg("--kubelet-pods-dir").arg(pods);
        }
        process::clear_inherited_env(&mut command, SHIM_ENV_TO_CLEAR);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        command.args(&self.extra_args);
        let process = ServerProcess::spawn(NAME, &mut command, &log_path, Shutdown::Kill)?;
        let shim = ShimProcess {
            process,
            endpoint,
            metrics_addr,
            _dir: dir,
        };
        shim.wait_ready().await?;
        Ok(shim)
    }
}

/// How the shim is named in start-up and exit errors.
const NAME: &str = "courier-driver-shim";

/// A running shim; killed on drop unless it already exited.
#[derive(Debug)]
pub struct ShimProcess {
    // First, so that the process is gone before its directory.
    process: ServerProcess,
    endpoint: PathBuf,
    metrics_addr: Option<SocketAddr>,
    _dir: TempDir,
}

impl ShimProcess {
    async fn wait_ready(&self) -> Result<(), StartError> {
        let at = self.endpoint.display().to_string();
        self.process
            .wait_ready(&at, READY_TIMEOUT, process::POLL, || self.probe())
            .await
    }

    async fn probe(&self) -> Probe {
        if !self.endpoint.exists() {
            return Probe::NotYet("socket file not there yet".to_owned());
        }
        match self.kubelet().await {
            Ok(mut kubelet) => match kubelet.probe().await {
                Ok(true) => Probe::Ready,
                Ok(false) => Probe::NotYet("Probe answered not ready".to_owned()),
                Err(status) => Probe::NotYet(format!("Probe failed: {status}")),
            },
            Err(error) => Probe::NotYet(format!("{error:#}")),
        }
    }

    /// The CSI socket.
    pub fn endpoint(&self) -> &Path {
        &self.endpoint
    }

    /// A kubelet-like client on the CSI socket.
    pub async fn kubelet(&self) -> anyhow::Result<Kubelet> {
        Kubelet::connect(&self.endpoint).await
    }

    /// Everything the shim logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// Scrapes `/metrics` (start with [`ShimBuilder::metrics`]).
    pub async fn metrics(&self) -> anyhow::Result<MetricsSnapshot> {
        let addr = self
            .metrics_addr
            .context("the shim was started without --metrics-addr")?;
        scrape_metrics(addr).await
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.process.terminate(process::EXIT_TIMEOUT).await
    }
}

/// The CSI client kubelet is: Identity and Node services over the plugin's unix socket, `:authority`
/// `localhost`, kubelet's deadline on every call.
#[derive(Debug, Clone)]
pub struct Kubelet {
    identity: IdentityClient<Channel>,
    node: NodeClient<Channel>,
}

impl Kubelet {
    /// Connects to the CSI socket at `socket`.
    pub async fn connect(socket: &Path) -> anyhow::Result<Self> {
        let channel = connect_unix(socket).await?;
        Ok(Self {
            identity: IdentityClient::new(channel.clone()),
            node: NodeClient::new(channel),
        })
    }

    fn call<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(KUBELET_CALL_TIMEOUT);
        request
    }

    /// `GetPluginInfo`.
    pub async fn plugin_info(&mut self) -> Result<GetPluginInfoResponse, Status> {
        self.identity
            .get_plugin_info(Self::call(GetPluginInfoRequest {}))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `Probe`: whether the plugin says it is ready (an unset `ready` means ready, per the CSI spec).
    pub async fn probe(&mut self) -> Result<bool, Status> {
        self.identity
            .probe(Self::call(ProbeRequest {}))
            .await
            .map(|r| r.into_inner().ready.unwrap_or(true))
    }

    /// `NodeGetInfo`.
    pub async fn node_info(&mut self) -> Result<NodeGetInfoResponse, Status> {
        self.node
            .node_get_info(Self::call(NodeGetInfoRequest {}))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `NodeGetCapabilities`.
    pub async fn node_capabilities(&mut self) -> Result<NodeGetCapabilitiesResponse, Status> {
        self.node
            .node_get_capabilities(Self::call(NodeGetCapabilitiesRequest {}))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Publishes `volume` as kubelet does: creates the volume directory (with `vol_data.json`) but not the
    /// target, then calls `NodePublishVolume`.
    pub async fn publish(&mut self, volume: &InlineVolume) -> Result<(), Status> {
        volume.prepare_volume_dir().map_err(|e| {
            Status::internal(format!("the test could not prepare the volume dir: {e:#}"))
        })?;
        self.publish_raw(volume.publish_request()).await
    }

    /// `NodePublishVolume` with exactly `request`.
    pub async fn publish_raw(&mut self, request: NodePublishVolumeRequest) -> Result<(), Status> {
        self.node
            .node_publish_volume(Self::call(request))
            .await
            .map(drop)
    }

    /// Unpublishes `volume` (`NodeUnpublishVolume`).
    pub async fn unpublish(&mut self, volume: &InlineVolume) -> Result<(), Status> {
        self.unpublish_raw(&volume.volume_id(), &volume.target_path())
            .await
    }

    /// `NodeUnpublishVolume` with `volume_id` and `target`.
    pub async fn unpublish_raw(&mut self, volume_id: &str, target: &Path) -> Result<(), Status> {
        let request = NodeUnpublishVolumeRequest {
            volume_id: volume_id.to_owned(),
            target_path: target.to_string_lossy().into_owned(),
        };
        self.node
            .node_unpublish_volume(Self::call(request))
            .await
            .map(drop)
    }
}

/// A pod's inline CSI volume (`csi: {driver: secrets-store.csi.k8s.io, readOnly: true, volumeAttributes:
/// {secretProviderClass: ...}}`) on a kubelet whose root directory is `kubelet_dir`.
#[derive(Debug, Clone)]
pub struct InlineVolume {
    pod: PodFixture,
    volume_name: String,
    kubelet_dir: PathBuf,
    attributes: BTreeMap<String, String>,
    tokens: BTreeMap<String, MintedToken>,
    tokens_in_secrets: bool,
    readonly: bool,
}

impl InlineVolume {
    /// The volume `secrets-store` of `pod`, naming SecretProviderClass `spc`.
    pub fn new(pod: &PodFixture, spc: &str, kubelet_dir: &Path) -> Self {
        Self {
            pod: pod.clone(),
            volume_name: "secrets-store".to_owned(),
            kubelet_dir: kubelet_dir.to_owned(),
            attributes: BTreeMap::from([("secretProviderClass".to_owned(), spc.to_owned())]),
            tokens: BTreeMap::new(),
            tokens_in_secrets: false,
            readonly: true,
        }
    }

    /// Renames the volume (`spec.volumes[].name`).
    #[must_use]
    pub fn volume_name(mut self, name: &str) -> Self {
        self.volume_name = name.to_owned();
        self
    }

    /// Adds a `volumeAttributes` entry.
    #[must_use]
    pub fn attribute(mut self, key: &str, value: &str) -> Self {
        self.attributes.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds the token kubelet requested for `audience` (the CSIDriver's `tokenRequests`).
    #[must_use]
    pub fn token(mut self, audience: &str, token: MintedToken) -> Self {
        self.tokens.insert(audience.to_owned(), token);
        self
    }

    /// Passes the tokens in the CSI `secrets` instead of the volume context (`serviceAccountTokenInSecrets`,
    /// Kubernetes 1.35 and later).
    #[must_use]
    pub fn tokens_in_secrets(mut self) -> Self {
        self.tokens_in_secrets = true;
        self
    }

    /// The pod spec's `readOnly` (kubelet passes it as `readonly`).
    #[must_use]
    pub fn readonly(mut self, readonly: bool) -> Self {
        self.readonly = readonly;
        self
    }

    /// The pod.
    pub fn pod(&self) -> &PodFixture {
        &self.pod
    }

    /// kubelet's handle for an ephemeral inline volume: `csi-` and the SHA-256 of pod uid and volume name.
    pub fn volume_id(&self) -> String {
        let digest = Sha256::digest(format!("{}{}", self.pod.uid(), self.volume_name));
        format!("csi-{}", hex::encode(digest))
    }

    /// `<kubelet>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount`.
    pub fn target_path(&self) -> PathBuf {
        self.volume_dir().join("mount")
    }

    fn volume_dir(&self) -> PathBuf {
        self.kubelet_dir
            .join("pods")
            .join(self.pod.uid())
            .join("volumes")
            .join("kubernetes.io~csi")
            .join(&self.volume_name)
    }

    /// What kubelet does before calling the driver: the volume directory and its `vol_data.json`.
    pub fn prepare_volume_dir(&self) -> anyhow::Result<()> {
        let dir = self.volume_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let data = serde_json::json!({
            "driverName": "secrets-store.csi.k8s.io",
            "specVolID": self.volume_name,
            "volumeHandle": self.volume_id(),
            "volumeLifecycleMode": "Ephemeral",
        });
        std::fs::write(dir.join("vol_data.json"), data.to_string()).context("writing vol_data.json")
    }

    /// The tokens JSON kubelet writes: `{"<audience>":{"token":"…","expirationTimestamp":"…"}}`.
    pub fn tokens_json(&self) -> anyhow::Result<Option<String>> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let mut entries = serde_json::Map::new();
        for (audience, token) in &self.tokens {
            entries.insert(
                audience.clone(),
                serde_json::json!({"token": token.jwt(), "expirationTimestamp": token.expiration_timestamp()?}),
            );
        }
        Ok(Some(serde_json::Value::Object(entries).to_string()))
    }

    /// The volume context kubelet sends: the volume attributes, `podInfoOnMount` keys and (unless passed in
    /// the secrets) the tokens.
    pub fn volume_context(&self) -> std::collections::HashMap<String, String> {
        let mut context: std::collections::HashMap<String, String> =
            self.attributes.clone().into_iter().collect();
        let pod = &self.pod;
        for (key, value) in [
            ("csi.storage.k8s.io/pod.name", pod.name()),
            ("csi.storage.k8s.io/pod.namespace", pod.namespace()),
            ("csi.storage.k8s.io/pod.uid", pod.uid()),
            (
                "csi.storage.k8s.io/serviceAccount.name",
                pod.service_account(),
            ),
            ("csi.storage.k8s.io/ephemeral", "true"),
        ] {
            context.insert(key.to_owned(), value.to_owned());
        }
        if !self.tokens_in_secrets
            && let Ok(Some(tokens)) = self.tokens_json()
        {
            context.insert(TOKENS_KEY.to_owned(), tokens);
        }
        context
    }

    /// The `NodePublishVolumeRequest` kubelet sends for this volume.
    pub fn publish_request(&self) -> NodePublishVolumeRequest {
        let mut secrets = std::collections::HashMap::new();
        if self.tokens_in_secrets
            && let Ok(Some(tokens)) = self.tokens_json()
        {
            secrets.insert(TOKENS_KEY.to_owned(), tokens);
        }
        NodePublishVolumeRequest {
            volume_id: self.volume_id(),
            publish_context: std::collections::HashMap::new(),
            staging_target_path: String::new(),
            target_path: self.target_path().to_string_lossy().into_owned(),
            volume_capability: Some(VolumeCapability {
                access_mode: Some(AccessMode {
                    mode: access_mode::Mode::SingleNodeWriter as i32,
                }),
                access_type: Some(AccessType::Mount(MountVolume {
                    fs_type: String::new(),
                    mount_flags: Vec::new(),
                    volume_mount_group: String::new(),
                })),
            }),
            readonly: self.readonly,
            secrets,
            volume_context: self.volume_context(),
        }
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,nodev,noexec,relatime`).
    pub mount_options: Vec<String>,
    /// File system type (`tmpfs`).
    pub fs_type: String,
    /// Super-block options (`rw,size=1024k,mode=755`).
    pub super_options: Vec<String>,
}

/// Every mount, in mount order.
pub fn mount_table() -> anyhow::Result<Vec<MountEntry>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut entries = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(separator) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(options), Some(fs_type), Some(super_options)) = (
            fields.get(4),
            fields.get(5),
            fields.get(separator + 1),
            fields.get(separator + 3),
        ) else {
            continue;
        };
        entries.push(MountEntry {
            mount_point: PathBuf::from(unescape(mount_point)),
            mount_options: options.split(',').map(str::to_owned).collect(),
            fs_type: (*fs_type).to_owned(),
            super_options: super_options.split(',').map(str::to_owned).collect(),
        });
    }
    Ok(entries)
}

/// The top-most mount at exactly `path`, if it is a mount point.
pub fn mount_entry(path: &Path) -> anyhow::Result<Option<MountEntry>> {
    Ok(mount_table()?
        .into_iter()
        .rev()
        .find(|e| e.mount_point == path))
}

/// Whether `statfs(path)` reports a tmpfs.
pub fn is_tmpfs(path: &Path) -> anyhow::Result<bool> {
    let stat =
        nix::sys::statfs::statfs(path).with_context(|| format!("statfs {}", path.display()))?;
    #[allow(clippy::unnecessary_cast)]
    let kind = stat.filesystem_type().0 as i64;
    Ok(kind == TMPFS_MAGIC)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `root`, deepest (last mounted) first.
pub fn mounts_under(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mount_table()?
        .into_iter()
        .map(|e| e.mount_point)
        .filter(|p| p.starts_with(root))
        .collect();
    found.reverse();
    Ok(found)
}

/// Unmounts everything still mounted at or below a directory when dropped (lazily, so a busy mount cannot
/// block), so a failed test leaves no tmpfs behind. Create it before anything mounts there, and let it drop
/// after the shim process.
#[derive(Debug)]
pub struct MountCleanup {
    root: PathBuf,
}

impl MountCleanup {
    /// Guards `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// Unmounts now; returns what was still mounted.
    pub fn unmount_all(&self) -> Vec<PathBuf> {
        let leftovers = mounts_under(&self.root).unwrap_or_default();
        for path in &leftovers {
            let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
        }
        leftovers
    }
}

impl Drop for MountCleanup {
    fn drop(&mut self) {
        let leftovers = self.unmount_all();
        if !leftovers.is_empty() {
            eprintln!(
                "MountCleanup: unmounted leftovers under {}: {leftovers:?}",
                self.root.display()
            );
        }
    }
}
