//! From the file's text to the types: TOML read with every syntax error
//! located, each section read on its own so one mistake hides no other,
//! presets merged under each upstream's `coordination`.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::errors::{ConfigFileError, ConfigFileErrors, Issue};
use super::locations::{line_col, locate_all};
use super::merge::RouteOrigins;
use super::repair::read_all;
use super::schema::{ProxyConfig, RawUpstream, UpstreamConfig};
use super::wording::{join, reword};

impl ProxyConfig {
    /// Reads and checks a configuration file. Every problem found is
    /// reported, each with the field's path and position.
    pub fn from_toml_str(text: &str) -> Result<ProxyConfig, ConfigFileErrors> {
        Self::parse(text, false)
    }

    /// [`Self::from_toml_str`], and where each upstream's route rules came
    /// from (the file's entries, or the preset's), for `config show`.
    pub(super) fn from_toml_str_traced(
        text: &str,
    ) -> Result<(ProxyConfig, Vec<RouteOrigins>), ConfigFileErrors> {
        let config = Self::parse(text, false)?;
        let root = read_toml(text)?;
        let (_, _, origins) = Self::from_table(root, &mut Vec::new());
        Ok((config, origins))
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
        let (config, index, origins) = Self::from_table(root, &mut issues);
        // Upstreams that could not be read are left out; the rest are
        // still checked, under their index in the file.
        let unread = issues.iter().any(|i| i.field.starts_with("upstreams["));
        let mut checked = config.issues_at(&index);
        if unread {
            checked.retain(|i| i.field != "upstreams");
        }
        if edge {
            checked.extend(config.edge_issues_at(&index));
        }
        // A route rule is checked where it ends up among the preset's;
        // it is reported where the file has it.
        for issue in &mut checked {
            for (k, from) in origins.iter().enumerate() {
                let at = format!("upstreams[{}].", index.get(k).copied().unwrap_or(k));
                if let Some(rest) = issue.field.strip_prefix(&at) {
                    issue.field = format!("{at}{}", from.to_file(rest));
                    break;
                }
            }
        }
        issues.extend(checked);
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
    ) -> (ProxyConfig, Vec<usize>, Vec<RouteOrigins>) {
        let mut config = ProxyConfig::default();
        let mut index: Vec<usize> = (0..config.upstreams.len()).collect();
        let mut origins = vec![RouteOrigins::default(); config.upstreams.len()];
        for (key, value) in root {
            match key.as_str() {
                "credentials" => {
                    if let Some(c) = read_section("credentials", value, issues) {
                        config.credentials = c;
                    }
                }
                "clients" => {
                    if let Some(c) = read_section("clients", value, issues) {
                        config.clients = c;
                    }
                }
                "cluster" => {
                    if let Some(c) = read_section("cluster", value, issues) {
                        config.cluster = Some(c);
                    }
                }
                "server" => {
                    if let Some(s) = read_section("server", value, issues) {
                        config.server = s;
                    }
                }
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
                    origins.clear();
                    for (i, item) in items.into_iter().enumerate() {
                        let at = format!("upstreams[{i}]");
                        let (raw, problems) = read_all::<RawUpstream>(item);
                        // With its preset unknown, what the rest of the
                        // upstream means is unknown too: not checked.
                        let preset_unknown = problems.iter().any(|(f, _)| f == "preset");
                        issues.extend(
                            problems
                                .into_iter()
                                .map(|(f, m)| Issue::new(join(&at, &f), m)),
                        );
                        let Some(raw) = raw.filter(|_| !preset_unknown) else {
                            continue;
                        };
                        let (upstream, from, problems) = UpstreamConfig::merged(raw);
                        issues.extend(problems.into_iter().map(|e| {
                            Issue::new(
                                join(&at, &from.to_file(&join("coordination", &e.path))),
                                e.message,
                            )
                        }));
                        if let Some(upstream) = upstream {
                            index.push(i);
                            origins.push(from);
                            config.upstreams.push(upstream);
                        }
                    }
                }
                other => issues.push(Issue::new(
                    other,
                    format!("unknown section `{other}` (known: server, upstreams, cluster, credentials, clients)"),
                )),
            }
        }
        (config, index, origins)
    }
}

/// One section read with [`read_all`]: every problem becomes an issue
/// under `section`.
fn read_section<T: serde::de::DeserializeOwned>(
    section: &str,
    value: toml::Value,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    let (read, problems) = read_all(value);
    issues.extend(
        problems
            .into_iter()
            .map(|(f, m)| Issue::new(join(section, &f), m)),
    );
    read
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
