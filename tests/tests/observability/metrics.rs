//! The Prometheus endpoint: mounts counted by result, every family present, and labels drawn from small fixed
//! sets, never from object names, paths, pods or values.

use std::collections::{BTreeMap, BTreeSet};

use courier_tests::calls::mount;
use serde_json::json;
use tonic::Code;

use crate::support::{Access, Case, Obj, provider_builder, random_value};

/// Allowed values per label name; `provider` is checked against the served names.
const BOUNDED_LABELS: &[(&str, &[&str])] = &[
    ("backend", &["vault", "openbao", "none"]),
    (
        "result",
        &[
            "ok",
            "invalid",
            "denied",
            "not_found",
            "unavailable",
            "timeout",
            "deadline",
            "error",
            "hit",
            "miss",
            "shared",
        ],
    ),
    ("operation", &["login", "read", "write", "renew"]),
    ("status", &["2xx", "4xx", "5xx", "other", "error"]),
    ("cache", &["login", "read"]),
    (
        "event",
        &[
            "issued",
            "reused",
            "renewed",
            "renew_failed",
            "revoked",
            "expired",
        ],
    ),
];

/// Every family the README lists that has samples after these mounts. (`courier_lease_events` appears with the
/// first dynamic-secret event; a family without samples is not written.)
const FAMILIES: &[&str] = &[
    "courier_mounts",
    "courier_mount_duration_seconds",
    "courier_backend_requests",
    "courier_backend_request_duration_seconds",
    "courier_logins",
    "courier_cache_lookups",
    "courier_backend_tokens_cached",
    "courier_leases_held",
];

