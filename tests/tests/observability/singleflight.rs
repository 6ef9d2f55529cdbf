//! Concurrent mounts on a cold provider: one login per identity, and reads shared within (never across)
//! identities, as the metrics count them.

use courier_tests::MetricsSnapshot;
use courier_tests::calls::text;

use crate::support::{Access, Case, Identity, Obj, mount_concurrently, provider_builder};

/// Mounts sent at once.
const MOUNTS: usize = 20;
/// Objects per mount, each at its own path.
const OBJECTS: usize = 5;

/// Builds `per_identity` requests for each identity, interleaved so that identities race each other too.
fn requests(
    identities: &[Identity<'_>],
    per_identity: usize,
    objects: &[Obj],
) -> anyhow::Result<Vec<courier_proto::v1alpha1::MountRequest>> {
    let mut requests = Vec::new();
    for _ in 0..per_identity {
        for identity in identities {
            requests.push(identity.request(objects)?.build()?);
        }
    }
    Ok(requests)
}

fn counts(metrics: &MetricsSnapshot) -> String {
    format!(
        "logins ok {}, login requests {}, read requests {}, read lookups hit/shared/miss {}/{}/{}, \
         login lookups hit/shared/miss {}/{}/{}",
        metrics.count("courier_logins_total", &[("result", "ok")]),
        metrics.count("courier_backend_requests_total", &[("operation", "login")]),
        metrics.count("courier_backend_requests_total", &[("operation", "read")]),
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "read"), ("result", "hit")]
        ),
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "read"), ("result", "shared")]
        ),
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "read"), ("result", "miss")]
        ),
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "login"), ("result", "hit")]
        ),
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "login"), ("result", "shared")]
        ),
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "login"), ("result", "miss")]
        ),
    )
}

#[tokio::test]
async fn twenty_concurrent_mounts_of_one_service_account_log_in_once_and_share_reads()
-> anyhow::Result<()> {
    let case = Case::shared("sf-one").await?;
    let seeded = case.seed("sf-one-object", OBJECTS).await?;
    let objects: Vec<Obj> = seeded.iter().map(|(o, _)| o.clone()).collect();
    let identity = case.identity("app", Access::Allowed).await?;
    let provider = provider_builder(&["vault"]).await?.start().await?;

    let results = mount_concurrently(
        &provider,
        "vault",
        requests(std::slice::from_ref(&identity), MOUNTS, &objects)?,
    )
    .await?;

    for result in &results {
        let response = result
            .as_ref()
            .map_err(|s| anyhow::anyhow!("a mount failed: {s:?}"))?;
        for (object, value) in &seeded {
            assert_eq!(&text(response, &object.name()), value);
        }
    }
    let metrics = provider.metrics().await?;
    let summary = counts(&metrics);
    eprintln!("{MOUNTS} mounts of one identity: {summary}");
    assert_eq!(
        metrics.count("courier_mounts_total", &[("result", "ok")]),
        MOUNTS as u64,
        "{summary}"
    );
    assert_eq!(
        metrics.count("courier_logins_total", &[("result", "ok")]),
        1,
        "pods of one service account must share one login: {summary}"
    );
    assert_eq!(metrics.count("courier_logins_total", &[]), 1, "{summary}");
    assert_eq!(
        metrics.count("courier_backend_requests_total", &[("operation", "login")]),
        1,
        "{summary}"
    );
    assert_eq!(
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "login"), ("result", "miss")]
        ),
        1,
        "{summary}"
    );
    let reads = metrics.count("courier_backend_requests_total", &[("operation", "read")]);
    assert!(
        reads >= OBJECTS as u64 && reads <= 2 * OBJECTS as u64,
        "{MOUNTS} mounts of {OBJECTS} objects should send about {OBJECTS} reads, not up to {}: {summary}",
        MOUNTS * OBJECTS
    );
    let read_lookups = |result| {
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "read"), ("result", result)],
        )
    };
    assert_eq!(
        read_lookups("hit") + read_lookups("shared") + read_lookups("miss"),
        (MOUNTS * OBJECTS) as u64,
        "every object of every mount is one lookup: {summary}"
    );
    assert_eq!(
        read_lookups("miss"),
        reads,
        "each miss is one request: {summary}"
    );
    assert!(
        read_lookups("hit") + read_lookups("shared") >= ((MOUNTS - 2) * OBJECTS) as u64,
        "{summary}"
    );
    assert_eq!(
        metrics.count("courier_backend_tokens_cached", &[]),
        1,
        "{summary}"
    );
    Ok(())
}

#[tokio::test]
async fn twenty_concurrent_mounts_over_four_identities_log_in_four_times() -> anyhow::Result<()> {
    const IDENTITIES: usize = 4;
    let case = Case::shared("sf-four").await?;
    let seeded = case.seed("sf-four-object", OBJECTS).await?;
    let objects: Vec<Obj> = seeded.iter().map(|(o, _)| o.clone()).collect();
    let mut identities = Vec::new();
    for i in 0..IDENTITIES {
        identities.push(case.identity(&format!("app{i}"), Access::Allowed).await?);
    }
    let provider = provider_builder(&["vault"]).await?.start().await?;

    let results = mount_concurrently(
        &provider,
        "vault",
        requests(&identities, MOUNTS / IDENTITIES, &objects)?,
    )
    .await?;

    for result in &results {
        let response = result
            .as_ref()
            .map_err(|s| anyhow::anyhow!("a mount failed: {s:?}"))?;
        for (object, value) in &seeded {
            assert_eq!(&text(response, &object.name()), value);
        }
    }
    let metrics = provider.metrics().await?;
    let summary = counts(&metrics);
    eprintln!("{MOUNTS} mounts of {IDENTITIES} identities: {summary}");
    assert_eq!(
        metrics.count("courier_logins_total", &[("result", "ok")]),
        IDENTITIES as u64,
        "one login per identity: {summary}"
    );
    assert_eq!(
        metrics.count("courier_backend_requests_total", &[("operation", "login")]),
        IDENTITIES as u64,
        "{summary}"
    );
    let reads = metrics.count("courier_backend_requests_total", &[("operation", "read")]);
    // Each identity reads every path itself (reads are never shared across identities), and about once.
    assert!(
        reads >= (IDENTITIES * OBJECTS) as u64,
        "identities must not share reads: {summary}"
    );
    assert!(
        reads <= (2 * IDENTITIES * OBJECTS) as u64,
        "reads within an identity should be shared: {summary}"
    );
    assert_eq!(
        metrics.count("courier_backend_tokens_cached", &[]),
        IDENTITIES as u64,
        "{summary}"
    );
    Ok(())
}
