//! `creationPolicy` (Owner, Orphan) when the SecretSync goes, and `deletionPolicy` (Retain, Delete) when
//! the source secret goes, as External Secrets defines them.

use serde_json::json;

use crate::support::{Cluster, WAIT};

#[tokio::test]
async fn owned_secrets_go_with_the_secret_sync_orphans_stay() -> anyhow::Result<()> {
    let cluster = Cluster::start("creation").await?;
    cluster.put("app", json!({"username": "dave", "password": "owned-secret-value"})).await?;
    cluster.put_spc("unused");
    let objects = |name: &str| {
        json!([{"secretName": name, "type": "Opaque", "data": [{"objectName": "password", "key": "pass"}]}])
    };
    let owner = cluster.create_sync("owner", json!({"target": {"creationPolicy": "Owner", "secretObjects": objects("owned")}}))?;
    cluster.create_sync("orphan", json!({"target": {"creationPolicy": "Orphan", "secretObjects": objects("orphaned")}}))?;
    let controller = cluster.controller("replica-a").await?;
    let owned = cluster.wait_secret_value("owned", "pass", "owned-secret-value").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}", controller.logs())
    })?;
    let orphaned = cluster.wait_secret_value("orphaned", "pass", "owned-secret-value").await?;
    assert!(cluster.secret("unused").is_none(), "the SecretSync's own list replaces the class's secretObjects");
    let refs = &owned["metadata"]["ownerReferences"];
    assert_eq!(refs.as_array().map(Vec::len), Some(1), "{refs}");
    assert_eq!(refs[0]["kind"], "SecretSync");
    assert_eq!(refs[0]["apiVersion"], "courier.dev/v1alpha1");
    assert_eq!(refs[0]["uid"], owner["metadata"]["uid"]);
    assert!(orphaned["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty));

    assert!(cluster.kube.delete(courier_tests::KubeResource::SECRET_SYNCS, &cluster.namespace, "owner"));
    assert!(cluster.kube.delete(courier_tests::KubeResource::SECRET_SYNCS, &cluster.namespace, "orphan"));
    cluster.kube.collect_garbage();
    assert!(cluster.secret("owned").is_none(), "garbage collection took the owned Secret");
    assert!(cluster.secret("orphaned").is_some(), "the orphan stays");
    Ok(())
}

#[tokio::test]
async fn a_deleted_source_deletes_or_retains_by_policy() -> anyhow::Result<()> {
    let cluster = Cluster::start("deletion").await?;
    cluster.put("app", json!({"username": "erin", "password": "doomed-secret-value"})).await?;
    cluster.put_spc("unused");
    let objects = |name: &str| {
        json!([{"secretName": name, "type": "Opaque", "data": [{"objectName": "password", "key": "pass"}]}])
    };
    cluster.create_sync("deleting", json!({"target": {"deletionPolicy": "Delete", "secretObjects": objects("deleted")}}))?;
    cluster.create_sync("retaining", json!({"target": {"deletionPolicy": "Retain", "secretObjects": objects("retained")}}))?;
    // A Secret of the same name as a target, but written by someone else, in another SecretSync's list.
    let controller = cluster.controller("replica-a").await?;
    cluster.wait_secret_value("deleted", "pass", "doomed-secret-value").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}", controller.logs())
    })?;
    let retained = cluster.wait_secret_value("retained", "pass", "doomed-secret-value").await?;

    cluster.destroy("app").await?;
    cluster.wait_ready("deleting", "False", "SourceDeleted").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}\nprovider log:\n{}", controller.logs(), cluster.provider.logs())
    })?;
    cluster
        .kube
        .wait_for(WAIT, "the Secret deleted", |_| cluster.secret("deleted").is_none().then_some(()))
        .await?;
    cluster.wait_ready("retaining", "False", "SourceNotFound").await?;
    let kept = cluster.secret("retained").ok_or_else(|| anyhow::anyhow!("the retained Secret is gone"))?;
    assert_eq!(kept["data"], retained["data"]);
    assert_eq!(cluster.events("deleting", "SourceDeleted").len(), 1);
    cluster.assert_never_shown("doomed-secret-value", &[controller.logs()]);
    Ok(())
}

#[tokio::test]
async fn delete_never_touches_a_secret_the_secret_sync_did_not_write() -> anyhow::Result<()> {
    let cluster = Cluster::start("stranger").await?;
    cluster.put_spc("unused");
    // The source never exists; the target name is taken by a Secret someone else wrote.
    cluster.kube.put(
        courier_tests::KubeResource::SECRETS,
        &cluster.namespace,
        json!({"metadata": {"name": "theirs", "namespace": cluster.namespace}, "type": "Opaque",
               "data": {"k": "dGhlaXJz"}}),
    )?;
    let objects = json!([{"secretName": "theirs", "type": "Opaque", "data": [{"objectName": "password", "key": "pass"}]}]);
    cluster.create_sync("greedy", json!({"target": {"deletionPolicy": "Delete", "secretObjects": objects}}))?;
    let _controller = cluster.controller("replica-a").await?;
    cluster.wait_ready("greedy", "False", "SourceDeleted").await?;
    assert!(cluster.secret("theirs").is_some(), "a Secret without the SecretSync's label is left alone");
    Ok(())
}

#[tokio::test]
async fn on_change_refreshes_only_when_the_secret_sync_changes() -> anyhow::Result<()> {
    let cluster = Cluster::start("onchange").await?;
    cluster.put("app", json!({"username": "ivan", "password": "pinned-secret-value"})).await?;
    cluster.put_spc("pinned");
    cluster.create_sync("db", json!({"refreshPolicy": "OnChange"}))?;
    let controller = cluster.controller("replica-a").await?;
    cluster.wait_secret_value("pinned", "pass", "pinned-secret-value").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\ncontroller log:\n{}", controller.logs())
    })?;
    cluster.wait_ready("db", "True", "Synced").await?;
    let token_requests = cluster.kube.token_requests(&cluster.namespace, crate::support::APP_SA).len();

    cluster.put("app", json!({"username": "ivan", "password": "changed-secret-value"})).await?;
    // A spec change is what brings the new value.
    cluster.kube.merge_patch(
        courier_tests::KubeResource::SECRET_SYNCS,
        &cluster.namespace,
        "db",
        &json!({"spec": {"refreshInterval": "2s"}}),
    )?;
    let secret = cluster.wait_secret_value("pinned", "pass", "changed-secret-value").await?;
    assert!(secret["data"]["user"].is_string());
    // The Secret is written before the status records the sync.
    cluster
        .kube
        .wait_for(WAIT, "syncedGeneration 2", |_| {
            cluster.sync_object("db").filter(|o| o["status"]["syncedGeneration"] == 2)
        })
        .await?;
    assert_eq!(
        cluster.kube.token_requests(&cluster.namespace, crate::support::APP_SA).len(),
        token_requests + 1,
        "one sync for the change, none on a timer (a 1s Periodic one would have read again by now)"
    );
    Ok(())
}
