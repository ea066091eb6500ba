//! Which proxy the Worker runs: the same TOML config file as the native
//! daemon, given as the `SYNCOORD_CONFIG` var (TOML text), or a single
//! upstream URL as `SYNCOORD_UPSTREAM_URL` (tests, quick starts), or the
//! built-in defaults (Coinbase Advanced Trade and Exchange). Every way is
//! checked with [`ProxyConfig::validate_for_edge`]: a route drawing from a
//! global and a per-credential scope at once cannot live in one object.
//!
//! Signing mode's secrets (`private_key_env`, `secret_env`,
//! `passphrase_env`, `token_env`) are Worker secrets (`wrangler secret
//! put NAME`, or `.dev.vars` / `--env-file` under `wrangler dev`), read
//! through the [`SecretSource`] the Worker passes in; the config names
//! them and never holds them. A config naming a file is refused: a Worker
//! has no files.
//!
//! Pure: the Worker reads the vars and hands their text here, so the rules
//! are unit-tested natively.

use syncoord_proxy::{ConfigFileErrors, Proxy, ProxyConfig};
use syncoord_wire::SecretSource;

/// wrangler var holding the whole config file (TOML).
pub const CONFIG_VAR: &str = "SYNCOORD_CONFIG";
/// wrangler var naming one upstream base URL (replaces the default upstreams).
pub const UPSTREAM_URL_VAR: &str = "SYNCOORD_UPSTREAM_URL";
/// What the errors of the built-in default config are attributed to.
const DEFAULTS: &str = "built-in defaults";

/// `cache.max_bytes` on the edge when the config does not set it. The
/// core's default (64 MiB, sized for a daemon) is half of a Worker
/// isolate's 128 MB, and every shard (one per credential on private
/// routes) has a core and a cache of its own, several of them possibly in
/// one isolate. A value the config sets is kept as written.
pub const EDGE_CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;

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

/// Builds the proxy from the vars' values (`None` or blank means unset),
/// reading the secrets the config names through `secrets`.
pub fn load(
    config_toml: Option<&str>,
    upstream_url: Option<&str>,
    secrets: &dyn SecretSource,
) -> Result<Proxy, SettingsError> {
    let (mut config, source, explicit) = match (set(config_toml), set(upstream_url)) {
        (Some(_), Some(_)) => return Err(SettingsError::Both),
        (Some(text), None) => (
            ProxyConfig::from_toml_str_for_edge(text).map_err(SettingsError::config(CONFIG_VAR))?,
            CONFIG_VAR,
            cache_sizes_set(text),
        ),
        (None, Some(url)) => (
            ProxyConfig::single_upstream(url.trim()),
            UPSTREAM_URL_VAR,
            Vec::new(),
        ),
        (None, None) => (ProxyConfig::default(), DEFAULTS, Vec::new()),
    };
    for (k, u) in config.upstreams.iter_mut().enumerate() {
        if !explicit.get(k).copied().unwrap_or(false) {
            u.coordination.cache.max_bytes = EDGE_CACHE_MAX_BYTES;
        }
    }
    config
        .validate_for_edge()
        .map_err(SettingsError::config(source))?;
    Proxy::with_secrets(config, secrets).map_err(SettingsError::config(source))
}

