//! Path safety (issue 14): targets reached through links, links planted in a volume, targets outside the pods
//! directory and stacks of mounts left by older versions. Every test checks the mount table and what a reader
//! of the volume sees, and ends with nothing mounted under its directory.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use courier_tests::shim::{is_tmpfs, mount_table, mounts_under};
use courier_tests::{InlineVolume, Kubelet};
use tonic::Code;

use crate::support::{Node, data_dir, entries, read};

/// The node's temporary directory (kubelet's root and everything else of the test lives in it).
fn root(node: &Node) -> PathBuf {
    node.kubelet_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| node.kubelet_dir.clone())
}

/// The tmpfs mounts under `dir`, as the mount table lists them.
fn tmpfs_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(mount_table()?
        .into_iter()
        .filter(|e| e.fs_type == "tmpfs" && e.mount_point.starts_with(dir))
        .map(|e| e.mount_point)
        .collect())
}

/// A directory outside every target with files a planted link may name.
fn victim(dir: &Path) -> anyhow::Result<PathBuf> {
    let victim = dir.join("victim");
    std::fs::create_dir_all(victim.join("sub"))?;
    std::fs::write(victim.join("secret"), "not the pod's")?;
    std::fs::write(victim.join("sub/file"), "deep")?;
    Ok(victim)
}

fn assert_victim_intact(victim: &Path) {
    assert_eq!(read(victim, "secret"), "not the pod's");
    assert_eq!(read(victim, "sub/file"), "deep");
}

/// A node with the test provider answering two files, and a pod with its SecretProviderClass.
async fn node_with_files() -> anyhow::Result<(Node, InlineVolume, Kubelet)> {
    let node = Node::start().await?;
    let pod = node.pod("team-paths");
    node.fake_spc(&pod, &[("objects", "anything")]);
    node.provider.set_files(&[
        ("username", 0o644, b"alice"),
        ("creds/password", 0o400, b"one"),
    ]);
    let volume = node.volume(&pod);
    let kubelet = node.kubelet().await?;
    Ok((node, volume, kubelet))
}

/// The volume directory (`…/volumes/kubernetes.io~csi/<name>`), the target's parent.
fn volume_dir(volume: &InlineVolume) -> PathBuf {
    volume
        .target_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_target_under_a_symlinked_parent_gets_one_tmpfs_across_republishes() -> anyhow::Result<()>
{
    let (node, volume, mut kubelet) = node_with_files().await?;
    // The volume directory is a link to a real directory elsewhere in the pod's directory.
    let linked = volume_dir(&volume);
    let real = linked.with_file_name("real-volume");
    std::fs::create_dir_all(&real)?;
    std::fs::create_dir_all(linked.parent().unwrap_or(Path::new("/")))?;
    symlink(&real, &linked)?;
    let target = volume.target_path();
    let resolved = real.join("mount");

    node.publish_when_synced(&mut kubelet, &volume).await?;
    for round in 1..=4 {
        if round == 3 {
            node.provider.set_files(&[
                ("username", 0o644, b"alice"),
                ("creds/password", 0o400, b"two"),
            ]);
        }
        kubelet.publish(&volume).await?;
        assert_eq!(
            tmpfs_under(&root(&node))?,
            vec![resolved.clone()],
            "round {round}: one tmpfs, at the resolved path; log:\n{}",
            node.logs()
        );
    }
    assert_eq!(read(&target, "username"), "alice");
    assert_eq!(read(&target, "creds/password"), "two", "rotated");
    assert!(is_tmpfs(&target)?);

    kubelet.unpublish(&volume).await?;
    assert_eq!(mounts_under(&root(&node))?, Vec::<PathBuf>::new());
    assert!(
        std::fs::symlink_metadata(&resolved).is_err(),
        "target removed"
    );
    assert!(real.exists(), "its parent stays (kubelet's)");
    Ok(())
}

#[tokio::test]
async fn a_target_that_is_a_symlink_is_refused_and_what_it_names_is_untouched() -> anyhow::Result<()>
{
    let (node, volume, mut kubelet) = node_with_files().await?;
    volume.prepare_volume_dir()?;
    let elsewhere = volume_dir(&volume).join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    std::fs::write(elsewhere.join("keep"), "kept")?;
    let target = volume.target_path();
    symlink(&elsewhere, &target)?;

    let status = node
        .publish_when_synced(&mut kubelet, &volume)
        .await
        .expect_err("a target that is a link is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(&*target.to_string_lossy())
            && status.message().contains("symbolic link"),
        "{}",
        status.message()
    );
    assert_eq!(mounts_under(&root(&node))?, Vec::<PathBuf>::new());
    assert_eq!(entries(&elsewhere), ["keep"], "nothing hidden or written");
    assert_eq!(node.provider.mount_count(), 0, "the provider was not asked");

    kubelet.unpublish(&volume).await?;
    assert!(
        std::fs::symlink_metadata(&target).is_err(),
        "unpublish removes the link itself"
    );
    assert_eq!(read(&elsewhere, "keep"), "kept", "and does not follow it");
    assert_eq!(mounts_under(&root(&node))?, Vec::<PathBuf>::new());
    Ok(())
}

#[tokio::test]
async fn targets_outside_the_pods_directory_are_refused() -> anyhow::Result<()> {
    let (node, volume, mut kubelet) = node_with_files().await?;
    let pods = node.kubelet_dir.join("pods");
    let outside = root(&node).join("outside");
    std::fs::create_dir_all(&outside)?;

    // A plain path elsewhere.
    let mut request = volume.publish_request();
    let elsewhere = outside.join("mount");
    request.target_path = elsewhere.to_string_lossy().into_owned();
    let status = kubelet
        .publish_raw(request)
        .await
        .expect_err("outside the pods directory");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    for part in [elsewhere.to_string_lossy(), pods.to_string_lossy()] {
        assert!(
            status.message().contains(&*part),
            "{part} in {}",
            status.message()
        );
    }
    assert!(!elsewhere.exists(), "nothing was created");

    // A volume directory that is a link leading out of the pods directory.
    let linked = volume_dir(&volume);
    std::fs::create_dir_all(linked.parent().unwrap_or(Path::new("/")))?;
    symlink(&outside, &linked)?;
    let status = kubelet
        .publish_raw(volume.publish_request())
        .await
        .expect_err("resolves outside the pods directory");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains(&*outside.join("mount").to_string_lossy()),
        "names the resolved path: {}",
        status.message()
    );
    assert!(!outside.join("mount").exists());

    // Unpublish of a path outside touches nothing there.
    std::fs::create_dir_all(&elsewhere)?;
    std::fs::write(elsewhere.join("keep"), "kept")?;
    let status = kubelet
        .unpublish_raw(&volume.volume_id(), &elsewhere)
        .await
        .expect_err("outside the pods directory");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(read(&elsewhere, "keep"), "kept");
    assert_eq!(mounts_under(&root(&node))?, Vec::<PathBuf>::new());
    assert_eq!(node.provider.mount_count(), 0, "the provider was not asked");
    Ok(())
}

