//! Database credentials: kept and handed back until the reuse point, then renewed or re-issued; one request
//! per mount; KV v1's refresh hint is not a lease.

use std::time::{Duration, Instant};

use courier_tests::calls::{mount, object_version, text};
use reqwest::Method;
use serde_json::json;

use crate::support::{Creds, Provider, env, mount_creds, obj, provider_builder};

/// Catches a provider that never renews or re-issues; not a speed bound (the thresholds here are seconds away,
/// so on any machine the change comes long before this).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Pause between republishes while a test waits for a threshold (the driver polls far less often): pacing, not
/// synchronisation; every mount's result is checked.
const REPUBLISH: Duration = Duration::from_millis(300);

/// Lease `ttl` in seconds OpenBao reports for `lease_id` now.
async fn lease_ttl(case: &crate::support::Case, lease_id: &str) -> anyhow::Result<u64> {
    let lookup = case.bao().lease_lookup(lease_id).await?;
    lookup["ttl"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("lease lookup without ttl: {lookup}"))
}

/// Before the reuse point every mount of the pod gets the same credentials, the same versions and no new
/// lease; after it, with renewal off, fresh credentials arrive, and the old ones still work until their lease
/// ends.
#[tokio::test]
async fn credentials_are_reused_until_the_threshold_then_reissued_when_renewal_is_off()
-> anyhow::Result<()> {
    const TTL: Duration = Duration::from_secs(10);
    const FRACTION: f64 = 0.5;
    let case = env().await?.case("db-reissue", "10s", "1m").await?;
    let provider = Provider::start(
        provider_builder().await?
            .arg("--lease-reuse-fraction")
            .arg(FRACTION.to_string())
            .arg("--lease-renew")
            .arg("false"),
    )
    .await?;
    let mut client = provider.client().await?;
    let request = case.request(&case.creds_objects())?;
    let reuse_point = TTL.mul_f64(FRACTION);

    let started = Instant::now();
    let first = mount_creds(&mut client, &request).await?;
    case.assert_logs_in(&first, "the issued credentials do not log in").await?;
    assert_eq!(
        case.db_leases().await?,
        std::slice::from_ref(&first.lease_id)
    );

    // Reuse before the threshold is `credentials_are_reused_before_the_threshold`'s (a TTL no run can outlast);
    // here every mount until the change must be `first` exactly, and the change may only come after the reuse
    // point. Republish like a (very eager) driver until the credentials change.
    let mut reused_mounts = 0;
    let deadline = started + HANG_LIMIT;
    let second = loop {
        tokio::time::sleep(REPUBLISH).await;
        let creds = mount_creds(&mut client, &request).await?;
        if creds.username != first.username {
            break creds;
        }
        assert_eq!(creds, first, "same username, but something else changed");
        reused_mounts += 1;
        assert!(
            Instant::now() < deadline,
            "no fresh credentials {HANG_LIMIT:?} after the first mount"
        );
    };
    assert!(
        started.elapsed() >= reuse_point,
        "fresh credentials after {:?}, before the reuse point {reuse_point:?}",
        started.elapsed()
    );
    assert_ne!(second.password, first.password);
    assert_ne!(second.lease_id, first.lease_id);
    for (i, id) in ["username", "password", "lease.json"].iter().enumerate() {
        assert_ne!(
            second.versions[i], first.versions[i],
            "the version of {id} did not change with its content"
        );
    }
    case.assert_logs_in(&second, "the new credentials do not log in").await?;
    case.assert_logs_in(&first, "the old credentials stopped working before their lease ended").await?;
    let mut expected_leases = vec![first.lease_id.clone(), second.lease_id.clone()];
    expected_leases.sort();
    assert_eq!(case.db_leases().await?, expected_leases);

    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[
        ("courier_lease_events_total", &[("event", "issued")], 2.0),
        ("courier_lease_events_total", &[("event", "reused")], f64::from(reused_mounts)),
        ("courier_lease_events_total", &[("event", "renewed")], 0.0),
    ]);
    assert_eq!(
        metrics.sum("courier_backend_requests_total", &[("operation", "read")]),
        2.0,
        "only the two issues may reach OpenBao; {}",
        metrics.0
    );
    metrics.assert_sums(&[("courier_backend_requests_total", &[("operation", "renew")], 0.0)]);
    assert_eq!(
        metrics.sum("courier_leases_held", &[]),
        1.0,
        "the replaced lease is no longer held; {}",
        metrics.0
    );
    Ok(())
}

