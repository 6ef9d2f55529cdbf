//! Leases live in memory only. After a restart the provider knows nothing of the old lease, so the pod's next
//! mount is served with a fresh one; the old lease is neither reused nor revoked and runs out on its own in
//! OpenBao. Nothing fails: the mount succeeds, and with the same `--hmac-key-file` a static object keeps its
//! version, so only the credentials' files change.

use courier_tests::calls::{mount, object_version};
use serde_json::json;

use crate::support::{Creds, Provider, env, obj, provider_builder};

#[tokio::test]
async fn a_restarted_provider_issues_a_fresh_lease_and_keeps_static_versions() -> anyhow::Result<()>
{
    let case = env().await?.case("db-restart", "5m", "10m").await?;
    let kv = format!("kv1-{}", case.id);
    case.bao().enable_kv1(&kv).await?;
    case.bao()
        .kv1_put(&kv, "config", json!({"mode": "steady"}))
        .await?;
    let dir = tempfile::Builder::new()
        .prefix("courier-dynamic-restart-")
        .tempdir()?;
    let key_file = dir.path().join("hmac.key");
    std::fs::write(
        &key_file,
        "a key of at least sixteen bytes for object versions",
    )?;
    let providers_dir = dir.path().join("providers");
    std::fs::create_dir(&providers_dir)?;
    let builder = provider_builder().await?
        .hmac_key_file(&key_file)
        .providers_dir(&providers_dir);
    let mut objects = case.creds_objects();
    objects.push(obj("mode", &format!("{kv}/config")).key("mode"));
    let request = case.request(&objects)?.build()?;

    let mut before = Provider::start(builder.clone()).await?;
    let first_response = mount(&mut before.client().await?, request.clone()).await?;
    let first = Creds::from(&first_response);
    let status = before.process.terminate().await?;
    assert!(
        status.success(),
        "the provider did not stop cleanly: {status}; log:\n{}",
        before.process.logs()
    );

    let after = Provider::start(builder).await?;
    let second_response = mount(&mut after.client().await?, request).await?;
    let second = Creds::from(&second_response);

    assert_ne!(
        second.username, first.username,
        "a restarted provider cannot know the old lease"
    );
    assert_ne!(second.lease_id, first.lease_id);
    assert_ne!(second.versions, first.versions);
    assert_eq!(
        object_version(&second_response, "mode"),
        object_version(&first_response, "mode"),
        "with the same --hmac-key-file an unchanged static object keeps its version"
    );
    assert!(
        case.pg()
            .can_login(&second.username, &second.password)
            .await?
    );
    assert!(
        case.pg()
            .can_login(&first.username, &first.password)
            .await?,
        "the old lease must be left to run out, not revoked"
    );
    let mut expected = vec![first.lease_id.clone(), second.lease_id.clone()];
    expected.sort();
    assert_eq!(case.db_leases().await?, expected);
    let metrics = after.metrics().await?;
    metrics.assert_sums(&[
        ("courier_lease_events_total", &[("event", "issued")], 1.0),
        ("courier_lease_events_total", &[("event", "reused")], 0.0),
    ]);
    assert!(
        !after.process.logs().contains("panicked"),
        "the restarted provider panicked; log:\n{}",
        after.process.logs()
    );
    Ok(())
}
