//! Which proxy the Worker runs: the same TOML config file as the native
//! daemon, given as the `SYNCOORD_CONFIG` var (TOML text), or a single
//! upstream URL as `SYNCOORD_UPSTREAM_URL` (tests, quick starts), or the
//! built-in defaults (Coinbase Advanced Trade and Exchange). Every way is
//! checked with [`ProxyConfig::validate_for_edge`]: a route drawing from a
//! global and a per-credential scope at once cannot live in one object.
//!
//! Pure: the Worker reads the vars and hands their text here, so the rules
//! are unit-tested natively.

use syncoord_core::proxy::{ConfigFileErrors, Proxy, ProxyConfig};

/// wrangler var holding the whole config file (TOML).
pub const CONFIG_VAR: &str = "SYNCOORD_CONFIG";
/// wrangler var naming one upstream base URL (replaces the default upstreams).
pub const UPSTREAM_URL_VAR: &str = "SYNCOORD_UPSTREAM_URL";
/// What the errors of the built-in default config are attributed to.
const DEFAULTS: &str = "built-in defaults";

/// Why the Worker cannot serve with the configured vars.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config (from the named var, or the defaults) is invalid; each
    /// problem names its field, and its line within the var's text.
    #[error("{}", errors.display_with(source_name))]
    Config {
        source_name: &'static str,
        errors: ConfigFileErrors,
    },
    #[error("set {CONFIG_VAR} or {UPSTREAM_URL_VAR}, not both")]
    Both,
}

impl SettingsError {
    fn config(source_name: &'static str) -> impl FnOnce(ConfigFileErrors) -> SettingsError {
        move |errors| SettingsError::Config {
            source_name,
            errors,
        }
    }
}

/// A var's value, `None` when unset or blank.
fn set(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.trim().is_empty())
}

/// Builds the proxy from the vars' values (`None` or blank means unset).
pub fn load(config_toml: Option<&str>, upstream_url: Option<&str>) -> Result<Proxy, SettingsError> {
    let (config, source) = match (set(config_toml), set(upstream_url)) {
        (Some(_), Some(_)) => return Err(SettingsError::Both),
        (Some(text), None) => (
            ProxyConfig::from_toml_str_for_edge(text).map_err(SettingsError::config(CONFIG_VAR))?,
            CONFIG_VAR,
        ),
        (None, Some(url)) => (ProxyConfig::single_upstream(url.trim()), UPSTREAM_URL_VAR),
        (None, None) => (ProxyConfig::default(), DEFAULTS),
    };
    config
        .validate_for_edge()
        .map_err(SettingsError::config(source))?;
    Proxy::new(config).map_err(SettingsError::config(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "[[upstreams]]\nname = \"mock\"\nurl = \"http://127.0.0.1:9\"\npreset = \"coinbase-advanced\"\n";

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
    fn a_bad_upstream_url_names_the_var() {
        let err = load(None, Some("ftp://127.0.0.1:9")).expect_err("not http");
        assert!(err.to_string().starts_with(UPSTREAM_URL_VAR), "{err}");
    }

    #[test]
    fn config_text_is_parsed() {
        let proxy = load(Some(ONE), None).expect("loads");
        assert_eq!(proxy.config().upstreams.len(), 1);
        assert_eq!(proxy.config().upstreams[0].name, "mock");
    }

    #[test]
    fn broken_config_text_names_the_var_and_line() {
        let err = load(Some("\n[[upstreams]\n"), None).expect_err("not TOML");
        let text = err.to_string();
        assert!(text.starts_with(&format!("{CONFIG_VAR}:2")), "{text}");
    }

    #[test]
    fn both_vars_are_ambiguous() {
        assert!(matches!(
            load(Some(ONE), Some("http://127.0.0.1:9")),
            Err(SettingsError::Both)
        ));
    }
}
