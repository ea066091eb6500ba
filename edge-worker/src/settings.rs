//! Which proxy the Worker runs: the same TOML config file as the native
//! daemon, given as the `SYNCOORD_CONFIG` var (TOML text), or a single
//! upstream URL as `SYNCOORD_UPSTREAM_URL` (tests, quick starts), or the
//! built-in defaults (Coinbase Advanced Trade and Exchange).
//!
//! Pure: the Worker reads the vars and hands their text here, so the rules
//! are unit-tested natively.

use crate::proxy_shim::{ConfigFileErrors, Proxy, ProxyConfig};

/// wrangler var holding the whole config file (TOML).
pub const CONFIG_VAR: &str = "SYNCOORD_CONFIG";
/// wrangler var naming one upstream base URL (replaces the default upstreams).
pub const UPSTREAM_URL_VAR: &str = "SYNCOORD_UPSTREAM_URL";

/// Why the Worker cannot start serving with the configured vars.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("var {CONFIG_VAR}: {0}")]
    Config(ConfigFileErrors),
    #[error("var {UPSTREAM_URL_VAR}: {0}")]
    UpstreamUrl(ConfigFileErrors),
    #[error("set {CONFIG_VAR} or {UPSTREAM_URL_VAR}, not both")]
    Both,
}

/// A var's value, `None` when unset or blank.
fn set(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

/// Builds the proxy from the vars' values (`None` or blank means unset).
pub fn load(config_toml: Option<&str>, upstream_url: Option<&str>) -> Result<Proxy, SettingsError> {
    match (set(config_toml), set(upstream_url)) {
        (Some(_), Some(_)) => Err(SettingsError::Both),
        (Some(_), None) => {
            // The untrimmed text, so that line numbers in errors match the var.
            let text = config_toml.unwrap_or_default();
            let config = ProxyConfig::from_toml_str(text).map_err(SettingsError::Config)?;
            config.validate_for_edge().map_err(SettingsError::Config)?;
            Proxy::new(config).map_err(SettingsError::Config)
        }
        (None, Some(url)) => {
            let config = ProxyConfig::single_upstream(url);
            config
                .validate_for_edge()
                .map_err(SettingsError::UpstreamUrl)?;
            Proxy::new(config).map_err(SettingsError::UpstreamUrl)
        }
        (None, None) => Proxy::new(ProxyConfig::default()).map_err(SettingsError::Config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_vars_give_the_default_upstreams() {
        let proxy = load(None, Some("  ")).expect("defaults load");
        assert_eq!(proxy.config(), &ProxyConfig::default());
    }

    #[test]
    fn an_upstream_url_gives_a_single_upstream() {
        let proxy = load(Some(""), Some("http://127.0.0.1:9")).expect("loads");
        assert_eq!(
            proxy.config(),
            &ProxyConfig::single_upstream("http://127.0.0.1:9")
        );
    }

    #[test]
    fn config_text_is_parsed() {
        let text = "[[upstreams]]\nname = \"mock\"\nurl = \"http://127.0.0.1:9\"\n";
        let proxy = load(Some(text), None).expect("loads");
        assert_eq!(proxy.config().upstreams.len(), 1);
        assert_eq!(proxy.config().upstreams[0].name, "mock");
    }

    #[test]
    fn a_listener_is_refused_on_the_edge() {
        let text = "[[upstreams]]\nname = \"mock\"\nurl = \"http://127.0.0.1:9\"\nlisten = \"127.0.0.1:8080\"\n";
        let err = load(Some(text), None).expect_err("listen has no meaning in a Worker");
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn broken_config_text_names_the_var() {
        let err = load(Some("[[upstreams]\n"), None).expect_err("not TOML");
        assert!(err.to_string().starts_with(CONFIG_VAR), "{err}");
    }

    #[test]
    fn both_vars_are_ambiguous() {
        let text = "[[upstreams]]\nname = \"mock\"\nurl = \"http://127.0.0.1:9\"\n";
        assert!(matches!(
            load(Some(text), Some("http://127.0.0.1:9")),
            Err(SettingsError::Both)
        ));
    }
}
