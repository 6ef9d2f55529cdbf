//! The `objects` parameter: a YAML list of maps, read into JSON values so each
//! field can be checked on its own and named in errors (`objects[2].method`).

use serde_json::{Map, Value};

use super::{Error, MAX_OBJECTS, bounded_yaml};
use crate::object_path::ObjectPath;
use crate::plan::kind_of;

/// Longest `objects` text accepted; far above any real SecretProviderClass.
const MAX_OBJECTS_YAML_BYTES: usize = 1024 * 1024;
/// Most values (maps, lists, scalars, keys) one list may build: a thousand
/// objects of a dozen fields each fit many times over, and the values built stay
/// within a few MiB whatever the input.
const MAX_YAML_VALUES: usize = 50_000;
/// Deepest nesting accepted (objects are maps of scalars and small maps).
const MAX_YAML_DEPTH: usize = 32;

/// One entry of `objects`, with typed accessors that name the field on error.
/// Its Debug shows field names only: values may be secret arguments.
pub(super) struct RawObject {
    pub(super) index: usize,
    list: &'static str,
    fields: Map<String, Value>,
}

/// Parses the `objects` YAML into its entries.
pub(super) fn parse_list(yaml: &str) -> Result<Vec<RawObject>, Error> {
    parse_named_list("objects", yaml)
}

/// Parses a YAML list of maps held in the parameter `list`.
pub(super) fn parse_named_list(list: &'static str, yaml: &str) -> Result<Vec<RawObject>, Error> {
    if yaml.len() > MAX_OBJECTS_YAML_BYTES {
        return Err(Error::new(list, format!("is {} bytes; at most {MAX_OBJECTS_YAML_BYTES}", yaml.len())));
    }
    if yaml.trim().is_empty() {
        return Err(Error::new(list, "is empty; list at least one entry"));
    }
    let limits = bounded_yaml::Limits {
        max_entries: MAX_OBJECTS,
        max_nodes: MAX_YAML_VALUES,
        max_text_bytes: MAX_OBJECTS_YAML_BYTES,
        max_depth: MAX_YAML_DEPTH,
    };
    let value = bounded_yaml::parse(yaml, limits).map_err(|failure| match failure {
        bounded_yaml::ParseFailure::Budget(limit) => Error::new(list, limit),
        bounded_yaml::ParseFailure::Syntax(first_line) => Error::new(list, format!("is not valid YAML: {first_line}")),
    })?;
    let items = match value {
        Value::Array(items) => items,
        other => {
            return Err(Error::new(list, format!("expected a YAML list, found {}", kind_of(&other))));
        }
    };
    if items.is_empty() {
        return Err(Error::new(list, "is an empty list; list at least one entry"));
    }
    items.into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(fields) => Ok(RawObject { index, list, fields }),
            other => Err(Error::new(format!("{list}[{index}]"), format!("expected a map, found {}", kind_of(&other)))),
        })
        .collect()
}

