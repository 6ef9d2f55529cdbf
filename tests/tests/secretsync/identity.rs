//! A SecretSync reads only what its service account may read, and only a service account of its own
//! namespace.

use serde_json::json;

use crate::support::{APP_SA, Cluster};

#[tokio::test]
async fn a_secret_sync_may_not_read_what_its_service_account_may_not() -> anyhow::Result<()> {
    let cluster = Cluster::start("isolation").await?;
    cluster.put("app", json!({"username": "frank", "password": "isolated-secret-value"})).await?;
    cluster.put_spc("stolen");
    // `intruder` exists in the namespace but the Vault role is bound to `app` only.
    cluster.kube.put_service_account(&cluster.namespace, "intruder", std::iter::empty::<(String, String)>());
    cluster.create_sync("steal", json!({"serviceAccountRef": {"name": "intruder"}}))?;
    let controller = cluster.controller("replica-a").await?;
    let failed = cluster.wait_ready("steal", "False", "PermissionDenied").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}\nprovider log:\n{}", controller.logs(), cluster.provider.logs())
    })?;
    assert!(cluster.secret("stolen").is_none());
    assert!(!cluster.kube.token_requests(&cluster.namespace, "intruder").is_empty(), "it asked as intruder");
    assert!(cluster.kube.token_requests(&cluster.namespace, APP_SA).is_empty(), "never as app");
    let message = failed["status"]["conditions"][0]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty());
    // A service account that does not exist gets no token at all.
    cluster.create_sync("ghost", json!({"serviceAccountRef": {"name": "nobody"}}))?;
    cluster.wait_ready("ghost", "False", "ServiceAccountNotFound").await?;
    cluster.assert_never_shown("isolated-secret-value", &[controller.logs()]);
    Ok(())
}

#[tokio::test]
async fn a_service_account_of_another_namespace_is_refused_before_any_token() -> anyhow::Result<()> {
    let cluster = Cluster::start("crossns").await?;
    cluster.put("app", json!({"username": "grace", "password": "cross-secret-value"})).await?;
    cluster.put_spc("cross");
    cluster.kube.put_service_account("kube-system", "admin", std::iter::empty::<(String, String)>());
    cluster.create_sync("cross", json!({"serviceAccountRef": {"name": "admin", "namespace": "kube-system"}}))?;
    let controller = cluster.controller("replica-a").await?;
    let refused = cluster.wait_ready("cross", "False", "CrossNamespaceServiceAccount").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}", controller.logs())
    })?;
    let message = refused["status"]["conditions"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("kube-system"), "{message}");
    assert!(cluster.kube.token_requests("kube-system", "admin").is_empty(), "no token was asked for");
    assert!(cluster.secret("cross").is_none());
    let warnings = cluster.events("cross", "CrossNamespaceServiceAccount");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0]["type"], "Warning");
    Ok(())
}
