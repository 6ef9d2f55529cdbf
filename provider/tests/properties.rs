//! Property tests of the provider's input parsers, through their public API: request decoding, every dialect's
//! parameter parsing (arbitrary maps, arbitrary and structured YAML), object paths, the template renderer and the
//! rendering of fetched values. Thousands of generated cases each; every property prints how many it ran.
//!
//! What must hold whatever the input: no panic; an error names the field it is about and never quotes a token or
//! a secret value; whatever is accepted is safe to write (relative path, no `..`-prefixed, empty or `.`
//! component, no NUL or backslash, at most 4096 bytes, components of at most 255, modes within 0777).

#[path = "properties/dialect.rs"]
mod dialect;
#[path = "properties/paths.rs"]
mod paths;
#[path = "properties/render.rs"]
mod render;
#[path = "properties/request.rs"]
mod request;

use std::sync::atomic::{AtomicUsize, Ordering};

use courier_provider::Defaults;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Every dialect, by the socket name that selects it.
const SOCKETS: &[&str] = &["vault", "openbao", "courier", "aws", "azure"];

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Whether the code under test accepted a case or refused it (both are fine; the figures show the mix).
enum Verdict {
    Accepted,
    Refused,
}

/// Runs `property` over `strategy` for `cases` cases, panics with the minimal failing input, prints the counts.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<Verdict, TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let (accepted, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner(cases).run(&strategy, |value| {
        match property(value)? {
            Verdict::Accepted => accepted.fetch_add(1, Ordering::Relaxed),
            Verdict::Refused => refused.fetch_add(1, Ordering::Relaxed),
        };
        Ok(())
    });
    if let Err(error) = result {
        panic!("property {name} failed: {error}");
    }
    let (accepted, refused) = (accepted.into_inner(), refused.into_inner());
    println!(
        "property {name}: {} cases ({accepted} accepted, {refused} refused), 0 failures",
        accepted + refused
    );
}

fn defaults() -> Defaults {
    Defaults {
        vault_address: "https://127.0.0.1:8200".to_owned(),
        aws_region: Some("us-east-1".to_owned()),
    }
}

fn assert_safe_path(path: &str) -> Result<(), TestCaseError> {
    prop_assert!(!path.is_empty() && path.len() <= 4096, "{path:?}: length");
    prop_assert!(!path.starts_with('/'), "{path:?}: absolute");
    prop_assert!(
        !path.contains('\0') && !path.contains('\\'),
        "{path:?}: NUL or backslash"
    );
    for component in path.split('/') {
        prop_assert!(
            !component.is_empty() && component != "." && !component.starts_with(".."),
            "{path:?}: component {component:?}"
        );
        prop_assert!(
            component.len() <= 255,
            "{path:?}: component of {} bytes",
            component.len()
        );
    }
    Ok(())
}

/// A safe path component: a name no rule refuses.
fn safe_component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,30}"
}

fn safe_path() -> impl Strategy<Value = String> {
    vec(safe_component(), 1..4).prop_map(|c| c.join("/"))
}
