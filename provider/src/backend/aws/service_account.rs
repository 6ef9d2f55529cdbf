//! The service account's `eks.amazonaws.com/role-arn` annotation, read through the
//! Kubernetes API (the only Kubernetes access the provider needs, and only for IRSA).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use crate::backend::{Error, ErrorKind};
use crate::kube_client::KubeClient;

/// The annotation naming the IAM role of a service account.
pub(super) const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The provider's shared Kubernetes client, built on first use.
pub(super) struct Kube {
    client: Arc<KubeClient>,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kube")
    }
}

impl Kube {
    pub(super) fn new(client: Arc<KubeClient>) -> Self {
        Self { client }
    }

    async fn client(&self) -> Result<kube::Client, Error> {
        self.client.get().await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "aws",
                format!(
                    "cannot build a Kubernetes client to read the service account's role (in-cluster \
                     config or KUBECONFIG): {e}"
                ),
            )
        })
    }

    /// The role ARN annotated on `namespace/name`, if any.
    pub(super) async fn role_arn(&self, namespace: &str, name: &str) -> Result<Option<String>, Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client().await?, namespace);
        let account = api.get_opt(name).await.map_err(|e| {
            let (kind, hint) = match &e {
                kube::Error::Api(status) if status.code == 403 => (
                    ErrorKind::Denied,
                    "the provider's service account needs 'get' on serviceaccounts (the chart's RBAC grants it when AWS is enabled)",
                ),
                _ => (ErrorKind::Unavailable, "check that the Kubernetes API is reachable from the provider"),
            };
            Error::new(kind, "aws", format!("cannot read service account {namespace}/{name}: {e}; {hint}"))
        })?;
        let Some(account) = account else {
            return Err(Error::new(
                ErrorKind::Invalid,
                "aws",
                format!("service account {namespace}/{name} does not exist in the Kubernetes API"),
            ));
        };
        Ok(account.metadata.annotations.and_then(|mut a| a.remove(ROLE_ARN_ANNOTATION)).filter(|a| !a.is_empty()))
    }
}
