//! What the file holds: the serde types of `[server]`, `[[upstreams]]`
//! and the whole file, and the presets an upstream starts from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use syncoord_core::config::{coinbase, secs, Config, Keying, ScopeConfig};
use syncoord_core::Duration;

use super::merge::{merged_coordination, CoordinationError, PresetRoutes, RouteOrigins};
use crate::cluster::ClusterSettings;
use crate::signing::{ClientSpec, CredentialSpec, SigningSettings};

/// Host settings: where to listen, how much to accept, how long to wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the main listener: an IP address and port (names such
    /// as `localhost` are not resolved); port 0 picks a free one.
    pub listen: String,
    /// Request line plus headers, at most (beyond it, `431`).
    pub max_header_bytes: usize,
    /// Header fields in one request, at most (beyond it, `431`).
    pub max_headers: usize,
    /// Request body, at most (beyond it, `413`).
    pub max_body_bytes: usize,
    /// Client connections open at once, at most. At the bound the
    /// connection idle the longest is closed for a new one; with none
    /// idle, the new one is answered `503`. Lowered to what the process's
    /// file descriptor limit allows.
    pub max_connections: usize,
    /// Event-loop threads that read and answer connections (cache hits
    /// are answered there). Unset: one per core.
    pub event_loops: Option<usize>,
    /// Microseconds an event loop keeps polling after an event before it
    /// sleeps: a bot that sends its next request within it is answered
    /// without a thread wake-up. Costs CPU only while traffic flows (at
    /// most this long per burst, per loop). 0: sleep at once.
    pub busy_poll_us: usize,
    /// How long a kept-alive connection may sit idle between requests.
    pub idle_timeout_secs: f64,
    /// A request's header section must be complete this long after its
    /// first byte (or after the connection opened, for its first request);
    /// otherwise the connection is closed (`408`).
    pub header_timeout_secs: f64,
    /// A request's body must be complete this long after its header
    /// section; otherwise `408` and close.
    pub body_timeout_secs: f64,
    /// A client must take an answer within this long; otherwise its
    /// connection is closed.
    pub write_timeout_secs: f64,
    /// How long a bot's request may wait for its answer (queueing, retries
    /// and the upstream call included) before the host answers 504.
    pub request_timeout_secs: f64,
    /// On shutdown, how long requests already accepted may take to finish.
    pub drain_secs: f64,
    /// Threads (native) making upstream calls concurrently.
    pub upstream_threads: usize,
    /// Connecting to upstream (TCP and TLS), per attempt.
    pub upstream_connect_timeout_secs: f64,
    /// One upstream call, from sending to the last byte of the answer.
    pub upstream_timeout_secs: f64,
    /// Upstream response body, at most (a bigger one is a transport error).
    pub max_response_bytes: usize,
    /// Where the local certificate authority lives (`ca.pem`, the
    /// certificate clients trust; `ca.key`, mode 0600), created on first
    /// use. It mints the leaf certificates of CONNECT interception and,
    /// without `tls_cert`, of `tls_listen`. Default: a per-user data
    /// folder (`$XDG_DATA_HOME/syncoord/ca`, else `~/.local/share/syncoord/ca`).
    pub ca_dir: Option<String>,
    /// A file where the limiter's learned rates are kept across restarts
    /// (JSON, written at shutdown and read at start, docs/learning.md), so
    /// a restarted daemon does not learn upstream's limits all over again.
    /// Default: none (a restart starts from the configured rates).
    pub state_file: Option<String>,
    /// A TLS listener (`ip:port`) for clients that insist on an `https`
    /// base URL; requests on it are routed as on `listen`.
    pub tls_listen: Option<String>,
    /// PEM certificate chain for `tls_listen` (with `tls_key`); without
    /// them the local CA's leaf for `localhost` and `127.0.0.1` is used.
    pub tls_cert: Option<String>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<String>,
    /// `Host` names the daemon answers for besides its own: any IP
    /// address, `localhost` (and `*.localhost`), names without a dot
    /// (machine and container names) and the configured
    /// upstreams' hosts are always accepted; other names are refused
    /// `403 host_not_allowed`, so a web page that rebinds its name to
    /// 127.0.0.1 reads nothing. `"*"` accepts every name.
    pub allowed_hosts: Vec<String>,
    /// A listener (`ip:port`) of its own for the dashboard, stats and
    /// metrics. Set, they are served there only (and with
    /// `admin_token_env`, to requests carrying the token); unset, they are
    /// served on loopback listeners, and elsewhere only with the token.
    /// Health stays open everywhere.
    pub admin_listen: Option<String>,
    /// Env var holding the admin token (at least 32 characters): requests
    /// carrying it (`Authorization: Bearer <token>` or
    /// `X-Syncoord-Admin-Token`) reach the admin endpoints on any listener.
    pub admin_token_env: Option<String>,
    /// How log lines are written: `text` (for people) or `json` (one
    /// object per line, for log shippers). `--log-format` (or
    /// `SYNCOORD_LOG_FORMAT`) wins over it. Default: `text`. Read at start.
    pub log_format: Option<LogFormat>,
    /// Hosts a `CONNECT` may open a plain TCP tunnel to, untouched (no
    /// interception, no cache): `host:port`, `*.example.com:443`, or `*`
    /// (only when every listener is on loopback). Configured upstreams
    /// are intercepted whatever this says; anything else is `403`.
    /// Default: none.
    pub tunnel: Vec<String>,
}

