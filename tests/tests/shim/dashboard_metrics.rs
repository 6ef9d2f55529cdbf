//! Every `courier_shim_*` metric the shipped Grafana dashboard and Prometheus rules query exists in a running
//! shim's `/metrics` after a publish and a republish (the per-code counters and latency histograms appear with
//! their first call), and each publish is counted under its operation and code.

use courier_tests::monitoring::queried_metric_names;

use crate::support::Node;

#[tokio::test]
async fn every_queried_shim_metric_is_exported() -> anyhow::Result<()> {
    let wanted: Vec<String> = queried_metric_names()?.into_iter().filter(|n| n.starts_with("courier_shim_")).collect();
    assert!(wanted.len() >= 4, "{wanted:?}");
    let node = Node::start_with(|shim| shim.metrics()).await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.set_files(&[("a", 0o644, b"one")]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    kubelet.publish(&volume).await?;

    let metrics = node.shim.metrics().await?;
    let exported: std::collections::BTreeSet<&str> = metrics.samples().iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&String> = wanted.iter().filter(|n| !exported.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\n{}", metrics.text());
    assert_eq!(metrics.count("courier_shim_node_publish_codes_total", &[("operation", "publish"), ("code", "OK")]), 1);
    assert_eq!(metrics.count("courier_shim_node_publish_codes_total", &[("operation", "republish"), ("code", "OK")]), 1);
    assert_eq!(metrics.count("courier_shim_node_publish_duration_seconds_count", &[("operation", "republish")]), 1);
    Ok(())
}
