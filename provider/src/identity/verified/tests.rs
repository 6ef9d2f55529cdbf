use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::identity::TokenProblem;
use crate::identity::verify::tests::{EXPECTED, Signer, claims, keys, sign, signer};
use crate::identity::verify::verify;

const NOW: u64 = 1_800_000_000;

/// A signer, the key set publishing it, and an empty cache.
fn setup() -> (Signer, Arc<IssuerKeys>, VerifiedTokens) {
    let s = signer("k1");
    let keys_now = Arc::new(keys(&[&s]));
    (s, keys_now, VerifiedTokens::default())
}

fn verified(expires: u64, not_before: Option<u64>) -> Verified {
    Verified { uid: "sa-1".to_owned(), expires, not_before }
}

#[test]
fn a_verification_is_reused_only_for_the_same_token_pod_audience_and_key_set() {
    let (s, keys_now, cache) = setup();
    let token = sign(&s, &claims());
    let checked = verify(&token, &keys_now, &EXPECTED).expect("genuine");
    // The token's claims are stamped with the real clock.
    let now = crate::identity::unix_now();
    cache.insert(digest(&token, &EXPECTED), &keys_now, checked, now);
    assert_eq!(cache.get(&digest(&token, &EXPECTED), &keys_now, now), Some("sa-1".to_owned()));

    // Another token of the same identity: a forgery under the published kid, or an
    // unsigned one, is not found, and fails the full check.
    let impostor = signer("k1");
    let forged = sign(&impostor, &claims());
    assert_eq!(cache.get(&digest(&forged, &EXPECTED), &keys_now, now), None);
    assert_eq!(verify(&forged, &keys_now, &EXPECTED), Err(TokenProblem::BadSignature));
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[2] = "";
    assert_eq!(cache.get(&digest(&parts.join("."), &EXPECTED), &keys_now, now), None);

    // The same token presented for another pod, account, namespace or audience.
    for other in [
        Expected { pod_uid: "pod-2", ..EXPECTED },
        Expected { pod_name: "app-1", ..EXPECTED },
        Expected { service_account: "other", ..EXPECTED },
        Expected { namespace: "team-b", ..EXPECTED },
        Expected { audience: "sts.amazonaws.com", ..EXPECTED },
    ] {
        assert_eq!(cache.get(&digest(&token, &other), &keys_now, now), None, "{other:?}");
    }
    // Keys fetched again (even the same keys): verified again.
    let refetched = Arc::new(keys(&[&s]));
    assert_eq!(cache.get(&digest(&token, &EXPECTED), &refetched, now), None);
}

#[test]
fn fields_cannot_run_into_each_other() {
    let shifted = Expected { namespace: "team-ap", service_account: "p", ..EXPECTED };
    let plain = Expected { namespace: "team-a", service_account: "pp", ..EXPECTED };
    assert_ne!(digest("t", &shifted), digest("t", &plain));
    assert_ne!(digest("tv", &Expected { audience: "ault", ..EXPECTED }), digest("t", &EXPECTED));
}

#[test]
fn a_reused_verification_ends_with_the_token() {
    let (_, keys_now, cache) = setup();
    let key = digest("token", &EXPECTED);
    cache.insert(key, &keys_now, verified(NOW + 600, Some(NOW - 10)), NOW);
    assert!(cache.get(&key, &keys_now, NOW + 600).is_some(), "within the leeway after exp");
    assert_eq!(cache.get(&key, &keys_now, NOW + 600 + CLOCK_LEEWAY_SECS), None, "expired");
    // A clock set back before nbf (past the leeway) does not find it either.
    assert_eq!(cache.get(&key, &keys_now, NOW - 11 - CLOCK_LEEWAY_SECS), None, "not yet valid");
    assert!(cache.get(&key, &keys_now, NOW - 10 - CLOCK_LEEWAY_SECS).is_some());
}

#[test]
fn the_cache_is_bounded_and_drops_what_can_no_longer_be_used_first() {
    let (_, keys_now, cache) = setup();
    let live = digest("live", &EXPECTED);
    cache.insert(live, &keys_now, verified(NOW + 600, None), NOW);
    for i in 1..MAX_ENTRIES {
        cache.insert(digest(&format!("old-{i}"), &EXPECTED), &keys_now, verified(NOW - 600, None), NOW - 1000);
    }
    assert_eq!(cache.len(), MAX_ENTRIES);
    // Full: the expired entries go, the live one stays.
    cache.insert(digest("new", &EXPECTED), &keys_now, verified(NOW + 600, None), NOW);
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&live, &keys_now, NOW).is_some());
    // Full of live entries: it starts over rather than grow.
    for i in 0..2 * MAX_ENTRIES {
        cache.insert(digest(&format!("live-{i}"), &EXPECTED), &keys_now, verified(NOW + 600, None), NOW);
        assert!(cache.len() <= MAX_ENTRIES);
    }
}

#[test]
fn debug_shows_no_token_material() {
    let (s, keys_now, cache) = setup();
    let token = sign(&s, &json!({"sub": "x"}));
    let key = digest(&token, &EXPECTED);
    cache.insert(key, &keys_now, verified(NOW + 600, None), NOW);
    let shown = format!("{cache:?}");
    assert_eq!(shown, "VerifiedTokens { entries: 1 }");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.contains(&hex[..8]) && !shown.contains("sa-1"));
}
