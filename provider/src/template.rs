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
use zeroize::Zeroizing;

use crate::object_path::ObjectPath;
use crate::secret::SecretBytes;

/// Most templates one SecretProviderClass may list.
const MAX_TEMPLATES: usize = 100;
/// Largest template source accepted.
const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Largest rendered file.
pub(crate) const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Largest output of all templates of a mount together (the driver reads at most
/// 4 MiB of files per mount).
pub(crate) const MAX_TOTAL_OUTPUT_BYTES: usize = 4 * 1024 * 1024;
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

/// Renders `templates` over `objects` (name -> content), in this process.
///
/// Memory is bounded for the output (each file stops at [`MAX_OUTPUT_BYTES`] as it
/// is written, all files at [`MAX_TOTAL_OUTPUT_BYTES`]) and instructions by fuel,
/// but not for values a template builds in between: the provider runs templates
/// through [`crate::sandbox`], a child process with a memory limit.
pub fn render_all(templates: &[TemplateSpec], objects: &[(String, &SecretBytes)]) -> Result<Vec<SecretBytes>, TemplateError> {
    if templates.is_empty() {
        // No environment and no context of secret values to build.
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(templates.len());
    let mut renderer = Renderer::new(objects);
    for t in templates {
        out.push(renderer.render(t)?);
    }
    Ok(out)
}

/// Renders templates one at a time over one context, with a shared output budget.
pub(crate) struct Renderer {
    env: Environment<'static>,
    names: Vec<String>,
    context: Value,
    total: usize,
}

impl Renderer {
    /// A renderer over `objects` (name -> content).
    pub(crate) fn new(objects: &[(String, &SecretBytes)]) -> Self {
        let names = objects.iter().map(|(n, _)| n.clone()).collect();
        let context: BTreeMap<String, Value> =
            objects.iter().map(|(name, content)| (name.clone(), secret_value(content.expose_secret()))).collect();
        Self { env: environment(), names, context: minijinja::context! { objects => Value::from(context) }, total: 0 }
    }

    /// Renders one template; the output stops at the per-file and total limits as
    /// it is written.
    pub(crate) fn render(&mut self, t: &TemplateSpec) -> Result<SecretBytes, TemplateError> {
        let template = self.env.template_from_str(&t.source).map_err(|e| describe(t, &self.names, &e))?;
        let limit = MAX_OUTPUT_BYTES.min(MAX_TOTAL_OUTPUT_BYTES.saturating_sub(self.total));
        let mut sink = CappedSink { bytes: Zeroizing::new(Vec::new()), limit, over: false };
        if let Err(e) = template.render_captured_to(&self.context, &mut sink) {
            if sink.over {
                return Err(too_large(t, limit == MAX_OUTPUT_BYTES));
            }
            return Err(describe(t, &self.names, &e));
        }
        self.total += sink.bytes.len();
        Ok(SecretBytes::new(std::mem::take(&mut *sink.bytes)))
    }
}

/// The error for output over a limit.
pub(crate) fn too_large(t: &TemplateSpec, per_file: bool) -> TemplateError {
    let problem = if per_file {
        format!("renders more than {MAX_OUTPUT_BYTES} bytes")
    } else {
        format!("the templates together render more than {MAX_TOTAL_OUTPUT_BYTES} bytes")
    };
    TemplateError { index: t.index, path: t.path.as_str().to_owned(), line: None, problem }
}

/// A rendering error, described by kind, template, line and the source line as
/// written: never by the values involved (minijinja's details quote operands,
/// such as the number in `unable to calculate 8675309421 / 0`).
fn describe(t: &TemplateSpec, names: &[String], e: &minijinja::Error) -> TemplateError {
    let line = e.line();
    let source_line = line
        .and_then(|l| t.source.lines().nth(l.saturating_sub(1)))
        .map(|s| s.trim().chars().take(120).collect::<String>());
    let in_source = source_line.map(|s| format!(" in `{s}`")).unwrap_or_default();
    let problem = match e.kind() {
        ErrorKind::UndefinedError => format!(
            "undefined name{in_source}; objects available: {}",
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        ),
        ErrorKind::OutOfFuel => "the template runs too long (loop limit reached)".to_owned(),
        // Syntax errors are about the template's text, which is configuration.
        ErrorKind::SyntaxError => format!("syntax error: {}", e.detail().unwrap_or("invalid template")),
        kind => format!("{}{in_source}", kind_text(kind)),
    };
    TemplateError { index: t.index, path: t.path.as_str().to_owned(), line, problem }
}

/// A fixed description of an error kind: the kind's own text, which holds no values.
fn kind_text(kind: ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidOperation => "invalid operation (a value of the wrong type or out of range)".to_owned(),
        ErrorKind::BadSerialization => "a value cannot be serialized".to_owned(),
        other => other.to_string(),
    }
}

/// Collects output and fails the write that would cross `limit`.
struct CappedSink {
    bytes: Zeroizing<Vec<u8>>,
    limit: usize,
    over: bool,
}

impl std::io::Write for CappedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            self.over = true;
            return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "output limit"));
        }
        // Grow by hand so a reallocation never leaves an unzeroized copy behind.
        if self.bytes.capacity() < self.bytes.len() + buf.len() {
            let wanted = (self.bytes.len() + buf.len()).max(self.bytes.capacity() * 2).min(self.limit);
            let mut grown = Zeroizing::new(Vec::with_capacity(wanted));
            grown.extend_from_slice(&self.bytes);
            self.bytes = grown;
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An engine as templates are rendered with.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_syntax(syntax());
    env
}

