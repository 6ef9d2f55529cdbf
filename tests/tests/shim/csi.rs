//! The CSI surface kubelet relies on: identity, node info, and every refusal of a request kubelet could send.

use courier_tests::calls::assert_status;
use courier_tests::shim::mount_entry;
use tonic::Code;

use crate::support::{FAKE_PROVIDER, NODE, Node, SPC};

#[tokio::test]
async fn identity_and_node_info_answer_as_kubelet_expects() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut kubelet = node.kubelet().await?;

    let info = kubelet.plugin_info().await?;
    assert_eq!(info.name, "secrets-store.csi.k8s.io");
    assert!(!info.vendor_version.is_empty());
    assert!(kubelet.probe().await?);
    assert_eq!(kubelet.node_info().await?.node_id, NODE);
    let capabilities = kubelet.node_capabilities().await?;
    // Nothing is claimed that the shim does not serve: kubelet would call NodeStageVolume for STAGE_UNSTAGE.
    assert!(capabilities.capabilities.is_empty(), "{capabilities:?}");
    Ok(())
}

#[tokio::test]
async fn requests_without_what_kubelet_always_sends_are_invalid() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;

    let mut no_capability = volume.publish_request();
    no_capability.volume_capability = None;
    assert_status(
        kubelet.publish_raw(no_capability).await,
        Code::InvalidArgument,
        &["Volume capability missing"],
    );
    let mut no_id = volume.publish_request();
    no_id.volume_id.clear();
    assert_status(
        kubelet.publish_raw(no_id).await,
        Code::InvalidArgument,
        &["Volume ID missing"],
    );
    let mut no_target = volume.publish_request();
    no_target.target_path.clear();
    assert_status(
        kubelet.publish_raw(no_target).await,
        Code::InvalidArgument,
        &["Target path missing"],
    );
    let mut no_context = volume.publish_request();
    no_context.volume_context.clear();
    assert_status(
        kubelet.publish_raw(no_context).await,
        Code::InvalidArgument,
        &["Volume attributes missing"],
    );
    let mut no_spc = volume.publish_request();
    no_spc.volume_context.remove("secretProviderClass");
    assert_status(
        kubelet.publish_raw(no_spc).await,
        Code::InvalidArgument,
        &["secretProviderClass"],
    );

    assert_status(
        kubelet.unpublish_raw("", &volume.target_path()).await,
        Code::InvalidArgument,
        &["Volume ID missing"],
    );
    assert_status(
        kubelet
            .unpublish_raw(&volume.volume_id(), std::path::Path::new(""))
            .await,
        Code::InvalidArgument,
        &["Target path missing"],
    );

    assert_eq!(
        node.provider.mount_count(),
        0,
        "nothing reached the provider"
    );
    assert!(!volume.target_path().exists(), "nothing was created");
    Ok(())
}

#[tokio::test]
async fn readonly_false_is_refused_after_the_secret_provider_class_lookup() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    let volume = node.volume(&pod).readonly(false);
    let mut kubelet = node.kubelet().await?;

    // As upstream: the SecretProviderClass is looked up first.
    assert_status(
        kubelet.publish(&volume).await,
        Code::NotFound,
        &["failed to get secretproviderclass"],
    );
    node.fake_spc(&pod, &[("objects", "x")]);
    // The shim sees the new SecretProviderClass once its watch delivers it: poll, with a deadline that only
    // catches a watch that never delivers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        match kubelet.publish(&volume).await {
            Err(status)
                if status.code() == Code::NotFound && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            other => break other,
        }
    };
    assert_status(
        status,
        Code::InvalidArgument,
        &["Readonly is not true in request"],
    );
    assert_eq!(node.provider.mount_count(), 0);
    assert!(!volume.target_path().exists());
    Ok(())
}

#[tokio::test]
async fn a_missing_secret_provider_class_is_not_found_with_the_drivers_message()
-> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    // Same name in another namespace: only the pod's namespace counts.
    node.kube
        .put_secret_provider_class("elsewhere", SPC, FAKE_PROVIDER, [("objects", "x")]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;

    let status = assert_status(
        kubelet.publish(&volume).await,
        Code::NotFound,
        &[&format!("failed to get secretproviderclass team-a/{SPC}")],
    );
    assert!(
        !status.message().contains("elsewhere"),
        "{}",
        status.message()
    );
    assert_eq!(node.provider.mount_count(), 0);
    assert!(
        !volume.target_path().exists(),
        "no directory for a volume that cannot be published"
    );
    assert!(mount_entry(&volume.target_path())?.is_none());
    Ok(())
}

#[tokio::test]
async fn unknown_or_invalid_providers_and_empty_classes_fail_clearly() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut kubelet = node.kubelet().await?;
    let cases: [(&str, serde_json::Value, Code, &[&str]); 4] = [
        (
            "absent",
            serde_json::json!({"provider": "absent", "parameters": {"a": "b"}}),
            Code::FailedPrecondition,
            &["provider not found: provider \"absent\"", "absent.sock"],
        ),
        (
            "slash",
            serde_json::json!({"provider": "../etc", "parameters": {"a": "b"}}),
            Code::InvalidArgument,
            &["invalid provider name"],
        ),
        (
            "noprovider",
            serde_json::json!({"parameters": {"a": "b"}}),
            Code::InvalidArgument,
            &["spec.provider is empty"],
        ),
        (
            "noparams",
            serde_json::json!({"provider": FAKE_PROVIDER}),
            Code::InvalidArgument,
            &["spec.parameters is empty"],
        ),
    ];
    for (label, spec, code, words) in cases {
        let pod = node.pod(&format!("ns-{label}"));
        node.kube
            .put_secret_provider_class_spec(pod.namespace(), SPC, spec);
        let volume = node.volume(&pod);
        let result = node.publish_when_synced(&mut kubelet, &volume).await;
        let status = assert_status(result, code, words);
        assert!(
            status.message().starts_with(&format!(
                "failed to mount secrets store objects for pod {}/{}",
                pod.namespace(),
                pod.name()
            )),
            "{label}: {status:?}"
        );
        assert!(
            !volume.target_path().exists(),
            "{label}: nothing left behind"
        );
        assert!(
            mount_entry(&volume.target_path())?.is_none(),
            "{label}: no mount left behind"
        );
    }
    assert_eq!(node.provider.mount_count(), 0);
    Ok(())
}

#[tokio::test]
async fn the_mock_provider_gets_a_bare_tmpfs() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    let volume = node.volume(&pod).attribute("providerName", "Mock_Provider");
    let mut kubelet = node.kubelet().await?;
    kubelet.publish(&volume).await?;
    let target = volume.target_path();
    assert_eq!(
        mount_entry(&target)?.map(|e| e.fs_type).as_deref(),
        Some("tmpfs")
    );
    assert!(std::fs::read_dir(&target)?.next().is_none(), "no files");
    kubelet.publish(&volume).await?;
    assert_eq!(node.provider.mount_count(), 0);
    kubelet.unpublish(&volume).await?;
    assert!(!target.exists());
    Ok(())
}
