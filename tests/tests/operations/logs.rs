//! Logs: `--log-level debug` shows Courier's debug lines but not the HTTP/2 and gRPC libraries' (those only
//! when `--log-filter` names them), no ANSI colour codes when stderr is not a terminal, and JSON lines with the
//! documented field set (README, "Logs").

use courier_tests::calls::mount;
use serde_json::Value;

use crate::support::{PASSWORD, backend, objects};

/// Targets of the HTTP, HTTP/2, gRPC and TLS crates, whose debug output is per-frame noise.
const LIBRARY_TARGETS: &[&str] = &["h2", "hyper", "hyper_util", "tonic", "tower", "reqwest", "rustls", "axum"];
/// Fields every JSON line has (README, "Logs").
const EVERY_LINE: &[&str] = &["timestamp", "level", "target"];
/// Fields of the `mount` span, on every line logged inside a mount.
const MOUNT_SPAN: &[&str] = &["name", "provider", "dialect", "pod.namespace", "pod.name", "pod.uid", "spc", "identity", "backend"];

fn from_library(target: &str) -> bool {
    LIBRARY_TARGETS.iter().any(|l| target == *l || target.starts_with(&format!("{l}::")))
}

#[tokio::test]
async fn debug_is_courier_only_and_json_lines_keep_their_fields() -> anyhow::Result<()> {
    let backend = backend().await?;
    let mut provider = backend.provider().log_level("debug").log_format("json").start().await?;
    let mut client = provider.client("vault").await?;
    let request = backend.request(&objects())?.secret_provider_class("logged-spc").build()?;
    mount(&mut client, request).await?;
    drop(client);
    assert!(provider.terminate().await?.success());

    let logs = provider.logs();
    let mut lines = Vec::new();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("not a JSON line ({e}): {line}"))?;
        for field in EVERY_LINE {
            assert!(value[field].is_string(), "{field} missing in {line}");
        }
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&value["level"].as_str().unwrap_or("")), "{line}");
        assert!(value.get("spans").is_none(), "no span list, only `span`: {line}");
        lines.push(value);
    }
    let targets: Vec<&str> = lines.iter().filter_map(|l| l["target"].as_str()).collect();
    assert!(!targets.iter().any(|t| from_library(t)), "library lines at --log-level debug: {targets:?}");
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG" && l["target"].as_str().is_some_and(|t| t.starts_with("courier_provider"))),
        "Courier's own debug lines are shown:\n{logs}"
    );
    let served = lines.iter().find(|l| l["message"] == "mount served").ok_or_else(|| anyhow::anyhow!("no mount line:\n{logs}"))?;
    assert!(served["duration_ms"].is_u64() && served["objects"] == 2, "{served}");
    for field in MOUNT_SPAN {
        assert!(served["span"][field].is_string(), "span.{field} missing: {served}");
    }
    assert_eq!(served["span"]["name"], "mount");
    assert_eq!(served["span"]["spc"], "logged-spc");
    assert!(!logs.contains(PASSWORD), "a secret value reached the logs");
    Ok(())
}

#[tokio::test]
async fn libraries_only_by_target_and_no_colours_in_a_pipe() -> anyhow::Result<()> {
    let backend = backend().await?;
    let mut provider = backend.provider().log_level("debug").arg("--log-filter=h2=debug").start().await?;
    let mut client = provider.client("vault").await?;
    mount(&mut client, backend.request(&objects())?.build()?).await?;
    drop(client);
    assert!(provider.terminate().await?.success());
    let logs = provider.logs();
    assert!(!logs.contains('\u{1b}'), "ANSI escape codes in logs written to a pipe:\n{logs}");
    // Text lines: `<timestamp>  LEVEL target: message`.
    let h2 = logs.lines().filter(|l| l.contains(" h2::")).count();
    assert!(h2 > 0, "--log-filter=h2=debug shows the HTTP/2 library's lines:\n{logs}");
    assert!(!logs.lines().any(|l| l.contains(" hyper::") || l.contains(" tonic::")), "only the named target is opened:\n{logs}");
    Ok(())
}