impl std::fmt::Debug for RawObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawObject")
            .field("index", &self.index)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RawObject {
    /// An entry of `list` at `index` parsed elsewhere (the Azure provider's
    /// `objects` holds each entry as a YAML string of its own).
    pub(super) fn from_fields(list: &'static str, index: usize, fields: Map<String, Value>) -> Self {
        Self { index, list, fields }
    }

    /// The YAML limits every list is parsed with.
    pub(super) fn limits() -> bounded_yaml::Limits {
        bounded_yaml::Limits {
            max_entries: MAX_OBJECTS,
            max_nodes: MAX_YAML_VALUES,
            max_text_bytes: MAX_OBJECTS_YAML_BYTES,
            max_depth: MAX_YAML_DEPTH,
        }
    }

    fn field(&self, name: &str) -> String {
        format!("{}[{}].{name}", self.list, self.index)
    }

    /// An optional boolean: YAML `true`/`false`, or a string in any spelling the
    /// parameters accept (`"True"`, `"1"`, `"f"`, ...; see [`super::go_bool`]).
    pub(super) fn flag(&self, name: &str) -> Result<Option<bool>, Error> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => super::go_bool(s.trim()).map(Some).ok_or_else(|| {
                Error::new(self.field(name), format!("{s:?} is not a boolean; use true or false"))
            }),
            Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => Ok(Some(n.as_u64() == Some(1))),
            Some(other) => Err(Error::new(self.field(name), format!("expected true or false, found {}", kind_of(other)))),
        }
    }

    /// `encoding` or `objectEncoding`: utf-8 (default), base64 or hex.
    pub(super) fn encoding(&self) -> Result<crate::plan::Encoding, Error> {
        use crate::plan::Encoding;
        let (field, value) = match (self.string("encoding")?, self.string("objectEncoding")?) {
            (Some(a), Some(b)) if !a.eq_ignore_ascii_case(&b) => {
                return Err(Error::new(self.field("objectEncoding"), "conflicts with encoding; set one"));
            }
            (Some(a), _) => ("encoding", a),
            (None, Some(b)) => ("objectEncoding", b),
            (None, None) => return Ok(Encoding::Utf8),
        };
        match value.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "base64" => Ok(Encoding::Base64),
            "hex" => Ok(Encoding::Hex),
            other => Err(Error::new(self.field(field), format!("{other:?} is not supported; use utf-8, base64 or hex"))),
        }
    }

    /// An optional scalar read as text (numbers and booleans are accepted as text).
    pub(super) fn string(&self, name: &str) -> Result<Option<String>, Error> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(Error::new(self.field(name), format!("expected a string, found {}", kind_of(other)))),
        }
    }

    /// A required scalar read as text.
    pub(super) fn required(&self, name: &str) -> Result<String, Error> {
        self.string(name)?.ok_or_else(|| Error::new(self.field(name), "missing"))
    }

    /// The raw value of a field.
    pub(super) fn value(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// An optional map.
    pub(super) fn map(&self, name: &str) -> Result<Option<Map<String, Value>>, Error> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(other) => Err(Error::new(self.field(name), format!("expected a map, found {}", kind_of(other)))),
        }
    }

    /// The file path (`objectName`, or another field for other dialects).
    pub(super) fn path(&self, name: &str) -> Result<ObjectPath, Error> {
        let raw = self.required(name)?;
        ObjectPath::parse(&raw).map_err(|e| Error::new(self.field(name), format!("{raw:?} {e}")))
    }

    /// `filePermission`: an octal string (`"0600"`, `"0o600"`) or an integer. A YAML
    /// integer written with a leading zero is octal too, as in the anchors' manifests.
    pub(super) fn file_mode(&self, name: &str) -> Result<Option<u32>, Error> {
        let bad = |what: &str| Error::new(self.field(name), format!("{what}; expected a mode such as \"0644\" or 420"));
        let mode = match self.fields.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| bad("not a non-negative integer"))?,
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => parse_mode_text(s.trim()).ok_or_else(|| bad(&format!("{s:?} is not a file mode")))?,
            Some(other) => return Err(bad(&format!("found {}", kind_of(other)))),
        };
        if mode > 0o777 {
            return Err(bad(&format!("{mode} (octal {mode:o}) has bits beyond 0777")));
        }
        Ok(Some(mode))
    }

    /// Renames the fields that name one of `known` in another letter case to that
    /// name, as a decoder that matches field names case-insensitively does (the AWS
    /// provider's: `ObjectName`, `OBJECTNAME` and `objectname` all set `objectName`).
    /// `nested` names fields holding a map, or a list of maps, whose own field
    /// names are folded the same way (`jmesPath: [{Path, ObjectAlias}]`).
    pub(super) fn fold_field_names(&mut self, known: &[&str], nested: &[(&str, &[&str])]) {
        fold_names(&mut self.fields, known);
        for (field, inner) in nested {
            match self.fields.get_mut(*field) {
                Some(Value::Object(map)) => fold_names(map, inner),
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::Object(map) = item {
                            fold_names(map, inner);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Field names present that `known` does not list (logged, not rejected, so
    /// SecretProviderClasses stay portable across providers).
    pub(super) fn unknown_fields(&self, known: &[&str]) -> Vec<String> {
        self.fields.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect()
    }

    /// The entry as canonical JSON, folded into the object's version.
    pub(super) fn canonical(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }
}

/// Moves every key of `fields` that matches a name of `known` case-insensitively
/// to that exact name. When several keys match one name, the last in byte order
/// wins: the anchor sees the keys sorted (its YAML passes through a sorted JSON
/// object) and each later key overwrites the field.
pub(super) fn fold_names(fields: &mut Map<String, Value>, known: &[&str]) {
    for name in known {
        // `fields` iterates in byte order (serde_json's map is sorted).
        let matching: Vec<String> = fields.keys().filter(|k| same_name_folded(k, name)).cloned().collect();
        if matching.len() == 1 && matching[0] == *name {
            continue;
        }
        let mut last = None;
        for key in matching {
            last = fields.remove(&key);
        }
        if let Some(value) = last {
            fields.insert((*name).to_owned(), value);
        }
    }
}

/// Whether `key` equals the ASCII field name `name` under simple case folding:
/// ASCII letters in either case, plus the two non-ASCII letters that fold onto
/// ASCII ones (U+017F long s onto `s`, U+212A Kelvin sign onto `k`).
fn same_name_folded(key: &str, name: &str) -> bool {
    let fold = |c: char| match c {
        '\u{017F}' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    };
    key.chars().map(fold).eq(name.chars().map(fold))
}

/// A file mode written as text, at most 0777.
pub(super) fn parse_mode(s: &str) -> Option<u32> {
    parse_mode_text(s).filter(|m| *m <= 0o777)
}

/// `0644`, `0o644` and `644`-with-a-leading-zero are octal; plain digits are decimal.
fn parse_mode_text(s: &str) -> Option<u32> {
    if let Some(octal) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        return u32::from_str_radix(octal, 8).ok();
    }
    if s.len() > 1 && s.starts_with('0') {
        return u32::from_str_radix(&s[1..], 8).ok();
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> RawObject {
        parse_list(yaml).expect("valid").into_iter().next().expect("one entry")
    }

    #[test]
    fn modes() {
        assert_eq!(one("- filePermission: \"0600\"").file_mode("filePermission"), Ok(Some(0o600)));
        assert_eq!(one("- filePermission: \"0o640\"").file_mode("filePermission"), Ok(Some(0o640)));
        assert_eq!(one("- filePermission: 420").file_mode("filePermission"), Ok(Some(0o644)));
        assert_eq!(one("- filePermission: 0600").file_mode("filePermission"), Ok(Some(0o600)));
        assert_eq!(one("- {}").file_mode("filePermission"), Ok(None));
        assert!(one("- filePermission: 01777").file_mode("filePermission").is_err());
        assert!(one("- filePermission: rw").file_mode("filePermission").is_err());
        assert!(one("- filePermission: -1").file_mode("filePermission").is_err());
        assert!(one("- filePermission: [1]").file_mode("filePermission").is_err());
    }

    #[test]
    fn list_shape_errors_name_the_field() {
        for (yaml, field) in [
            ("", "objects"),
            ("[]", "objects"),
            ("a: b", "objects"),
            ("- a\n- b", "objects[0]"),
            ("- [unclosed", "objects"),
        ] {
            let err = parse_list(yaml).expect_err("must fail");
            assert_eq!(err.field, field, "{yaml:?}: {err}");
        }
    }

    #[test]
    fn scalars_read_as_text_and_maps_are_refused() {
        let o = one("- objectName: 123\n  flag: true\n  m: {a: 1}");
        assert_eq!(o.string("objectName"), Ok(Some("123".into())));
        assert_eq!(o.string("flag"), Ok(Some("true".into())));
        assert_eq!(o.string("m").expect_err("map").field, "objects[0].m");
        assert_eq!(o.required("missing").expect_err("missing").problem, "missing");
    }

    #[test]
    fn field_names_fold_as_the_aws_provider_matches_them() {
        // tests/BasicTestMountSPC.yaml.template of the AWS provider writes `Path:` / `ObjectAlias:`.
        let mut o = one("- ObjectName: a\n  OBJECTALIAS: b\n  jmesPath:\n    - {Path: user, ObjectAlias: u, FILEPERMISSION: '0600'}\n  Other: x");
        o.fold_field_names(&["objectName", "objectAlias", "jmesPath"], &[("jmesPath", &["path", "objectAlias", "filePermission"])]);
        assert_eq!(o.string("objectName"), Ok(Some("a".into())));
        assert_eq!(o.string("objectAlias"), Ok(Some("b".into())));
        assert_eq!(o.string("Other"), Ok(Some("x".into())), "unknown fields keep their spelling");
        let entry = o.value("jmesPath").and_then(|v| v.get(0)).cloned().unwrap_or_default();
        assert_eq!(entry, serde_json::json!({"path": "user", "objectAlias": "u", "filePermission": "0600"}));
        // Long s and the Kelvin sign fold onto ASCII letters; other look-alikes do not.
        let mut o = one("- objectAlia\u{017F}: a\n  \u{212A}ey: k\n  objectAl\u{0131}as: no");
        o.fold_field_names(&["objectAlias", "key"], &[]);
        assert_eq!(o.string("objectAlias"), Ok(Some("a".into())));
        assert_eq!(o.string("key"), Ok(Some("k".into())));
        // Two spellings of one field: the last in byte order wins ("objectName" > "ObjectName").
        let mut o = one("- {ObjectName: first, objectName: second}");
        o.fold_field_names(&["objectName"], &[]);
        assert_eq!(o.string("objectName"), Ok(Some("second".into())));
    }

    #[test]
    fn flags_take_every_anchor_boolean_spelling() {
        for (text, expected) in [("1", true), ("t", true), ("T", true), ("TRUE", true), ("True", true), ("0", false), ("f", false), ("F", false), ("FALSE", false), ("False", false)] {
            assert_eq!(one(&format!("- x: \"{text}\"")).flag("x"), Ok(Some(expected)), "{text}");
        }
        for text in ["yes", "tRUE", "on", "2"] {
            assert!(one(&format!("- x: \"{text}\"")).flag("x").is_err(), "{text}");
        }
    }

    #[test]
    fn too_many_objects() {
        let yaml = "- {objectName: a}\n".repeat(MAX_OBJECTS + 1);
        assert!(parse_list(&yaml).expect_err("too many").problem.contains("at most"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut yaml = String::from("- &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 { "a".to_owned() } else { format!("a{}", i - 1) };
            yaml.push_str(&format!("- &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse_list(&yaml).is_err());
    }
}
