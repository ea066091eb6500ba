//! From the file's text to the types: TOML read with every syntax error
//! located, each section read on its own so one mistake hides no other,
//! presets merged under each upstream's `coordination`, and serde's
//! wording put in the file's terms.

use std::ops::Range;

use serde::Deserialize;
use syncoord_core::config::Config;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::errors::{ConfigFileError, ConfigFileErrors, Issue};
use super::locations::{line_col, locate_all};
use super::schema::{Preset, ProxyConfig, UpstreamConfig};
use crate::signing::SigningSettings;

/// An upstream as written in the file, before the preset merge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    name: String,
    url: String,
    #[serde(default)]
    preset: Preset,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    underscores_in_headers: bool,
    #[serde(default)]
    origins: Vec<String>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    signing: SigningSettings,
    #[serde(default)]
    coordination: toml::Table,
}

impl TryFrom<RawUpstream> for UpstreamConfig {
    type Error = CoordinationError;

    fn try_from(raw: RawUpstream) -> Result<Self, CoordinationError> {
        let coordination = merged_coordination(raw.preset, raw.coordination)?;
        Ok(UpstreamConfig {
            name: raw.name,
            url: raw.url,
            preset: raw.preset,
            prefix: raw.prefix,
            listen: raw.listen,
            underscores_in_headers: raw.underscores_in_headers,
            origins: raw.origins,
            ca_file: raw.ca_file,
            signing: raw.signing,
            coordination,
        })
    }
}

/// `over` merged into `base`: tables key by key, anything else replaced.
fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// What is wrong with an upstream's `coordination` table once merged over
/// its preset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("coordination.{path}: {message}")]
pub(super) struct CoordinationError {
    /// Path of the field within `coordination`; empty for the table itself.
    path: String,
    message: String,
}

/// The preset with the user's table merged over it, deserialized.
fn merged_coordination(preset: Preset, user: toml::Table) -> Result<Config, CoordinationError> {
    let mut base = match toml::Table::try_from(preset.config()) {
        Ok(t) => t,
        Err(e) => {
            return Err(CoordinationError {
                path: String::new(),
                message: format!("preset cannot be merged: {e}"),
            })
        }
    };
    deep_merge(&mut base, user);
    serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(base)).map_err(|e| {
        CoordinationError {
            path: path_string(e.path()),
            message: reword(e.inner().message()),
        }
    })
}

/// A serde field path as the file spells it (`a.b[2]`), empty for the
/// root.
pub fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." {
        String::new()
    } else {
        s
    }
}

impl ProxyConfig {
    /// Reads and checks a configuration file. Every problem found is
    /// reported, each with the field's path and position.
    pub fn from_toml_str(text: &str) -> Result<ProxyConfig, ConfigFileErrors> {
        Self::parse(text, false)
    }

    /// [`Self::from_toml_str`] plus [`Self::validate_for_edge`], with
    /// positions.
    pub fn from_toml_str_for_edge(text: &str) -> Result<ProxyConfig, ConfigFileErrors> {
        Self::parse(text, true)
    }

