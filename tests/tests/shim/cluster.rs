//! What the shim does in the cluster: SecretProviderClassPodStatus records (name, label, owner, sorted status),
//! SecretProviderClasses from the watch, Events.

use std::time::Duration;

use courier_proto::v1alpha1::ObjectVersion;
use courier_tests::calls::assert_status;
use courier_tests::{KubeFault, KubeResource, shim::mount_entry};
use serde_json::{Value, json};
use tonic::Code;

use crate::support::{FAKE_PROVIDER, NODE, Node, SPC, read, spcps_name};

fn versions(pairs: &[(&str, &str)]) -> Vec<ObjectVersion> {
    pairs
        .iter()
        .map(|(id, version)| ObjectVersion {
            id: (*id).to_owned(),
            version: (*version).to_owned(),
        })
        .collect()
}

fn status_objects(spcps: &Value) -> Vec<(String, String)> {
    spcps["status"]["objects"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|o| {
                    (
                        o["id"].as_str().unwrap_or_default().to_owned(),
                        o["version"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_pod_status_record_is_created_labelled_owned_sorted_and_updated_on_rotation()
-> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    let files: [(&str, u32, &[u8]); 1] = [("a", 0o644, b"1")];
    node.provider.set_files_with_versions(
        &files,
        versions(&[("secret/z", "1"), ("secret/a", "1"), ("secret/m", "1")]),
    );
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    let name = spcps_name(&pod);
    let spcps = node
        .spcps(&pod)
        .ok_or_else(|| anyhow::anyhow!("no {name}; requests:\n{}", node.kube.request_log()))?;
    assert_eq!(spcps["apiVersion"], "secrets-store.csi.x-k8s.io/v1");
    assert_eq!(spcps["kind"], "SecretProviderClassPodStatus");
    assert_eq!(spcps["metadata"]["namespace"], pod.namespace());
    assert_eq!(
        spcps["metadata"]["labels"],
        json!({"internal.secrets-store.csi.k8s.io/node-name": NODE})
    );
    assert_eq!(
        spcps["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Pod", "name": pod.name(), "uid": pod.uid()}]),
        "owned by the pod, without controller or blockOwnerDeletion"
    );
    let status = &spcps["status"];
    assert_eq!(status["podName"], pod.name());
    assert_eq!(status["secretProviderClassName"], SPC);
    assert_eq!(status["mounted"], true);
    assert_eq!(
        status["targetPath"],
        volume.target_path().to_string_lossy().as_ref()
    );
    assert_eq!(
        status_objects(&spcps),
        [
            ("secret/a".to_owned(), "1".to_owned()),
            ("secret/m".to_owned(), "1".to_owned()),
            ("secret/z".to_owned(), "1".to_owned())
        ],
        "objects sorted by id"
    );
    let collection =
        KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES.collection_path(Some(pod.namespace()));
    assert_eq!(node.kube.requests_to("POST", &collection).len(), 1);

    node.provider.set_files_with_versions(
        &[("a", 0o644, b"2")],
        versions(&[("secret/z", "1"), ("secret/a", "2"), ("secret/m", "1")]),
    );
    kubelet.publish(&volume).await?;
    let updated = node
        .spcps(&pod)
        .ok_or_else(|| anyhow::anyhow!("{name} vanished"))?;
    assert_eq!(
        status_objects(&updated)[0],
        ("secret/a".to_owned(), "2".to_owned())
    );
    assert_eq!(
        updated["metadata"]["uid"], spcps["metadata"]["uid"],
        "updated in place"
    );
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        spcps["metadata"]["resourceVersion"]
    );
    let object =
        KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES.object_path(pod.namespace(), &name);
    assert_eq!(
        node.kube
            .requests_to("PUT", &object)
            .iter()
            .filter(|r| r.status == 200)
            .count(),
        1
    );

    // The record lives and dies with the pod.
    node.kube
        .delete(KubeResource::PODS, pod.namespace(), pod.name());
    let collected = node.kube.collect_garbage();
    assert_eq!(
        collected,
        [format!(
            "{}/{}/{name}",
            "secrets-store.csi.x-k8s.io/secretproviderclasspodstatuses",
            pod.namespace()
        )]
    );
    Ok(())
}

#[tokio::test]
async fn a_record_left_by_another_node_is_taken_over() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.kube.put(
        KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES,
        pod.namespace(),
        json!({
            "metadata": {
                "name": spcps_name(&pod),
                "labels": {"internal.secrets-store.csi.k8s.io/node-name": "node-0", "team": "a"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod.name(), "uid": "the-previous-pod"}],
            },
            "status": {"podName": pod.name(), "mounted": true, "objects": [{"id": "old", "version": "0"}]},
        }),
    )?;
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    let spcps = node
        .spcps(&pod)
        .ok_or_else(|| anyhow::anyhow!("no record"))?;
    assert_eq!(
        spcps["metadata"]["labels"]["internal.secrets-store.csi.k8s.io/node-name"],
        NODE
    );
    assert_eq!(
        spcps["metadata"]["labels"]["team"], "a",
        "other labels are kept"
    );
    assert_eq!(spcps["metadata"]["ownerReferences"][0]["uid"], pod.uid());
    assert_eq!(
        status_objects(&spcps),
        [("secret/foo".to_owned(), "v1".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn a_conflicting_status_update_is_retried() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.set_files(&[("a", 0o644, b"1")]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    let object = KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES
        .object_path(pod.namespace(), &spcps_name(&pod));
    node.kube
        .inject_fault("PUT", &object, 1, KubeFault::Conflict);
    node.provider.set_files(&[("a", 0o644, b"2")]);
    kubelet.publish(&volume).await?;
    let puts: Vec<u16> = node
        .kube
        .requests_to("PUT", &object)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        puts,
        [409, 200],
        "read again and written again after the conflict"
    );
    let spcps = node
        .spcps(&pod)
        .ok_or_else(|| anyhow::anyhow!("no record"))?;
    assert_eq!(
        status_objects(&spcps),
        [("a".to_owned(), courier_version(b"2"))]
    );
    Ok(())
}

/// The version the test provider gives content (see `FakeProvider::set_files`).
fn courier_version(contents: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(contents)[..8])
}

#[tokio::test]
async fn secret_provider_class_changes_reach_the_next_republish_through_the_watch()
-> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "first")]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    assert_eq!(
        node.provider
            .last_mount()
            .map(|m| m.attributes()["objects"].clone())
            .as_deref(),
        Some("first")
    );

    node.fake_spc(&pod, &[("objects", "second"), ("added", "yes")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        kubelet.publish(&volume).await?;
        let attributes = node
            .provider
            .last_mount()
            .map(|m| m.attributes())
            .unwrap_or_default();
        if attributes.get("objects").map(String::as_str) == Some("second") {
            assert_eq!(attributes.get("added").map(String::as_str), Some("yes"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change never reached a republish; shim log:\n{}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The shim reads classes from its watch cache, never per mount.
    let spc_gets = node
        .kube
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .starts_with("/apis/secrets-store.csi.x-k8s.io/v1/namespaces/")
                && r.path.contains("/secretproviderclasses/")
        })
        .count();
    assert_eq!(spc_gets, 0, "no per-mount GET of the class");
    let watches: Vec<_> = node
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .collect();
    assert!(!watches.is_empty());

    // A class created after the shim started is found too.
    let other = node.pod("team-b");
    node.kube.put_secret_provider_class(
        other.namespace(),
        SPC,
        FAKE_PROVIDER,
        [("objects", "late")],
    );
    node.publish_when_synced(&mut kubelet, &node.volume(&other))
        .await?;
    assert_eq!(
        node.provider
            .last_mount()
            .map(|m| m.attributes()["objects"].clone())
            .as_deref(),
        Some("late")
    );
    Ok(())
}

#[tokio::test]
async fn a_class_deleted_under_a_mounted_volume_is_a_reported_republish_failure()
-> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.set_files(&[("a", 0o644, b"kept")]);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    node.kube
        .delete(KubeResource::SECRET_PROVIDER_CLASSES, pod.namespace(), SPC);
    // A fresh pod sees NotFound as soon as the watch delivered the deletion.
    let probe = node.volume(&node.pod("team-a"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match kubelet.publish(&probe).await {
            Err(status) if status.code() == Code::NotFound => break,
            _ if std::time::Instant::now() < deadline => {
                let _ = kubelet.unpublish(&probe).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => {
                assert_status(
                    other,
                    Code::NotFound,
                    &["failed to get secretproviderclass"],
                );
            }
        }
    }
    // With --republish-errors report, a republish failure of a mounted volume answers success (kubelet before
    // 1.37 deletes the volume's files when a republish fails) and keeps the files.
    let result = kubelet.publish(&volume).await;
    assert!(
        result.is_ok(),
        "report mode: a failed republish must answer success, got {result:?}"
    );
    assert_eq!(read(&target, "a"), "kept");
    assert!(mount_entry(&target)?.is_some());
    Ok(())
}
