//! How an upstream's `coordination` table is laid over its preset.
//!
//! Tables merge key by key (so `[scopes.public]` changes one scope and
//! keeps the others). Route rules merge by `name`: a rule whose name is a
//! preset rule's changes only the fields it sets, in the preset rule's
//! place; a rule with a new name is added, and the new rules are matched
//! before the preset's (the first match wins, so a new rule can narrow a
//! preset one). `preset_routes = "replace"` drops the preset's rules
//! instead. Any other array (`priorities`, `methods`, `scopes` of a
//! route) replaces the preset's.

use serde::{Deserialize, Serialize};
use syncoord_core::Config;

use super::repair::read_all;
use super::schema::Preset;

/// What a `routes` list in the file does to the preset's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetRoutes {
    /// Merge by `name` (the default): the file's rules override the
    /// preset rules of the same name and add the others, before them.
    #[default]
    Merge,
    /// The file's rules are all there is: the preset's are dropped.
    Replace,
}

impl PresetRoutes {
    /// True for the default, so that it is left out when written back.
    pub(super) fn is_merge(&self) -> bool {
        *self == PresetRoutes::Merge
    }
}

/// What is wrong with an upstream's `coordination` table once merged over
/// its preset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("coordination.{path}: {message}")]
pub(super) struct CoordinationError {
    /// Path of the field within `coordination`; empty for the table itself.
    pub(super) path: String,
    pub(super) message: String,
}

/// Where each effective route rule came from: `Some(i)` is the file's
/// `routes[i]` (alone, or laid over the preset rule of its name), `None`
/// a preset rule the file does not mention (named, for error messages).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct RouteOrigins(pub(super) Vec<(Option<usize>, String)>);

/// The preset with the user's table merged over it, deserialized (what
/// could be read, see [`read_all`]), where each route rule came from, and
/// every problem met.
pub(super) fn merged_coordination(
    preset: Preset,
    mode: PresetRoutes,
    mut user: toml::Table,
) -> (Option<Config>, RouteOrigins, Vec<CoordinationError>) {
    let fail = |path: &str, message: String| {
        (
            None,
            RouteOrigins::default(),
            vec![CoordinationError {
                path: path.to_owned(),
                message,
            }],
        )
    };
    let mut base = match toml::Table::try_from(preset.config()) {
        Ok(base) => base,
        Err(e) => return fail("", format!("preset cannot be merged: {e}")),
    };
    let preset_routes = match base.remove("routes") {
        Some(toml::Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let user_routes = match user.remove("routes") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            return fail(
                "routes",
                "must be an array of tables ([[...coordination.routes]])".into(),
            )
        }
    };
    let (routes, origins) = match merge_routes(preset_routes, user_routes, mode) {
        Ok(merged) => merged,
        Err(e) => return (None, RouteOrigins::default(), vec![e]),
    };
    deep_merge(&mut base, user);
    base.insert("routes".into(), toml::Value::Array(routes));
    let (config, problems) = read_all::<Config>(toml::Value::Table(base));
    let problems = problems
        .into_iter()
        .map(|(path, message)| CoordinationError { path, message })
        .collect();
    (config, origins, problems)
}

/// Whether `routes`, read back as a file's rules with `preset_routes =
/// "merge"`, give `routes` again: false when they leave out preset rules,
/// reorder them, or unset a field a preset rule sets (a configuration
/// built in code, or with `replace`). Written back, such rules need
/// `preset_routes = "replace"`.
pub(super) fn merge_keeps(preset: Preset, routes: &[syncoord_core::config::RouteRule]) -> bool {
    let as_toml = |rules: &[syncoord_core::config::RouteRule]| {
        rules
            .iter()
            .map(|r| toml::Value::try_from(r).ok())
            .collect::<Option<Vec<_>>>()
    };
    let (Some(base), Some(mine)) = (as_toml(&preset.config().routes), as_toml(routes)) else {
        return false;
    };
    let Ok((merged, _)) = merge_routes(base, mine.clone(), PresetRoutes::Merge) else {
        return false;
    };
    merged == mine
}

/// The route rules in effect: the file's new rules first, in file order,
/// then the preset's, each laid under the file's rule of the same name.
fn merge_routes(
    preset: Vec<toml::Value>,
    user: Vec<toml::Value>,
    mode: PresetRoutes,
) -> Result<(Vec<toml::Value>, RouteOrigins), CoordinationError> {
    let name_of = |v: &toml::Value| {
        v.get("name")
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    };
    let mut preset: Vec<(Option<String>, toml::Value, Option<usize>)> = match mode {
        PresetRoutes::Merge => preset.into_iter().map(|v| (name_of(&v), v, None)).collect(),
        PresetRoutes::Replace => Vec::new(),
    };
    let mut added = Vec::new();
    for (i, rule) in user.into_iter().enumerate() {
        let toml::Value::Table(over) = rule else {
            return Err(CoordinationError {
                path: format!("routes[{i}]"),
                message: "must be a table (a [[...coordination.routes]] entry)".into(),
            });
        };
        let name = over.get("name").and_then(toml::Value::as_str);
        let slot = name.and_then(|n| {
            preset
                .iter_mut()
                .find(|(pn, _, from)| from.is_none() && pn.as_deref() == Some(n))
        });
        match slot {
            Some((_, toml::Value::Table(base), from)) => {
                deep_merge(base, over);
                *from = Some(i);
            }
            _ => added.push((name.map(str::to_owned), toml::Value::Table(over), Some(i))),
        }
    }
    let (routes, origins) = added
        .into_iter()
        .chain(preset)
        .map(|(name, rule, from)| {
            let shown = name.unwrap_or_else(|| {
                rule.get("path")
                    .and_then(toml::Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            });
            (rule, (from, shown))
        })
        .unzip();
    Ok((routes, RouteOrigins(origins)))
}

/// `over` merged into `base`: tables key by key, anything else replaced.
pub(super) fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl RouteOrigins {
    /// `field` (a path within an upstream, `coordination.routes[j]...`)
    /// with the effective index `j` turned into the file's: the rule's
    /// own entry, or, for a preset rule the file does not mention, its
    /// name (`routes[name]`, located at `routes` or the table above).
    pub(super) fn to_file(&self, field: &str) -> String {
        const AT: &str = "coordination.routes[";
        let Some(start) = field.find(AT) else {
            return field.to_owned();
        };
        let open = start + AT.len();
        let Some(close) = field[open..].find(']').map(|c| open + c) else {
            return field.to_owned();
        };
        let Ok(j) = field[open..close].parse::<usize>() else {
            return field.to_owned();
        };
        let inner = match self.0.get(j) {
            Some((Some(i), _)) => i.to_string(),
            Some((None, name)) => format!("{name} (preset)"),
            None => return field.to_owned(),
        };
        format!("{}{inner}{}", &field[..open], &field[close..])
    }
}
