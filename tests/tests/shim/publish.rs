//! First publish and unpublish with the test provider: the tmpfs, the kubelet file layout and modes, the
//! `Mount` request as the driver sends it, and what a failed first publish leaves behind (nothing).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use courier_proto::v1alpha1::ObjectVersion;
use courier_tests::calls::assert_status;
use courier_tests::shim::{TOKENS_KEY, is_tmpfs, mount_entry};
use courier_tests::{PodFixture, TokenIssuer};
use tonic::Code;

use crate::support::{Node, data_dir, entries, read};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `..YYYY_MM_DD_HH_MM_SS.<digits>`, as kubelet's AtomicWriter names its data directories.
fn is_timestamped_dir(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let Some((stamp, suffix)) = rest.split_once('.') else {
        return false;
    };
    let parts: Vec<&str> = stamp.split('_').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts[0].len() == 4
        && !suffix.is_empty()
        && suffix.chars().all(|c| c.is_ascii_digit())
}

#[tokio::test]
async fn first_publish_mounts_a_size_limited_tmpfs_with_the_kubelet_layout() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "anything")]);
    node.provider.set_files(&[
        ("config.json", 0o644, b"{\"a\":1}"),
        ("certs/tls.crt", 0o444, b"CERT"),
        ("certs/private/tls.key", 0o400, b"KEY"),
        ("sealed", 0, b"nobody may read this"),
    ]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    let target = volume.target_path();

    assert!(
        is_tmpfs(&target)?,
        "statfs of {} is not a tmpfs",
        target.display()
    );
    let mount = mount_entry(&target)?
        .ok_or_else(|| anyhow::anyhow!("{} is not a mount point", target.display()))?;
    assert_eq!(mount.fs_type, "tmpfs");
    for option in ["nosuid", "nodev", "noexec"] {
        assert!(
            mount.mount_options.iter().any(|o| o == option),
            "{option} missing: {mount:?}"
        );
    }
    assert!(
        mount.super_options.iter().any(|o| o == "size=1024k"),
        "--tmpfs-size 1Mi: {mount:?}"
    );
    let stat = nix::sys::statfs::statfs(&target)?;
    assert_eq!(
        stat.blocks() * stat.block_size() as u64,
        1024 * 1024,
        "the size limit statfs reports"
    );

    let names = entries(&target);
    let data = data_dir(&target);
    let data_name = data.to_string_lossy().into_owned();
    assert!(
        is_timestamped_dir(&data_name),
        "..data points at {data_name:?}"
    );
    assert_eq!(
        names,
        [
            data_name.clone(),
            "..data".to_owned(),
            "certs".to_owned(),
            "config.json".to_owned(),
            "sealed".to_owned()
        ]
    );
    for top in ["config.json", "certs", "sealed"] {
        assert_eq!(
            std::fs::read_link(target.join(top))?,
            Path::new("..data").join(top),
            "{top} is a symlink into ..data"
        );
    }
    assert!(
        std::fs::symlink_metadata(target.join("..data"))?
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::symlink_metadata(target.join(&data))?.is_dir());
    assert_eq!(mode(&target.join(&data)), 0o755);
    assert_eq!(
        mode(&target.join("certs")),
        0o755,
        "directories of nested files"
    );
    assert_eq!(mode(&target.join("certs/private")), 0o755);

    assert_eq!(read(&target, "config.json"), "{\"a\":1}");
    assert_eq!(read(&target, "certs/tls.crt"), "CERT");
    assert_eq!(read(&target, "certs/private/tls.key"), "KEY");
    assert_eq!(
        read(&target, "sealed"),
        "nobody may read this",
        "root reads even mode 0"
    );
    assert_eq!(mode(&target.join("config.json")), 0o644);
    assert_eq!(mode(&target.join("certs/tls.crt")), 0o444);
    assert_eq!(mode(&target.join("certs/private/tls.key")), 0o400);
    assert_eq!(
        mode(&target.join("sealed")),
        0,
        "mode 0 stays 0, as the driver writes it"
    );
    Ok(())
}