/// How log lines are written (`[server] log_format`, `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO target: message key=value`.
    Text,
    /// One JSON object per line: timestamp, level, fields, target.
    Json,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8787".into(),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            max_connections: 10_000,
            event_loops: None,
            busy_poll_us: 100,
            idle_timeout_secs: 60.0,
            header_timeout_secs: 10.0,
            body_timeout_secs: 30.0,
            write_timeout_secs: 30.0,
            request_timeout_secs: 30.0,
            drain_secs: 10.0,
            upstream_threads: 8,
            upstream_connect_timeout_secs: 5.0,
            upstream_timeout_secs: 20.0,
            max_response_bytes: 16 * 1024 * 1024,
            ca_dir: None,
            state_file: None,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            allowed_hosts: Vec::new(),
            admin_listen: None,
            admin_token_env: None,
            log_format: None,
            tunnel: Vec::new(),
        }
    }
}

/// The `*_secs` fields as durations, as the hosts use them.
impl ServerSettings {
    /// `idle_timeout_secs`.
    pub fn idle_timeout(&self) -> Duration {
        secs(self.idle_timeout_secs)
    }
    /// `header_timeout_secs`.
    pub fn header_timeout(&self) -> Duration {
        secs(self.header_timeout_secs)
    }
    /// `body_timeout_secs`.
    pub fn body_timeout(&self) -> Duration {
        secs(self.body_timeout_secs)
    }
    /// `write_timeout_secs`.
    pub fn write_timeout(&self) -> Duration {
        secs(self.write_timeout_secs)
    }
    /// `request_timeout_secs`.
    pub fn request_timeout(&self) -> Duration {
        secs(self.request_timeout_secs)
    }
    /// `drain_secs`.
    pub fn drain(&self) -> Duration {
        secs(self.drain_secs)
    }
    /// `upstream_connect_timeout_secs`.
    pub fn upstream_connect_timeout(&self) -> Duration {
        secs(self.upstream_connect_timeout_secs)
    }
    /// `upstream_timeout_secs`.
    pub fn upstream_timeout(&self) -> Duration {
        secs(self.upstream_timeout_secs)
    }
}

/// Which ready-made coordination rules an upstream starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Preset {
    /// [`coinbase::advanced_trade`].
    #[serde(rename = "coinbase-advanced")]
    CoinbaseAdvanced,
    /// [`coinbase::exchange`].
    #[serde(rename = "coinbase-exchange")]
    CoinbaseExchange,
    /// A generic API: the Coinbase priority classes, no route rules, one
    /// `global` scope of 10 calls/s (burst 10), responses cached per
    /// credential. Say what you know in `coordination`.
    #[default]
    #[serde(rename = "none")]
    None,
}

impl Preset {
    /// The coordination rules the preset starts an upstream with.
    pub fn config(self) -> Config {
        match self {
            Preset::CoinbaseAdvanced => coinbase::advanced_trade(),
            Preset::CoinbaseExchange => coinbase::exchange(),
            Preset::None => {
                let mut c = coinbase::advanced_trade();
                c.routes.clear();
                c.credential = Default::default();
                c.scopes = BTreeMap::from([(
                    "global".to_owned(),
                    ScopeConfig {
                        per: Keying::Global,
                        ..ScopeConfig::default()
                    },
                )]);
                c.defaults.scopes = vec!["global".into()];
                c
            }
        }
    }
}

