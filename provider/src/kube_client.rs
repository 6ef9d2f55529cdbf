//! The provider's one Kubernetes client, built on first use from the in-cluster
//! configuration (or `KUBECONFIG`): the service-account issuer keys and, for
//! IRSA, service-account annotations are read through it.

use tokio::sync::OnceCell;

/// A lazily built, shared Kubernetes client.
#[derive(Default)]
pub(crate) struct KubeClient {
    client: OnceCell<kube::Client>,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeClient")
    }
}

impl KubeClient {
    /// The client; a failed build is tried again on the next call.
    pub(crate) async fn get(&self) -> Result<kube::Client, kube::Error> {
        self.client.get_or_try_init(kube::Client::try_default).await.cloned()
    }
}