/// `json.Marshal` of a `map[string]string`: sorted keys, compact, `<`, `>`, `&` escaped.
fn go_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[tokio::test]
async fn the_mount_request_is_exactly_what_the_driver_sends() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let issuer = TokenIssuer::new()?;
    let pod = node.pod("team-a");
    let objects = "- objectName: a\n  note: \"<b> & c\"\n";
    node.fake_spc(
        &pod,
        &[
            ("objects", objects),
            ("roleName", "from-the-class"),
            ("shared", "class"),
        ],
    );
    let vault_token = issuer.token(&pod, "vault")?;
    let volume = node
        .volume(&pod)
        .attribute("roleName", "from-the-pod")
        .token("vault", vault_token.clone())
        .token("aud2", issuer.token(&pod, "aud2")?);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    kubelet.publish(&volume).await?;

    let mounts = node.provider.mounts();
    assert_eq!(mounts.len(), 2, "first publish and one republish");
    let mut expected: BTreeMap<String, String> = BTreeMap::from([
        ("objects".to_owned(), objects.to_owned()),
        ("roleName".to_owned(), "from-the-class".to_owned()),
        ("shared".to_owned(), "class".to_owned()),
    ]);
    // Every volume_context key is copied over the class's parameters: the pod's volume wins.
    expected.extend(volume.volume_context());
    assert_eq!(expected["roleName"], "from-the-pod");
    for mount in &mounts {
        let request = &mount.request;
        assert_eq!(request.attributes, go_json(&expected));
        assert_eq!(
            request.secrets, "null",
            "no nodePublishSecretRef: the literal null"
        );
        assert_eq!(request.permission, "420");
        assert_eq!(request.target_path, volume.target_path().to_string_lossy());
        assert!(
            request.current_object_version.is_empty(),
            "never sent, as driver v1.6"
        );
        assert_eq!(mount.authority.as_deref(), Some("localhost"));
        let tokens = mount.tokens();
        assert_eq!(tokens.keys().collect::<Vec<_>>(), ["aud2", "vault"]);
        assert_eq!(tokens["vault"]["token"], vault_token.jwt());
        assert_eq!(
            tokens["vault"]["expirationTimestamp"],
            vault_token.expiration_timestamp()?
        );
    }
    let attributes = mounts[0].attributes();
    for key in [
        "csi.storage.k8s.io/pod.name",
        "csi.storage.k8s.io/pod.namespace",
        "csi.storage.k8s.io/pod.uid",
        "csi.storage.k8s.io/serviceAccount.name",
    ] {
        assert!(attributes.contains_key(key), "{key} missing");
    }
    assert_eq!(attributes["csi.storage.k8s.io/ephemeral"], "true");
    assert_eq!(attributes["secretProviderClass"], crate::support::SPC);
    Ok(())
}

#[tokio::test]
async fn tokens_passed_in_the_csi_secrets_reach_the_provider() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let issuer = TokenIssuer::new()?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    let token = issuer.token(&pod, "vault")?;
    let volume = node
        .volume(&pod)
        .token("vault", token.clone())
        .tokens_in_secrets();
    assert!(!volume.volume_context().contains_key(TOKENS_KEY));
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    let mount = node
        .provider
        .last_mount()
        .ok_or_else(|| anyhow::anyhow!("no Mount"))?;
    assert_eq!(
        mount.tokens()["vault"]["token"],
        token.jwt(),
        "driver v1.6 reads the tokens from the secrets"
    );
    let secrets: BTreeMap<String, String> = serde_json::from_str(&mount.request.secrets)?;
    assert!(
        secrets.contains_key(TOKENS_KEY),
        "the secrets are passed on as well: {:?}",
        secrets.keys()
    );
    Ok(())
}

