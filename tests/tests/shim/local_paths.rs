//! Path safety of `courier-driver-shim local` (issue 14): links planted in the target, with `--no-tmpfs` (a plain
//! directory the operator owns) and on a tmpfs, answered by the test provider. The writer replaces what stands at
//! its names, never follows a link, and removes only what it wrote.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use courier_tests::shim::{is_tmpfs, mount_table, mounts_under};
use courier_tests::{FakeProvider, MountCleanup};

use crate::local::LocalRun;
use crate::support::{FAKE_PROVIDER, SPC, data_dir, entries, read};

/// How long one local run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory with the test provider, a SecretProviderClass naming it, a token file, a target path and a
/// victim directory a planted link may name.
struct LocalNode {
    provider: FakeProvider,
    target: PathBuf,
    victim: PathBuf,
    spc_file: PathBuf,
    token_file: PathBuf,
    _cleanup: MountCleanup,
    dir: tempfile::TempDir,
}

impl LocalNode {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("courier-local-paths-")
            .tempdir()?;
        let cleanup = MountCleanup::new(dir.path());
        let providers = dir.path().join("providers");
        std::fs::create_dir(&providers)?;
        let provider = FakeProvider::start(&providers, FAKE_PROVIDER)?;
        provider.set_files(&[
            ("username", 0o644, b"alice"),
            ("creds/password", 0o400, b"one"),
        ]);
        let spc_file = dir.path().join("spc.yaml");
        std::fs::write(
            &spc_file,
            format!(
                "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: {SPC}\n\
                 spec:\n  provider: {FAKE_PROVIDER}\n  parameters:\n    objects: anything\n"
            ),
        )?;
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "token")?;
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(victim.join("sub"))?;
        std::fs::write(victim.join("secret"), "not the pod's")?;
        std::fs::write(victim.join("sub/file"), "deep")?;
        Ok(Self {
            provider,
            target: dir.path().join("target"),
            victim,
            spc_file,
            token_file,
            _cleanup: cleanup,
            dir,
        })
    }

    fn run(&self, extra: &[&str]) -> anyhow::Result<LocalRun> {
        let mut args: Vec<String> = vec![
            "--providers-dir".into(),
            self.provider
                .socket_path()
                .parent()
                .unwrap_or(Path::new("/"))
                .display()
                .to_string(),
            "--tmpfs-size".into(),
            "1Mi".into(),
            "local".into(),
            "--secret-provider-class".into(),
            self.spc_file.display().to_string(),
            "--token-file".into(),
            self.token_file.display().to_string(),
            "--target".into(),
            self.target.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        LocalRun::spawn(&args, &self.dir.path().join("stderr"))
    }

    fn assert_victim_intact(&self) {
        assert_eq!(read(&self.victim, "secret"), "not the pod's");
        assert_eq!(read(&self.victim, "sub/file"), "deep");
        assert_eq!(entries(&self.victim), ["secret", "sub"]);
    }

    /// Plants `..data` naming the victim directory (absolute).
    fn plant_data_link(&self) -> anyhow::Result<()> {
        remove_if_present(&self.target.join("..data"))?;
        symlink(&self.victim, self.target.join("..data"))?;
        Ok(())
    }

    /// Plants `username` naming the victim's file.
    fn plant_object_link(&self) -> anyhow::Result<()> {
        remove_if_present(&self.target.join("username"))?;
        symlink(self.victim.join("secret"), self.target.join("username"))?;
        Ok(())
    }

    fn assert_reader_sees_the_provider(&self) -> anyhow::Result<()> {
        assert_eq!(read(&self.target, "username"), "alice");
        assert_eq!(read(&self.target, "creds/password"), "one");
        assert_eq!(
            std::fs::read_link(self.target.join("username"))?,
            Path::new("..data/username")
        );
        assert!(data_dir(&self.target).is_relative());
        Ok(())
    }

    fn mounts(&self) -> anyhow::Result<Vec<PathBuf>> {
        mounts_under(self.dir.path())
    }
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn without_tmpfs_planted_links_are_replaced_and_only_the_writers_entries_are_removed()
-> anyhow::Result<()> {
    let node = LocalNode::start()?;
    std::fs::create_dir(&node.target)?;
    std::fs::write(node.target.join("mine"), "the operator's")?;
    node.plant_data_link()?;
    node.plant_object_link()?;

    let mut run = node.run(&["--no-tmpfs", "--keep"])?;
    let status = run.wait_exit(RUN_TIMEOUT).await?;
    assert!(status.success(), "{status}; {}", run.output());
    node.assert_victim_intact();
    node.assert_reader_sees_the_provider()?;
    assert_eq!(read(&node.target, "mine"), "the operator's");
    assert_eq!(node.mounts()?, Vec::<PathBuf>::new());
    assert!(!is_tmpfs(&node.target)?);

    // Planted again; this run publishes, then unpublishes on exit.
    node.plant_data_link()?;
    node.plant_object_link()?;
    let mut run = node.run(&["--no-tmpfs"])?;
    let status = run.wait_exit(RUN_TIMEOUT).await?;
    assert!(status.success(), "{status}; {}", run.output());
    node.assert_victim_intact();
    assert_eq!(
        entries(&node.target),
        ["mine"],
        "the writer's entries are gone, the operator's file stays; {}",
        run.output()
    );
    assert_eq!(node.mounts()?, Vec::<PathBuf>::new());
    Ok(())
}

#[tokio::test]
async fn on_a_tmpfs_links_planted_between_republishes_are_replaced() -> anyhow::Result<()> {
    let node = LocalNode::start()?;
    let mut run = node.run(&["--republish-every", "50ms"])?;
    run.wait_line("published at", RUN_TIMEOUT).await?;
    let tmpfs_at_target = || -> anyhow::Result<Vec<PathBuf>> {
        Ok(mount_table()?
            .into_iter()
            .filter(|e| e.fs_type == "tmpfs" && e.mount_point.starts_with(node.dir.path()))
            .map(|e| e.mount_point)
            .collect())
    };
    assert_eq!(tmpfs_at_target()?, vec![node.target.clone()]);

    // Content never changes, so a rotation line can only answer a plant: one plant per round.
    node.plant_data_link()?;
    run.wait_line("rotated: new content swapped in", RUN_TIMEOUT)
        .await?;
    node.assert_victim_intact();
    node.assert_reader_sees_the_provider()?;

    node.plant_object_link()?;
    run.wait_line("rotated: new content swapped in", RUN_TIMEOUT)
        .await?;
    node.assert_victim_intact();
    node.assert_reader_sees_the_provider()?;
    assert_eq!(tmpfs_at_target()?, vec![node.target.clone()]);

    run.terminate()?;
    let status = run.wait_exit(RUN_TIMEOUT).await?;
    assert!(status.success(), "{status}; {}", run.output());
    assert!(run.output().contains("unpublished"), "{}", run.output());
    node.assert_victim_intact();
    assert_eq!(node.mounts()?, Vec::<PathBuf>::new());
    assert!(!node.target.exists());
    Ok(())
}