    fn parse(text: &str, edge: bool) -> Result<ProxyConfig, ConfigFileErrors> {
        let root = read_toml(text)?;
        let (doc, _) = DeTable::parse_recoverable(text);
        let mut issues = Vec::new();
        let (config, index) = Self::from_table(root, &mut issues);
        // Upstreams that could not be read are left out; the rest are
        // still checked, under their index in the file.
        let unread = issues.iter().any(|i| i.field.starts_with("upstreams["));
        let mut checked = config.issues_at(&index);
        if unread {
            checked.retain(|i| i.field != "upstreams");
        }
        issues.extend(checked);
        if edge {
            issues.extend(config.edge_issues_at(&index));
        }
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(locate_all(text, doc.get_ref(), issues))
        }
    }

    /// Builds the config piece by piece so that one bad upstream does not
    /// hide the problems of the next. Also returns, for each upstream read,
    /// its index in the file.
    pub(super) fn from_table(
        root: toml::Table,
        issues: &mut Vec<Issue>,
    ) -> (ProxyConfig, Vec<usize>) {
        let mut config = ProxyConfig::default();
        let mut index: Vec<usize> = (0..config.upstreams.len()).collect();
        for (key, value) in root {
            match key.as_str() {
                "credentials" => match serde_path_to_error::deserialize(value) {
                    Ok(c) => config.credentials = c,
                    Err(e) => issues.push(Issue::new(
                        join("credentials", &path_string(e.path())),
                        reword(e.inner().message()),
                    )),
                },
                "clients" => match serde_path_to_error::deserialize(value) {
                    Ok(c) => config.clients = c,
                    Err(e) => issues.push(Issue::new(
                        join("clients", &path_string(e.path())),
                        reword(e.inner().message()),
                    )),
                },
                "cluster" => match serde_path_to_error::deserialize(value) {
                    Ok(c) => config.cluster = Some(c),
                    Err(e) => issues.push(Issue::new(
                        join("cluster", &path_string(e.path())),
                        reword(e.inner().message()),
                    )),
                },
                "server" => match serde_path_to_error::deserialize(value) {
                    Ok(s) => config.server = s,
                    Err(e) => issues.push(Issue::new(
                        join("server", &path_string(e.path())),
                        reword(e.inner().message()),
                    )),
                },
                "upstreams" => {
                    let toml::Value::Array(items) = value else {
                        issues.push(Issue::new(
                            "upstreams",
                            "must be an array of tables ([[upstreams]])",
                        ));
                        continue;
                    };
                    config.upstreams.clear();
                    index.clear();
                    for (i, item) in items.into_iter().enumerate() {
                        let at = format!("upstreams[{i}]");
                        let raw: RawUpstream = match serde_path_to_error::deserialize(item) {
                            Ok(r) => r,
                            Err(e) => {
                                issues.push(Issue::new(
                                    join(&at, &path_string(e.path())),
                                    reword(e.inner().message()),
                                ));
                                continue;
                            }
                        };
                        if let Some(issue) = emptied_routes(&at, &raw) {
                            issues.push(issue);
                            continue;
                        }
                        match merged_coordination(raw.preset, raw.coordination) {
                            Ok(coordination) => {
                                index.push(i);
                                config.upstreams.push(UpstreamConfig {
                                    name: raw.name,
                                    url: raw.url,
                                    preset: raw.preset,
                                    prefix: raw.prefix,
                                    listen: raw.listen,
                                    underscores_in_headers: raw.underscores_in_headers,
                                    origins: raw.origins,
                                    ca_file: raw.ca_file,
                                    signing: raw.signing,
                                    coordination,
                                })
                            }
                            Err(e) => issues.push(Issue::new(
                                join(&format!("{at}.coordination"), &e.path),
                                e.message,
                            )),
                        }
                    }
                }
                other => issues.push(Issue::new(
                    other,
                    format!("unknown section `{other}` (known: server, upstreams, cluster, credentials, clients)"),
                )),
            }
        }
        (config, index)
    }
}

/// A file of ours read as TOML: its table, or its syntax errors (and
/// integers too large for 64 bits), each located.
pub fn read_toml(text: &str) -> Result<toml::Table, ConfigFileErrors> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let errors = syntax
            .iter()
            .map(|e| {
                let (line, column) = e
                    .span()
                    .map(|s| line_col(text, s.start))
                    .map_or((None, None), |(l, c)| (Some(l), Some(c)));
                ConfigFileError {
                    field: String::new(),
                    line,
                    column,
                    message: e.message().trim().to_owned(),
                }
            })
            .collect();
        return Err(ConfigFileErrors(errors));
    }
    // The parser keeps integers as text; one past 64 bits only fails
    // when the document is converted, with neither a position nor a
    // readable message. Found here first, each with its field and place.
    let mut oversized = Vec::new();
    oversized_integers(doc.get_ref(), "", &mut oversized);
    if !oversized.is_empty() {
        let errors = oversized
            .into_iter()
            .map(|(field, span, digits)| {
                let (line, column) = line_col(text, span.start);
                ConfigFileError {
                    field,
                    line: Some(line),
                    column: Some(column),
                    message: format!(
                        "`{digits}` does not fit in a 64-bit integer (from {} to {})",
                        i64::MIN,
                        i64::MAX
                    ),
                }
            })
            .collect();
        return Err(ConfigFileErrors(errors));
    }
    let root: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = e
                .span()
                .map(|s| line_col(text, s.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            return Err(ConfigFileErrors(vec![ConfigFileError {
                field: String::new(),
                line,
                column,
                message: reword(e.message().trim()),
            }]));
        }
    };
    Ok(root)
}

