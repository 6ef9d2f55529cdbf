//! Create, refresh on a changed secret, failure keeping the last good Secret; status and Events never show
//! a value.

use serde_json::json;

use crate::support::{APP_SA, Cluster, WAIT};

#[tokio::test]
async fn a_secret_sync_creates_refreshes_and_reports_without_values() -> anyhow::Result<()> {
    let cluster = Cluster::start("create").await?;
    cluster.put("app", json!({"username": "alice", "password": "first-secret-value"})).await?;
    cluster.put_spc("db-creds");
    cluster.create_sync("db", json!({}))?;
    let controller = cluster.controller("replica-a").await?;
    let explain = |e: anyhow::Error| anyhow::anyhow!("{e:#}\ncontroller log:\n{}\nprovider log:\n{}", controller.logs(), cluster.provider.logs());

    let secret = cluster.wait_secret_value("db-creds", "pass", "first-secret-value").await.map_err(explain)?;
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["metadata"]["labels"]["secrets-store.csi.k8s.io/managed"], "true");
    assert_eq!(secret["metadata"]["labels"]["courier.dev/secretsync"], "db");
    let synced = cluster.wait_ready("db", "True", "Synced").await?;
    let status = &synced["status"];
    assert_eq!(status["secrets"], json!(["db-creds"]));
    assert_eq!(status["syncedGeneration"], synced["metadata"]["generation"]);
    assert_eq!(status["objects"].as_array().map(Vec::len), Some(2), "{status}");
    assert!(status["lastSyncTime"].is_string());
    assert_eq!(cluster.events("db", "Synced").len(), 1, "one Event for the creation");

    // The token came from the TokenRequest API for the named service account, not from a pod.
    let requests = cluster.kube.token_requests(&cluster.namespace, APP_SA);
    assert!(!requests.is_empty());
    assert_eq!(requests[0].body.as_ref().map(|b| b["spec"]["audiences"].clone()), Some(json!(["vault"])));

    // Changed in OpenBao: the next refresh (1 s, jittered) writes it, with one more Event.
    cluster.put("app", json!({"username": "alice", "password": "second-secret-value"})).await?;
    cluster.wait_secret_value("db-creds", "pass", "second-secret-value").await.map_err(explain)?;
    cluster
        .kube
        .wait_for(WAIT, "a second Synced event", |_| (cluster.events("db", "Synced").len() == 2).then_some(()))
        .await?;
    let metrics = controller.metrics().await?;
    assert!(metrics.sum("courier_secretsync_syncs_total", &[("result", "written")]) >= 2.0);
    assert_eq!(metrics.sum("courier_secretsync_leader", &[]), 1.0);

    assert!(!controller.logs().contains("eyJ"), "no token (a JWT starts eyJ) in the controller's debug log");
    cluster.assert_never_shown("first-secret-value", &[controller.logs()]);
    cluster.assert_never_shown("second-secret-value", &[controller.logs()]);
    Ok(())
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_secret_and_says_why() -> anyhow::Result<()> {
    let cluster = Cluster::start("failure").await?;
    cluster.put("app", json!({"username": "bob", "password": "kept-secret-value"})).await?;
    cluster.put_spc("db-creds");
    cluster.create_sync("db", json!({}))?;
    let controller = cluster.controller("replica-a").await?;
    let good = cluster.wait_secret_value("db-creds", "pass", "kept-secret-value").await?;
    let last_good = cluster.wait_ready("db", "True", "Synced").await?;

    // The backend refuses the identity from now on: every refresh fails.
    cluster.revoke_read().await?;
    cluster.put("app", json!({"username": "bob", "password": "unreadable-new-value"})).await?;
    let failed = cluster.wait_ready("db", "False", "PermissionDenied").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}", controller.logs())
    })?;
    let secret = cluster.secret("db-creds").ok_or_else(|| anyhow::anyhow!("the Secret is gone"))?;
    assert_eq!(secret["data"], good["data"], "the last good content stays");
    assert_eq!(secret["metadata"]["resourceVersion"], good["metadata"]["resourceVersion"], "not even rewritten");
    // Refreshes of unchanged content may have moved lastSyncTime since; the last good sync's record stays.
    assert!(failed["status"]["lastSyncTime"].is_string(), "the last good sync is kept");
    assert_eq!(failed["status"]["objects"], last_good["status"]["objects"], "the versions of the content kept");
    assert_eq!(failed["status"]["secrets"], json!(["db-creds"]));
    let warnings = cluster.events("db", "PermissionDenied");
    assert_eq!(warnings.len(), 1, "one Warning for the change, not one per retry");
    assert_eq!(warnings[0]["type"], "Warning");
    let metrics = controller.metrics().await?;
    assert!(metrics.sum("courier_secretsync_failures_total", &[("reason", "PermissionDenied")]) >= 1.0);
    cluster.assert_never_shown("kept-secret-value", &[controller.logs()]);
    cluster.assert_never_shown("unreadable-new-value", &[controller.logs()]);
    Ok(())
}

#[tokio::test]
async fn the_status_is_the_controllers_alone_and_a_missing_class_is_reported() -> anyhow::Result<()> {
    let cluster = Cluster::start("status").await?;
    // No SecretProviderClass yet.
    let created = cluster.create_sync("db", json!({}))?;
    assert!(created.get("status").is_none());
    let controller = cluster.controller("replica-a").await?;
    cluster.wait_ready("db", "False", "SecretProviderClassNotFound").await?;
    // A write to the main resource cannot forge the status (status subresource).
    let api = cluster.secret_syncs_api().await?;
    let mut forged = api.get("db").await?;
    forged.data["status"]["conditions"][0]["reason"] = json!("Synced");
    forged.data["status"]["conditions"][0]["status"] = json!("True");
    forged.data["spec"]["refreshInterval"] = json!("2s");
    let answered = api.replace("db", &Default::default(), &forged).await?;
    assert_eq!(answered.data["status"]["conditions"][0]["reason"], "SecretProviderClassNotFound");
    assert_eq!(answered.metadata.generation, Some(2), "the spec change counts");
    let stored = cluster.sync_object("db").ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(stored["status"]["conditions"][0]["reason"], "SecretProviderClassNotFound");
    // And a status write cannot change the spec.
    let mut sneaky = api.get("db").await?;
    sneaky.data["spec"]["serviceAccountRef"]["name"] = json!("admin");
    let answered = api.replace_status("db", &Default::default(), &sneaky).await?;
    assert_eq!(answered.data["spec"]["serviceAccountRef"]["name"], "app");

    cluster.put("app", json!({"username": "carol", "password": "late-secret-value"})).await?;
    cluster.put_spc("db-creds");
    cluster.wait_secret_value("db-creds", "pass", "late-secret-value").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}", controller.logs())
    })?;
    cluster.wait_ready("db", "True", "Synced").await?;
    Ok(())
}
