//! Templated files: the SecretProviderClass parameter `templates`, a YAML list of
//! `{path, template, filePermission}` rendered with a Jinja-style engine.
//!
//! The context holds only `objects`: each object's name (objectName, or
//! objectAlias where the dialect has one) maps to its content, usable as a
//! string (`{{ objects.cert }}`) and, when the content is a JSON object, by field
//! (`{{ objects["db-creds"].password }}`). Templates cannot reach anything else:
//! the engine has no loader (no includes, no files) and no environment access,
//! undefined names are errors, and rendering runs on a fuel budget.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Object, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::object_path::ObjectPath;
use crate::secret::SecretBytes;

/// Most templates one SecretProviderClass may list.
const MAX_TEMPLATES: usize = 100;
/// Largest template source accepted.
const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Largest rendered file.
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Instructions a template may execute; stops runaway loops.
const FUEL: u64 = 200_000;

/// One template of a SecretProviderClass.
#[derive(Debug, Clone)]
pub struct TemplateSpec {
    /// Position in `templates`.
    pub index: usize,
    /// Output file.
    pub path: ObjectPath,
    /// Template source (configuration, not secret).
    pub source: String,
    /// File mode, if set.
    pub mode: Option<u32>,
}

/// Why a template failed. Names the template, the line and what is wrong; never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("templates[{index}] {path:?}{}: {problem}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct TemplateError {
    /// Template index.
    pub index: usize,
    /// Output path.
    pub path: String,
    /// Line in the template source, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub problem: String,
}

/// An object's content as the template sees it: a string that may also have fields.
struct SecretValue {
    text: Arc<str>,
    fields: Option<BTreeMap<String, Value>>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.text.len())
    }
}

impl Object for SecretValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.fields.as_ref()?.get(key.as_str()?).cloned()
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn secret_value(content: &[u8]) -> Value {
    let text: Arc<str> = String::from_utf8_lossy(content).into();
    let fields = match serde_json::from_slice::<serde_json::Value>(content) {
        Ok(serde_json::Value::Object(map)) => Some(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => Value::from(s),
                        other => Value::from(minijinja::value::Serde(other)),
                    };
                    (k, v)
                })
                .collect(),
        ),
        _ => None,
    };
    Value::from_object(SecretValue { text, fields })
}

/// Renders `templates` over `objects` (name -> content).
pub fn render_all(templates: &[TemplateSpec], objects: &[(String, &SecretBytes)]) -> Result<Vec<SecretBytes>, TemplateError> {
    if templates.is_empty() {
        return Ok(Vec::new());
    }
    let env = environment();
    let names: Vec<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
    let context: BTreeMap<String, Value> =
        objects.iter().map(|(name, content)| (name.clone(), secret_value(content.expose_secret()))).collect();
    let ctx = minijinja::context! { objects => Value::from(context) };
    let mut out = Vec::with_capacity(templates.len());
    for t in templates {
        let fail = |line: Option<usize>, problem: String| TemplateError { index: t.index, path: t.path.as_str().to_owned(), line, problem };
        let describe = |e: &minijinja::Error| {
            let line = e.line();
            let source_line = line
                .and_then(|l| t.source.lines().nth(l.saturating_sub(1)))
                .map(|s| s.trim().chars().take(120).collect::<String>());
            let what = match e.kind() {
                ErrorKind::UndefinedError => format!(
                    "undefined name{}; objects available: {}",
                    source_line.map(|s| format!(" in `{s}`")).unwrap_or_default(),
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                ),
                ErrorKind::OutOfFuel => "the template runs too long (loop limit reached)".to_owned(),
                ErrorKind::SyntaxError => format!("syntax error: {}", e.detail().unwrap_or("invalid template")),
                _ => format!(
                    "{}{}",
                    e.kind(),
                    e.detail().map(|d| format!(": {d}")).unwrap_or_default()
                ),
            };
            fail(line, what)
        };
        let template = env.template_from_str(&t.source).map_err(|e| describe(&e))?;
        let rendered = template.render(&ctx).map_err(|e| describe(&e))?;
        if rendered.len() > MAX_OUTPUT_BYTES {
            return Err(fail(None, format!("renders {} bytes; at most {MAX_OUTPUT_BYTES}", rendered.len())));
        }
        out.push(SecretBytes::new(rendered.into_bytes()));
    }
    Ok(out)
}