/// Before the reuse point every mount of the pod gets the same credentials and versions, one read reaches
/// OpenBao and no second lease is made. The TTL is long enough that no machine, however loaded, reaches the
/// reuse point during the test, so no timing guard is needed.
#[tokio::test]
async fn credentials_are_reused_before_the_threshold() -> anyhow::Result<()> {
    const MOUNTS: u32 = 4;
    let case = env().await?.case("db-young", "30m", "1h").await?;
    let provider = Provider::with_reuse_fraction(0.5).await?;
    let mut client = provider.client().await?;
    let request = case.request(&case.creds_objects())?;
    let first = mount_creds(&mut client, &request).await?;
    for _ in 1..MOUNTS {
        assert_eq!(
            mount_creds(&mut client, &request).await?,
            first,
            "a re-mount before the reuse point must hand back the same credentials and versions"
        );
    }
    assert_eq!(
        case.db_leases().await?,
        std::slice::from_ref(&first.lease_id),
        "a re-mount before the reuse point issued another lease"
    );
    let metrics = provider.metrics().await?;
    for (event, count) in [("issued", 1), ("reused", MOUNTS - 1), ("renewed", 0)] {
        assert_eq!(
            metrics.sum("courier_lease_events_total", &[("event", event)]),
            f64::from(count),
            "{event}: {}",
            metrics.0
        );
    }
    assert_eq!(
        metrics.sum("courier_backend_requests_total", &[("operation", "read")]),
        1.0,
        "only the issue may reach OpenBao; {}",
        metrics.0
    );
    Ok(())
}

/// With renewal on, the reuse point renews the lease: the same credentials and versions stay, OpenBao
/// extends the lease, and PostgreSQL keeps accepting the login past the lease's original end.
#[tokio::test]
async fn credentials_are_renewed_at_the_threshold_and_stay_the_same() -> anyhow::Result<()> {
    const TTL: Duration = Duration::from_secs(10);
    const FRACTION: f64 = 0.5;
    let case = env().await?.case("db-renew", "10s", "1m").await?;
    let provider = Provider::with_reuse_fraction(FRACTION).await?;
    let mut client = provider.client().await?;
    let request = case.request(&case.creds_objects())?;
    let reuse_point = TTL.mul_f64(FRACTION);

    let started = Instant::now();
    let first = mount_creds(&mut client, &request).await?;
    let issued_by = Instant::now();
    let looked_up = Instant::now();
    let ttl_at_issue = lease_ttl(&case, &first.lease_id).await?;
    assert!(
        ttl_at_issue <= TTL.as_secs(),
        "OpenBao granted {ttl_at_issue}s"
    );

    let deadline = started + HANG_LIMIT;
    loop {
        tokio::time::sleep(REPUBLISH).await;
        let creds = mount_creds(&mut client, &request).await?;
        assert_eq!(
            creds, first,
            "a renewing provider changed the credentials or their versions"
        );
        if provider.lease_events("renewed").await? >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no renewal within {HANG_LIMIT:?} of the first mount"
        );
    }
    assert!(
        started.elapsed() >= reuse_point,
        "renewed after {:?}, before the reuse point {reuse_point:?}",
        started.elapsed()
    );

    // OpenBao records the renewal on the lease itself.
    let lookup = case.bao().lease_lookup(&first.lease_id).await?;
    assert!(
        lookup["last_renewal"].is_string(),
        "OpenBao has no renewal on the lease: {lookup}"
    );
    // Without the renewal the lease would have `ttl_at_issue - elapsed` left; the renewal granted a full TTL.
    // `elapsed` counts from before the first lookup, so load only makes the left side larger: a lower bound.
    let ttl_now = lease_ttl(&case, &first.lease_id).await?;
    let elapsed = looked_up.elapsed().as_secs();
    assert!(
        ttl_now + elapsed >= ttl_at_issue + 3,
        "the lease was not extended: ttl {ttl_at_issue}s at issue, {ttl_now}s after {elapsed}s"
    );

    // Keep republishing past the lease's original end: the credentials stay and PostgreSQL still takes them.
    let original_end = issued_by + TTL + Duration::from_millis(1500);
    while Instant::now() < original_end {
        tokio::time::sleep(REPUBLISH).await;
        assert_eq!(mount_creds(&mut client, &request).await?, first);
    }
    case.assert_logs_in(&first, "the renewed credentials stopped working at the lease's original end").await?;
    assert_eq!(
        case.db_leases().await?,
        std::slice::from_ref(&first.lease_id),
        "renewal must not issue a lease"
    );

    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[
        ("courier_lease_events_total", &[("event", "issued")], 1.0),
        ("courier_lease_events_total", &[("event", "renew_failed")], 0.0),
        ("courier_backend_requests_total", &[("operation", "read")], 1.0),
    ]);
    metrics.assert_at_least(&[
        ("courier_lease_events_total", &[("event", "renewed")], 1.0),
        ("courier_backend_requests_total", &[("operation", "renew"), ("status", "2xx")], 1.0),
    ]);
    Ok(())
}

