//! The configuration file as every command reads it: from a path, then
//! `--set KEY=VALUE` overrides on top (`serve`, `check-config` and
//! `simulate` alike).

use std::path::Path;

use syncoord_proxy::ProxyConfig;

/// Reads and checks the configuration file at `path`; errors name the file,
/// the line and the column.
pub(crate) fn load_config(path: &Path) -> anyhow::Result<ProxyConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    ProxyConfig::from_toml_str(&text)
        .map_err(|errors| anyhow::anyhow!("{}", errors.display_with(&path.display().to_string())))
}

/// `--set KEY=VALUE` items, in order (`serve` and `simulate` alike).
pub(crate) fn apply_overrides(config: &mut ProxyConfig, items: &[String]) -> anyhow::Result<()> {
    let mut overrides = Vec::with_capacity(items.len());
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            anyhow::bail!("--set {item}: expected KEY=VALUE, e.g. server.listen=127.0.0.1:8787");
        };
        overrides.push((key.trim(), value.trim()));
    }
    // Checked once, after all of them: pairs such as server.tls_cert and
    // server.tls_key can be given one by one.
    config
        .apply_overrides(&overrides)
        .map_err(|errors| anyhow::anyhow!("--set: {errors}"))
}