/// One upstream API and how requests reach it.
///
/// Deserializing merges the file's `coordination` table over the preset
/// (tables key by key, route rules by `name`, other arrays replace; see
/// the `merge` module), so `coordination` here is the complete, effective
/// configuration.
///
/// `name` and `url` are required; `preset` defaults to `none`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawUpstream")]
pub struct UpstreamConfig {
    /// Names the upstream in stats, metrics and logs (letters, digits, `-`, `_`).
    pub name: String,
    /// Base URL: `http(s)://host[:port][/base/path]`, no query.
    pub url: String,
    /// The rules `coordination` is merged over (default `none`).
    pub preset: Preset,
    /// Requests whose path starts with this segment prefix (e.g.
    /// `/exchange`) go to this upstream, prefix stripped.
    pub prefix: Option<String>,
    /// A dedicated listener (`ip:port`) that fronts only this upstream:
    /// paths arrive there as upstream knows them (no prefix to strip), so
    /// a bot can use it as the API's base URL unchanged.
    pub listen: Option<String>,
    /// Forward request headers whose names hold an underscore. Off by
    /// default, as in nginx (`underscores_in_headers off`): CGI-style
    /// servers read `CB_ACCESS_KEY` and `CB-ACCESS-KEY` as one header,
    /// so a name with `_` could carry the credential upstream reads while
    /// the identity is taken from the `-` spelling.
    pub underscores_in_headers: bool,
    /// The origins (`scheme://host[:port]`, optionally a base path) this
    /// upstream answers for in absolute-form, `proxyUrl`-form and CONNECT
    /// requests. Empty: its own `url`. `url = "http://127.0.0.1:9000"`
    /// with `origins = ["https://api.coinbase.com"]` lets bots that sign
    /// for the real host run against a local mock or a sandbox.
    pub origins: Vec<String>,
    /// Extra trusted roots (PEM) for this upstream's TLS: a sandbox, a
    /// corporate proxy. Native host only.
    pub ca_file: Option<String>,
    /// Signing mode on this upstream (`[upstreams.signing]`): whether
    /// bots without a token pass, how long signed calls may wait.
    pub signing: SigningSettings,
    /// What the file's `coordination.routes` do to the preset's rules:
    /// `merge` by name (the default) or `replace` them.
    #[serde(skip_serializing_if = "PresetRoutes::is_merge")]
    pub preset_routes: PresetRoutes,
    /// The effective coordination rules: the preset's, with the file's
    /// `coordination` table merged over them.
    pub coordination: Config,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// `[server]`: the host's listeners and limits.
    pub server: ServerSettings,
    /// `[[upstreams]]`: the APIs requests are forwarded to.
    pub upstreams: Vec<UpstreamConfig>,
    /// Daemons that share budgets and answers through Redis; absent, a
    /// daemon coordinates alone. The Worker ignores it (its Durable
    /// Objects already hold one global budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSettings>,
    /// Keys syncoord holds and signs with (signing mode); each names where
    /// its secret is, never the secret.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialSpec>,
    /// Bots that authenticate with a token, and the credentials each may use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientSpec>,
}

impl Default for ProxyConfig {
    /// Coinbase Advanced Trade as the default upstream (requests with no
    /// prefix) and Coinbase Exchange under `/exchange`; both also reachable
    /// by absolute URL (ccxt's `proxyUrl`).
    fn default() -> Self {
        ProxyConfig {
            server: ServerSettings::default(),
            upstreams: vec![
                UpstreamConfig::preset(
                    "advanced",
                    "https://api.coinbase.com",
                    Preset::CoinbaseAdvanced,
                ),
                UpstreamConfig {
                    prefix: Some("/exchange".into()),
                    ..UpstreamConfig::preset(
                        "exchange",
                        "https://api.exchange.coinbase.com",
                        Preset::CoinbaseExchange,
                    )
                },
            ],
            cluster: None,
            credentials: Vec::new(),
            clients: Vec::new(),
        }
    }
}