/// An engine as templates are rendered with.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // A file's final newline is content (PEM bundles, env files): keep it.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env
}

/// Checks a template's syntax before anything is fetched.
pub(crate) fn check_syntax(source: &str) -> Result<(), String> {
    environment().template_from_str(source).map(|_| ()).map_err(|e| {
        format!(
            "syntax error{}: {}",
            e.line().map(|l| format!(" on line {l}")).unwrap_or_default(),
            e.detail().unwrap_or("invalid template")
        )
    })
}

/// Limits for the `templates` parameter, checked by the dialect.
pub(crate) fn check_limits(count: usize, largest: usize) -> Result<(), String> {
    if count > MAX_TEMPLATES {
        return Err(format!("lists {count} templates; at most {MAX_TEMPLATES}"));
    }
    if largest > MAX_TEMPLATE_BYTES {
        return Err(format!("a template has {largest} bytes; at most {MAX_TEMPLATE_BYTES}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str) -> TemplateSpec {
        TemplateSpec { index: 0, path: ObjectPath::parse("out.env").expect("p"), source: source.to_owned(), mode: None }
    }

    fn run(source: &str, objects: &[(&str, &[u8])]) -> Result<String, TemplateError> {
        let owned: Vec<(String, SecretBytes)> =
            objects.iter().map(|(n, c)| ((*n).to_owned(), SecretBytes::new(c.to_vec()))).collect();
        let refs: Vec<(String, &SecretBytes)> = owned.iter().map(|(n, c)| (n.clone(), c)).collect();
        render_all(&[spec(source)], &refs).map(|v| String::from_utf8_lossy(v[0].expose_secret()).into_owned())
    }

    #[test]
    fn strings_and_fields() {
        let creds: &[u8] = br#"{"username":"u","password":"p","port":5432}"#;
        let out = run("USER={{ objects[\"db-creds\"].username }}\nPASS={{ objects[\"db-creds\"].password }}\nPORT={{ objects[\"db-creds\"].port }}\nCERT={{ objects.cert }}", &[("db-creds", creds), ("cert", b"PEM")]).expect("ok");
        assert_eq!(out, "USER=u\nPASS=p\nPORT=5432\nCERT=PEM");
        let whole = run("{{ objects[\"db-creds\"] }}", &[("db-creds", creds)]).expect("ok");
        assert_eq!(whole.as_bytes(), creds, "a JSON object still prints as the original text");
    }

    #[test]
    fn undefined_names_fail_with_line_and_names() {
        let err = run("a\n{{ objects.nope }}", &[("cert", b"PEM-secret")]).expect_err("undefined");
        assert_eq!(err.line, Some(2));
        assert!(err.problem.contains("objects.nope") && err.problem.contains("cert"), "{err}");
        assert!(!err.to_string().contains("PEM-secret"));
        let err = run("{{ objects.cert.missing_field }}", &[("cert", br#"{"a":1}"#)]).expect_err("undefined field");
        assert!(err.problem.contains("undefined"), "{err}");
        let err = run("{{ env }}", &[]).expect_err("no environment");
        assert!(err.problem.contains("undefined"), "{err}");
    }

    #[test]
    fn no_includes_and_bounded_loops() {
        assert!(run("{% include '/etc/passwd' %}", &[]).is_err());
        let err = run("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", &[]).expect_err("fuel");
        assert!(err.problem.contains("too long") || err.problem.contains("range"), "{err}");
        assert!(run("{% if %}", &[]).expect_err("syntax").problem.contains("syntax"));
    }
}
