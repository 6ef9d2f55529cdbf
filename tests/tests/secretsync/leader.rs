//! Two replicas, one leader on the Lease; the other takes over when the leader goes.

use courier_tests::KubeResource;
use serde_json::json;

use crate::support::{Cluster, WAIT};

/// The Lease's holder, once there is one.
fn holder(cluster: &Cluster) -> Option<String> {
    cluster
        .kube
        .get(KubeResource::LEASES, "courier-system", "courier-secretsync")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn two_replicas_sync_through_one_leader_and_hand_over() -> anyhow::Result<()> {
    let cluster = Cluster::start("leader").await?;
    cluster.put("app", json!({"username": "heidi", "password": "leader-secret-value"})).await?;
    cluster.put_spc("db-creds");
    let a = cluster.controller("replica-a").await?;
    let b = cluster.controller("replica-b").await?;
    let first = cluster.kube.wait_for(WAIT, "a Lease holder", |_| holder(&cluster)).await?;
    let (mut leader, follower) = if first == a.identity() { (a, b) } else { (b, a) };
    assert_eq!(first, leader.identity());

    cluster.create_sync("db", json!({}))?;
    cluster.wait_secret_value("db-creds", "pass", "leader-secret-value").await?;
    cluster.wait_ready("db", "True", "Synced").await?;
    let leading = leader.metrics().await?;
    let following = follower.metrics().await?;
    assert_eq!(leading.sum("courier_secretsync_leader", &[]), 1.0);
    assert_eq!(following.sum("courier_secretsync_leader", &[]), 0.0);
    assert_eq!(following.sum("courier_secretsync_syncs_total", &[]), 0.0, "the follower never synced");
    assert_eq!(holder(&cluster).as_deref(), Some(leader.identity()), "still the same leader");

    // The leader stops (releasing the Lease); the follower takes over and keeps syncing.
    let status = leader.terminate().await?;
    assert!(status.success(), "{status}\n{}", leader.logs());
    let follower_id = follower.identity().to_owned();
    cluster
        .kube
        .wait_for(WAIT, "the follower holding the Lease", |_| {
            (holder(&cluster).as_deref() == Some(follower_id.as_str())).then_some(())
        })
        .await?;
    cluster.put("app", json!({"username": "heidi", "password": "handed-over-value"})).await?;
    cluster.wait_secret_value("db-creds", "pass", "handed-over-value").await.map_err(|e| {
        anyhow::anyhow!("{e:#}\nnew leader log:\n{}", follower.logs())
    })?;
    let lease = cluster
        .kube
        .get(KubeResource::LEASES, "courier-system", "courier-secretsync")
        .ok_or_else(|| anyhow::anyhow!("no Lease"))?;
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    Ok(())
}
