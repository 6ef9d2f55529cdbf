//! YAML parameters read into JSON values under a fixed budget.
//!
//! A SecretProviderClass is written by a namespace tenant, and the provider
//! serves every pod on the node, so parsing must cost a bounded amount of memory
//! and time whatever the input: an alias bomb, a flat list of a million tiny
//! entries or one huge scalar replayed through aliases. Two layers bound it:
//! - the parser's own budget (events, aliases, anchors, replayed events, depth,
//!   scalar bytes), which stops the scanner early;
//! - a meter on the values being built, which charges every node and every byte
//!   of text as it is created and stops at the first breach, so the values built
//!   never exceed what a thousand real objects need. The list's entry count is
//!   checked as entries arrive, not after the whole list is built.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What one YAML parameter may cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Entries of the top-level list.
    pub(super) max_entries: usize,
    /// Values built (maps, lists, scalars, keys).
    pub(super) max_nodes: usize,
    /// Bytes of text built (keys and strings), alias replays included.
    pub(super) max_text_bytes: usize,
    /// Nesting depth.
    pub(super) max_depth: usize,
}

/// Why a parameter was refused: a budget breach, or the parser's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ParseFailure {
    /// The input is larger or deeper than the budget allows (names the limit, never the input).
    Budget(String),
    /// The parser rejected the input; the first line of its error (position only).
    Syntax(String),
}

/// Parses `yaml` into a JSON value, within `limits`.
pub(super) fn parse(yaml: &str, limits: Limits) -> Result<Value, ParseFailure> {
    let meter = Meter { limits, nodes: Cell::new(0), text: Cell::new(0), breach: Cell::new(None) };
    let mut options = serde_saphyr::Options::default();
    // `filePermission: 0600` must stay "0600" (octal, as the anchors read it), not
    // become the decimal 600.
    options.leading_zero_numbers_as_strings = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.budget = Some(parser_budget(limits));
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = limits.max_nodes;
    alias_limits.max_replay_stack_depth = limits.max_depth;
    options.alias_limits = alias_limits;
    // No input text in errors: the parameter may sit next to secret arguments.
    options.with_snippet = false;
    let result = serde_saphyr::with_deserializer_from_str_with_options(yaml, options, |de| {
        Node { meter: &meter, depth: 0 }.deserialize(de)
    });
    if let Some(breach) = meter.breach.take() {
        return Err(ParseFailure::Budget(breach));
    }
    result.map_err(|e| {
        if let Some(budget) = budget_breach(&e) {
            return ParseFailure::Budget(budget);
        }
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("syntax error");
        ParseFailure::Syntax(first.chars().take(200).collect())
    })
}

/// The parser's budget, sized from the value limits: a parse that would build
/// more than the meter allows is stopped by the scanner before it gets far.
fn parser_budget(limits: Limits) -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    // Every node is at most two events (start and end).
    budget.max_events = limits.max_nodes.saturating_mul(2);
    budget.max_nodes = limits.max_nodes;
    budget.max_aliases = 1024;
    budget.max_anchors = 1024;
    budget.max_recorded_anchor_events = limits.max_nodes;
    budget.max_recorded_anchor_bytes = limits.max_text_bytes;
    budget.max_total_scalar_bytes = limits.max_text_bytes;
    budget.max_depth = limits.max_depth;
    budget.max_documents = 1;
    budget.max_merge_keys = 1024;
    budget
}

/// The budget limit named by a parser error, if the error is a budget breach.
fn budget_breach(e: &serde_saphyr::Error) -> Option<String> {
    let mut e = e.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    match e {
        serde_saphyr::Error::Budget { breach, .. } => Some(format!("exceeds the parser budget ({breach:?})")),
        serde_saphyr::Error::AliasReplayCounterOverflow { .. }
        | serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. } => {
            Some("replays aliases beyond the parser budget".to_owned())
        }
        _ => None,
    }
}

/// Charges the values as they are built.
struct Meter {
    limits: Limits,
    nodes: Cell<usize>,
    text: Cell<usize>,
    breach: Cell<Option<String>>,
}

impl Meter {
    fn charge<E: de::Error>(&self, text_bytes: usize) -> Result<(), E> {
        let nodes = self.nodes.get() + 1;
        let text = self.text.get().saturating_add(text_bytes);
        self.nodes.set(nodes);
        self.text.set(text);
        if nodes > self.limits.max_nodes {
            return Err(self.fail(format!("has more than {} values", self.limits.max_nodes)));
        }
        if text > self.limits.max_text_bytes {
            return Err(self.fail(format!("expands to more than {} bytes of text", self.limits.max_text_bytes)));
        }
        Ok(())
    }

