//! `courier-driver-shim local` as a one-shot publisher, for tests that want the shim's view of a mount: the
//! files on disk and everything it logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::Identity;

/// How long one publish may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a `courier-driver-shim local` run left: its target directory and everything it logged.
pub(crate) struct ShimRun {
    _dir: tempfile::TempDir,
    pub(crate) target: PathBuf,
    pub(crate) log: String,
}

/// Publishes a SecretProviderClass with `parameters` once through `courier-driver-shim local` (no tmpfs, files
/// kept) against `provider`'s `vault.sock`, for `identity`'s pod, logging JSON at trace level.
pub(crate) async fn shim_local(
    provider: &courier_tests::ProviderProcess,
    identity: &Identity,
    parameters: &BTreeMap<String, String>,
    jwt: &str,
) -> anyhow::Result<ShimRun> {
    let dir = tempfile::Builder::new()
        .prefix("courier-secrecy-shim-")
        .tempdir()?;
    let mut manifest = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: secrecy\n  namespace: {}\n\
         spec:\n  provider: vault\n  parameters:\n",
        identity.pod.namespace()
    );
    for (key, value) in parameters {
        manifest.push_str(&format!("    {key}: {}\n", Value::String(value.clone())));
    }
    let spc = dir.path().join("spc.yaml");
    std::fs::write(&spc, manifest)?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, jwt)?;
    let target = dir.path().join("target");
    let mut command = tokio::process::Command::new(courier_tests::tools::shim_binary()?);
    command
        .arg("--providers-dir")
        .arg(provider.providers_dir())
        .arg("local")
        .arg("--secret-provider-class")
        .arg(&spc)
        .args(["--namespace", identity.pod.namespace()])
        .args(["--service-account", identity.pod.service_account()])
        .args(["--pod-name", identity.pod.name()])
        .args(["--pod-uid", identity.pod.uid()])
        .arg("--token-file")
        .arg(&token_file)
        .args([
            "--audience",
            "vault",
            "--no-tmpfs",
            "--keep",
            "--log-level",
            "trace",
            // Every crate, the HTTP/2 and gRPC libraries included, not only the shim's own targets.
            "--log-filter=trace",
            "--log-json",
        ])
        .arg("--target")
        .arg(&target)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("courier-driver-shim local did not finish in 30 s"))??;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        output.status.success(),
        "courier-driver-shim local failed ({}):\n{log}",
        output.status
    );
    Ok(ShimRun {
        _dir: dir,
        target,
        log,
    })
}