/// `routes = []` over a preset that has rules: arrays replace, so this
/// silently drops every rule of the preset (orders would be cached and
/// coalesced like reads, market data keyed per credential). Refused, since
/// an empty list is almost always a slip; `preset = "none"` is the way to
/// start without rules.
fn emptied_routes(at: &str, raw: &RawUpstream) -> Option<Issue> {
    let empty =
        matches!(raw.coordination.get("routes"), Some(toml::Value::Array(a)) if a.is_empty());
    let preset_rules = raw.preset.config().routes.len();
    (empty && preset_rules > 0).then(|| {
        Issue::new(
            format!("{at}.coordination.routes"),
            format!(
                "an empty list would drop all {preset_rules} route rules of the preset (a list replaces the preset's): remove `routes` to keep them, list the rules you want, or use preset = \"none\" to start without any"
            ),
        )
    })
}

/// Every integer in `table` (at `path`) that does not fit in an `i64`:
/// its field, span and digits.
fn oversized_integers(
    table: &DeTable<'_>,
    path: &str,
    out: &mut Vec<(String, Range<usize>, String)>,
) {
    for (key, value) in table.iter() {
        let field = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            join(path, key.get_ref())
        };
        oversized_in(value, field, out);
    }
}

fn oversized_in(
    value: &Spanned<DeValue<'_>>,
    field: String,
    out: &mut Vec<(String, Range<usize>, String)>,
) {
    match value.get_ref() {
        DeValue::Integer(i) if i64::from_str_radix(i.as_str(), i.radix()).is_err() => {
            out.push((field, value.span(), i.as_str().to_owned()));
        }
        DeValue::Table(t) => oversized_integers(t, &field, out),
        DeValue::Array(a) => {
            for (k, v) in a.iter().enumerate() {
                oversized_in(v, format!("{field}[{k}]"), out);
            }
        }
        _ => {}
    }
}

/// serde's wording of a type or range mistake, in the file's terms:
/// `invalid value: integer `-1`, expected usize` says what a Rust type
/// wants, not what the field takes.
pub fn reword(message: &str) -> String {
    let range = |ty: &str| -> Option<String> {
        let (min, max): (i128, i128) = match ty {
            "u8" => (0, u8::MAX.into()),
            "u16" => (0, u16::MAX.into()),
            "u32" => (0, u32::MAX.into()),
            "u64" | "usize" => (0, i64::MAX.into()),
            "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        };
        Some(format!("a whole number from {min} to {max}"))
    };
    let kind = |expected: &str| -> String {
        match expected {
            "a sequence" => "an array".to_owned(),
            "f64" | "f32" => "a number".to_owned(),
            "a boolean" => "true or false".to_owned(),
            other => range(other).unwrap_or_else(|| other.to_owned()),
        }
    };
    if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        if let Some((value, expected)) = rest.split_once("`, expected ") {
            if let Some(r) = range(expected) {
                return format!("`{value}` is out of range: expected {r}");
            }
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            return format!("expected {}, found {found}", kind(expected));
        }
    }
    message.to_owned()
}

/// `rest` (a field path within `base`) as a path from the root.
pub fn join(base: &str, rest: &str) -> String {
    if rest.is_empty() {
        base.to_owned()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}