    fn fail<E: de::Error>(&self, breach: String) -> E {
        let error = E::custom(&breach);
        // The first breach is the one reported.
        let previous = self.breach.take();
        self.breach.set(Some(previous.unwrap_or(breach)));
        error
    }
}

/// A value at some depth of the document.
#[derive(Clone, Copy)]
struct Node<'m> {
    meter: &'m Meter,
    depth: usize,
}

impl Node<'_> {
    fn child(self) -> Self {
        Self { meter: self.meter, depth: self.depth + 1 }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.meter.charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.meter.charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.meter.charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.meter.charge(0)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.meter.charge(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.meter.charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        self.meter.charge(v.len())?;
        Ok(Value::String(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.meter.charge(0)?;
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            if self.depth == 0 && items.len() >= self.meter.limits.max_entries {
                return Err(self.meter.fail(format!("lists more than {0} entries; at most {0}", self.meter.limits.max_entries)));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter::<A::Error>()?;
        let mut fields = Map::new();
        while let Some(key) = map.next_key_seed(Key { meter: self.meter })? {
            let value = map.next_value_seed(self.child())?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

impl Node<'_> {
    fn enter<E: de::Error>(self) -> Result<(), E> {
        if self.depth >= self.meter.limits.max_depth {
            return Err(self.meter.fail(format!("nests deeper than {} levels", self.meter.limits.max_depth)));
        }
        self.meter.charge(0)
    }
}

/// A map key: any scalar, kept as text (as JSON keys are).
struct Key<'m> {
    meter: &'m Meter,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar map key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.meter.charge(v.len())?;
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.meter.charge(v.len())?;
        Ok(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.visit_string("null".to_owned())
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        self.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_entries: 1000, max_nodes: 50_000, max_text_bytes: 1 << 20, max_depth: 32 };

    #[test]
    fn ordinary_lists_parse() {
        let v = parse("- objectName: a\n  secretPath: secret/data/a\n  filePermission: 0600\n- {objectName: b, num: 3, flag: true}\n", LIMITS)
            .expect("ok");
        assert_eq!(v[0]["objectName"], "a");
        assert_eq!(v[0]["filePermission"], "0600");
        assert_eq!(v[1]["num"], 3);
        assert_eq!(v[1]["flag"], true);
        let anchors = parse("- &x {objectName: a}\n- *x\n", LIMITS).expect("one alias is fine");
        assert_eq!(anchors[1]["objectName"], "a");
    }

    #[test]
    fn entry_count_is_checked_while_parsing() {
        let yaml = "- a\n".repeat(1001);
        assert_eq!(parse(&yaml, LIMITS), Err(ParseFailure::Budget("lists more than 1000 entries; at most 1000".into())));
        assert!(parse(&"- a\n".repeat(1000), LIMITS).is_ok());
    }

    #[test]
    fn alias_bombs_and_replays_stop_early() {
        let mut bomb = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (i, prev) in ('b'..='j').zip('a'..='i') {
            bomb.push_str(&format!("{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        assert!(matches!(parse(&bomb, LIMITS), Err(ParseFailure::Budget(_))));
        // One large scalar replayed many times: charged per copy.
        let big = "x".repeat(200_000);
        let replay = format!("- &s \"{big}\"\n{}", "- *s\n".repeat(20));
        assert!(matches!(parse(&replay, LIMITS), Err(ParseFailure::Budget(_))));
    }

    #[test]
    fn depth_and_syntax() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(parse(&deep, LIMITS), Err(ParseFailure::Budget(_))));
        assert!(matches!(parse("- [unclosed", LIMITS), Err(ParseFailure::Syntax(_))));
        assert!(matches!(parse("a: 1\na: 2\n", LIMITS), Err(ParseFailure::Syntax(_))));
    }

    #[test]
    fn wide_maps_are_bounded_by_nodes() {
        let yaml: String = (0..60_000).map(|i| format!("k{i}: v\n")).collect();
        assert!(matches!(parse(&format!("- {{{}}}", yaml.replace('\n', ", ")), LIMITS), Err(ParseFailure::Budget(_))));
    }
}
