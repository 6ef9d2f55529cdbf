//! Certificates: kept until the reuse point of their own validity (no lease), or of their lease
//! (`generate_lease`), then issued afresh; a certificate and its key always come from one issue call.

use std::time::{Duration, Instant};

use courier_proto::v1alpha1::MountResponse;
use courier_tests::calls::{mount, normalized, text};
use courier_tests::tools::openssl_on;
use reqwest::Method;
use serde_json::json;

use crate::support::{Case, Obj, Provider, env, obj};

pub(crate) const DOMAIN: &str = "example.internal";
/// The certificates' validity.
const CERT_TTL: Duration = Duration::from_secs(10);
/// A validity whose reuse point (half of it) no test run can reach, for the "reused before the threshold" cases.
const LONG_CERT_TTL: Duration = Duration::from_secs(30 * 60);
const FRACTION: f64 = 0.5;
/// Catches a provider that never re-issues; not a speed bound (re-issue is due after half of `CERT_TTL`, so on
/// any machine it comes long before this).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Pause between republishes while a test waits for a threshold: pacing like a (very eager) driver, not
/// synchronisation; the result is checked on every mount.
const REPUBLISH: Duration = Duration::from_millis(300);

/// A PKI engine `pki-<id>` with roles `web` (no lease) and `leased` (`generate_lease`).
pub(crate) async fn pki_case(label: &str) -> anyhow::Result<(Case, String)> {
    let case = env().await?.case(label, "5m", "10m").await?;
    let mount = format!("pki-{}", case.id);
    case.bao()
        .enable_pki(&mount, "Courier Dynamic Root")
        .await?;
    case.bao().pki_role(&mount, "web", DOMAIN).await?;
    case.bao()
        .api(
            Method::POST,
            &format!("{mount}/roles/leased"),
            Some(json!({
                "allowed_domains": [DOMAIN],
                "allow_subdomains": true,
                "key_type": "ec",
                "key_bits": 256,
                "max_ttl": "1h",
                "generate_lease": true,
            })),
        )
        .await?;
    Ok((case, mount))
}

fn cert_args(ttl: Duration) -> serde_json::Value {
    json!({"common_name": format!("app.{DOMAIN}"), "ttl": format!("{}s", ttl.as_secs())})
}

fn cert_objects(issue_path: &str, ttl: Duration) -> Vec<Obj> {
    let args = cert_args(ttl);
    ["certificate", "private_key", "serial_number"]
        .iter()
        .zip(["tls.crt", "tls.key", "serial"])
        .map(|(key, name)| {
            obj(name, issue_path)
                .key(key)
                .method("PUT")
                .args(args.clone())
        })
        .collect()
}

/// The certificate's serial as the file says it, checked against the certificate itself, and that the key
/// belongs to the certificate.
fn checked_serial(response: &MountResponse) -> anyhow::Result<String> {
    let serial = text(response, "serial");
    let cert = text(response, "tls.crt");
    let from_cert = openssl_on(&cert, &["x509", "-noout", "-serial"])?;
    assert_eq!(
        from_cert
            .trim()
            .trim_start_matches("serial=")
            .to_lowercase(),
        serial.replace(':', "").to_lowercase(),
        "the serial file and the certificate come from different issue calls"
    );
    assert_eq!(
        openssl_on(&cert, &["x509", "-noout", "-pubkey"])?,
        openssl_on(&text(response, "tls.key"), &["pkey", "-pubout"])?,
        "certificate and key come from different issue calls"
    );
    Ok(serial)
}

/// Mounts until the serial differs from `first`'s, checking every response before that is `first` exactly.
/// Returns the new response, or fails after `deadline` (a hang catcher, see [`HANG_LIMIT`]).
async fn mount_until_new_serial(
    provider: &Provider,
    request: &courier_proto::v1alpha1::MountRequest,
    first: &MountResponse,
    deadline: Instant,
) -> anyhow::Result<MountResponse> {
    let mut client = provider.client().await?;
    let first_serial = text(first, "serial");
    loop {
        tokio::time::sleep(REPUBLISH).await;
        let response = mount(&mut client, request.clone()).await?;
        if text(&response, "serial") != first_serial {
            return Ok(response);
        }
        assert_eq!(
            normalized(&response),
            normalized(first),
            "same serial, but something else changed"
        );
        assert!(
            Instant::now() < deadline,
            "no new certificate by the deadline"
        );
    }
}

#[tokio::test]
async fn certificate_without_a_lease_is_reissued_only_after_the_threshold_of_its_validity()
-> anyhow::Result<()> {
    let (case, mount_path) = pki_case("pki-nolease").await?;
    let provider = Provider::with_reuse_fraction(FRACTION).await?;
    let mut client = provider.client().await?;
    let request = case
        .request(&cert_objects(&format!("{mount_path}/issue/web"), CERT_TTL))?
        .build()?;
    // The expiry is whole seconds, so the validity the provider sees may be a second short.
    let reuse_point = (CERT_TTL - Duration::from_secs(1)).mul_f64(FRACTION);

    let started = Instant::now();
    let first = mount(&mut client, request.clone()).await?;
    let first_serial = checked_serial(&first)?;

    // Reuse before the threshold is `reused_before_the_threshold_while_the_certificate_is_young`'s; here every
    // mount until the new serial must be `first` exactly, and the new one may only come after the reuse point.
    let fresh = mount_until_new_serial(&provider, &request, &first, started + HANG_LIMIT).await?;
    assert!(
        started.elapsed() >= reuse_point,
        "a new certificate after {:?}, before the reuse point {reuse_point:?}",
        started.elapsed()
    );
    assert_ne!(checked_serial(&fresh)?, first_serial);
    let (_, old_versions) = normalized(&first);
    let (_, new_versions) = normalized(&fresh);
    for (old, new) in old_versions.iter().zip(&new_versions) {
        assert_ne!(
            old.1, new.1,
            "the version of {} did not change with the certificate",
            old.0
        );
    }
    assert!(
        case.bao()
            .lease_ids(&format!("{mount_path}/issue/web"))
            .await?
            .is_empty(),
        "a role without generate_lease made a lease"
    );
    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[
        ("courier_backend_requests_total", &[("operation", "write")], 2.0),
        ("courier_lease_events_total", &[("event", "issued")], 2.0),
        ("courier_lease_events_total", &[("event", "renewed")], 0.0),
    ]);
    Ok(())
}