/// A file's final newline is content (PEM bundles, env files): keep it.
fn syntax() -> minijinja::syntax::SyntaxConfig {
    minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build().unwrap_or_default()
}

/// Checks a template's syntax before anything is fetched.
///
/// This only parses: compiling folds constant expressions, so `{{ "x" * 100000000 }}`
/// would build its value here, in the provider. Templates are compiled and run
/// only in the renderer (see `crate::sandbox`).
pub(crate) fn check_syntax(source: &str) -> Result<(), String> {
    minijinja::machinery::parse(source, "<template>", syntax()).map(|_| ()).map_err(|e| {
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
    fn errors_name_the_expression_never_the_value() {
        let pin: &[u8] = br#"{"pin":"8675309421"}"#;
        for source in [
            "{{ (objects.db.pin ~ '') | int / 0 }}",
            "{{ (objects.db.pin | int) // 0 }}",
            "{{ (objects.db.pin | int) % 0 }}",
            "{{ [1][objects.db.pin | int] + 1 }}",
            "{{ objects.db.pin | int | batch(0) }}",
        ] {
            let err = run(source, &[("db", pin)]).expect_err(source);
            let text = err.to_string();
            assert!(!text.contains("8675309421") && !text.contains("867530942"), "{text}");
            assert!(text.contains(source), "the expression as written: {text}");
        }
    }

    #[test]
    fn output_stops_at_the_limit_as_it_is_written() {
        let err = run("{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}", &[]).expect_err("too large");
        assert!(err.problem.contains("renders more than"), "{err}");
    }

    #[test]
    fn the_syntax_check_does_not_evaluate_constants() {
        // Compiling would fold this into a 100 MB string; the check only parses.
        assert!(check_syntax("{{ ('x' * 100000000) ~ ('x' * 100000000) }}").is_ok());
        assert!(check_syntax("{% if %}").is_err());
    }

    #[test]
    fn no_includes_and_bounded_loops() {
        assert!(run("{% include '/etc/passwd' %}", &[]).is_err());
        let err = run("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", &[]).expect_err("fuel");
        assert!(err.problem.contains("too long") || err.problem.contains("range"), "{err}");
        assert!(run("{% if %}", &[]).expect_err("syntax").problem.contains("syntax"));
    }
}
