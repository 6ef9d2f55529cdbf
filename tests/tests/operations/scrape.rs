//! Every metric the shipped Grafana dashboard and Prometheus rules query exists in a real provider's `/metrics`
//! after the mounts an operator's cluster sees (a static read, a certificate, a repeat mount, a refused one).
//! The shim's names are checked against a running shim in the shim suite.

use courier_tests::calls::mount;
use courier_tests::monitoring::queried_metric_names;

use crate::support::{backend, objects};

#[tokio::test]
async fn every_dashboard_and_alert_metric_is_exported() -> anyhow::Result<()> {
    let wanted = queried_metric_names()?;
    let provider_names: Vec<&String> = wanted.iter().filter(|n| !n.starts_with("courier_shim_")).collect();
    assert!(provider_names.len() >= 15, "{wanted:?}");

    let backend = backend().await?;
    let provider = backend.provider().log_level("info").start().await?;
    let mut client = provider.client("vault").await?;
    // Mounts: a login, reads, a certificate (a lease event), then the same pod again (cache lookups).
    let request = backend.request(&objects())?.build()?;
    mount(&mut client, request.clone()).await?;
    mount(&mut client, request).await?;
    // A refused mount (an error result).
    let refused = backend.request(&[courier_tests::objects::Obj::new("x", "secret/data/ops/absent").key("k")])?.build()?;
    assert!(mount(&mut client, refused).await.is_err());

    let metrics = provider.metrics().await?;
    let exported: std::collections::BTreeSet<&str> = metrics.samples().iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&&String> = provider_names.iter().filter(|n| !exported.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\n{}", metrics.text());
    // The build and readiness facts the alerts rely on.
    let build = metrics.samples().iter().find(|s| s.name == "courier_build_info").ok_or_else(|| anyhow::anyhow!("no build info"))?;
    assert_eq!(build.labels.get("version").map(String::as_str), Some(env!("CARGO_PKG_VERSION")));
    let revision = build.labels.get("revision").cloned().unwrap_or_default();
    assert!(revision == "unknown" || (revision.len() >= 7 && revision.bytes().all(|b| b.is_ascii_hexdigit())), "{revision:?}");
    assert_eq!(metrics.sum("courier_ready", &[]), 1.0);
    assert!(metrics.sum("process_resident_memory_bytes", &[]) > 1e6);
    assert!(metrics.sum("process_open_fds", &[]) >= 3.0);
    Ok(())
}