/// For each `[[upstreams]]` entry of a config file, in order, whether it
/// sets `coordination.cache.max_bytes` itself. (The parsed config cannot
/// tell: it merges the file over the preset and the core's defaults.) The
/// text has already parsed as a valid config when this is asked.
fn cache_sizes_set(text: &str) -> Vec<bool> {
    let Ok(root) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(upstreams) = root.get("upstreams").and_then(toml::Value::as_array) else {
        return Vec::new();
    };
    upstreams
        .iter()
        .map(|u| {
            u.get("coordination")
                .and_then(|c| c.get("cache"))
                .and_then(|c| c.get("max_bytes"))
                .is_some()
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use syncoord_wire::{NoSecrets, SecretFile, SecretFileError};
    use zeroize::Zeroizing;

    /// Worker secrets, as a map.
    pub(crate) struct Secrets(pub(crate) HashMap<&'static str, &'static str>);

    impl SecretSource for Secrets {
        fn env(&self, name: &str) -> Option<Zeroizing<String>> {
            self.0.get(name).map(|v| Zeroizing::new((*v).to_owned()))
        }
        fn file(&self, path: &str) -> Result<SecretFile, SecretFileError> {
            panic!("the Worker read file {path}")
        }
    }

    /// A P-256 key for tests only (SEC1 PEM).
    pub(crate) const ES256_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEINe1uIkIv92ojbAppRAN5+xijQdnFP91PvSQs3brk596oAoGCCqGSM49
AwEHoUQDQgAEhXh75bpstKmC+aDpDoSDbZNy7Y2ohynHDfHpDr43q4lC3Xb2TLbE
DbB1a+a3D3f8z8DkznlPcOS0ur5QKfn8WA==
-----END EC PRIVATE KEY-----
";
    /// An Ed25519 seed for tests only (base64 of 32 bytes).
    pub(crate) const ED25519_B64: &str = "mJLWHmNDl7X/m4rPgUxuoWt0Yc5/XO1PbaUHVlsNfak=";
    /// An Exchange secret for tests only (base64).
    pub(crate) const EXCHANGE_SECRET_B64: &str = "szq3+KEYIuQ5b6CzQXXhXn8r/KbYdpmc1MDNYhbFRNw=";

    /// One signed upstream with an ES256, an Ed25519 and (on a second
    /// upstream) an Exchange credential, and a client for each.
    pub(crate) const SIGNED: &str = r#"
[[upstreams]]
name = "advanced"
url = "http://127.0.0.1:9/base"
preset = "coinbase-advanced"

[[upstreams]]
name = "exchange"
url = "http://127.0.0.1:10"
preset = "coinbase-exchange"
prefix = "/exchange"

[[credentials]]
name = "desk-es"
upstream = "advanced"
kind = "coinbase-cdp"
key_name = "organizations/o/apiKeys/es"
private_key_env = "CDP_ES256_KEY"

[[credentials]]
name = "desk-ed"
upstream = "advanced"
kind = "coinbase-cdp"
key_name = "organizations/o/apiKeys/ed"
private_key_env = "CDP_ED25519_KEY"

[[credentials]]
name = "exch"
upstream = "exchange"
kind = "coinbase-exchange"
key = "exchange-key"
secret_env = "EXCHANGE_SECRET"
passphrase_env = "EXCHANGE_PASSPHRASE"

[[clients]]
name = "bot-es"
token_env = "BOT_ES_TOKEN"
credentials = ["desk-es", "exch"]

[[clients]]
name = "bot-ed"
token_env = "BOT_ED_TOKEN"
credentials = ["desk-ed"]
"#;

    pub(crate) fn worker_secrets() -> Secrets {
        Secrets(HashMap::from([
            ("CDP_ES256_KEY", ES256_PEM),
            ("CDP_ED25519_KEY", ED25519_B64),
            ("EXCHANGE_SECRET", EXCHANGE_SECRET_B64),
            ("EXCHANGE_PASSPHRASE", "pass phrase"),
            ("BOT_ES_TOKEN", "7c1e9a40d2b35f68e0a4c7d91b3f5e26"),
            ("BOT_ED_TOKEN", "e4b29d07a1c6f35d8b0e2a9c71f4d6b3"),
        ]))
    }

    const ONE: &str = "[[upstreams]]\nname = \"mock\"\nurl = \"http://127.0.0.1:9\"\npreset = \"coinbase-advanced\"\n";

    /// `config` with the edge's cache size wherever the config did not set one.
    fn on_edge(mut config: ProxyConfig) -> ProxyConfig {
        for u in &mut config.upstreams {
            u.coordination.cache.max_bytes = EDGE_CACHE_MAX_BYTES;
        }
        config
    }

    #[test]
    fn no_vars_give_the_default_upstreams() {
        let proxy = load(None, Some("  "), &NoSecrets).expect("defaults load");
        assert_eq!(proxy.config(), &on_edge(ProxyConfig::default()));
    }

    #[test]
    fn an_upstream_url_gives_a_single_upstream() {
        let proxy = load(Some(""), Some("http://127.0.0.1:9"), &NoSecrets).expect("loads");
        assert_eq!(
            proxy.config(),
            &on_edge(ProxyConfig::single_upstream("http://127.0.0.1:9"))
        );
    }

    #[test]
    fn the_edge_cache_default_applies_only_where_the_file_sets_none() {
        let text = format!(
            "{ONE}[[upstreams]]\nname = \"other\"\nurl = \"http://127.0.0.1:10\"\nprefix = \"/o\"\n\
             [upstreams.coordination.cache]\nmax_bytes = 100000\n"
        );
        let proxy = load(Some(&text), None, &NoSecrets).expect("loads");
        let sizes: Vec<usize> = proxy
            .config()
            .upstreams
            .iter()
            .map(|u| u.coordination.cache.max_bytes)
            .collect();
        assert_eq!(sizes, [EDGE_CACHE_MAX_BYTES, 100_000]);
        assert!(EDGE_CACHE_MAX_BYTES < syncoord_core::Config::default().cache.max_bytes);
    }

    #[test]
    fn a_bad_upstream_url_names_the_var() {
        let err = load(None, Some("ftp://127.0.0.1:9"), &NoSecrets).expect_err("not http");
        assert!(err.to_string().starts_with(UPSTREAM_URL_VAR), "{err}");
    }

    #[test]
    fn config_text_is_parsed() {
        let proxy = load(Some(ONE), None, &NoSecrets).expect("loads");
        assert_eq!(proxy.config().upstreams.len(), 1);
        assert_eq!(proxy.config().upstreams[0].name, "mock");
    }

    #[test]
    fn broken_config_text_names_the_var_and_line() {
        let err = load(Some("\n[[upstreams]\n"), None, &NoSecrets).expect_err("not TOML");
        let text = err.to_string();
        assert!(text.starts_with(&format!("{CONFIG_VAR}:2")), "{text}");
    }

    #[test]
    fn both_vars_are_ambiguous() {
        assert!(matches!(
            load(Some(ONE), Some("http://127.0.0.1:9"), &NoSecrets),
            Err(SettingsError::Both)
        ));
    }

    #[test]
    fn the_readme_deployment_example_loads() {
        let text = r#"
[server]
request_timeout_secs = 25
[[upstreams]]
name = "advanced"
url = "https://api.coinbase.com"
preset = "coinbase-advanced"
[upstreams.coordination.cache]
max_bytes = 16777216
"#;
        let proxy = load(Some(text), None, &NoSecrets).expect("loads");
        let u = &proxy.config().upstreams[0];
        assert_eq!(u.coordination.cache.max_bytes, 16 * 1024 * 1024);
        assert_eq!(proxy.config().server.request_timeout_secs, 25.0);
    }

    #[test]
    fn credentials_are_read_from_the_workers_secrets() {
        let proxy = load(Some(SIGNED), None, &worker_secrets()).expect("loads");
        let names: Vec<&str> = proxy.keyring().iter().map(|s| s.name()).collect();
        assert_eq!(names, ["desk-ed", "desk-es", "exch"]);
        let algs: Vec<&str> = proxy.keyring().iter().map(|s| s.algorithm()).collect();
        assert_eq!(algs, ["EdDSA", "ES256", "HMAC-SHA256"]);
    }

    #[test]
    fn a_missing_secret_names_the_field_and_the_secret_never_its_value() {
        let mut secrets = worker_secrets();
        secrets.0.remove("CDP_ED25519_KEY");
        let err = load(Some(SIGNED), None, &secrets).expect_err("a key is missing");
        let text = err.to_string();
        assert!(
            text.contains("credentials[1].private_key_env") && text.contains("CDP_ED25519_KEY"),
            "{text}"
        );
        assert!(
            !text.contains(ES256_PEM.lines().nth(1).unwrap_or("-")),
            "{text}"
        );
        assert!(load(Some(SIGNED), None, &NoSecrets).is_err());
    }

    #[test]
    fn a_key_file_is_refused_on_the_edge() {
        let text = SIGNED.replace(
            "private_key_env = \"CDP_ES256_KEY\"",
            "private_key_file = \"/etc/syncoord/es.pem\"",
        );
        assert_ne!(text, SIGNED);
        let err = load(Some(&text), None, &worker_secrets()).expect_err("no files on the edge");
        assert!(err.to_string().contains("private_key_file"), "{err}");
    }
}