impl UpstreamConfig {
    /// An upstream with a preset's rules unchanged, no prefix, no listener.
    pub fn preset(name: &str, url: &str, preset: Preset) -> Self {
        UpstreamConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            preset,
            prefix: None,
            listen: None,
            underscores_in_headers: false,
            origins: Vec::new(),
            ca_file: None,
            signing: SigningSettings::default(),
            preset_routes: PresetRoutes::Merge,
            coordination: preset.config(),
        }
    }
}

impl ProxyConfig {
    /// One upstream with the Advanced Trade preset at `url`, for the quick
    /// start (`--upstream URL`). The URL is checked when the proxy is built.
    pub fn single_upstream(url: &str) -> Self {
        ProxyConfig {
            server: ServerSettings::default(),
            upstreams: vec![UpstreamConfig::preset(
                "advanced",
                url,
                Preset::CoinbaseAdvanced,
            )],
            cluster: None,
            credentials: Vec::new(),
            clients: Vec::new(),
        }
    }

    /// Both Coinbase presets at one base URL (`--upstream URL`, a local
    /// mock that serves both APIs): Advanced Trade unprefixed, Exchange
    /// under `/exchange`, each still answering for its real host
    /// (`origins`), so bots that sign for `api.coinbase.com` or
    /// `api.exchange.coinbase.com` and reach syncoord through
    /// `HTTPS_PROXY` or `proxyUrl` keep working against the mock.
    /// [`Self::describe_upstreams`] says what this replaced.
    pub fn presets_at(url: &str) -> Self {
        let mut config = ProxyConfig::default();
        for u in &mut config.upstreams {
            u.origins = vec![u.url.clone()];
            u.url = url.to_owned();
        }
        config
    }

    /// One line per upstream: name, base URL, prefix, origins; what
    /// `syncoord serve` logs at start so a replaced preset is never silent.
    pub fn describe_upstreams(&self) -> Vec<String> {
        self.upstreams
            .iter()
            .map(|u| {
                let mut line = format!("upstream `{}` ({:?}) -> {}", u.name, u.preset, u.url);
                if let Some(p) = &u.prefix {
                    line.push_str(&format!(", prefix {p}"));
                }
                if !u.origins.is_empty() {
                    line.push_str(&format!(", answers for {}", u.origins.join(", ")));
                }
                line
            })
            .collect()
    }
}

/// An upstream as written in the file, before the preset merge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) name: String,
    pub(super) url: String,
    #[serde(default)]
    pub(super) preset: Preset,
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) underscores_in_headers: bool,
    #[serde(default)]
    pub(super) origins: Vec<String>,
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    #[serde(default)]
    pub(super) signing: SigningSettings,
    #[serde(default)]
    pub(super) preset_routes: PresetRoutes,
    #[serde(default)]
    pub(super) coordination: toml::Table,
}

impl TryFrom<RawUpstream> for UpstreamConfig {
    type Error = CoordinationError;

    fn try_from(raw: RawUpstream) -> Result<Self, CoordinationError> {
        let (upstream, _, mut problems) = UpstreamConfig::merged(raw);
        match upstream {
            Some(upstream) if problems.is_empty() => Ok(upstream),
            _ => Err(problems.swap_remove(0)),
        }
    }
}

impl UpstreamConfig {
    /// The upstream as written, its `coordination` merged over its preset
    /// (as far as it could be read), where each of its route rules came
    /// from, and every problem of its `coordination`.
    pub(super) fn merged(
        raw: RawUpstream,
    ) -> (Option<UpstreamConfig>, RouteOrigins, Vec<CoordinationError>) {
        let (coordination, origins, problems) =
            merged_coordination(raw.preset, raw.preset_routes, raw.coordination);
        let Some(coordination) = coordination else {
            return (None, origins, problems);
        };
        let upstream = UpstreamConfig {
            name: raw.name,
            url: raw.url,
            preset: raw.preset,
            prefix: raw.prefix,
            listen: raw.listen,
            underscores_in_headers: raw.underscores_in_headers,
            origins: raw.origins,
            ca_file: raw.ca_file,
            signing: raw.signing,
            preset_routes: raw.preset_routes,
            coordination,
        };
        (Some(upstream), origins, problems)
    }
}
