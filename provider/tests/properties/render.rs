//! Templates and the rendering of fetched values: no panic, bounded output, no value in an error.

use std::collections::BTreeMap;

use courier_provider::testing::{Fetched, ObjectSpec};
use courier_provider::testing::Dialect;
use courier_provider::testing::ObjectPath;
use courier_provider::testing::render;
use courier_provider::testing::SecretBytes;
use courier_provider::testing::{TemplateSpec, render_all};
use courier_provider::Versioner;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use crate::{Verdict, assert_safe_path, check, defaults};

/// What secret values look like in the rendering properties: letters no generated template or key contains.
const SECRET_ALPHABET: &str = "[QXZ]{24,40}";

/// Template source from a grammar of what templates do with objects: fields, filters, loops, tests, arithmetic.
fn template_source() -> impl Strategy<Value = String> {
    let name = prop::sample::select(&["a", "b", "json", "missing"][..]);
    let expr = prop_oneof![
        name.clone().prop_map(|n| format!("objects.{n}")),
        (
            name.clone(),
            prop::sample::select(&["user", "port", "list", "nested", "nope"][..])
        )
            .prop_map(|(n, f)| format!("objects[\"{n}\"].{f}")),
        Just("objects".to_owned()),
        "[0-9]{1,3}",
        "\"[a-z]{0,5}\"",
    ];
    let filter = prop::sample::select(
        &[
            "",
            "|int",
            "|float",
            "|upper",
            "|length",
            "|first",
            "|last",
            "|list",
            "|tojson",
            "|abs",
            "|round",
            "|trim",
            "|default(\"d\")",
            "|join(\",\")",
            "|sort",
            "|items",
            "|dictsort",
            "|reverse",
            "|string",
            "|replace(\"Q\",\"q\")",
            "|batch(2)",
            "|attr(\"user\")",
            "|safe",
            "|escape",
            "|pprint",
            "|indent(2)",
            "|title",
            "|bool",
            "|unique",
            "|min",
            "|max",
            "|sum",
            "|map(\"upper\")",
        ][..],
    );
    let piece = prop_oneof![
        (expr.clone(), filter.clone()).prop_map(|(e, f)| format!("{{{{ {e}{f} }}}}")),
        (expr.clone(), expr.clone()).prop_map(|(a, b)| format!("{{{{ {a} + {b} }}}}")),
        (expr.clone(), expr.clone()).prop_map(|(a, b)| format!("{{{{ {a} ~ {b} }}}}")),
        (expr.clone(), expr.clone()).prop_map(|(a, b)| format!("{{{{ {a} / {b} }}}}")),
        (expr.clone(), expr.clone()).prop_map(|(a, b)| format!("{{{{ {a}[{b}] }}}}")),
        (expr.clone(), filter)
            .prop_map(|(e, f)| format!("{{% for x in {e}{f} %}}{{{{ x }}}}{{% endfor %}}")),
        expr.clone()
            .prop_map(|e| format!("{{% if {e} is number %}}n{{% elif {e} %}}t{{% endif %}}")),
        expr.prop_map(|e| format!("{{{{ range({e}) }}}}")),
        "[a-z =\\n]{0,10}",
        "[{}%#a-z ]{0,8}",
    ];
    vec(piece, 1..5).prop_map(|pieces| pieces.concat())
}

/// Object contents made of letters the template grammar never writes, so an error that contains them quotes a
/// value: plain text, a number, and JSON objects holding the same.
fn contents() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let text = SECRET_ALPHABET;
    (text, text, text, any::<i32>()).prop_map(|(a, b, nested, n)| {
        vec![
            ("a".to_owned(), a.clone().into_bytes()),
            ("b".to_owned(), format!("{n}").into_bytes()),
            (
                "json".to_owned(),
                json!({"user": b, "port": n, "list": [a, 1, null], "nested": {"deep": nested}})
                    .to_string()
                    .into_bytes(),
            ),
        ]
    })
}

fn secret_texts(objects: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut texts = Vec::new();
    for (_, content) in objects {
        let text = String::from_utf8_lossy(content);
        let mut run = String::new();
        for c in text.chars().chain(std::iter::once(' ')) {
            if "QXZ".contains(c) {
                run.push(c);
            } else {
                if run.len() >= 24 {
                    texts.push(run.clone());
                }
                run.clear();
            }
        }
    }
    texts
}

