//! `--set key=value`: one value changed by its path, the whole
//! configuration checked again.

use super::errors::{errors_without_positions, ConfigFileErrors};
use super::locations::{parse_path, Seg};
use super::merge::PresetRoutes;
use super::schema::ProxyConfig;

impl ProxyConfig {
    /// Sets one value by its path, e.g. `server.listen` or
    /// `upstreams.exchange.url` (an upstream by name or by `[index]`), as
    /// an environment override would. `value` is read as a TOML value
    /// (`500`, `true`, `"text"`), or as a plain string when it is not one.
    /// The whole configuration is checked again; on error nothing changes.
    pub fn apply_override(&mut self, key_path: &str, value: &str) -> Result<(), ConfigFileErrors> {
        self.apply_overrides(&[(key_path, value)])
    }

    /// [`Self::apply_override`] for several values at once, checked once
    /// at the end: settings that only make sense together
    /// (`server.tls_cert` and `server.tls_key`) can be set one by one.
    pub fn apply_overrides(&mut self, items: &[(&str, &str)]) -> Result<(), ConfigFileErrors> {
        // `coordination` holds the complete rules: read back, they replace
        // the preset's (merging could bring back rules this configuration
        // does not have); each upstream's own setting is restored after.
        let mut complete = self.clone();
        for u in &mut complete.upstreams {
            u.preset_routes = PresetRoutes::Replace;
        }
        let mut root = toml::Table::try_from(&complete)
            .map_err(|e| ConfigFileErrors::single("", format!("cannot override: {e}")))?;
        for (key_path, value) in items {
            Self::set_in(&mut root, key_path, value)?;
        }
        let mut issues = Vec::new();
        let (mut config, _, _) = Self::from_table(root, &mut issues);
        let set_mode = items.iter().any(|(k, _)| k.ends_with("preset_routes"));
        if !set_mode {
            for (new, old) in config.upstreams.iter_mut().zip(&self.upstreams) {
                new.preset_routes = old.preset_routes;
            }
        }
        if issues.is_empty() {
            issues = config.issues();
        }
        errors_without_positions(issues)?;
        *self = config;
        Ok(())
    }

    /// Sets `key_path` to `value` in the serialized config.
    fn set_in(root: &mut toml::Table, key_path: &str, value: &str) -> Result<(), ConfigFileErrors> {
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_owned()));
        let segs = parse_path(key_path);
        if segs.is_empty() {
            return Err(ConfigFileErrors::single(key_path, "empty key path"));
        }
        let mut slot: &mut toml::Value = root
            .get_mut(match &segs[0] {
                Seg::Key(k) => k.as_str(),
                Seg::Index(_) => "",
            })
            .ok_or_else(|| ConfigFileErrors::single(key_path, "unknown section"))?;
        for (n, seg) in segs.iter().enumerate().skip(1) {
            let last = n + 1 == segs.len();
            slot = match (slot, seg) {
                (toml::Value::Array(items), Seg::Index(i)) => items.get_mut(*i),
                (toml::Value::Array(items), Seg::Key(name)) => items
                    .iter_mut()
                    .find(|u| u.get("name").and_then(toml::Value::as_str) == Some(name.as_str())),
                (toml::Value::Table(t), Seg::Key(k)) => {
                    if last && !t.contains_key(k) {
                        // A field left at its default is absent from
                        // nothing here (everything is serialized), but an
                        // optional one may be: create it.
                        t.insert(k.clone(), toml::Value::Boolean(false));
                    }
                    t.get_mut(k)
                }
                _ => None,
            }
            .ok_or_else(|| ConfigFileErrors::single(key_path, "no such field"))?;
        }
        *slot = parsed;
        Ok(())
    }
}
