//! `revokeOnUnmount`: a lease no mount has used for the grace period is revoked, so PostgreSQL drops its role;
//! a lease still republished, and one without the parameter, stay.

use std::time::{Duration, Instant};

use crate::support::{Provider, env, eventually, mount_creds, provider_builder};

const GRACE: Duration = Duration::from_secs(2);
const SWEEP: Duration = Duration::from_millis(500);
/// Republish interval of the pod that stays: well inside the grace period.
const REPUBLISH: Duration = Duration::from_millis(400);
/// Grace, a sweep, the revocation itself and a busy machine.
const REVOKED_WITHIN: Duration = Duration::from_secs(12);

async fn revoking_provider() -> anyhow::Result<courier_tests::ProviderBuilder> {
    Ok(provider_builder()
        .await?
        .arg("--lease-revoke-grace")
        .arg(format!("{}ms", GRACE.as_millis()))
        .arg("--lease-sweep-interval")
        .arg(format!("{}ms", SWEEP.as_millis())))
}

#[tokio::test]
async fn idle_leases_are_revoked_after_the_grace_and_used_ones_are_kept() -> anyhow::Result<()> {
    let case = env().await?.case("db-revoke", "5m", "10m").await?;
    let provider = Provider::start(revoking_provider().await?).await?;
    let mut client = provider.client().await?;
    let objects = case.creds_objects();
    let revoking = |pod| {
        case.request_for(pod, &case.role, &objects)
            .map(|request| request.parameter("revokeOnUnmount", "true"))
    };
    let (idle_pod, busy_pod, plain_pod) =
        (case.pod.clone(), case.sibling_pod(), case.sibling_pod());
    let idle_request = revoking(&idle_pod)?;
    let busy_request = revoking(&busy_pod)?;

    let idle = mount_creds(&mut client, &idle_request).await?;
    let idle_last_used = Instant::now();
    let busy = mount_creds(&mut client, &busy_request).await?;
    let plain = mount_creds(
        &mut client,
        &case.request_for(&plain_pod, &case.role, &objects)?,
    )
    .await?;
    for creds in [&idle, &busy, &plain] {
        assert!(
            case.pg()
                .can_login(&creds.username, &creds.password)
                .await?
        );
    }

    // The busy pod keeps republishing; the idle pod's lease must go, the busy one's must stay.
    let deadline = Instant::now() + REVOKED_WITHIN;
    loop {
        tokio::time::sleep(REPUBLISH).await;
        assert_eq!(
            mount_creds(&mut client, &busy_request).await?,
            busy,
            "the busy pod's credentials changed"
        );
        if !case.pg().role_exists(&idle.username).await? {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle lease was not revoked within {REVOKED_WITHIN:?}"
        );
    }
    assert!(
        idle_last_used.elapsed() >= GRACE,
        "revoked after {:?} of idleness, before the grace of {GRACE:?}",
        idle_last_used.elapsed()
    );
    assert!(!case.pg().can_login(&idle.username, &idle.password).await?);
    let leases = case.db_leases().await?;
    assert!(
        !leases.contains(&idle.lease_id),
        "OpenBao still holds the revoked lease: {leases:?}"
    );
    assert!(
        leases.contains(&busy.lease_id) && leases.contains(&plain.lease_id),
        "{leases:?}"
    );
    assert!(
        case.pg().can_login(&busy.username, &busy.password).await?,
        "a lease in use was revoked"
    );
    assert_eq!(provider.lease_events("revoked").await?, 1.0);

    // Once the busy pod goes quiet too, its lease follows; the lease without revokeOnUnmount stays.
    eventually(
        REVOKED_WITHIN,
        "the busy pod's lease revoked after it went quiet",
        || async { Ok((!case.pg().role_exists(&busy.username).await?).then_some(())) },
    )
    .await?;
    assert!(
        case.pg()
            .can_login(&plain.username, &plain.password)
            .await?,
        "a lease without revokeOnUnmount was revoked"
    );
    assert_eq!(
        case.db_leases().await?,
        std::slice::from_ref(&plain.lease_id)
    );
    assert_eq!(provider.lease_events("revoked").await?, 2.0);
    eventually(REVOKED_WITHIN, "courier_leases_held back to 1", || async {
        Ok((provider.metrics().await?.sum("courier_leases_held", &[]) == 1.0).then_some(()))
    })
    .await?;

    // The idle pod comes back: it gets fresh credentials that work.
    let back = mount_creds(&mut client, &idle_request).await?;
    assert_ne!(back.username, idle.username);
    assert!(case.pg().can_login(&back.username, &back.password).await?);
    Ok(())
}

/// Without `update` on `sys/leases/revoke` the revocation is refused: the provider says so in its log and the
/// lease stays until it runs out.
#[tokio::test]
async fn revocation_needs_the_policy_and_a_refusal_leaves_the_lease() -> anyhow::Result<()> {
    let case = env()
        .await?
        .case_with("db-norevoke", "5m", "10m", false)
        .await?;
    let provider = Provider::start(revoking_provider().await?).await?;
    let mut client = provider.client().await?;
    let request = case
        .request(&case.creds_objects())?
        .parameter("revokeOnUnmount", "true");

    let creds = mount_creds(&mut client, &request).await?;

    eventually(
        REVOKED_WITHIN,
        "a log line about the refused revocation",
        || async {
            Ok(provider
                .process
                .logs()
                .lines()
                .any(|line| line.contains("could not revoke") && line.contains("sys/leases/revoke"))
                .then_some(()))
        },
    )
    .await?;
    assert!(
        case.pg()
            .can_login(&creds.username, &creds.password)
            .await?
    );
    assert_eq!(
        case.db_leases().await?,
        std::slice::from_ref(&creds.lease_id)
    );
    assert_eq!(provider.lease_events("revoked").await?, 0.0);
    assert!(
        !provider.process.logs().contains(&creds.password),
        "the provider logged the password"
    );
    Ok(())
}
