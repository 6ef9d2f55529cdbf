//! A mount the caller gives up on is still counted: when the driver's gRPC deadline passes first (tonic then
//! drops the handler), the mounts counter gets result `cancelled`, the latency histogram the sample, and the
//! audit trail a line with outcome `cancelled` naming the pod and its objects, none served.

use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::Code;

use crate::support::{Access, Case, Obj, StalledListener, provider_builder};

/// The caller's deadline, far shorter than the provider's own mount timeout.
const CALLER_DEADLINE: Duration = Duration::from_millis(500);
/// The provider's mount timeout here: long enough that only the caller's deadline can end the mount.
const MOUNT_TIMEOUT: &str = "120s";
/// How long the test waits for the cancelled mount to show in the metrics and the log: a hang catcher only (the
/// record is written as the handler is dropped, so on any machine it shows long before this).
const RECORD_WAIT: Duration = Duration::from_secs(60);
/// How often it polls (pacing of a poll with a deadline, not synchronisation).
const POLL: Duration = Duration::from_millis(50);

/// The first audit line with outcome `cancelled` in a JSON log.
fn cancelled_audit_line(logs: &str) -> Option<Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["target"] == "audit" && line["outcome"] == "cancelled")
}

#[tokio::test]
async fn a_mount_cancelled_by_the_callers_deadline_is_counted_and_audited() -> anyhow::Result<()> {
    let case = Case::shared("cancelled").await?;
    let identity = case.identity("app", Access::Allowed).await?;
    let objects = [Obj::new("password", &case.secret_path("app")).key("password")];
    let stalled = StalledListener::start().await?;
    let provider = provider_builder(&["vault"])
        .await?
        .log_format("json")
        .arg("--mount-timeout")
        .arg(MOUNT_TIMEOUT)
        .start()
        .await?;
    let mut client = provider.client("vault").await?;

    let built = identity
        .request(&objects)?
        .parameter("vaultAddress", stalled.url())
        .secret_provider_class("cancelled-spc")
        .build()?;
    let attributes: Value = serde_json::from_str(&built.attributes)?;
    let mut request = tonic::Request::new(built);
    request.set_timeout(CALLER_DEADLINE);
    let status = client
        .mount(request)
        .await
        .expect_err("the backend never answers, so the deadline ends the call");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );

    let waited = Instant::now();
    let metrics = loop {
        let metrics = provider.metrics().await?;
        if metrics.count("courier_mounts_total", &[("result", "cancelled")]) > 0 {
            break metrics;
        }
        assert!(
            waited.elapsed() < RECORD_WAIT,
            "no cancelled mount counted within {RECORD_WAIT:?}:\n{}",
            metrics.text()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(
        metrics.count(
            "courier_mounts_total",
            &[("provider", "vault"), ("backend", "vault"), ("result", "cancelled")]
        ),
        1,
        "{}",
        metrics.text()
    );
    assert_eq!(
        metrics.count("courier_mounts_total", &[]),
        1,
        "only the cancelled mount is counted: {}",
        metrics.text()
    );
    assert_eq!(
        metrics.count(
            "courier_mount_duration_seconds_count",
            &[("provider", "vault"), ("backend", "vault")]
        ),
        1,
        "{}",
        metrics.text()
    );

    let line = loop {
        if let Some(line) = cancelled_audit_line(&provider.logs()) {
            break line;
        }
        assert!(
            waited.elapsed() < RECORD_WAIT,
            "no cancelled audit line within {RECORD_WAIT:?}:\n{}",
            provider.logs()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(line["spc"], "cancelled-spc", "{line}");
    assert_eq!(line["backend"], "vault", "{line}");
    assert_eq!(
        line["pod_name"], attributes["csi.storage.k8s.io/pod.name"],
        "{line}"
    );
    assert_eq!(
        line["pod_namespace"], attributes["csi.storage.k8s.io/pod.namespace"],
        "{line}"
    );
    let served: Value = serde_json::from_str(line["objects"].as_str().unwrap_or("null"))?;
    assert_eq!(
        served,
        serde_json::json!([{"id": "password", "version": null, "outcome": "not_served"}]),
        "{line}"
    );
    assert!(line["duration_ms"].is_u64(), "{line}");
    let audits = provider
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .count();
    assert_eq!(audits, 1, "one audit line for the one mount:\n{}", provider.logs());
    Ok(())
}
