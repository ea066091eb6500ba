//! Where a field path (`upstreams[0].coordination.routes[2]`) is in the
//! file: its line and column, or those of its nearest parent present.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::errors::{ConfigFileErrors, Issue};

/// Each `(field, message)` located in `text` (at the field, or its nearest
/// parent present in the file).
pub fn locate_fields(text: &str, issues: Vec<(String, String)>) -> ConfigFileErrors {
    let (doc, _) = DeTable::parse_recoverable(text);
    let issues = issues
        .into_iter()
        .map(|(field, message)| Issue::new(field, message))
        .collect();
    locate_all(text, doc.get_ref(), issues)
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[2].c` into segments. Keys with dots in them (scope names) cannot
/// be told apart; locating then stops at the nearest parent, which is
/// still a useful position.
pub(super) fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segs.push(Seg::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(close) = inner.find(']') else { break };
                match inner[..close].parse() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => segs.push(Seg::Key(inner[..close].to_owned())),
                }
                rest = &inner[close + 1..];
            }
        } else {
            segs.push(Seg::Key(rest.to_owned()));
        }
    }
    segs
}

/// The span of the deepest part of `path` present in the document: the
/// key of a field, or the value of an array element.
fn locate(doc: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    walk(doc, path).deepest
}

/// How far a dotted path reaches into a document.
pub(super) struct Walk {
    /// The span of the deepest part found: a field's key, or an array
    /// element's value.
    pub deepest: Option<Range<usize>>,
    /// Whether every part of the path was found.
    pub complete: bool,
}

/// Follows `path` into the document as far as it goes.
pub(super) fn walk(doc: &DeTable<'_>, path: &str) -> Walk {
    let mut deepest = None;
    let mut table: Option<&DeTable<'_>> = Some(doc);
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in &parse_path(path) {
        let next = match (seg, table, value) {
            (Seg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                .map(|(key, v)| (key.span(), v)),
            (Seg::Index(i), _, Some(v)) => match v.get_ref() {
                DeValue::Array(a) => a.get(*i).map(|v| (v.span(), v)),
                _ => None,
            },
            _ => None,
        };
        let Some((span, v)) = next else {
            return Walk {
                deepest,
                complete: false,
            };
        };
        deepest = Some(span);
        value = Some(v);
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    Walk {
        deepest,
        complete: true,
    }
}

pub(super) fn locate_all(text: &str, doc: &DeTable<'_>, issues: Vec<Issue>) -> ConfigFileErrors {
    ConfigFileErrors(
        issues
            .into_iter()
            .map(|issue| {
                let (line, column) = locate(doc, &issue.field)
                    .map(|s| line_col(text, s.start))
                    .map_or((None, None), |(l, c)| (Some(l), Some(c)));
                issue.located(line, column)
            })
            .collect(),
    )
}

/// 1-based line and column (in characters) of byte `offset` in `text`:
/// how a TOML span is reported (here, and in the mock's keys file).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("upstreams[0].coordination.routes[2].scopes[0]"),
            vec![
                Seg::Key("upstreams".into()),
                Seg::Index(0),
                Seg::Key("coordination".into()),
                Seg::Key("routes".into()),
                Seg::Index(2),
                Seg::Key("scopes".into()),
                Seg::Index(0),
            ]
        );
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
