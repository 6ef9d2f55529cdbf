//! The CSI Identity and Node services kubelet calls.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use courier_proto::csi::v1::identity_server::Identity;
use courier_proto::csi::v1::node_server::Node;
use courier_proto::csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse,
    NodeGetInfoRequest, NodeGetInfoResponse, NodePublishVolumeRequest, NodePublishVolumeResponse,
    NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse, PluginCapability, ProbeRequest,
    ProbeResponse, plugin_capability,
};
use tonic::{Code, Request, Response, Status};

use crate::cluster::{Cluster, EventType, PodRef};
use crate::error_chain::display_chain;
use crate::metrics::ResultLabels;
use crate::publish::{Publish, Published, Shim};

/// volume_context keys kubelet and the pod set.
const SPC_KEY: &str = "secretProviderClass";
const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
/// The sanity-test provider that only mounts tmpfs, as upstream.
const MOCK_PROVIDER: &str = "mock_provider";

/// Identity service.
#[derive(Debug, Clone)]
pub struct IdentityService {
    /// Driver name reported to kubelet.
    pub driver_name: String,
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver_name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        // Reported as the upstream driver reports it; no controller RPC is served.
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![PluginCapability {
                r#type: Some(plugin_capability::Type::Service(
                    plugin_capability::Service {
                        r#type: plugin_capability::service::Type::ControllerService as i32,
                    },
                )),
            }],
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

/// Node service.
#[derive(Debug, Clone)]
pub struct NodeService {
    /// The publish machinery.
    pub shim: Arc<Shim>,
    /// The cluster (SecretProviderClasses, status, events).
    pub cluster: Arc<Cluster>,
    /// Post-mount work (Secret mirroring), if enabled.
    pub after_mount: Option<Arc<dyn AfterMount>>,
}

/// Work done after a successful mount (mirroring files into Secrets).
#[tonic::async_trait]
pub trait AfterMount: std::fmt::Debug + Send + Sync {
    /// Called with the mounted target after every successful mount; `rotated` when a
    /// republish swapped in new content.
    async fn mounted(
        &self,
        pod: &PodRef,
        spc: &crate::cluster::SecretProviderClass,
        target: &Path,
        rotated: bool,
    ) -> Result<(), crate::sync::Error>;
}

