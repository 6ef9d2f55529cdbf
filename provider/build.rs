//! Records the source revision for `courier_build_info{revision}`: the
//! `COURIER_REVISION` environment variable when set (image builds without a git
//! checkout pass it), else the git commit of the checkout, else `unknown`.
//! Also the binary's link settings.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=COURIER_REVISION");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let revision = std::env::var("COURIER_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git_revision(&dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=COURIER_REVISION={}", revision.trim());

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        // Relative relocations packed (DT_RELR, glibc 2.36+): a position-independent
        // binary otherwise carries and reads about 1.3 MB of them at every start,
        // pages that stay resident for the process's life.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn git_revision(dir: &Path) -> Option<String> {
    let revision = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    if !revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Rebuild when HEAD moves: HEAD itself, the branch it points at, and packed refs.
    if let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        println!("cargo:rerun-if-changed={}", git_dir.join("packed-refs").display());
        if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", git_dir.join(branch).display());
        }
    }
    Some(revision)
}
