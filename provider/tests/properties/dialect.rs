//! Every dialect's parameters: arbitrary maps with plausible and wrong values, and structured objects.

use std::collections::BTreeMap;

use courier_provider::testing::{Dialect, MountPlan};
use courier_provider::testing::ObjectPath;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::{SOCKETS, Verdict, assert_safe_path, check, defaults, safe_path};

/// Parameter names every dialect reads, and some none does.
const KEYS: &[&str] = &[
    "keyvaultName",
    "roleName",
    "objects",
    "templates",
    "backend",
    "vaultAddress",
    "openbaoAddress",
    "vaultNamespace",
    "openbaoNamespace",
    "vaultAuthMountPath",
    "openbaoAuthMountPath",
    "vaultKubernetesMountPath",
    "audience",
    "vaultSkipTLSVerify",
    "vaultTLSClientCertPath",
    "vaultTLSClientKeyPath",
    "shareLeases",
    "revokeOnUnmount",
    "region",
    "failoverRegion",
    "pathTranslation",
    "usePodIdentity",
    "preferredAddressType",
    "roleArn",
    "unknown",
];
/// Object field names of every dialect.
const OBJECT_FIELDS: &[&str] = &[
    "objectName",
    "secretPath",
    "secretKey",
    "method",
    "secretArgs",
    "encoding",
    "objectEncoding",
    "filePermission",
    "expandKeys",
    "render",
    "objectType",
    "objectAlias",
    "objectVersion",
    "objectVersionLabel",
    "jmesPath",
    "failoverObject",
    "path",
    "template",
];

/// A YAML scalar or small structure, written as JSON (which is YAML).
fn yaml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..100_000).prop_map(Value::from),
        "[a-zA-Z0-9 ./_\\\\:-]{0,16}".prop_map(Value::String),
        Just(json!("..")),
        Just(json!("../x")),
        Just(json!("/abs")),
        Just(json!("a\u{0}b")),
        Just(json!("0600")),
        Just(json!("secretsmanager")),
        Just(json!("ssmparameter")),
        Just(json!("base64")),
        Just(json!("PUT")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(
                prop::sample::select(OBJECT_FIELDS).prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An `objects`/`templates` parameter: a list of maps of known fields (most of the time), or any YAML value, or
/// arbitrary text.
fn yaml_list() -> impl Strategy<Value = String> {
    let entry = btree_map(
        prop::sample::select(OBJECT_FIELDS).prop_map(str::to_owned),
        yaml_value(),
        0..6,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()));
    prop_oneof![
        4 => vec(entry, 0..6).prop_map(|list| Value::Array(list).to_string()),
        1 => yaml_value().prop_map(|v| v.to_string()),
        1 => ".{0,60}",
        1 => "[-:{}\\[\\]&*!| \\n\\ta-z0-9]{0,60}",
    ]
}

/// A value for one object field: mostly plausible, sometimes wrong in a way the parser must catch.
fn field_value(field: &'static str) -> BoxedStrategy<Value> {
    let pick = |values: &'static [&'static str]| {
        prop::sample::select(values).prop_map(|v| json!(v)).boxed()
    };
    let plausible = match field {
        "objectName" | "objectAlias" | "path" => prop_oneof![
            4 => "[a-z0-9_-]{1,10}(/[a-z0-9_.-]{1,10}){0,2}".prop_map(|v| json!(v)),
            1 => pick(&["..", "../x", "/abs", "a//b", ".", "a\\b", "a\u{0}b", "..data", "x/"]),
            1 => (0u32..100).prop_map(|n| json!(n)),
        ]
        .boxed(),
        "secretPath" => prop_oneof![
            4 => "[a-z]{1,6}/data/[a-z0-9]{1,6}".prop_map(|v| json!(v)),
            1 => pick(&["v1/", "a//b", "secret/../sys", "/", "a#b", "pki/issue/web?x=1"]),
        ]
        .boxed(),
        "objectType" => pick(&["secretsmanager", "ssmparameter", "vault"]),
        "method" => pick(&["GET", "put", "POST", "DELETE"]),
        "encoding" | "objectEncoding" => pick(&["utf-8", "base64", "hex", "rot13"]),
        "filePermission" => prop_oneof![
            (0u32..=0o777).prop_map(|m| json!(format!("0{m:o}"))),
            (0u32..1000).prop_map(|m| json!(m)),
            pick(&["rw", "-1", "0x1a4", "01777"]),
        ]
        .boxed(),
        "expandKeys" | "render" => pick(&["true", "false", "yes"]),
        "secretArgs" => Just(json!({"common_name": "a.example"})).boxed(),
        "jmesPath" => prop_oneof![
            Just(json!([{"path": "user", "objectAlias": "u"}])),
            Just(json!([{"path": "[[", "objectAlias": "v"}])),
            Just(json!("user")),
        ]
        .boxed(),
        "template" => pick(&["x={{ objects.a }}", "plain", "{% if %}"]),
        _ => "[a-zA-Z0-9._-]{0,10}".prop_map(|v| json!(v)).boxed(),
    };
    prop_oneof![9 => plausible, 1 => yaml_value()].boxed()
}

