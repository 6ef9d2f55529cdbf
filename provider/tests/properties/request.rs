//! Request decoding: arbitrary strings, driver-shaped requests, permissions and tokens.

use std::collections::BTreeMap;

use courier_provider::testing::{
    MountContext, POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY, SERVICE_ACCOUNT_KEY, TOKENS_KEY,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::{Verdict, check};

/// Fields a request error may be about.
const REQUEST_FIELDS: &[&str] = &["attributes", "secrets", "permission", TOKENS_KEY];
/// What tokens look like in the decoding properties; no error may contain it.
const TOKEN_MARK: &str = "TOKENMARKQZX";

/// Strings that are often almost JSON: arbitrary text, JSON values of every kind, and JSON objects of strings.
fn jsonish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        ".{0,40}",
        value.prop_map(|v| v.to_string()),
        btree_map(".{0,10}", ".{0,10}", 0..6)
            .prop_map(|m| serde_json::to_string(&m).unwrap_or_default()),
        Just("null".to_owned()),
        Just(String::new()),
    ]
}

#[test]
fn decoding_never_panics_and_errors_name_their_field() {
    let permission = prop_oneof![
        ".{0,8}",
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9 +\"-]{0,6}",
        (0u32..600).prop_map(|n| n.to_string()),
    ];
    // Half the attributes carry kubelet's pod info, so decoding gets past it to the other fields.
    let with_pod_info = btree_map(".{0,10}", ".{0,10}", 0..4).prop_map(|mut m| {
        m.insert(POD_NAMESPACE_KEY.to_owned(), "team-a".to_owned());
        m.insert(SERVICE_ACCOUNT_KEY.to_owned(), "app".to_owned());
        serde_json::to_string(&m).unwrap_or_default()
    });
    let attributes = prop_oneof![jsonish(), with_pod_info];
    check(
        "MountContext::decode over arbitrary strings",
        3000,
        (attributes, jsonish(), permission),
        |(attributes, secrets, permission)| match MountContext::decode(
            &attributes,
            &secrets,
            &permission,
        ) {
            Ok(_) => Ok(Verdict::Accepted),
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    REQUEST_FIELDS.iter().any(|f| text.starts_with(f)),
                    "the error names no request field: {text}"
                );
                Ok(Verdict::Refused)
            }
        },
    );
}

/// Pod info as kubelet sends it, plus arbitrary parameters and tokens that carry [`TOKEN_MARK`].
fn driver_request() -> impl Strategy<Value = (BTreeMap<String, String>, BTreeMap<String, String>)> {
    let parameters = btree_map("[a-zA-Z./_-]{1,16}", ".{0,24}", 0..8);
    let tokens = btree_map("[a-z.-]{1,12}", "[A-Za-z0-9._-]{0,20}", 0..4);
    (parameters, tokens)
}

#[test]
fn what_the_driver_sends_decodes_and_round_trips() {
    check(
        "MountContext::decode of driver-shaped requests",
        2000,
        (driver_request(), 0u32..=0o777),
        |((parameters, tokens), mode)| {
            let mut attributes = parameters.clone();
            attributes.remove(TOKENS_KEY);
            for (key, value) in [
                (POD_NAMESPACE_KEY, "team-a"),
                (POD_NAME_KEY, "app-0"),
                (POD_UID_KEY, "uid-1"),
                (SERVICE_ACCOUNT_KEY, "app"),
            ] {
                attributes.insert(key.to_owned(), value.to_owned());
            }
            let expected = attributes.clone();
            let token_json: BTreeMap<&String, Value> = tokens
                .iter()
                .map(|(audience, t)| (audience, json!({"token": format!("{TOKEN_MARK}{t}")})))
                .collect();
            attributes.insert(
                TOKENS_KEY.to_owned(),
                serde_json::to_string(&token_json).unwrap_or_default(),
            );
            let raw = serde_json::to_string(&attributes).unwrap_or_default();
            let ctx = MountContext::decode(&raw, "null", &mode.to_string())
                .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
            prop_assert_eq!(&ctx.attributes, &expected);
            prop_assert_eq!(ctx.default_mode, mode);
            prop_assert_eq!(ctx.identity.audiences().count(), tokens.len());
            prop_assert!(
                !format!("{ctx:?}").contains(TOKEN_MARK),
                "Debug shows a token"
            );
            Ok(Verdict::Accepted)
        },
    );
}

#[test]
fn permission_is_a_decimal_mode_up_to_0777() {
    let attributes = serde_json::to_string(&BTreeMap::from([
        (POD_NAMESPACE_KEY, "team-a"),
        (SERVICE_ACCOUNT_KEY, "app"),
    ]))
    .unwrap_or_default();
    let n = prop_oneof![any::<i64>(), -100i64..1000];
    check("permission over every i64", 3000, n, |n| {
        let result = MountContext::decode(&attributes, "", &n.to_string());
        match result {
            Ok(ctx) => {
                prop_assert!(
                    (0..=0o777).contains(&n) && i64::from(ctx.default_mode) == n,
                    "{n} accepted"
                );
                Ok(Verdict::Accepted)
            }
            Err(e) => {
                prop_assert!(!(0..=0o777).contains(&n), "{n} refused: {e}");
                prop_assert!(e.to_string().starts_with("permission"), "{e}");
                Ok(Verdict::Refused)
            }
        }
    });
}

#[test]
fn tokens_never_appear_in_decoding_errors() {
    // Malformed token entries around marked token text.
    let entry = prop_oneof![
        "[A-Za-z0-9]{0,8}".prop_map(|t| json!({"token": format!("{TOKEN_MARK}{t}"), "extra": [1]})),
        "[A-Za-z0-9]{0,8}".prop_map(|t| json!({"tok": format!("{TOKEN_MARK}{t}")})),
        "[A-Za-z0-9]{0,8}".prop_map(|t| json!(format!("{TOKEN_MARK}{t}"))),
        "[A-Za-z0-9]{0,8}".prop_map(|t| json!({"token": [format!("{TOKEN_MARK}{t}")]})),
    ];
    let tokens = prop_oneof![
        btree_map("[a-z]{1,6}", entry, 1..4)
            .prop_map(|m| serde_json::to_string(&m).unwrap_or_default()),
        "[A-Za-z0-9{}\":,]{0,20}".prop_map(|t| format!("{TOKEN_MARK}{t}")),
    ];
    check(
        "token text in malformed token entries",
        2000,
        (tokens, any::<bool>()),
        |(tokens, in_secrets)| {
            let mut attributes = BTreeMap::from([
                (POD_NAMESPACE_KEY.to_owned(), "team-a".to_owned()),
                (SERVICE_ACCOUNT_KEY.to_owned(), "app".to_owned()),
            ]);
            let mut secrets = BTreeMap::new();
            if in_secrets {
                secrets.insert(TOKENS_KEY.to_owned(), tokens);
            } else {
                attributes.insert(TOKENS_KEY.to_owned(), tokens);
            }
            let result = MountContext::decode(
                &serde_json::to_string(&attributes).unwrap_or_default(),
                &serde_json::to_string(&secrets).unwrap_or_default(),
                "420",
            );
            match result {
                Err(e) => {
                    prop_assert!(
                        !e.to_string().contains(TOKEN_MARK),
                        "the error quotes a token: {e}"
                    );
                    Ok(Verdict::Refused)
                }
                Ok(ctx) => {
                    prop_assert!(
                        !format!("{ctx:?}").contains(TOKEN_MARK),
                        "Debug shows a token"
                    );
                    Ok(Verdict::Accepted)
                }
            }
        },
    );
}
