use serde_json::json;

use super::*;

fn key(pod: Option<&str>) -> LeaseKey {
    LeaseKey {
        identity: TokenKey {
            address: "a".into(),
            namespace: None,
            mount: "m".into(),
            role: "r".into(),
            audience: "vault".into(),
            sa_namespace: "ns".into(),
            sa_name: "sa".into(),
            scope: crate::identity::CredentialScope::ServiceAccount { uid: "u".into() },
        },
        pod_uid: pod.map(str::to_owned),
        request: "GET database/creds/app".into(),
    }
}

fn facts(id: Option<&str>, renewable: bool, secs: u64) -> LeaseFacts {
    LeaseFacts { lease_id: id.map(str::to_owned), renewable, duration: Duration::from_secs(secs) }
}

#[test]
fn facts_from_responses() {
    let db = json!({"lease_id": "database/creds/app/x", "lease_duration": 300, "renewable": true, "data": {}});
    assert_eq!(lease_facts(&db, 0), Some(facts(Some("database/creds/app/x"), true, 300)));
    let kv1 = json!({"lease_id": "", "lease_duration": 2_764_800, "data": {"a": "b"}});
    assert_eq!(lease_facts(&kv1, 0), None, "KV v1's refresh hint is not a lease");
    let pki = json!({"lease_id": "", "lease_duration": 0, "data": {"certificate": "c", "expiration": 1_000_300}});
    assert_eq!(lease_facts(&pki, 1_000_000), Some(facts(None, false, 300)));
    assert_eq!(lease_facts(&pki, 2_000_000), None, "already expired");
    assert_eq!(lease_facts(&json!({"data": {"x": 1}}), 0), None);
}

#[test]
fn reuse_then_renew_then_expire() {
    let leases = Leases::new(2.0 / 3.0, true);
    let t0 = Instant::now();
    let k = key(Some("pod-1"));
    leases.store(k.clone(), Arc::new(json!({"v": 1})), facts(Some("id"), true, 300), None, None, t0);
    assert!(matches!(leases.lookup(&k, t0 + Duration::from_secs(199)), Lookup::Reuse(_)));
    assert!(matches!(leases.lookup(&key(Some("pod-2")), t0), Lookup::Miss), "pods are independent");
    let Lookup::Renew { increment, .. } = leases.lookup(&k, t0 + Duration::from_secs(201)) else {
        panic!("expected a renewal")
    };
    assert_eq!(increment, Duration::from_secs(300));
    assert!(leases.renewed(&k, Duration::from_secs(300), t0 + Duration::from_secs(201)));
    assert!(matches!(leases.lookup(&k, t0 + Duration::from_secs(300)), Lookup::Reuse(_)));
    assert!(matches!(leases.lookup(&k, t0 + Duration::from_secs(600)), Lookup::Miss), "expired");
}

#[test]
fn leases_never_outlive_the_token_that_issued_them() {
    let leases = Leases::new(2.0 / 3.0, true);
    let t0 = Instant::now();
    let k = key(Some("pod-1"));
    let token_end = t0 + Duration::from_secs(60);
    leases.store(k.clone(), Arc::new(json!({})), facts(Some("id"), true, 3600), None, Some(([7; 16], Some(token_end))), t0);
    assert!(matches!(leases.lookup(&k, t0 + Duration::from_secs(39)), Lookup::Reuse(_)));
    assert!(!matches!(leases.lookup(&k, t0 + Duration::from_secs(41)), Lookup::Reuse(_)), "2/3 of the token's life");
    assert!(matches!(leases.lookup(&k, t0 + Duration::from_secs(61)), Lookup::Miss), "gone with the token");

    leases.store(k.clone(), Arc::new(json!({})), facts(Some("id"), true, 3600), None, Some(([8; 16], None)), t0);
    leases.forget_issued_by([8; 16]);
    assert!(matches!(leases.lookup(&k, t0), Lookup::Miss), "a refused token's leases are dropped");
}

#[test]
fn no_renewal_when_disabled_or_not_renewable_or_too_short() {
    let t0 = Instant::now();
    let k = key(None);
    let off = Leases::new(2.0 / 3.0, false);
    off.store(k.clone(), Arc::new(json!({})), facts(Some("id"), true, 300), None, None, t0);
    assert!(matches!(off.lookup(&k, t0 + Duration::from_secs(250)), Lookup::Miss));
    let pki = Leases::new(2.0 / 3.0, true);
    pki.store(k.clone(), Arc::new(json!({})), facts(None, false, 300), None, None, t0);
    assert!(matches!(pki.lookup(&k, t0 + Duration::from_secs(250)), Lookup::Miss));
    let capped = Leases::new(2.0 / 3.0, true);
    capped.store(k.clone(), Arc::new(json!({})), facts(Some("id"), true, 300), None, None, t0);
    assert!(!capped.renewed(&k, Duration::from_secs(20), t0 + Duration::from_secs(250)));
    assert_eq!(capped.len(), 0);
}