/// An entry of `objects`: the fields every dialect needs (an `objectName`, a `secretPath` for Vault, an
/// `objectType` for AWS, each ignored by the other) plus a few others, each plausible or subtly wrong.
fn plausible_object() -> impl Strategy<Value = Value> {
    entry_with(&["objectName", "secretPath", "objectType"])
}

/// An entry of `templates`: `path` and `template`, plus perhaps others.
fn plausible_template() -> impl Strategy<Value = Value> {
    entry_with(&["path", "template"])
}

fn entry_with(required: &'static [&'static str]) -> impl Strategy<Value = Value> {
    vec(prop::sample::select(OBJECT_FIELDS), 0..3).prop_flat_map(move |extra| {
        let mut fields: Vec<&'static str> = required.iter().copied().chain(extra).collect();
        fields.sort_unstable();
        fields.dedup();
        let values: Vec<BoxedStrategy<Value>> = fields.iter().map(|f| field_value(f)).collect();
        values.prop_map(move |values| {
            Value::Object(fields.iter().map(|f| (*f).to_owned()).zip(values).collect())
        })
    })
}

/// A value for a top-level parameter: mostly plausible for that key.
fn parameter_value(key: &'static str) -> BoxedStrategy<String> {
    let pick = |values: &'static [&'static str]| {
        prop::sample::select(values).prop_map(str::to_owned).boxed()
    };
    let plausible = match key {
        "backend" => pick(&["vault", "openbao", "aws", "gcp", "azure", ""]),
        "keyvaultName" => pick(&["kv-1", "kv", "kv.evil"]),
        "vaultSkipTLSVerify" | "shareLeases" | "revokeOnUnmount" | "usePodIdentity" => {
            pick(&["true", "false", "yes"])
        }
        "region" | "failoverRegion" => pick(&["us-east-1", "us-west-2", "eu-west-1"]),
        "pathTranslation" => pick(&["_", "-", "False", "ab"]),
        "preferredAddressType" => pick(&["ipv4", "ipv6", "auto", "ipv5"]),
        "roleArn" => pick(&["arn:aws:iam::123456789012:role/app", "nope"]),
        "vaultAuthMountPath" | "openbaoAuthMountPath" | "vaultKubernetesMountPath" => {
            pick(&["jwt", "kubernetes", "auth/k8s/", "../x"])
        }
        "vaultTLSClientCertPath" | "vaultTLSClientKeyPath" => pick(&["/tls/c.pem"]),
        _ => "[a-zA-Z0-9./:_-]{1,16}".boxed(),
    };
    prop_oneof![8 => plausible, 1 => "[a-zA-Z0-9 ./:_-]{0,16}", 1 => yaml_list()].boxed()
}

fn parameters() -> impl Strategy<Value = BTreeMap<String, String>> {
    let keys = vec(prop::sample::select(KEYS), 0..4).prop_flat_map(|mut keys| {
        keys.sort_unstable();
        keys.dedup();
        let values: Vec<BoxedStrategy<String>> = keys.iter().map(|k| parameter_value(k)).collect();
        values.prop_map(move |values| {
            keys.iter()
                .map(|k| (*k).to_owned())
                .zip(values)
                .collect::<BTreeMap<_, _>>()
        })
    });
    let objects = vec(plausible_object(), 1..5).prop_map(|list| Value::Array(list).to_string());
    let templates = prop::option::weighted(0.3, vec(plausible_template(), 1..3));
    (keys, objects, templates, any::<u8>()).prop_map(|(mut map, objects, templates, coin)| {
        // Most cases carry what every dialect requires, so parsing gets to the objects.
        if coin % 8 != 0 {
            map.insert("roleName".to_owned(), "app".to_owned());
            map.insert("objects".to_owned(), objects);
        }
        if let Some(templates) = templates {
            map.insert("templates".to_owned(), Value::Array(templates).to_string());
        }
        map
    })
}

/// Whatever a plan accepted is safe to write.
fn assert_plan_is_safe(plan: &MountPlan) -> Result<(), TestCaseError> {
    let mut paths: Vec<&ObjectPath> = Vec::new();
    for object in &plan.objects {
        paths.push(&object.path);
        paths.extend(object.derived.iter().map(|d| &d.path));
        prop_assert!(
            object.mode.is_none_or(|m| m <= 0o777),
            "mode {:?}",
            object.mode
        );
        for d in &object.derived {
            prop_assert!(d.mode.is_none_or(|m| m <= 0o777), "mode {:?}", d.mode);
        }
    }
    for template in &plan.templates {
        paths.push(&template.path);
        prop_assert!(
            template.mode.is_none_or(|m| m <= 0o777),
            "mode {:?}",
            template.mode
        );
    }
    for path in paths {
        assert_safe_path(path.as_str())?;
    }
    Ok(())
}

