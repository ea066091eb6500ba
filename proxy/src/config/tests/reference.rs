//! The field reference in docs/configuration.md against the schema: every
//! field the file may set is documented there, and every documented field
//! exists. The schema's fields are not listed by hand here (a list would
//! drift as the doc would): they are asked of the parser itself, which
//! names every field of a section when it meets one it does not know
//! (`unknown field `x`, expected one of ...`). A probe field is put in each
//! section, the fields the error names are collected, and each is probed
//! again to tell a section (a table, a table of named tables, an array of
//! tables) from a value.

use std::collections::BTreeSet;

use toml::{Table, Value};

use super::*;

/// A step from a section to what it holds.
#[derive(Clone)]
enum Step {
    /// A table's field.
    Key(String),
    /// The element of an array of tables (`[[...]]`), written `[]`.
    Element,
    /// An entry of a table of named tables (scopes), written `<name>`.
    Named,
}

const PROBE: &str = "probe_field_not_in_any_schema";

/// `leaf` placed at `path` inside an empty document. An upstream gets
/// the `name` and `url` it needs for its sections to be read at all.
fn document(path: &[Step], leaf: Value) -> Table {
    fn wrap(parent: Option<&str>, path: &[Step], leaf: Value) -> Value {
        let Some((first, rest)) = path.split_first() else {
            return leaf;
        };
        let key = match first {
            Step::Key(k) => Some(k.as_str()),
            _ => None,
        };
        let inner = wrap(key, rest, leaf);
        match first {
            Step::Key(k) => Value::Table(Table::from_iter([(k.clone(), inner)])),
            Step::Element => {
                let mut element = match inner {
                    Value::Table(t) => t,
                    _ => Table::new(),
                };
                if parent == Some("upstreams") {
                    element.insert("name".into(), Value::String("a".into()));
                    element.insert("url".into(), Value::String("http://127.0.0.1:1".into()));
                }
                Value::Array(vec![Value::Table(element)])
            }
            Step::Named => Value::Table(Table::from_iter([("x".to_owned(), inner)])),
        }
    }
    match wrap(None, path, leaf) {
        Value::Table(t) => t,
        _ => Table::new(),
    }
}

/// How the parser reports a path: `a.b[0].c`, a named entry as `.x`.
fn reported(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Element => out.push_str("[0]"),
            Step::Named => out.push_str(".x"),
        }
    }
    out
}

/// How the reference writes a path: `a.b[].c`, a named entry as `<name>`.
fn written(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        let part = match step {
            Step::Key(k) => k.clone(),
            Step::Element => {
                out.push_str("[]");
                continue;
            }
            Step::Named => "<name>".to_owned(),
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&part);
    }
    out
}

/// The messages the parser gives for `doc`, by reported field.
fn problems(doc: &Table) -> Vec<(String, String)> {
    let text = toml::to_string(doc).expect("a probe document serialises");
    match ProxyConfig::from_toml_str(&text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.into_iter().map(|e| (e.field, e.message)).collect(),
    }
}

/// The names in "expected one of `a`, `b`", "expected `a` or `b`",
/// "expected `a`" or "(known: a, b)".
fn names_in(message: &str) -> Vec<String> {
    if let Some(known) = message
        .split_once("(known: ")
        .and_then(|(_, rest)| rest.split_once(')'))
    {
        return known.0.split(", ").map(str::to_owned).collect();
    }
    let Some((_, expected)) = message.split_once("expected ") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The fields of the section at `path`, or `None` if it is not a section
/// that refuses unknown fields.
fn fields_of(path: &[Step]) -> Option<Vec<String>> {
    let mut probe = path.to_vec();
    probe.push(Step::Key(PROBE.to_owned()));
    let doc = document(&probe, Value::Integer(1));
    let at = reported(&probe);
    problems(&doc)
        .into_iter()
        .find(|(field, m)| {
            *field == at
                && m.contains(&format!("`{PROBE}`"))
                && (m.contains("unknown field") || m.contains("unknown section"))
        })
        .map(|(_, m)| names_in(&m))
        .filter(|names| !names.is_empty())
}

/// Every value's path under `path` (sections are recursed into, not
/// listed themselves).
fn walk(path: &[Step], out: &mut BTreeSet<String>) {
    let Some(fields) = fields_of(path) else {
        return;
    };
    for field in fields {
        let mut here = path.to_vec();
        here.push(Step::Key(field));
        let candidates = [vec![], vec![Step::Element], vec![Step::Named]];
        let section = candidates.into_iter().find_map(|extra| {
            let mut inner = here.clone();
            inner.extend(extra);
            fields_of(&inner).is_some().then_some(inner)
        });
        match section {
            Some(inner) => walk(&inner, out),
            None => {
                out.insert(written(&here));
            }
        }
    }
}

/// The schema's field paths, e.g. `server.listen`,
/// `upstreams[].coordination.scopes.<name>.rate`.
fn schema_fields() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk(&[], &mut out);
    out
}

/// The paths the reference documents: the first cell of each table row
/// of its "Every field" section, in backticks.
fn documented_fields(doc: &str) -> BTreeSet<String> {
    let section = doc
        .split_once("\n## Every field")
        .map(|(_, rest)| rest)
        .expect("docs/configuration.md has an `## Every field` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(path, _)| path.to_owned())
        .collect()
}

#[test]
fn the_probe_finds_sections_and_values() {
    let fields = schema_fields();
    // Spot checks that the walk reaches each kind of section.
    for path in [
        "server.listen",
        "upstreams[].coordination.scopes.<name>.rate",
        "upstreams[].coordination.routes[].ttl_secs",
        "upstreams[].signing.deadline_secs",
        "credentials[].key_file",
        "clients[].max_priority",
        "cluster.redis_url",
    ] {
        assert!(fields.contains(path), "{path} not found in {fields:#?}");
    }
    assert!(!fields.iter().any(|f| f.contains(PROBE)));
}

#[test]
fn every_field_is_documented_and_every_documented_field_exists() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/configuration.md");
    let documented = documented_fields(&doc);
    let schema = schema_fields();
    let missing: Vec<_> = schema.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&schema).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md `## Every field` and the schema differ (a new field needs a row \
         there: path, empty-file value, meaning):\n\
         in the schema, not documented: {missing:#?}\n\
         documented, not in the schema: {unknown:#?}"
    );
}
