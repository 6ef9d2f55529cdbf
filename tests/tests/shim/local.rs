//! `courier-driver-shim local`: a SecretProviderClass file published into a directory without a cluster, on a
//! tmpfs (we run as root), with the real provider and OpenBao, and a rotation observed when OpenBao changes.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use courier_tests::MountCleanup;
use courier_tests::shim::{is_tmpfs, mount_entry};
use courier_tests::tools::shim_binary;
use serde_json::json;

use crate::support::{BaoCase, SPC, bao, read, real_provider};

/// A `local` run: its stdout lines as they come, its stderr in a file.
pub(crate) struct LocalRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr_path: PathBuf,
}

impl LocalRun {
    pub(crate) fn spawn(args: &[String], stderr_path: &Path) -> anyhow::Result<Self> {
        let stderr = std::fs::File::create(stderr_path)?;
        let mut child = Command::new(shim_binary()?)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("running courier-driver-shim local")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
            stderr_path: stderr_path.to_owned(),
        })
    }

    pub(crate) fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.seen.join("\n"),
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
        )
    }

    /// Waits for a stdout line containing `text`.
    pub(crate) async fn wait_line(
        &mut self,
        text: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line.clone());
                if line.contains(text) {
                    return Ok(line);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "no line with {text:?} within {timeout:?}; {}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // The reader thread hands over the last lines and then drops its sender at end of output:
                // drain until the channel reports that, polling within the same deadline.
                loop {
                    match self.lines.try_recv() {
                        Ok(line) => self.seen.push(line),
                        Err(mpsc::TryRecvError::Disconnected) => return Ok(status),
                        Err(mpsc::TryRecvError::Empty) => {
                            if Instant::now() >= deadline {
                                bail!(
                                    "exited, but its output did not end within {timeout:?}; {}",
                                    self.output()
                                );
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!("still running after {timeout:?}; {}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM (local mode unpublishes and exits).
    pub(crate) fn terminate(&self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .context("cannot signal the local run")
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A SecretProviderClass manifest as in `examples/`, with the case's parameters.
fn manifest(case: &BaoCase) -> String {
    let mut yaml = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: {SPC}\n  namespace: {}\nspec:\n  provider: vault\n  parameters:\n",
        case.pod.namespace()
    );
    for (key, value) in case.vault_parameters() {
        if value.contains('\n') {
            yaml.push_str(&format!("    {key}: |\n"));
            for line in value.lines() {
                yaml.push_str(&format!("      {line}\n"));
            }
        } else {
            yaml.push_str(&format!("    {key}: {}\n", json!(value)));
        }
    }
    yaml
}

struct LocalSetup {
    dir: tempfile::TempDir,
    providers_dir: PathBuf,
    target: PathBuf,
    spc_file: PathBuf,
    token_file: PathBuf,
}

fn setup(case: &BaoCase) -> anyhow::Result<LocalSetup> {
    let dir = tempfile::Builder::new()
        .prefix("courier-local-")
        .tempdir()?;
    let providers_dir = dir.path().join("providers");
    std::fs::create_dir(&providers_dir)?;
    let spc_file = dir.path().join("spc.yaml");
    std::fs::write(&spc_file, manifest(case))?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, case.token()?.jwt())?;
    let target = dir.path().join("target");
    Ok(LocalSetup {
        providers_dir,
        target,
        spc_file,
        token_file,
        dir,
    })
}

impl LocalSetup {
    /// `--providers-dir P local --secret-provider-class F ... <extra>` (the shim's global flags go before
    /// the subcommand).
    fn args(&self, case: &BaoCase, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--providers-dir".into(),
            self.providers_dir.display().to_string(),
            "--tmpfs-size".into(),
            "1Mi".into(),
            "local".into(),
            "--secret-provider-class".into(),
            self.spc_file.display().to_string(),
            "--namespace".into(),
            case.pod.namespace().into(),
            "--service-account".into(),
            case.pod.service_account().into(),
            "--pod-name".into(),
            case.pod.name().into(),
            "--pod-uid".into(),
            case.pod.uid().into(),
            "--token-file".into(),
            self.token_file.display().to_string(),
            "--audience".into(),
            "vault".into(),
            "--target".into(),
            self.target.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }
}

#[tokio::test]
async fn local_mode_publishes_on_a_tmpfs_and_rotates_when_openbao_changes() -> anyhow::Result<()> {
    let case = bao().await?.case("local").await?;
    case.put(
        "app",
        json!({"username": "carol", "password": "pw-first-7f3a"}),
    )
    .await?;
    let setup = setup(&case)?;
    let _cleanup = MountCleanup::new(setup.dir.path());
    let _provider = real_provider(&setup.providers_dir).await?;

    let mut run = LocalRun::spawn(
        &setup.args(
            &case,
            &[
                "--republish-every",
                "1s",
                "--republish-count",
                "3",
                "--keep",
            ],
        ),
        &setup.dir.path().join("stderr"),
    )?;
    run.wait_line(
        &format!("published at {}", setup.target.display()),
        Duration::from_secs(20),
    )
    .await?;
    assert!(is_tmpfs(&setup.target)?, "{}", run.output());
    assert_eq!(read(&setup.target, "username"), "carol");
    assert_eq!(read(&setup.target, "creds/password"), "pw-first-7f3a");

    case.put(
        "app",
        json!({"username": "carol", "password": "pw-second-9c1b"}),
    )
    .await?;
    run.wait_line("rotated: new content swapped in", Duration::from_secs(10))
        .await?;
    assert_eq!(read(&setup.target, "creds/password"), "pw-second-9c1b");
    let status = run.wait_exit(Duration::from_secs(15)).await?;
    assert!(status.success(), "{status}; {}", run.output());
    let output = run.output();
    assert!(
        output.contains("creds/password  mode 0400"),
        "the files are listed: {output}"
    );
    assert!(
        output.contains("version "),
        "the versions are listed: {output}"
    );
    assert!(
        !output.contains("pw-first-7f3a") && !output.contains("pw-second-9c1b"),
        "no secret value is printed: {output}"
    );

    // --keep: the volume outlives the run.
    assert!(mount_entry(&setup.target)?.is_some(), "{output}");
    assert_eq!(read(&setup.target, "creds/password"), "pw-second-9c1b");
    Ok(())
}

#[tokio::test]
async fn local_mode_unpublishes_on_exit_without_keep() -> anyhow::Result<()> {
    let case = bao().await?.case("local-once").await?;
    case.put("app", json!({"username": "dave", "password": "pw"}))
        .await?;
    let setup = setup(&case)?;
    let _cleanup = MountCleanup::new(setup.dir.path());
    let _provider = real_provider(&setup.providers_dir).await?;

    let mut run = LocalRun::spawn(&setup.args(&case, &[]), &setup.dir.path().join("stderr"))?;
    let status = run.wait_exit(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status}; {}", run.output());
    let output = run.output();
    assert!(
        output.contains(&format!("published at {}", setup.target.display())),
        "{output}"
    );
    assert!(
        output.contains(&format!("unpublished {}", setup.target.display())),
        "{output}"
    );
    assert!(mount_entry(&setup.target)?.is_none(), "{output}");
    assert!(!setup.target.exists(), "{output}");
    Ok(())
}

#[tokio::test]
async fn local_mode_takes_the_shim_flags_after_the_subcommand() -> anyhow::Result<()> {
    // The documented form: `courier-driver-shim local ... --providers-dir DIR`.
    let dir = tempfile::tempdir()?;
    let output = Command::new(shim_binary()?)
        .args(["local", "--secret-provider-class"])
        .arg(dir.path().join("missing.yaml"))
        .args(["--token-file"])
        .arg(dir.path().join("token"))
        .args(["--target"])
        .arg(dir.path().join("target"))
        .args(["--providers-dir"])
        .arg(dir.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("unexpected argument"),
        "--providers-dir is refused after `local`: {stderr}"
    );
    assert!(
        stderr.contains("missing.yaml"),
        "it gets as far as reading the class: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn local_mode_without_tmpfs_writes_the_same_layout_into_a_plain_directory()
-> anyhow::Result<()> {
    let case = bao().await?.case("local-plain").await?;
    case.put("app", json!({"username": "erin", "password": "pw"}))
        .await?;
    let setup = setup(&case)?;
    let _cleanup = MountCleanup::new(setup.dir.path());
    let _provider = real_provider(&setup.providers_dir).await?;

    let mut run = LocalRun::spawn(
        &setup.args(&case, &["--no-tmpfs", "--keep"]),
        &setup.dir.path().join("stderr"),
    )?;
    let status = run.wait_exit(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status}; {}", run.output());
    assert!(
        mount_entry(&setup.target)?.is_none(),
        "no tmpfs with --no-tmpfs"
    );
    assert!(!is_tmpfs(&setup.target)?);
    assert_eq!(read(&setup.target, "username"), "erin");
    assert_eq!(
        std::fs::read_link(setup.target.join("username"))?,
        Path::new("..data/username")
    );
    Ok(())
}
