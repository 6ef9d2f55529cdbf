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

/// Seeds [`OBJECTS`] objects under `prefix`, makes one allowed identity per name in `accounts`, sends
/// [`MOUNTS`] mounts of them all at once to a cold provider, checks that every mount returned every seeded value,
/// and returns the provider's metrics with their summary.
async fn mount_all_at_once(
    label: &str,
    accounts: &[String],
) -> anyhow::Result<(MetricsSnapshot, String)> {
    let case = Case::shared(label).await?;
    let seeded = case.seed(&format!("{label}-object"), OBJECTS).await?;
    let objects: Vec<Obj> = seeded.iter().map(|(o, _)| o.clone()).collect();
    let mut identities = Vec::new();
    for account in accounts {
        identities.push(case.identity(account, Access::Allowed).await?);
    }
    let provider = provider_builder(&["vault"]).await?.start().await?;

    let results = mount_concurrently(
        &provider,
        "vault",
        requests(&identities, MOUNTS / accounts.len(), &objects)?,
    )
    .await?;

    for result in &results {
        let response = result
            .as_ref()
            .map_err(|s| anyhow::anyhow!("{label}: a mount failed: {s:?}"))?;
        for (object, value) in &seeded {
            assert_eq!(&text(response, &object.name()), value, "{label}");
        }
    }
    let metrics = provider.metrics().await?;
    let summary = counts(&metrics);
    eprintln!(
        "{MOUNTS} mounts of {} identities: {summary}",
        accounts.len()
    );
    Ok((metrics, summary))
}

#[tokio::test]
async fn twenty_concurrent_mounts_of_one_service_account_log_in_once_and_share_reads()
-> anyhow::Result<()> {
    let (metrics, summary) = mount_all_at_once("sf-one", &["app".to_owned()]).await?;
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
    let accounts: Vec<String> = (0..IDENTITIES).map(|i| format!("app{i}")).collect();
    let (metrics, summary) = mount_all_at_once("sf-four", &accounts).await?;
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