fn invalid(message: &str) -> Status {
    Status::invalid_argument(message)
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let started = std::time::Instant::now();
        let mut operation = "publish";
        let result = self.publish(req, &mut operation).await;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.shim
            .metrics()
            .published(operation, code, started.elapsed());
        let label = match &result {
            Ok(Some(Published::Skipped)) => "skipped",
            Ok(Some(Published::Unchanged { .. })) => "unchanged",
            Ok(Some(Published::Reported { .. })) => "error",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.shim
            .metrics()
            .publish
            .get_or_create(&ResultLabels { result: label })
            .inc();
        result.map(|_| Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(invalid("Volume ID missing in request"));
        }
        if req.target_path.is_empty() {
            return Err(invalid("Target path missing in request"));
        }
        let shim = Arc::clone(&self.shim);
        let target = req.target_path.clone();
        tokio::task::spawn_blocking(move || shim.unpublish(Path::new(&target)))
            .await
            .map_err(|e| Status::internal(format!("unpublish stopped: {e}")))?
            .map_err(|e| Status::new(e.code, e.message))?;
        tracing::info!(target = %req.target_path, "volume unpublished");
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.cluster.node_id().to_owned(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

impl NodeService {
    /// Publishes; sets `operation` to `republish` once the volume is found mounted.
    async fn publish(
        &self,
        req: NodePublishVolumeRequest,
        operation: &mut &'static str,
    ) -> Result<Option<Published>, Status> {
        if req.volume_capability.is_none() {
            return Err(invalid("Volume capability missing in request"));
        }
        if req.volume_id.is_empty() {
            return Err(invalid("Volume ID missing in request"));
        }
        if req.target_path.is_empty() {
            return Err(invalid("Target path missing in request"));
        }
        if req.volume_context.is_empty() {
            return Err(invalid("Volume attributes missing in request"));
        }
        let ctx = &req.volume_context;
        let pod = PodRef {
            namespace: ctx.get(POD_NAMESPACE).cloned().unwrap_or_default(),
            name: ctx.get(POD_NAME).cloned().unwrap_or_default(),
            uid: ctx.get(POD_UID).cloned().unwrap_or_default(),
        };
        let target = Path::new(&req.target_path);
        if ctx
            .get("providerName")
            .is_some_and(|p| p.eq_ignore_ascii_case(MOCK_PROVIDER))
        {
            return self.mock(target).map(|()| None);
        }
        // A republish of a mounted volume: decide first whether to touch it, and
        // let --republish-errors govern every failure from here on, so kubelet
        // never sees an error it would answer by deleting a working mount.
        let mounted = self
            .shim
            .is_mounted(target)
            .map_err(|e| Status::new(e.code, e.message))?;
        if mounted {
            *operation = "republish";
        }
        if mounted && self.shim.skips_republish(target) {
            return Ok(Some(Published::Skipped));
        }
        let spc = match self.secret_provider_class(&pod, ctx, req.readonly).await {
            Ok(spc) => spc,
            Err(status) if mounted => {
                let failure = crate::publish::fail(status.code(), status.message());
                let published = self
                    .shim
                    .republish_failed(failure)
                    .map_err(|e| Status::new(e.code, e.message))?;
                self.after(
                    &pod,
                    &crate::cluster::SecretProviderClass::default(),
                    target,
                    &published,
                )
                .await;
                return Ok(Some(published));
            }
            Err(status) => return Err(status),
        };
        let published = self
            .shim
            .publish(Publish {
                target,
                spc: &spc,
                volume_context: &req.volume_context,
                secrets: &req.secrets,
            })
            .await;
        let published = match published {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pod.namespace = %pod.namespace, pod.name = %pod.name, spc = %spc.name, error = %e.message, "publish failed");
                if e.republish {
                    self.cluster
                        .event(&pod, EventType::Warning, "MountRotationFailed", &e.message)
                        .await;
                }
                return Err(Status::new(
                    if e.code == Code::Ok {
                        Code::Unknown
                    } else {
                        e.code
                    },
                    format!(
                        "failed to mount secrets store objects for pod {}/{}, err: {}",
                        pod.namespace, pod.name, e.message
                    ),
                ));
            }
        };
        self.after(&pod, &spc, target, &published).await;
        Ok(Some(published))
    }

    async fn after(
        &self,
        pod: &PodRef,
        spc: &crate::cluster::SecretProviderClass,
        target: &Path,
        published: &Published,
    ) {
        let (versions, changed, rotated) = match published {
            Published::Written { versions, first } => (versions, true, !first),
            Published::ProviderWrote { versions } => (versions, true, false),
            Published::Unchanged { versions } => (versions, false, false),
            Published::Reported { error } => {
                tracing::warn!(pod.namespace = %pod.namespace, pod.name = %pod.name, spc = %spc.name, error = %error, "republish failed; previous files kept");
                self.cluster
                    .event(
                        pod,
                        EventType::Warning,
                        "MountRotationFailed",
                        &format!("republish failed, previous files kept: {error}"),
                    )
                    .await;
                return;
            }
            Published::Skipped => return,
        };
        tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, spc = %spc.name, changed, objects = versions.len(), "volume published");
        // The status record holds the versions: it changes only when the files do.
        if changed
            && let Err(e) = self
                .cluster
                .record_status(pod, &spc.name, &target.to_string_lossy(), versions)
                .await
        {
            tracing::warn!(pod.namespace = %pod.namespace, pod.name = %pod.name, error = %e, "cannot record the SecretProviderClassPodStatus");
        }
        if let Some(after) = &self.after_mount
            && let Err(e) = after.mounted(pod, spc, target, rotated).await
        {
            self.shim.metrics().sync_errors.inc();
            self.cluster
                .event(
                    pod,
                    EventType::Warning,
                    "FailedToCreateSecret",
                    &display_chain(&e),
                )
                .await;
        }
    }

    /// The volume's SecretProviderClass, and the checks upstream makes around it.
    async fn secret_provider_class(
        &self,
        pod: &PodRef,
        ctx: &HashMap<String, String>,
        readonly: bool,
    ) -> Result<crate::cluster::SecretProviderClass, Status> {
        let Some(spc_name) = ctx.get(SPC_KEY).filter(|s| !s.is_empty()) else {
            return Err(invalid(
                "secretProviderClass is not set in the volume attributes",
            ));
        };
        let spc = match self
            .cluster
            .secret_provider_class(&pod.namespace, spc_name)
            .await
        {
            Ok(Some(spc)) => spc,
            Ok(None) => {
                return Err(Status::not_found(format!(
                    "failed to get secretproviderclass {}/{spc_name}, error: not found",
                    pod.namespace
                )));
            }
            Err(e) => {
                return Err(Status::unavailable(format!(
                    "failed to get secretproviderclass {}/{spc_name}, error: {e}",
                    pod.namespace
                )));
            }
        };
        if !readonly {
            return Err(invalid("Readonly is not true in request"));
        }
        Ok(spc)
    }

    fn mock(&self, target: &Path) -> Result<(), Status> {
        self.shim
            .mount_bare(target)
            .map_err(|e| Status::new(e.code, e.message))
    }
}
