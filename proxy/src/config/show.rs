//! `syncoord config show`: the configuration in effect as TOML, each value
//! marked with where it came from, or only what differs from the presets
//! and defaults (`--diff`). Either, read back as a file, gives the same
//! configuration.

use toml::de::DeTable;

use super::errors::ConfigFileErrors;
use super::locations::{line_col, parse_path, walk, Seg};
use super::merge::{merge_keeps, PresetRoutes, RouteOrigins};
use super::schema::{ProxyConfig, UpstreamConfig};
use super::wording::join;

/// Where the running configuration came from, for [`ProxyConfig::show`].
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The file's name as shown, its text, and where each upstream's route
    /// rules came from (see [`ProxyConfig::from_toml_str_traced`]).
    file: Option<(String, String, Vec<RouteOrigins>)>,
    /// Paths `--set` (or `SYNCOORD_SET`) changed, as given.
    overrides: Vec<String>,
}

impl Provenance {
    /// Values from the file `name` whose text is `text`.
    pub fn from_file(name: &str, text: &str) -> Result<Self, ConfigFileErrors> {
        let (_, origins) = ProxyConfig::from_toml_str_traced(text)?;
        Ok(Provenance {
            file: Some((name.to_owned(), text.to_owned(), origins)),
            overrides: Vec::new(),
        })
    }

    /// Plus the key paths `--set` changed.
    pub fn with_overrides(mut self, keys: impl IntoIterator<Item = String>) -> Self {
        self.overrides.extend(keys);
        self
    }
}

impl ProxyConfig {
    /// The configuration as TOML. Each value ends with a comment saying
    /// where it came from: `--set`, `FILE:LINE`, `preset <name>` (an
    /// upstream's coordination rule the file does not set) or `default`.
    /// With `diff`, only what differs from the presets and defaults is
    /// written (and the names that say which upstream and rule it is).
    pub fn show(&self, from: &Provenance, diff: bool) -> String {
        // Rules that merging would not give back are written as what they
        // are: the complete list.
        let mut written = self.clone();
        for u in &mut written.upstreams {
            if u.preset_routes == PresetRoutes::Merge
                && !merge_keeps(u.preset, &u.coordination.routes)
            {
                u.preset_routes = PresetRoutes::Replace;
            }
        }
        let root = match toml::Table::try_from(&written) {
            Ok(root) => root,
            Err(e) => return format!("# cannot be shown: {e}\n"),
        };
        let baseline = toml::Table::try_from(self.baseline()).unwrap_or_default();
        let doc = from.file.as_ref().map(|(_, text, _)| text.as_str());
        let parsed = doc.map(|t| DeTable::parse_recoverable(t).0);
        let writer = Writer {
            config: &written,
            from,
            doc: parsed.as_ref().map(|d| d.get_ref()),
            baseline: &baseline,
            diff,
        };
        let mut out = String::new();
        writer.table(&root, "", &mut Vec::new(), &mut out);
        out
    }

    /// What the configuration would be with only its upstreams' identities
    /// (name, url, preset, prefix) and everything else at the presets'
    /// and defaults' values: what `--diff` compares with.
    fn baseline(&self) -> ProxyConfig {
        ProxyConfig {
            upstreams: self
                .upstreams
                .iter()
                .map(|u| UpstreamConfig {
                    prefix: u.prefix.clone(),
                    ..UpstreamConfig::preset(&u.name, &u.url, u.preset)
                })
                .collect(),
            ..ProxyConfig::default()
        }
    }
}

struct Writer<'a> {
    config: &'a ProxyConfig,
    from: &'a Provenance,
    doc: Option<&'a DeTable<'a>>,
    baseline: &'a toml::Table,
    diff: bool,
}

/// `key` as TOML writes it: bare when it can be.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml::Value::String(k.to_owned()).to_string()
    }
}

