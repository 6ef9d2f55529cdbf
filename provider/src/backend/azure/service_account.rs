//! The Kubernetes service account's Entra workload identity annotations
//! (`azure.workload.identity/client-id`, `azure.workload.identity/tenant-id`),
//! read through the Kubernetes API when the SecretProviderClass names no
//! `clientID` or tenant.

use std::sync::Arc;


use super::{BACKEND, valid_client_id, valid_tenant};
use crate::backend::annotations;
use crate::backend::{Error, ErrorKind};
use crate::kube_client::KubeClient;

/// The annotation naming the Entra application (or managed identity) the service account acts as.
pub(crate) const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// The annotation naming the tenant of that application.
pub(crate) const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// What a service account's annotations say about its Entra identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Annotations {
    pub(super) client_id: Option<String>,
    pub(super) tenant_id: Option<String>,
}

/// Reads `namespace/name` and its workload identity annotations.
pub(super) async fn annotations(
    kube: &Arc<KubeClient>,
    namespace: &str,
    name: &str,
) -> Result<Annotations, Error> {
    let annotations = annotations::read(kube, BACKEND, namespace, name, "the provider's service account needs 'get' on serviceaccounts (the chart grants it when Azure is enabled), \
         or set clientID and tenantID in the SecretProviderClass").await?;
    let read = |key: &str, valid: fn(&str) -> bool| -> Result<Option<String>, Error> {
        match annotations
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => Ok(None),
            Some(v) if valid(v) => Ok(Some(v.to_owned())),
            Some(_) => Err(Error::new(
                ErrorKind::Invalid,
                BACKEND,
                format!("service account {namespace}/{name}: annotation {key} is not a valid id"),
            )),
        }
    };
    Ok(Annotations {
        client_id: read(CLIENT_ID_ANNOTATION, valid_client_id)?,
        tenant_id: read(TENANT_ID_ANNOTATION, valid_tenant)?,
    })
}
