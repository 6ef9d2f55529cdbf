//! The service account's `eks.amazonaws.com/role-arn` annotation, read through the
//! Kubernetes API (the only Kubernetes access the provider needs, and only for IRSA).

use super::BACKEND;
use crate::backend::{Error, annotations};
use crate::kube_client::KubeClient;

/// The annotation naming the IAM role of a service account.
pub(super) const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The role ARN annotated on `namespace/name`, if any.
pub(super) async fn role_arn(kube: &KubeClient, namespace: &str, name: &str) -> Result<Option<String>, Error> {
    let mut annotations = annotations::read(
        kube,
        BACKEND,
        namespace,
        name,
        "the provider's service account needs 'get' on serviceaccounts (the chart's RBAC grants it when AWS is enabled)",
    )
    .await?;
    Ok(annotations.remove(ROLE_ARN_ANNOTATION).filter(|a| !a.is_empty()))
}
