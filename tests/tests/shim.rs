//! The driver shim driven as kubelet drives it: the real `courier-driver-shim` binary serving CSI on a unix
//! socket, a fake Kubernetes API for its `kube` client, and two providers behind it: a test provider whose
//! answers each test sets (standing for any other Secrets Store CSI provider), and Courier's own provider on a
//! real OpenBao.
//!
//! These tests mount tmpfs volumes, so they need root (as in CI). Every test works in its own temporary
//! directory and unmounts whatever is left there when it ends, failed or not.

#[path = "shim/support.rs"]
mod support;

#[path = "shim/cluster.rs"]
mod cluster;
#[path = "shim/csi.rs"]
mod csi;
#[path = "shim/dashboard_metrics.rs"]
mod dashboard_metrics;
#[path = "shim/local.rs"]
mod local;
#[path = "shim/local_paths.rs"]
mod local_paths;
#[path = "shim/mirror.rs"]
mod mirror;
#[path = "shim/mirror_more.rs"]
mod mirror_more;
#[path = "shim/openbao.rs"]
mod openbao;
#[path = "shim/paths.rs"]
mod paths;
#[path = "shim/publish.rs"]
mod publish;
#[path = "shim/rotation.rs"]
mod rotation;
