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
    let status_path = format!(
        "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/{}/secretproviderclasspodstatuses/{}",
        case.pod.namespace(),
        crate::support::spcps_name(&case.pod)
    );
    let status_writes = node.kube.requests_to("PUT", &status_path).len();
    // Measurement, not synchronisation: lets a rewrite show as a later modification time in `stamp`.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    kubelet.publish(&volume).await?;
    assert_eq!(
        node.kube.requests_to("PUT", &status_path).len(),
        status_writes,
        "an unchanged republish does not rewrite the status record"
    );
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
    assert_eq!(
        node.kube.requests_to("PUT", &status_path).len(),
        status_writes + 1,
        "a rotation updates the status record once"
    );
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

/// The backend stops between mounts: the republish fails at the provider (Unavailable after its retries), the
/// files the pod reads stay exactly as they were, and the failure is reported on the pod, not hidden.
#[tokio::test]
async fn a_backend_stopped_during_a_republish_leaves_the_old_files_and_is_reported() -> anyhow::Result<()> {
    use courier_tests::{JwtRole, KUBERNETES_ISSUER, OpenBao, PodFixture, ProviderBuilder, TokenIssuer};

    let node = Node::start().await?;
    // Its own OpenBao, since this test stops it.
    let bao = OpenBao::start().await?;
    let issuer = TokenIssuer::new()?;
    bao.enable_jwt_auth("jwt", &[issuer.public_key_pem().to_owned()], KUBERNETES_ISSUER).await?;
    let pod = PodFixture::new("team-stop", "app");
    bao.read_only_policy("app", &["secret/data/stop/*"]).await?;
    bao.jwt_role(
        "jwt",
        &JwtRole {
            name: "app".to_owned(),
            bound_audiences: vec!["vault".to_owned()],
            namespace: pod.namespace().to_owned(),
            service_account: pod.service_account().to_owned(),
            policies: vec!["app".to_owned()],
        },
    )
    .await?;
    bao.kv2_put("secret", "stop/app", json!({"password": "kept-password"})).await?;
    let provider = ProviderBuilder::new()
        .provider("vault")
        .providers_dir(&node.providers_dir)
        .vault_addr(bao.addr())
        .static_reuse(std::time::Duration::ZERO)
        .arg("--mount-timeout")
        .arg("10s")
        .start()
        .await?;
    node.kube.put_pod(&pod, NODE);
    node.kube.put_secret_provider_class(
        pod.namespace(),
        SPC,
        "vault",
        [
            ("roleName".to_owned(), "app".to_owned()),
            ("vaultAddress".to_owned(), bao.addr()),
            ("vaultAuthMountPath".to_owned(), "jwt".to_owned()),
            ("objects".to_owned(), "- {objectName: password, secretPath: secret/data/stop/app, secretKey: password}\n".to_owned()),
        ],
    );
    let volume = node.volume(&pod).token("vault", issuer.token(&pod, "vault")?);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume)
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}\nshim:\n{}\nprovider:\n{}", node.logs(), provider.logs()))?;
    assert_eq!(read(&target, "password"), "kept-password");
    let data = data_dir(&target);

    drop(bao);
    // Report mode (the default): kubelet sees success, so it does not tear the working mount down.
    kubelet.publish(&volume).await?;
    assert_eq!(read(&target, "password"), "kept-password", "the old files stay");
    assert_eq!(data_dir(&target), data, "nothing was swapped");
    let warnings: Vec<serde_json::Value> = node
        .kube
        .events_about(pod.namespace(), pod.name())
        .into_iter()
        .filter(|e| e["reason"] == "MountRotationFailed" && e["type"] == "Warning")
        .collect();
    assert_eq!(warnings.len(), 1, "one Warning on the pod; events: {:?}", node.kube.events());
    let message = warnings[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("vault backend") && message.contains("attempts"), "names the backend and the retries: {message}");
    assert!(!message.contains("kept-password"));
    kubelet.unpublish(&volume).await?;
    Ok(())
}
