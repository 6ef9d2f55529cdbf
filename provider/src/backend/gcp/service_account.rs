//! The Kubernetes service account's `iam.gke.io/gcp-service-account` annotation:
//! the Google service account its pods impersonate (read through the Kubernetes
//! API, the only Kubernetes access the Google backend needs).

use std::sync::Arc;


use super::BACKEND;
use crate::backend::annotations;
use crate::backend::{Error, ErrorKind};
use crate::kube_client::KubeClient;

/// The annotation naming the Google service account to impersonate.
pub(crate) const GSA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// The annotation listing delegates of the impersonation chain (a JSON list).
const DELEGATES_ANNOTATION: &str = "iam.gke.io/gcp-service-account-delegates";
/// Most delegates accepted in the chain.
const MAX_DELEGATES: usize = 10;

/// Whom a service account's pods act as in Google Cloud.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Impersonation {
    /// The Google service account's email.
    pub(super) target: String,
    /// Service accounts in the delegation chain, in order.
    pub(super) delegates: Vec<String>,
}

/// Whether `email` can stand in a `projects/-/serviceAccounts/EMAIL` path.
fn valid_account(email: &str) -> bool {
    !email.is_empty()
        && email.len() <= 254
        && email.contains('@')
        && email.chars().all(|c| c.is_ascii_alphanumeric() || "@.-_".contains(c))
}

/// Reads `namespace/name` and its impersonation annotations.
pub(super) async fn impersonation(kube: &Arc<KubeClient>, namespace: &str, name: &str) -> Result<Option<Impersonation>, Error> {
    let annotations = annotations::read(kube, BACKEND, namespace, name, "the provider's service account needs 'get' on serviceaccounts (the chart grants it when GCP is enabled)").await?;
    let Some(target) = annotations.get(GSA_ANNOTATION).map(|t| t.trim()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = |what: String| {
        Error::new(ErrorKind::Invalid, BACKEND, format!("service account {namespace}/{name}: {what}"))
    };
    if !valid_account(target) {
        return Err(bad(format!("annotation {GSA_ANNOTATION} {target:?} is not a Google service account email")));
    }
    let delegates = match annotations.get(DELEGATES_ANNOTATION) {
        None => Vec::new(),
        Some(text) => {
            let list: Vec<String> = serde_json::from_str(text)
                .map_err(|_| bad(format!("annotation {DELEGATES_ANNOTATION} is not a JSON list of emails")))?;
            if list.len() > MAX_DELEGATES || !list.iter().all(|d| valid_account(d)) {
                return Err(bad(format!(
                    "annotation {DELEGATES_ANNOTATION} must list at most {MAX_DELEGATES} Google service account emails"
                )));
            }
            list
        }
    };
    Ok(Some(Impersonation { target: target.to_owned(), delegates }))
}

#[cfg(test)]
mod tests {
    use super::valid_account;

    #[test]
    fn account_emails() {
        assert!(valid_account("app@p1.iam.gserviceaccount.com"));
        for bad in ["", "app", "a@b/../c", "a@b?x", "a@b#c", "a b@c", "a@b:c"] {
            assert!(!valid_account(bad), "{bad:?}");
        }
    }
}