/// A lease at its max TTL cannot be renewed for long: the short renewal is not kept, fresh credentials are
/// issued instead.
#[tokio::test]
async fn a_renewal_capped_by_max_ttl_gives_way_to_fresh_credentials() -> anyhow::Result<()> {
    const TTL: Duration = Duration::from_secs(6);
    const FRACTION: f64 = 0.85;
    // default_ttl = max_ttl: at the reuse point at most 15% of the lease is left to renew.
    let case = env().await?.case("db-maxttl", "6s", "6s").await?;
    let provider = Provider::with_reuse_fraction(FRACTION).await?;
    let mut client = provider.client().await?;
    let request = case.request(&case.creds_objects())?;

    let started = Instant::now();
    let first = mount_creds(&mut client, &request).await?;
    let deadline = started + HANG_LIMIT;
    let second = loop {
        tokio::time::sleep(REPUBLISH).await;
        let creds = mount_creds(&mut client, &request).await?;
        if creds.username != first.username {
            break creds;
        }
        assert_eq!(creds, first);
        assert!(
            Instant::now() < deadline,
            "no fresh credentials within {HANG_LIMIT:?}"
        );
    };
    assert!(
        started.elapsed() >= TTL.mul_f64(FRACTION),
        "fresh credentials after {:?}, before the reuse point",
        started.elapsed()
    );
    assert_ne!(second.versions, first.versions);
    case.assert_logs_in(&second, "the fresh credentials do not log in").await?;

    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[
        ("courier_lease_events_total", &[("event", "renew_failed")], 1.0),
        ("courier_lease_events_total", &[("event", "renewed")], 0.0),
        ("courier_lease_events_total", &[("event", "issued")], 2.0),
    ]);
    Ok(())
}

/// `username` and `password` are two objects on one credentials path: one request, so they are one pair.
#[tokio::test]
async fn objects_on_one_credentials_path_form_one_matching_pair() -> anyhow::Result<()> {
    let case = env().await?.case("db-pair", "5m", "10m").await?;
    let provider = Provider::start(provider_builder().await?).await?;
    let path = case.creds_path();
    let request = case
        .request(&[
            obj("db/user", &path).key("username"),
            obj("db/pass", &path).key("password"),
        ])?
        .build()?;

    let response = mount(&mut provider.client().await?, request).await?;

    let (user, pass) = (text(&response, "db/user"), text(&response, "db/pass"));
    assert!(
        case.pg().can_login(&user, &pass).await?,
        "username and password do not belong together; PostgreSQL log:\n{}",
        case.pg().logs()
    );
    assert!(case.pg().role_exists(&user).await?);
    assert_eq!(
        case.db_leases().await?.len(),
        1,
        "two objects issued more than one lease"
    );
    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[
        ("courier_backend_requests_total", &[("operation", "read")], 1.0),
        ("courier_lease_events_total", &[("event", "issued")], 1.0),
        ("courier_leases_held", &[], 1.0),
    ]);
    Ok(())
}