#[test]
fn templates_never_panic_and_errors_never_quote_values() {
    check(
        "template::render_all over a template grammar",
        2000,
        (template_source(), contents()),
        |(source, objects)| {
            let spec = TemplateSpec {
                index: 0,
                path: ObjectPath::parse("out").map_err(|e| TestCaseError::fail(e.to_string()))?,
                source: source.clone(),
                mode: None,
            };
            let owned: Vec<(String, SecretBytes)> = objects
                .iter()
                .map(|(n, c)| (n.clone(), SecretBytes::new(c.clone())))
                .collect();
            let refs: Vec<(String, &SecretBytes)> =
                owned.iter().map(|(n, c)| (n.clone(), c)).collect();
            match render_all(std::slice::from_ref(&spec), &refs) {
                Ok(out) => {
                    prop_assert_eq!(out.len(), 1);
                    prop_assert!(out[0].len() <= 1024 * 1024);
                    Ok(Verdict::Accepted)
                }
                Err(e) => {
                    let message = e.to_string();
                    for secret in secret_texts(&objects) {
                        prop_assert!(
                            !message.contains(&secret),
                            "the error quotes a value: {message}\n(template: {source})"
                        );
                    }
                    Ok(Verdict::Refused)
                }
            }
        },
    );
}

#[test]
fn rendering_fetched_values_never_panics_and_errors_never_quote_values() {
    // Plans with every encoding and fan-out; fetched values of every shape.
    let objects = "[\
        {\"objectName\": \"plain\", \"secretPath\": \"s/a\"},\
        {\"objectName\": \"b64\", \"secretPath\": \"s/b\", \"encoding\": \"base64\"},\
        {\"objectName\": \"hex\", \"secretPath\": \"s/c\", \"encoding\": \"hex\", \"filePermission\": \"0400\"},\
        {\"objectName\": \"dir\", \"secretPath\": \"s/d\", \"expandKeys\": true},\
        {\"objectName\": \"hidden\", \"secretPath\": \"s/e\", \"render\": false}]";
    let attributes = BTreeMap::from([
        ("roleName".to_owned(), "app".to_owned()),
        ("objects".to_owned(), objects.to_owned()),
        (
            "templates".to_owned(),
            "[{\"path\": \"t.env\", \"template\": \"H={{ objects.hidden }} D={{ objects.dir }}\"}]"
                .to_owned(),
        ),
    ]);
    let plan = Dialect::Vault
        .parse(&attributes, &defaults())
        .expect("the plan parses");
    let specs: Vec<ObjectSpec> = plan.objects.clone();
    // Any shape, or (mostly) the shape the slot's object wants: base64, hex, a JSON object with safe keys.
    let any_value = || {
        prop_oneof![
            SECRET_ALPHABET.prop_map(String::into_bytes),
            SECRET_ALPHABET.prop_map(|s| base64_std(&s).into_bytes()),
            SECRET_ALPHABET.prop_map(|s| hex::encode(s).into_bytes()),
            btree_map("[a-z]{1,6}", SECRET_ALPHABET, 0..4)
                .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default()),
            btree_map(
                prop_oneof![
                    "[a-z]{1,6}",
                    Just("../x".to_owned()),
                    Just("a/b".to_owned()),
                    Just(".".to_owned())
                ],
                SECRET_ALPHABET,
                1..3
            )
            .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default()),
            vec(any::<u8>(), 0..40),
        ]
    };
    let values = (
        any_value(),
        prop_oneof![4 => SECRET_ALPHABET.prop_map(|s| base64_std(&s).into_bytes()), 1 => any_value()],
        prop_oneof![4 => SECRET_ALPHABET.prop_map(|s| hex::encode(s).into_bytes()), 1 => any_value()],
        prop_oneof![
            4 => btree_map("[a-z]{1,6}", SECRET_ALPHABET, 1..4).prop_map(|m| serde_json::to_vec(&m).unwrap_or_default()),
            1 => any_value()
        ],
        any_value(),
    )
        .prop_map(|(a, b, c, d, e)| vec![a, b, c, d, e]);
    let versioner = Versioner::random();
    check(
        "render::render over fetched values",
        1500,
        values,
        |values| {
            let fetched: Vec<Fetched> = values
                .iter()
                .map(|v| Fetched::value(SecretBytes::new(v.clone()), None))
                .collect();
            match render(&specs, fetched, &plan.templates, 0o644, &versioner) {
                Ok(rendered) => {
                    for f in &rendered.files {
                        assert_safe_path(&f.path)?;
                        prop_assert!(f.mode <= 0o777);
                    }
                    prop_assert!(
                        rendered.files.iter().all(|f| f.path != "hidden"),
                        "render: false was written"
                    );
                    Ok(Verdict::Accepted)
                }
                Err(e) => {
                    let message = e.to_string();
                    let named: Vec<(String, Vec<u8>)> =
                        values.iter().map(|v| (String::new(), v.clone())).collect();
                    for secret in secret_texts(&named) {
                        prop_assert!(
                            !message.contains(&secret),
                            "the error quotes a value: {message}"
                        );
                    }
                    Ok(Verdict::Refused)
                }
            }
        },
    );
}

fn base64_std(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
