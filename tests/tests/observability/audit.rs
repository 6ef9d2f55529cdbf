//! The audit trail: with `--log-format json`, one line per mount with target `audit`, naming pod, service
//! account, SecretProviderClass, provider, backend, each object with its version and outcome, the result and the
//! duration, and never a value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use courier_tests::calls::{mount, object_version};
use serde_json::{Value, json};
use tonic::Code;

use crate::support::{Access, Case, Obj, provider_builder, random_value};

/// The audit lines in a JSON log, in order; fails on a line that is not JSON.
fn audit_lines(logs: &str) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("a log line is not JSON ({e}): {line}"))?;
        if value["target"] == "audit" {
            lines.push(value);
        }
    }
    Ok(lines)
}

fn field<'a>(line: &'a Value, name: &str) -> &'a str {
    line[name]
        .as_str()
        .unwrap_or_else(|| panic!("audit field {name:?} is missing or not a string: {line}"))
}

#[tokio::test]
async fn one_json_audit_line_per_mount_with_ids_versions_and_outcome_but_no_value()
-> anyhow::Result<()> {
    let case = Case::shared("audit").await?;
    let canary = random_value("audit-canary");
    case.put("app", json!({"password": canary, "user": "audit-user"}))
        .await?;
    let identity = case.identity("app", Access::Allowed).await?;
    let mut provider = provider_builder(&["vault"])
        .await?
        .log_format("json")
        .start()
        .await?;
    let mut client = provider.client("vault").await?;

    let good_objects = [
        Obj::new("password", &case.secret_path("app")).key("password"),
        Obj::new("config/whole.json", &case.secret_path("app")),
    ];
    let good = identity
        .request(&good_objects)?
        .secret_provider_class("audited-spc")
        .build()?;
    let good_attributes: Value = serde_json::from_str(&good.attributes)?;
    let response = mount(&mut client, good).await?;

    let failing_objects = [
        Obj::new("password", &case.secret_path("app")).key("password"),
        Obj::new("absent", &case.secret_path("absent")).key("password"),
    ];
    let failing = identity
        .request(&failing_objects)?
        .secret_provider_class("failing-spc")
        .build()?;
    let failing_attributes: Value = serde_json::from_str(&failing.attributes)?;
    let failed = mount(&mut client, failing).await;
    let status = failed.expect_err("a missing path fails the mount");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    drop(client);
    assert!(provider.terminate().await?.success());

    let logs = provider.logs();
    let audits = audit_lines(&logs)?;
    assert_eq!(audits.len(), 2, "one audit line per mount:\n{logs}");

    for (line, attributes, spc, outcome) in [
        (&audits[0], &good_attributes, "audited-spc", "ok"),
        (&audits[1], &failing_attributes, "failing-spc", "not_found"),
    ] {
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(
            field(line, "pod_namespace"),
            attributes["csi.storage.k8s.io/pod.namespace"],
            "{line}"
        );
        assert_eq!(
            field(line, "pod_name"),
            attributes["csi.storage.k8s.io/pod.name"],
            "{line}"
        );
        assert_eq!(
            field(line, "pod_uid"),
            attributes["csi.storage.k8s.io/pod.uid"],
            "{line}"
        );
        assert_eq!(
            field(line, "service_account"),
            attributes["csi.storage.k8s.io/serviceAccount.name"],
            "{line}"
        );
        assert_eq!(field(line, "spc"), spc, "{line}");
        assert_eq!(field(line, "provider"), "vault", "{line}");
        assert_eq!(field(line, "backend"), "vault", "{line}");
        assert_eq!(field(line, "outcome"), outcome, "{line}");
        assert!(line["duration_ms"].is_u64(), "duration_ms: {line}");
    }

    // The served mount: every object with the version the driver got.
    let ok = &audits[0];
    assert_eq!(field(ok, "error"), "", "{ok}");
    let objects: Value = serde_json::from_str(field(ok, "objects"))?;
    let expected: Vec<Value> = ["password", "config/whole.json"]
        .iter()
        .map(|id| json!({"id": id, "version": object_version(&response, id), "outcome": "served"}))
        .collect();
    assert_eq!(objects, Value::Array(expected), "{ok}");

    // The failed mount: the error as the driver saw it, nothing served.
    let failed = &audits[1];
    assert_eq!(field(failed, "error"), status.message(), "{failed}");
    assert!(field(failed, "error").contains("absent"), "{failed}");
    let objects: Value = serde_json::from_str(field(failed, "objects"))?;
    let expected: Vec<Value> = ["password", "absent"]
        .iter()
        .map(|id| json!({"id": id, "version": null, "outcome": "not_served"}))
        .collect();
    assert_eq!(objects, Value::Array(expected), "{failed}");

    // No value anywhere in the log, audit or not.
    for (what, needle) in [
        ("secret value", canary.clone()),
        ("secret value in base64", STANDARD.encode(&canary)),
    ] {
        assert!(
            !logs.contains(&needle),
            "{what} appears in the log:\n{logs}"
        );
    }
    Ok(())
}