#[tokio::test]
async fn links_planted_in_the_tmpfs_are_replaced_on_republish_not_followed() -> anyhow::Result<()> {
    let (node, volume, mut kubelet) = node_with_files().await?;
    let victim = victim(&root(&node))?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    let target = volume.target_path();
    let first = data_dir(&target);

    // `..data` now names an absolute directory, `username` a file outside, `creds` a directory outside.
    std::fs::remove_file(target.join("..data"))?;
    symlink(&victim, target.join("..data"))?;
    std::fs::remove_file(target.join("username"))?;
    symlink(victim.join("secret"), target.join("username"))?;
    std::fs::remove_file(target.join("creds"))?;
    symlink(&victim, target.join("creds"))?;

    // The same content: the planted entries make it a write, which replaces them.
    kubelet.publish(&volume).await?;
    assert_victim_intact(&victim);
    assert_eq!(entries(&victim), ["secret", "sub"]);
    assert_eq!(read(&target, "username"), "alice");
    assert_eq!(read(&target, "creds/password"), "one");
    let second = data_dir(&target);
    assert_ne!(second, first);
    assert!(second.is_relative() && !target.join(&first).exists());
    assert_eq!(
        std::fs::read_link(target.join("username"))?,
        Path::new("..data/username")
    );
    assert_eq!(
        entries(&target),
        [
            second.to_string_lossy().into_owned(),
            "..data".to_owned(),
            "creds".to_owned(),
            "username".to_owned()
        ]
    );
    assert_eq!(tmpfs_under(&root(&node))?, vec![target.clone()]);

    kubelet.unpublish(&volume).await?;
    assert_victim_intact(&victim);
    assert_eq!(mounts_under(&root(&node))?, Vec::<PathBuf>::new());
    assert!(!target.exists());
    Ok(())
}

#[tokio::test]
async fn unpublish_removes_a_stack_of_tmpfs_mounts_left_by_older_versions() -> anyhow::Result<()> {
    let (node, volume, mut kubelet) = node_with_files().await?;
    // A publish over existing mounts is a republish, and a republish reports a class the shim's cache does not
    // show yet instead of failing: publish another volume of the pod first, so the class is there.
    let warm_up = volume.clone().volume_name("warm-up");
    node.publish_when_synced(&mut kubelet, &warm_up).await?;
    kubelet.unpublish(&warm_up).await?;
    volume.prepare_volume_dir()?;
    let target = volume.target_path();
    std::fs::create_dir_all(&target)?;
    // What older versions left after three republishes through a linked path.
    for layer in 0..3 {
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )?;
        std::fs::write(target.join(format!("layer-{layer}")), "old")?;
    }
    assert_eq!(tmpfs_under(&root(&node))?.len(), 3);

    // A republish writes into the top tmpfs and mounts nothing more.
    kubelet.publish(&volume).await?;
    assert_eq!(
        tmpfs_under(&root(&node))?,
        vec![target.clone(), target.clone(), target.clone()],
        "log:\n{}",
        node.logs()
    );
    assert_eq!(read(&target, "username"), "alice");
    assert_eq!(read(&target, "layer-2"), "old");

    kubelet.unpublish(&volume).await?;
    assert_eq!(
        mounts_under(&root(&node))?,
        Vec::<PathBuf>::new(),
        "log:\n{}",
        node.logs()
    );
    assert!(!target.exists());
    // Idempotent, as kubelet may ask again.
    kubelet.unpublish(&volume).await?;
    Ok(())
}
