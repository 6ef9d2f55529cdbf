//! The whole path with Courier's own provider: kubelet → shim → courier-provider → OpenBao (KV v2, JWT auth
//! as the pod), rotation when the secret changes in OpenBao, and nothing written while it does not.

use std::os::unix::fs::PermissionsExt as _;

use courier_tests::shim::{is_tmpfs, mount_entry};
use serde_json::json;

use crate::support::{NODE, Node, SPC, bao, data_dir, read, real_provider, stamp};

#[tokio::test]
async fn a_kv_secret_is_published_rotated_and_left_alone_while_unchanged() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let case = bao().await?.case("shim-kv").await?;
    case.put(
        "app",
        json!({"username": "alice", "password": "first-password"}),
    )
    .await?;
    let provider = real_provider(&node.providers_dir).await?;
    node.kube.put_pod(&case.pod, NODE);
    node.kube.put_secret_provider_class(
        case.pod.namespace(),
        SPC,
        "vault",
        case.vault_parameters(),
    );
    let volume = node.volume(&case.pod).token("vault", case.token()?);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;

    node.publish_when_synced(&mut kubelet, &volume)
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "{s:?}\nshim log:\n{}\nprovider log:\n{}",
                node.logs(),
                provider.logs()
            )
        })?;
    assert!(is_tmpfs(&target)?);
    assert_eq!(read(&target, "username"), "alice");
    assert_eq!(read(&target, "creds/password"), "first-password");
    let mode = |p: &str| {
        std::fs::metadata(target.join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(u32::MAX)
    };
    assert_eq!(mode("username"), 0o644, "the driver's permission 420");
    assert_eq!(
        mode("creds/password"),
        0o400,
        "filePermission from the class"
    );
    let spcps = node
        .spcps(&case.pod)
        .ok_or_else(|| anyhow::anyhow!("no status record"))?;
    let first_versions = spcps["status"]["objects"].clone();
    assert_eq!(first_versions.as_array().map(Vec::len), Some(2), "{spcps}");

    // Unchanged in OpenBao: the provider is asked, nothing is written.
    let data = data_dir(&target);
    let before = (stamp(&target), stamp(&target.join(&data)));
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    kubelet.publish(&volume).await?;
    assert_eq!(data_dir(&target), data);
    assert_eq!(
        (stamp(&target), stamp(&target.join(&data))),
        before,
        "nothing was written for unchanged content"
    );

    // Changed in OpenBao: the next republish swaps the new files in.
    case.put(
        "app",
        json!({"username": "alice", "password": "second-password"}),
    )
    .await?;
    kubelet.publish(&volume).await?;
    assert_eq!(read(&target, "creds/password"), "second-password");
    assert_eq!(read(&target, "username"), "alice");
    assert_ne!(
        data_dir(&target),
        data,
        "a fresh data directory was swapped in"
    );
    let updated = node
        .spcps(&case.pod)
        .ok_or_else(|| anyhow::anyhow!("no status record"))?;
    assert_ne!(
        updated["status"]["objects"], first_versions,
        "the status record carries the new versions"
    );

    kubelet.unpublish(&volume).await?;
    assert!(mount_entry(&target)?.is_none());
    assert!(!target.exists());
    Ok(())
}

#[tokio::test]
async fn tokens_in_the_csi_secrets_log_the_pod_in() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let case = bao().await?.case("shim-secrets").await?;
    case.put("app", json!({"username": "bob", "password": "pw"}))
        .await?;
    let provider = real_provider(&node.providers_dir).await?;
    node.kube.put_pod(&case.pod, NODE);
    node.kube.put_secret_provider_class(
        case.pod.namespace(),
        SPC,
        "vault",
        case.vault_parameters(),
    );
    let volume = node
        .volume(&case.pod)
        .token("vault", case.token()?)
        .tokens_in_secrets();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume)
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}\nprovider log:\n{}", provider.logs()))?;
    assert_eq!(read(&volume.target_path(), "username"), "bob");
    Ok(())
}