#[tokio::test]
async fn certificate_with_a_lease_is_reissued_only_after_the_threshold() -> anyhow::Result<()> {
    let (case, mount_path) = pki_case("pki-lease").await?;
    let issue_path = format!("{mount_path}/issue/leased");
    let provider = Provider::with_reuse_fraction(FRACTION).await?;
    let mut client = provider.client().await?;
    let mut objects = cert_objects(&issue_path, CERT_TTL);
    objects.push(
        obj("issue.json", &issue_path)
            .method("PUT")
            .args(cert_args(CERT_TTL)),
    );
    let request = case.request(&objects)?.build()?;

    let started = Instant::now();
    let first = mount(&mut client, request.clone()).await?;
    let whole: serde_json::Value = serde_json::from_str(&text(&first, "issue.json"))?;
    let lease_id = whole["lease_id"].as_str().unwrap_or_default().to_owned();
    assert!(
        lease_id.starts_with(&issue_path),
        "generate_lease gave no lease: {}",
        whole["lease_id"]
    );
    assert_eq!(whole["renewable"], false, "PKI leases are not renewable");
    // OpenBao gives the lease the certificate's remaining validity in whole seconds, often a second short.
    let lease_duration = whole["lease_duration"].as_u64().unwrap_or(0);
    assert!(
        (1..=CERT_TTL.as_secs()).contains(&lease_duration),
        "lease_duration {lease_duration} for a {CERT_TTL:?} certificate"
    );
    let reuse_point = Duration::from_secs(lease_duration).mul_f64(FRACTION);
    let first_serial = checked_serial(&first)?;

    // Every mount until the new serial must be `first` exactly; the new one may only come after the reuse
    // point, and it is the only other lease (reuse before the threshold, with no second lease, is
    // `reused_before_the_threshold_while_the_certificate_is_young`'s).
    let fresh = mount_until_new_serial(&provider, &request, &first, started + HANG_LIMIT).await?;
    assert!(
        started.elapsed() >= reuse_point,
        "a new certificate after {:?}, before the reuse point {reuse_point:?}",
        started.elapsed()
    );
    assert_ne!(checked_serial(&fresh)?, first_serial);
    let leases = case.bao().lease_ids(&issue_path).await?;
    assert!(leases.contains(&lease_id), "{leases:?}");
    assert_eq!(leases.len(), 2, "{leases:?}");
    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[
        ("courier_lease_events_total", &[("event", "issued")], 2.0),
        ("courier_backend_requests_total", &[("operation", "renew")], 0.0),
    ]);
    metrics.assert_at_least(&[("courier_lease_events_total", &[("event", "reused")], 1.0)]);
    Ok(())
}

/// Before the reuse point every mount hands back the same certificate, key and versions, with one issue call
/// and (with `generate_lease`) one lease. The validity is long enough that no machine, however loaded, reaches
/// the reuse point during the test, so no timing guard is needed.
#[tokio::test]
async fn reused_before_the_threshold_while_the_certificate_is_young() -> anyhow::Result<()> {
    const MOUNTS: u32 = 4;
    let (case, mount_path) = pki_case("pki-young").await?;
    let provider = Provider::with_reuse_fraction(FRACTION).await?;
    let mut client = provider.client().await?;
    for (role, leased) in [("web", false), ("leased", true)] {
        let issue_path = format!("{mount_path}/issue/{role}");
        let request = case
            .request(&cert_objects(&issue_path, LONG_CERT_TTL))?
            .build()?;
        let first = mount(&mut client, request.clone()).await?;
        checked_serial(&first)?;
        for _ in 1..MOUNTS {
            let again = mount(&mut client, request.clone()).await?;
            assert_eq!(
                normalized(&again),
                normalized(&first),
                "{role}: a re-mount before the reuse point must hand back the same certificate and versions"
            );
        }
        let leases = case.bao().lease_ids(&issue_path).await?;
        assert_eq!(
            leases.len(),
            usize::from(leased),
            "{role}: re-mounts before the reuse point made leases: {leases:?}"
        );
    }
    let metrics = provider.metrics().await?;
    assert_eq!(
        metrics.sum("courier_backend_requests_total", &[("operation", "write")]),
        2.0,
        "one issue call per role; {}",
        metrics.0
    );
    metrics.assert_sums(&[
        ("courier_lease_events_total", &[("event", "issued")], 2.0),
        ("courier_lease_events_total", &[("event", "reused")], f64::from(2 * (MOUNTS - 1))),
    ]);
    Ok(())
}