/// KV v1 answers with a `lease_duration` but no `lease_id`: a refresh hint, not a lease. With static reuse
/// off, a change shows up on the very next mount and nothing is held as a lease.
#[tokio::test]
async fn kv_v1_refresh_hint_is_not_a_lease() -> anyhow::Result<()> {
    let case = env().await?.case("kv1-hint", "5m", "10m").await?;
    let kv = format!("kv1-{}", case.id);
    case.bao().enable_kv1(&kv).await?;
    case.bao()
        .kv1_put(&kv, "app", json!({"password": "one"}))
        .await?;
    let direct = case
        .bao()
        .api(Method::GET, &format!("{kv}/app"), None)
        .await?;
    assert!(
        direct["lease_duration"].as_u64().unwrap_or(0) > 0 && direct["lease_id"] == "",
        "the premise fails: KV v1 no longer answers with a bare lease_duration: {direct}"
    );
    let provider = Provider::start(provider_builder().await?.static_reuse(Duration::ZERO)).await?;
    let mut client = provider.client().await?;
    let request = case
        .request(&[obj("password", &format!("{kv}/app")).key("password")])?
        .build()?;

    let before = mount(&mut client, request.clone()).await?;
    case.bao()
        .kv1_put(&kv, "app", json!({"password": "two"}))
        .await?;
    let after = mount(&mut client, request).await?;

    assert_eq!(text(&before, "password"), "one");
    assert_eq!(
        text(&after, "password"),
        "two",
        "KV v1 content was kept like a lease"
    );
    assert_ne!(
        object_version(&after, "password"),
        object_version(&before, "password")
    );
    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[
        ("courier_lease_events_total", &[], 0.0),
        ("courier_leases_held", &[], 0.0),
    ]);
    Ok(())
}

/// Guards [`Creds::from`]: the lease file is part of what a test compares.
#[test]
fn creds_compare_versions_too() {
    let a = Creds {
        username: "u".into(),
        password: "p".into(),
        lease_id: "l".into(),
        versions: ["1".into(), "2".into(), "3".into()],
    };
    let mut b = a.clone();
    b.versions[2] = "4".into();
    assert_ne!(a, b);
}

/// OpenBao revokes every lease a token created when that token expires. The provider logs in again when its
/// cached token nears its end, but a kept secret issued under the old token dies with it: handing it back
/// would give the pod credentials that no longer log in. A kept secret must not outlive the login it was
/// issued under; after that the next mount needs working credentials.
#[tokio::test]
async fn credentials_do_not_outlive_the_login_token_that_issued_them() -> anyhow::Result<()> {
    const TOKEN_TTL: Duration = Duration::from_secs(4);
    let case = env().await?.case("db-token-ttl", "1m", "10m").await?;
    // The case's role, with a short-lived token instead of the usual ten minutes.
    case.bao()
        .api(
            Method::POST,
            &format!("auth/{}/role/{}", crate::support::JWT_MOUNT, case.role),
            Some(json!({
                "role_type": "jwt",
                "bound_audiences": ["vault"],
                "user_claim": "sub",
                "bound_subject": case.pod.subject(),
                "token_policies": [case.id],
                "token_ttl": format!("{}s", TOKEN_TTL.as_secs()),
                "token_max_ttl": format!("{}s", TOKEN_TTL.as_secs()),
            })),
        )
        .await?;
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let request = case.request(&case.creds_objects())?;

    let first = mount_creds(&mut client, &request).await?;
    case.assert_logs_in(&first, "the issued credentials do not log in").await?;
    // The premise: once the token expires, OpenBao revokes the lease and drops the role.
    crate::support::eventually(
        HANG_LIMIT,
        "OpenBao revoking the lease of the expired token",
        || async { Ok((!case.pg().role_exists(&first.username).await?).then_some(())) },
    )
    .await?;

    let next = mount_creds(&mut client, &request).await?;
    assert!(
        case.pg().can_login(&next.username, &next.password).await?,
        "the provider handed back credentials whose lease OpenBao revoked with the login token \
         (same credentials as before: {})",
        next.username == first.username
    );
    Ok(())
}