#[tokio::test]
async fn mounts_are_counted_by_result_with_bounded_labels() -> anyhow::Result<()> {
    let case = Case::shared("metrics").await?;
    let value = random_value("metric-canary");
    case.put("app", json!({"password": value})).await?;
    let object_a = random_value("metrics-object-a");
    let object_b = random_value("metrics-object-b");
    let missing_object = random_value("metrics-object-missing");
    let allowed = case.identity("app", Access::Allowed).await?;
    let refused = case.identity("other", Access::Denied).await?;
    let provider = provider_builder(&["vault", "courier"])
        .await?
        .start()
        .await?;
    let mut vault = provider.client("vault").await?;
    let mut native = provider.client("courier").await?;
    let good = [
        Obj::new(&object_a, &case.secret_path("app")).key("password"),
        Obj::new(&object_b, &case.secret_path("app")),
    ];

    // ok: two on the vault socket, one on the native socket.
    mount(&mut vault, allowed.request(&good)?.build()?).await?;
    mount(&mut vault, allowed.request(&good)?.build()?).await?;
    mount(&mut native, allowed.request(&good)?.build()?).await?;
    // denied
    let denied = mount(&mut vault, refused.request(&good)?.build()?).await;
    assert_eq!(denied.expect_err("refused").code(), Code::PermissionDenied);
    // invalid while parsing, before a backend is known: a method the provider does not support
    let bad =
        [Obj::new(&object_a, &case.secret_path("app")).field("method", "\"DELETE\"".to_owned())];
    let invalid = mount(&mut vault, allowed.request(&bad)?.build()?).await;
    assert_eq!(invalid.expect_err("invalid").code(), Code::InvalidArgument);
    // invalid once the backend is known: the driver passed no token for the audience
    let no_token = allowed.request(&good)?.without_tokens().build()?;
    let invalid = mount(&mut vault, no_token).await;
    assert_eq!(invalid.expect_err("invalid").code(), Code::InvalidArgument);
    // not_found
    let missing = [Obj::new(&missing_object, &case.secret_path("missing")).key("password")];
    let not_found = mount(&mut vault, allowed.request(&missing)?.build()?).await;
    assert_eq!(not_found.expect_err("not found").code(), Code::NotFound);

    let metrics = provider.metrics().await?;
    let page = metrics.text();
    let mounts = |labels: &[(&str, &str)]| metrics.count("courier_mounts_total", labels);
    assert_eq!(
        mounts(&[("provider", "vault"), ("result", "ok")]),
        2,
        "{page}"
    );
    assert_eq!(
        mounts(&[("provider", "courier"), ("result", "ok")]),
        1,
        "{page}"
    );
    assert_eq!(
        mounts(&[
            ("provider", "vault"),
            ("backend", "vault"),
            ("result", "denied")
        ]),
        1,
        "{page}"
    );
    assert_eq!(
        mounts(&[("provider", "vault"), ("result", "invalid")]),
        2,
        "{page}"
    );
    assert_eq!(
        mounts(&[
            ("provider", "vault"),
            ("backend", "none"),
            ("result", "invalid")
        ]),
        1,
        "a mount that fails before naming a backend is counted under backend=none: {page}"
    );
    assert_eq!(
        mounts(&[
            ("provider", "vault"),
            ("backend", "vault"),
            ("result", "invalid")
        ]),
        1,
        "{page}"
    );
    assert_eq!(
        mounts(&[
            ("provider", "vault"),
            ("backend", "vault"),
            ("result", "not_found")
        ]),
        1,
        "{page}"
    );
    assert_eq!(mounts(&[]), 7, "{page}");
    assert_eq!(
        metrics.count("courier_mount_duration_seconds_count", &[]),
        7,
        "every mount is timed: {page}"
    );
    assert!(
        metrics.count(
            "courier_backend_requests_total",
            &[("operation", "read"), ("status", "2xx")]
        ) >= 1,
        "{page}"
    );
    assert!(
        metrics.count(
            "courier_backend_requests_total",
            &[("operation", "read"), ("status", "4xx")]
        ) >= 1,
        "the refused and the missing reads are 4xx: {page}"
    );
    // The allowed identity logs in once for both sockets; the refused one logs in, is refused the read (403),
    // logs in again once in case its token was revoked, and is refused again.
    assert_eq!(
        metrics.count("courier_logins_total", &[("result", "ok")]),
        3,
        "{page}"
    );
    assert!(
        metrics.count(
            "courier_backend_request_duration_seconds_count",
            &[("operation", "login")]
        ) >= 2,
        "{page}"
    );
    for family in FAMILIES {
        assert!(
            page.contains(&format!("# TYPE {family} ")),
            "the family {family} is not exported: {page}"
        );
    }

    // Labels: only known names, each from a small fixed set of values.
    let bounded: BTreeMap<&str, BTreeSet<&str>> = BOUNDED_LABELS
        .iter()
        .map(|(name, values)| (*name, values.iter().copied().collect()))
        .collect();
    for sample in metrics.samples() {
        for (name, label) in &sample.labels {
            match name.as_str() {
                "provider" => assert!(
                    ["vault", "courier"].contains(&label.as_str()),
                    "provider label {label:?} in {sample:?}"
                ),
                "le" => assert!(
                    label == "+Inf" || label.parse::<f64>().is_ok(),
                    "bucket bound {label:?}"
                ),
                // One constant series per process: the build.
                "version" | "revision" if sample.name == "courier_build_info" => assert!(
                    label == env!("CARGO_PKG_VERSION")
                        || label == "unknown"
                        || label.bytes().all(|b| b.is_ascii_hexdigit()),
                    "build label {name}={label:?}"
                ),
                other => {
                    let allowed = bounded
                        .get(other)
                        .unwrap_or_else(|| panic!("unexpected label name {other:?} in {sample:?}"));
                    assert!(
                        allowed.contains(label.as_str()),
                        "label {other}={label:?} is not from its fixed set: {sample:?}"
                    );
                }
            }
        }
    }
    // And nothing mount-specific anywhere on the page.
    for (what, needle) in [
        ("the secret value", value.as_str()),
        ("an object name", object_a.as_str()),
        ("an object name", object_b.as_str()),
        ("a missing object's name", missing_object.as_str()),
        (
            "the case id (in every path, role and namespace)",
            case.id.as_str(),
        ),
        ("a secret path", "secret/data"),
    ] {
        assert!(
            !page.contains(needle),
            "{what} ({needle:?}) appears on /metrics:\n{page}"
        );
    }
    Ok(())
}