/// Publishes once and expects failure; then checks nothing is left: no mount, no target directory.
async fn expect_clean_failure(
    node: &Node,
    pod: &PodFixture,
    code: Code,
    words: &[&str],
) -> anyhow::Result<()> {
    let volume = node.volume(pod);
    let mut kubelet = node.kubelet().await?;
    let before = node.provider.mount_count();
    let status = assert_status(
        node.publish_when_synced(&mut kubelet, &volume).await,
        code,
        words,
    );
    assert!(
        status.message().starts_with(&format!(
            "failed to mount secrets store objects for pod {}/{}, err: ",
            pod.namespace(),
            pod.name()
        )),
        "{status:?}"
    );
    assert!(
        node.provider.mount_count() > before,
        "the provider was asked"
    );
    let target = volume.target_path();
    assert!(
        mount_entry(&target)?.is_none(),
        "{} is still mounted",
        target.display()
    );
    assert!(
        !target.exists(),
        "{} was left behind: {:?}",
        target.display(),
        std::fs::read_dir(&target).map(|d| d.count())
    );
    assert!(
        target.parent().is_some_and(Path::exists),
        "kubelet's volume directory is not the shim's to remove"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_first_publish_leaves_no_mount_and_no_directory() -> anyhow::Result<()> {
    let node = Node::start().await?;

    let pod = node.pod("grpc-error");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider
        .fail_with(Code::PermissionDenied, "role app may not read secret/app");
    expect_clean_failure(
        &node,
        &pod,
        Code::PermissionDenied,
        &["role app may not read secret/app"],
    )
    .await?;

    let pod = node.pod("error-code");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.fail_with_error_code("Throttled");
    expect_clean_failure(
        &node,
        &pod,
        Code::Unknown,
        &["mount request failed with provider error code Throttled"],
    )
    .await?;

    let pod = node.pod("no-versions");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider
        .set_files_with_versions(&[("a", 0o644, b"1")], Vec::new());
    expect_clean_failure(&node, &pod, Code::Unknown, &["missing object versions"]).await?;

    let pod = node.pod("bad-path");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider
        .set_files(&[("ok", 0o644, b"1"), ("../escape", 0o644, b"2")]);
    expect_clean_failure(
        &node,
        &pod,
        Code::Internal,
        &["failed to write files", "../escape"],
    )
    .await?;

    let pod = node.pod("too-big");
    node.fake_spc(&pod, &[("objects", "x")]);
    let big = vec![b'x'; 2 * 1024 * 1024];
    node.provider.set_files(&[("big", 0o644, &big)]);
    expect_clean_failure(
        &node,
        &pod,
        Code::Internal,
        &["failed to write files", "No space left on device"],
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_unavailable_provider_is_asked_three_times() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.fail_with(Code::Unavailable, "starting up");
    expect_clean_failure(&node, &pod, Code::Unavailable, &["starting up"]).await?;
    assert_eq!(
        node.provider.mount_count(),
        3,
        "three attempts, as the driver's retry policy"
    );
    Ok(())
}

#[tokio::test]
async fn a_provider_that_writes_its_own_files_gets_an_empty_tmpfs() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.set_files_with_versions(
        &[],
        vec![ObjectVersion {
            id: "secret/a".to_owned(),
            version: "1".to_owned(),
        }],
    );
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    assert!(is_tmpfs(&volume.target_path())?);
    assert!(entries(&volume.target_path()).is_empty());
    Ok(())
}

#[tokio::test]
async fn unpublish_removes_the_files_the_mount_and_the_directory_and_is_idempotent()
-> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider
        .set_files(&[("a", 0o644, b"1"), ("d/b", 0o400, b"2")]);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    assert!(mount_entry(&target)?.is_some());

    kubelet.unpublish(&volume).await?;
    assert!(mount_entry(&target)?.is_none(), "unmounted");
    assert!(!target.exists(), "the target directory is removed");
    kubelet.unpublish(&volume).await?;
    let never = node.volume(&node.pod("team-b"));
    kubelet.unpublish(&never).await?;

    // A target that is a plain directory (never mounted, e.g. after a node restart) is cleaned up as well.
    std::fs::create_dir_all(target.join("leftover"))?;
    std::fs::write(target.join("file"), b"x")?;
    kubelet.unpublish(&volume).await?;
    assert!(!target.exists());

    // And it can be published again.
    kubelet.publish(&volume).await?;
    assert_eq!(read(&target, "d/b"), "2");
    kubelet.unpublish(&volume).await?;
    assert!(
        node.cleanup.unmount_all().is_empty(),
        "no mount left under the node"
    );
    Ok(())
}
