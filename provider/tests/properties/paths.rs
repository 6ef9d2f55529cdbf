//! Object paths: whatever is accepted is safe; safe components are accepted; one bad one refuses.

use courier_provider::testing::ObjectPath;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::{Verdict, assert_safe_path, check, safe_component};

#[test]
fn accepted_paths_are_safe() {
    let raw = prop_oneof![
        ".{0,40}",
        "[./\\\\a\\x00]{0,12}",
        vec(
            prop_oneof![
                "[a-z]{1,4}",
                Just("..".to_owned()),
                Just(".".to_owned()),
                Just(String::new())
            ],
            0..6
        )
        .prop_map(|c| c.join("/")),
        (1usize..300, 1usize..20).prop_map(|(len, n)| vec!["x".repeat(len); n].join("/")),
    ];
    check(
        "ObjectPath::parse over arbitrary strings",
        5000,
        raw,
        |raw| match ObjectPath::parse(&raw) {
            Ok(path) => {
                prop_assert_eq!(path.as_str(), raw.as_str());
                assert_safe_path(path.as_str())?;
                Ok(Verdict::Accepted)
            }
            Err(_) => Ok(Verdict::Refused),
        },
    );
}

#[test]
fn paths_of_safe_components_are_accepted_and_one_bad_component_refuses_them() {
    let bad = prop::sample::select(&["", ".", "..", "..data", "..x", "a\u{0}b", "a\\b"][..]);
    check(
        "ObjectPath::parse of safe components, then with one bad one",
        3000,
        (
            vec(safe_component(), 1..8),
            bad,
            any::<prop::sample::Index>(),
        ),
        |(components, bad, at)| {
            let path = components.join("/");
            if path.len() <= 4096 {
                prop_assert!(ObjectPath::parse(&path).is_ok(), "{path:?} refused");
            }
            let mut spoiled = components.clone();
            spoiled.insert(at.index(components.len() + 1), bad.to_owned());
            let spoiled = spoiled.join("/");
            prop_assert!(ObjectPath::parse(&spoiled).is_err(), "{spoiled:?} accepted");
            prop_assert!(
                ObjectPath::parse(&format!("/{path}")).is_err(),
                "absolute accepted"
            );
            Ok(Verdict::Accepted)
        },
    );
}