/// `k` under `path`.
fn at_of(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_owned()
    } else {
        join(path, k)
    }
}

fn is_table_array(v: &toml::Value) -> bool {
    matches!(v, toml::Value::Array(a) if !a.is_empty() && a.iter().all(toml::Value::is_table))
}

impl Writer<'_> {
    /// Writes `table` (at `path`, e.g. `upstreams[0].coordination`, under
    /// the header `header`): its values, then its tables, then its arrays
    /// of tables. Returns whether anything was written. In a diff, a table
    /// with nothing that differs is left out whole, and names (and an
    /// upstream's identity) are written only beside what differs.
    fn table(
        &self,
        table: &toml::Table,
        path: &str,
        header: &mut Vec<String>,
        out: &mut String,
    ) -> bool {
        let mut said = String::new();
        let mut names = String::new();
        for (k, v) in table {
            if v.is_table() || is_table_array(v) {
                continue;
            }
            let at = at_of(path, k);
            let line = format!("{} = {}  # {}\n", key(k), v, self.origin(&at));
            if !self.diff || self.differs(&at, v) {
                said.push_str(&line);
            } else if self.identifies(&at) {
                names.push_str(&line);
            }
        }
        let mut nested = String::new();
        for (k, v) in table {
            let toml::Value::Table(t) = v else { continue };
            header.push(key(k));
            let mut inner = String::new();
            if self.table(t, &at_of(path, k), header, &mut inner) {
                nested.push_str(&format!("\n[{}]\n{inner}", header.join(".")));
            }
            header.pop();
        }
        for (k, v) in table {
            let toml::Value::Array(items) = v else {
                continue;
            };
            if !is_table_array(v) {
                continue;
            }
            header.push(key(k));
            for (i, item) in items.iter().enumerate() {
                let toml::Value::Table(t) = item else {
                    continue;
                };
                let mut inner = String::new();
                let at = format!("{}[{i}]", at_of(path, k));
                // Every upstream is written: the file's list is the list.
                if self.table(t, &at, header, &mut inner) || path.is_empty() && k == "upstreams" {
                    nested.push_str(&format!("\n[[{}]]\n{inner}", header.join(".")));
                }
            }
            header.pop();
        }
        let upstream = path.starts_with("upstreams[") && !path.contains('.');
        if said.is_empty() && nested.is_empty() && !upstream {
            return false;
        }
        out.push_str(&names);
        out.push_str(&said);
        out.push_str(&nested);
        true
    }

    /// Whether `at` says which entry a diff line is about: a name, or an
    /// upstream's identity.
    fn identifies(&self, at: &str) -> bool {
        let upstream_field = at
            .strip_prefix("upstreams[")
            .and_then(|r| r.split_once("]."))
            .map(|(_, field)| field);
        matches!(
            upstream_field,
            Some("name" | "url" | "preset" | "prefix" | "preset_routes")
        ) || at.ends_with("].name")
    }

    /// Whether the value at `at` differs from the baseline's (a route rule
    /// compared with the preset rule of its name).
    fn differs(&self, at: &str, value: &toml::Value) -> bool {
        self.baseline_value(at) != Some(value)
    }

    fn baseline_value(&self, at: &str) -> Option<&toml::Value> {
        let segs = parse_path(at);
        let mut slot: Option<&toml::Value> = None;
        let mut table = Some(self.baseline);
        let mut prev_key = "";
        let mut upstream = 0;
        for seg in &segs {
            slot = match (seg, table, slot) {
                (Seg::Key(k), Some(t), _) => {
                    prev_key = k;
                    t.get(k)
                }
                (Seg::Index(i), _, Some(toml::Value::Array(items))) => {
                    if prev_key == "upstreams" {
                        upstream = *i;
                        items.get(*i)
                    } else if prev_key == "routes" {
                        let up = self.config.upstreams.get(upstream)?;
                        if up.preset_routes == PresetRoutes::Replace {
                            // No preset rule to compare with: all are said.
                            return None;
                        }
                        let name = up
                            .coordination
                            .routes
                            .get(*i)
                            .and_then(|r| r.name.as_deref());
                        items.iter().find(|r| {
                            name.is_some() && r.get("name").and_then(toml::Value::as_str) == name
                        })
                    } else {
                        items.get(*i)
                    }
                }
                _ => None,
            };
            table = slot.and_then(toml::Value::as_table);
            slot?;
        }
        slot
    }

    /// Where the value at `at` came from.
    fn origin(&self, at: &str) -> String {
        if self.set_by_override(at) {
            return "--set".into();
        }
        if let Some((name, text, origins)) = &self.from.file {
            let in_file = self.file_path(at, origins);
            if let Some(offset) = in_file.and_then(|p| self.exact(&p)) {
                return format!("{name}:{}", line_col(text, offset).0);
            }
        }
        if at.starts_with("upstreams[") && at.contains(".coordination.") {
            let index = parse_path(at)
                .get(1)
                .and_then(|s| match s {
                    Seg::Index(i) => Some(*i),
                    Seg::Key(_) => None,
                })
                .unwrap_or(0);
            if let Some(u) = self.config.upstreams.get(index) {
                let preset = toml::Value::try_from(u.preset)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                return format!("preset {preset}");
            }
        }
        "default".into()
    }

    /// `at` as the file would spell it: a route rule's index in the file.
    fn file_path(&self, at: &str, origins: &[RouteOrigins]) -> Option<String> {
        let segs = parse_path(at);
        let upstream = match segs.get(1) {
            Some(Seg::Index(i)) if matches!(segs.first(), Some(Seg::Key(k)) if k == "upstreams") => {
                *i
            }
            _ => return Some(at.to_owned()),
        };
        let prefix = format!("upstreams[{upstream}].");
        let rest = at.strip_prefix(&prefix)?;
        let mapped = origins.get(upstream)?.to_file(rest);
        // A preset rule the file does not mention is not in the file.
        (!mapped.contains("(preset)")).then(|| format!("{prefix}{mapped}"))
    }

    /// The byte offset of `path` in the file, only if every part of it is
    /// there.
    fn exact(&self, path: &str) -> Option<usize> {
        let walk = walk(self.doc?, path);
        walk.complete.then_some(walk.deepest?.start)
    }

    /// Whether a `--set` key names `at` (an upstream or a route rule by
    /// index or by name).
    fn set_by_override(&self, at: &str) -> bool {
        self.from
            .overrides
            .iter()
            .any(|key| key == at || self.by_index(key).as_deref() == Some(at))
    }

    /// A `--set` key with upstreams and route rules named turned into
    /// indexes, as the paths here are spelt.
    fn by_index(&self, key: &str) -> Option<String> {
        let mut out = String::new();
        let mut upstream: Option<&UpstreamConfig> = None;
        let mut prev = String::new();
        for seg in parse_path(key) {
            match seg {
                Seg::Key(k) if prev == "upstreams" => {
                    let i = self.config.upstreams.iter().position(|u| u.name == k)?;
                    upstream = self.config.upstreams.get(i);
                    out.push_str(&format!("[{i}]"));
                    prev = String::new();
                }
                Seg::Key(k) if prev == "routes" => {
                    let routes = &upstream?.coordination.routes;
                    let j = routes.iter().position(|r| r.name.as_deref() == Some(&k))?;
                    out.push_str(&format!("[{j}]"));
                    prev = String::new();
                }
                Seg::Key(k) => {
                    out = at_of(&out, &k);
                    prev = k;
                }
                Seg::Index(i) => {
                    if prev == "upstreams" {
                        upstream = self.config.upstreams.get(i);
                    }
                    out.push_str(&format!("[{i}]"));
                    prev = String::new();
                }
            }
        }
        Some(out)
    }
}
