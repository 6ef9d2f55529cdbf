//! Secret mirroring (`--sync-secrets=true`) against the fake API: the Secret's data, labels and owners from
//! creation, its update on rotation, and garbage collection once every owner is gone.

use base64::Engine as _;
use courier_tests::{KubeResource, PodFixture};
use serde_json::{Value, json};

use crate::support::{FAKE_PROVIDER, NODE, Node, SPC};

fn spec_with_secret_objects() -> Value {
    json!({
        "provider": FAKE_PROVIDER,
        "parameters": {"objects": "x"},
        "secretObjects": [{
            "secretName": "db-creds",
            "type": "Opaque",
            "labels": {"environment": "test"},
            "data": [{"objectName": "username", "key": "user"}, {"objectName": "nested/password", "key": "pass"}],
        }],
    })
}

fn replica_set(name: &str, uid: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})
}

fn decoded(secret: &Value, key: &str) -> String {
    let text = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// The mirrored Secret `db-creds` in `namespace`; when there is none, an error with the Events and the shim's log.
fn mirrored_secret(node: &Node, namespace: &str) -> anyhow::Result<Value> {
    node.kube
        .get(KubeResource::SECRETS, namespace, "db-creds")
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no Secret db-creds in {namespace}; events: {:?}\nshim log:\n{}",
                node.kube.events(),
                node.logs()
            )
        })
}

#[tokio::test]
async fn mounted_files_are_mirrored_into_a_secret_owned_by_the_pods_owners() -> anyhow::Result<()> {
    let node = Node::start_with(|shim| shim.arg("--sync-secrets=true")).await?;
    let pod = PodFixture::new("team-a", "app");
    node.kube
        .put_pod_owned_by(&pod, NODE, &[replica_set("web-1", "rs-1")]);
    node.kube
        .put_secret_provider_class_spec(pod.namespace(), SPC, spec_with_secret_objects());
    node.provider.set_files(&[
        ("username", 0o644, b"alice"),
        ("nested/password", 0o400, b"first"),
    ]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    let secret = mirrored_secret(&node, pod.namespace())?;
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(decoded(&secret, "user"), "alice");
    assert_eq!(decoded(&secret, "pass"), "first");
    assert_eq!(
        secret["metadata"]["labels"],
        json!({"environment": "test", "secrets-store.csi.k8s.io/managed": "true"})
    );
    assert_eq!(
        secret["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs-1"}]),
        "the pod's owners, without controller or blockOwnerDeletion"
    );

    node.provider.set_files(&[
        ("username", 0o644, b"alice"),
        ("nested/password", 0o400, b"second"),
    ]);
    kubelet.publish(&volume).await?;
    let rotated = mirrored_secret(&node, pod.namespace())?;
    assert_eq!(decoded(&rotated, "pass"), "second");
    let unchanged_version = rotated["metadata"]["resourceVersion"].clone();
    kubelet.publish(&volume).await?;
    let same = mirrored_secret(&node, pod.namespace())?;
    assert_eq!(
        same["metadata"]["resourceVersion"], unchanged_version,
        "unchanged files leave the Secret alone"
    );

    // A pod of another ReplicaSet mounting the same class adds its owner; the Secret goes only with both.
    let second = PodFixture::new("team-a", "app");
    node.kube
        .put_pod_owned_by(&second, NODE, &[replica_set("web-2", "rs-2")]);
    kubelet.publish(&node.volume(&second)).await?;
    let shared = mirrored_secret(&node, pod.namespace())?;
    let owners: Vec<&str> = shared["metadata"]["ownerReferences"]
        .as_array()
        .map(|list| list.iter().filter_map(|o| o["uid"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(owners, ["rs-1", "rs-2"]);
    // Neither ReplicaSet is stored in the fake, so garbage collection takes the Secret once it runs.
    assert!(
        node.kube
            .collect_garbage()
            .contains(&format!("secrets/{}/db-creds", pod.namespace()))
    );
    Ok(())
}

#[tokio::test]
async fn a_bare_pods_secret_is_owned_by_its_status_record_and_a_missing_file_is_reported()
-> anyhow::Result<()> {
    let node = Node::start_with(|shim| shim.arg("--sync-secrets=true")).await?;
    let pod = node.pod("team-a");
    node.kube
        .put_secret_provider_class_spec(pod.namespace(), SPC, spec_with_secret_objects());
    node.provider.set_files(&[
        ("username", 0o644, b"bob"),
        ("nested/password", 0o400, b"pw"),
    ]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    let secret = mirrored_secret(&node, pod.namespace())?;
    let status = node
        .spcps(&pod)
        .ok_or_else(|| anyhow::anyhow!("no status record"))?;
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"],
        "SecretProviderClassPodStatus"
    );
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        status["metadata"]["uid"]
    );

    // The pod goes: its status record goes with it, and the Secret with the record.
    node.kube
        .delete(KubeResource::PODS, pod.namespace(), pod.name());
    let collected = node.kube.collect_garbage();
    assert!(
        collected.contains(&format!("secrets/{}/db-creds", pod.namespace())),
        "{collected:?}"
    );

    let other = node.pod("team-b");
    node.kube
        .put_secret_provider_class_spec(other.namespace(), SPC, spec_with_secret_objects());
    node.provider.set_files(&[("username", 0o644, b"carol")]);
    node.publish_when_synced(&mut kubelet, &node.volume(&other))
        .await?;
    let warnings: Vec<Value> = node
        .kube
        .events_about(other.namespace(), other.name())
        .into_iter()
        .filter(|e| e["reason"] == "FailedToCreateSecret")
        .collect();
    assert!(
        !warnings.is_empty(),
        "a Warning for the missing file; events: {:?}",
        node.kube.events()
    );
    let message = warnings[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nested/password") && message.contains("not found"),
        "{message}"
    );
    Ok(())
}