#[test]
fn every_dialect_parses_arbitrary_parameters_without_panicking() {
    for socket in SOCKETS {
        let dialect = Dialect::for_provider(socket);
        check(
            &format!("Dialect::parse ({socket}) over arbitrary parameters"),
            2000,
            parameters(),
            |attributes| match dialect.parse(&attributes, &defaults()) {
                Ok(plan) => {
                    assert_plan_is_safe(&plan)?;
                    Ok(Verdict::Accepted)
                }
                Err(e) => {
                    prop_assert!(!e.field.is_empty(), "an error without a field: {e}");
                    prop_assert!(e.to_string().starts_with(&e.field));
                    Ok(Verdict::Refused)
                }
            },
        );
    }
}

#[test]
fn structured_vault_objects_are_accepted_as_written() {
    let objects = || {
        let object = (
            safe_path(),
            "[a-z]{1,8}/data/[a-z0-9]{1,8}",
            prop::option::of("[a-z_]{1,10}"),
            prop::option::of(prop::sample::select(&["GET", "put", "POST"][..])),
            prop::option::of(0u32..=0o777),
            prop::option::of(prop::sample::select(&["utf-8", "base64", "HEX"][..])),
        );
        vec(object, 1..12).prop_map(|mut list| {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            list.dedup_by(|a, b| a.0 == b.0);
            list
        })
    };
    for socket in ["vault", "openbao", "courier"] {
        let dialect = Dialect::for_provider(socket);
        check(
            &format!("structured objects accepted ({socket})"),
            500,
            objects(),
            |objects| {
                let list: Vec<Value> = objects
                    .iter()
                    .map(|(name, path, key, method, mode, encoding)| {
                        let mut o = json!({"objectName": name, "secretPath": path});
                        if let Some(key) = key {
                            o["secretKey"] = json!(key);
                        }
                        if let Some(method) = method {
                            o["method"] = json!(method);
                            o["secretArgs"] = json!({"common_name": "a.example"});
                        }
                        if let Some(mode) = mode {
                            o["filePermission"] = json!(format!("0{mode:o}"));
                        }
                        // On the native socket `encoding` applies to a secretKey's value
                        // only (a whole response is JSON, and refused with it).
                        if let Some(encoding) = encoding.filter(|_| socket != "courier" || key.is_some()) {
                            o["encoding"] = json!(encoding);
                        }
                        o
                    })
                    .collect();
                let attributes = BTreeMap::from([
                    ("roleName".to_owned(), "app".to_owned()),
                    ("objects".to_owned(), Value::Array(list).to_string()),
                ]);
                let plan = dialect
                    .parse(&attributes, &defaults())
                    .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
                prop_assert_eq!(plan.objects.len(), objects.len());
                for (spec, (name, _, _, _, mode, _)) in plan.objects.iter().zip(&objects) {
                    prop_assert_eq!(spec.path.as_str(), name.as_str());
                    prop_assert_eq!(spec.mode, *mode);
                }
                assert_plan_is_safe(&plan)?;
                Ok(Verdict::Accepted)
            },
        );
    }
}

#[test]
fn structured_aws_objects_are_accepted_as_written() {
    let objects = || {
        let object = (
            "[a-zA-Z0-9_-]{1,12}(/[a-zA-Z0-9_-]{1,12}){0,2}",
            prop::sample::select(&["secretsmanager", "ssmparameter"][..]),
            prop::option::of("[a-z0-9_-]{1,12}"),
        );
        vec(object, 1..10)
    };
    for socket in ["aws", "courier"] {
        let dialect = Dialect::for_provider(socket);
        check(
            &format!("structured AWS objects ({socket})"),
            500,
            objects(),
            |objects| {
                // Unique file names: the alias when set, else the name with '/' translated to '_'.
                let mut seen = std::collections::HashSet::new();
                let objects: Vec<_> = objects
                    .into_iter()
                    .filter(|(name, _, alias)| {
                        let file = alias.clone().unwrap_or_else(|| name.replace('/', "_"));
                        seen.insert(file) && seen.insert(format!("name:{name}"))
                    })
                    .collect();
                let list: Vec<Value> = objects
                    .iter()
                    .map(|(name, kind, alias)| {
                        let mut o = json!({"objectName": name, "objectType": kind});
                        if let Some(alias) = alias {
                            o["objectAlias"] = json!(alias);
                        }
                        o
                    })
                    .collect();
                let mut attributes =
                    BTreeMap::from([("objects".to_owned(), Value::Array(list).to_string())]);
                if socket == "courier" {
                    attributes.insert("backend".to_owned(), "aws".to_owned());
                }
                let plan = dialect
                    .parse(&attributes, &defaults())
                    .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
                prop_assert_eq!(plan.objects.len(), objects.len());
                assert_plan_is_safe(&plan)?;
                Ok(Verdict::Accepted)
            },
        );
    }
}
