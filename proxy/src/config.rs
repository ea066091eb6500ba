//! The one configuration file both hosts read (TOML): `[server]` settings
//! for the host, and `[[upstreams]]`, each an API with its coordination
//! rules (a core [`Config`]) merged over a preset.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8787"
//!
//! [[upstreams]]
//! name = "advanced"
//! url = "https://api.coinbase.com"
//! preset = "coinbase-advanced"
//! [upstreams.coordination.queue]
//! max_len = 500            # everything else stays as the preset says
//!
//! [[upstreams]]
//! name = "exchange"
//! url = "https://api.exchange.coinbase.com"
//! preset = "coinbase-exchange"
//! prefix = "/exchange"
//! ```
//!
//! [`ProxyConfig::from_toml_str`] reports every problem at once, each with
//! the field's path and its line and column in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use syncoord_core::Duration;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use syncoord_core::config::{coinbase, secs, Config, Keying, ScopeConfig};
use syncoord_core::CompiledConfig;

use crate::cluster::ClusterSettings;
use crate::signing::{ClientSpec, CredentialSpec, SigningSettings};
use crate::url::BaseUrl;

/// One upstream as a [`crate::Proxy`] runs it: its origins parsed and its
/// coordination rules compiled, once.
#[derive(Debug)]
pub(crate) struct CheckedUpstream {
    /// Its `url`: what signing mode signs for.
    pub(crate) base: BaseUrl,
    /// What absolute-form, `proxyUrl`-form and CONNECT requests must name
    /// to reach this upstream: `origins` parsed, or `base` alone.
    pub(crate) origins: Vec<BaseUrl>,
    pub(crate) prefix: Option<String>,
    /// What the hosts run their coordinators on, and what
    /// [`crate::Proxy::shard`] reads the routes from.
    pub(crate) coordination: CompiledConfig,
}

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
    /// A TLS listener (`ip:port`) for clients that insist on an `https`
    /// base URL; requests on it are routed as on `listen`.
    pub tls_listen: Option<String>,
    /// PEM certificate chain for `tls_listen` (with `tls_key`); without
    /// them the local CA's leaf for `localhost` and `127.0.0.1` is used.
    pub tls_cert: Option<String>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<String>,
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
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ServerSettings {
    pub fn idle_timeout(&self) -> Duration {
        secs(self.idle_timeout_secs)
    }
    pub fn header_timeout(&self) -> Duration {
        secs(self.header_timeout_secs)
    }
    pub fn body_timeout(&self) -> Duration {
        secs(self.body_timeout_secs)
    }
    pub fn write_timeout(&self) -> Duration {
        secs(self.write_timeout_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        secs(self.request_timeout_secs)
    }
    pub fn drain(&self) -> Duration {
        secs(self.drain_secs)
    }
    pub fn upstream_connect_timeout(&self) -> Duration {
        secs(self.upstream_connect_timeout_secs)
    }
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
/// (tables merge key by key, everything else, arrays included, replaces:
/// a `routes` list in the file replaces all of the preset's rules), so
/// `coordination` here is the complete, effective configuration.
///
/// `name` and `url` are required; `preset` defaults to `none`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawUpstream")]
pub struct UpstreamConfig {
    /// Names the upstream in stats, metrics and logs (letters, digits, `-`, `_`).
    pub name: String,
    /// Base URL: `http(s)://host[:port][/base/path]`, no query.
    pub url: String,
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
    pub coordination: Config,
}

/// An upstream as written in the file, before the preset merge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
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
struct CoordinationError {
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

pub fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." {
        String::new()
    } else {
        s
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    pub server: ServerSettings,
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
            coordination: preset.config(),
        }
    }
}

/// One problem in a configuration file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    /// Path of the field, e.g. `upstreams[0].coordination.routes[2].scopes[0]`;
    /// empty for TOML syntax errors.
    pub field: String,
    /// 1-based line and column of the field (or of its nearest parent
    /// present in the file), when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileErrors(pub Vec<ConfigFileError>);

impl ConfigFileErrors {
    /// Displays each problem as `file:line:column: field: message`.
    pub fn display_with<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        DisplayWith { errors: self, file }
    }

    /// `(field, message)` pairs found after parsing (secrets that cannot
    /// be read), without positions.
    pub(crate) fn unlocated(pairs: Vec<(String, String)>) -> Self {
        ConfigFileErrors(
            pairs
                .into_iter()
                .map(|(field, message)| ConfigFileError {
                    field,
                    line: None,
                    column: None,
                    message,
                })
                .collect(),
        )
    }

    fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigFileErrors(vec![ConfigFileError {
            field: field.into(),
            line: None,
            column: None,
            message: message.into(),
        }])
    }
}

struct DisplayWith<'a> {
    errors: &'a ConfigFileErrors,
    file: &'a str,
}

impl fmt::Display for DisplayWith<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(self.file)?;
            if let Some(line) = e.line {
                write!(f, ":{line}")?;
                if let Some(col) = e.column {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
            if !e.field.is_empty() {
                write!(f, "{}: ", e.field)?;
            }
            f.write_str(&e.message)?;
        }
        Ok(())
    }
}

impl fmt::Display for ConfigFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display_with("config").fmt(f)
    }
}

impl std::error::Error for ConfigFileErrors {}

/// A field path and what is wrong with it, before it is located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Issue {
    field: String,
    message: String,
}

impl Issue {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The issue as reported, at `line` and `column` when known.
    fn located(self, line: Option<usize>, column: Option<usize>) -> ConfigFileError {
        ConfigFileError {
            field: self.field,
            line,
            column,
            message: self.message,
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
    fn from_table(root: toml::Table, issues: &mut Vec<Issue>) -> (ProxyConfig, Vec<usize>) {
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

    /// Checks everything the hosts rely on; every problem at once. No
    /// positions: use [`Self::from_toml_str`] for a file.
    pub fn validate(&self) -> Result<(), ConfigFileErrors> {
        errors_without_positions(self.issues())
    }

    /// The Worker shards rate-limit state by Durable Object: one for an
    /// upstream's global scopes, one per credential for per-credential
    /// scopes. A route drawing from both kinds at once could not be
    /// limited by one object, so it is refused here, naming the route.
    pub fn validate_for_edge(&self) -> Result<(), ConfigFileErrors> {
        let mut issues = self.issues();
        issues.extend(self.edge_issues());
        errors_without_positions(issues)
    }

    fn edge_issues(&self) -> Vec<Issue> {
        self.edge_issues_at(&[])
    }

    /// `index[k]` is upstream `k`'s index in the file (`k` itself when
    /// missing).
    fn edge_issues_at(&self, index: &[usize]) -> Vec<Issue> {
        let mut issues: Vec<Issue> = crate::signing::spec::edge_issues(&self.credentials)
            .into_iter()
            .map(|(field, message)| Issue::new(field, message))
            .collect();
        for (k, u) in self.upstreams.iter().enumerate() {
            let i = index.get(k).copied().unwrap_or(k);
            if u.ca_file.is_some() {
                issues.push(Issue::new(
                    format!("upstreams[{i}].ca_file"),
                    "the Worker's fetch() trusts Cloudflare's roots only: extra roots are a native-host setting",
                ));
            }
            let c = &u.coordination;
            let mut check = |field: String, name: &str, scopes: &[String]| {
                let (global, per_cred): (Vec<&String>, Vec<&String>) = scopes
                    .iter()
                    .filter(|s| c.scopes.contains_key(*s))
                    .partition(|s| c.scopes.get(*s).map(|sc| sc.per) == Some(Keying::Global));
                if !global.is_empty() && !per_cred.is_empty() {
                    let list = |v: Vec<&String>| {
                        v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    };
                    issues.push(Issue::new(
                        field,
                        format!(
                            "route `{name}` mixes global scopes ({}) with per-credential scopes ({}); on the edge one Durable Object must own all of a request's buckets, so use one kind per route",
                            list(global),
                            list(per_cred)
                        ),
                    ));
                }
            };
            check(
                format!("upstreams[{i}].coordination.defaults.scopes"),
                "default",
                &c.defaults.scopes,
            );
            for (j, r) in c.routes.iter().enumerate() {
                let name = r.name.clone().unwrap_or_else(|| r.path.clone());
                let field = if r.scopes.is_some() {
                    format!("upstreams[{i}].coordination.routes[{j}].scopes")
                } else {
                    format!("upstreams[{i}].coordination.routes[{j}]")
                };
                check(
                    field,
                    &name,
                    r.scopes.as_ref().unwrap_or(&c.defaults.scopes),
                );
            }
        }
        issues
    }

    fn issues(&self) -> Vec<Issue> {
        self.issues_at(&[])
    }

    /// Every upstream with its base URL parsed and its coordination
    /// compiled, in config order, or every problem found. The one pass
    /// that both checks and compiles, so [`crate::Proxy::new`] neither
    /// repeats the work nor words an error a second time.
    pub(crate) fn checked_upstreams(&self) -> Result<Vec<CheckedUpstream>, ConfigFileErrors> {
        let (issues, upstreams) = self.check_at(&[]);
        errors_without_positions(issues)?;
        Ok(upstreams)
    }

    /// Every problem, upstream `k` named by `index[k]` (`k` when missing).
    fn issues_at(&self, index: &[usize]) -> Vec<Issue> {
        self.check_at(index).0
    }

    /// [`Self::issues_at`], and each upstream that passed its own checks,
    /// parsed and compiled (all of them when there is no issue).
    fn check_at(&self, index: &[usize]) -> (Vec<Issue>, Vec<CheckedUpstream>) {
        let mut checked = Vec::with_capacity(self.upstreams.len());
        let mut out: Vec<Issue> = Vec::new();
        let mut push = |field: &str, msg: String| out.push(Issue::new(field, msg));
        let s = &self.server;
        let server_addr = match s.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                push(
                    "server.listen",
                    format!("`{}` is not an ip:port address", s.listen),
                );
                None
            }
        };
        let tls_addr = match s.tls_listen.as_deref().map(str::parse::<SocketAddr>) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                push(
                    "server.tls_listen",
                    format!(
                        "`{}` is not an ip:port address",
                        s.tls_listen.as_deref().unwrap_or_default()
                    ),
                );
                None
            }
        };
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => push(
                "server.tls_key",
                "`tls_cert` is set without `tls_key`: give both, or neither for the local CA's leaf".into(),
            ),
            (None, Some(_)) => push(
                "server.tls_cert",
                "`tls_key` is set without `tls_cert`: give both, or neither for the local CA's leaf".into(),
            ),
            _ => {}
        }
        if s.tls_cert.is_some() && s.tls_listen.is_none() {
            push(
                "server.tls_cert",
                "`tls_cert` is set but there is no `tls_listen` to serve it on".into(),
            );
        }
        let sizes: [(&str, usize, usize, usize); 7] = [
            ("event_loops", s.event_loops.unwrap_or(1), 1, 1024),
            ("max_header_bytes", s.max_header_bytes, 1024, 1 << 20),
            ("max_headers", s.max_headers, 1, 10_000),
            ("max_body_bytes", s.max_body_bytes, 1, 1 << 30),
            ("max_connections", s.max_connections, 1, 1_000_000),
            ("upstream_threads", s.upstream_threads, 1, 1024),
            ("max_response_bytes", s.max_response_bytes, 1024, 1 << 30),
        ];
        for (name, value, min, max) in sizes {
            if !(min..=max).contains(&value) {
                push(
                    &format!("server.{name}"),
                    format!("must be between {min} and {max} (got {value})"),
                );
            }
        }
        let times = [
            ("idle_timeout_secs", s.idle_timeout_secs, false),
            ("header_timeout_secs", s.header_timeout_secs, false),
            ("body_timeout_secs", s.body_timeout_secs, false),
            ("write_timeout_secs", s.write_timeout_secs, false),
            ("request_timeout_secs", s.request_timeout_secs, false),
            ("drain_secs", s.drain_secs, true),
            (
                "upstream_connect_timeout_secs",
                s.upstream_connect_timeout_secs,
                false,
            ),
            ("upstream_timeout_secs", s.upstream_timeout_secs, false),
        ];
        for (name, value, zero_ok) in times {
            let ok =
                value.is_finite() && value <= 86_400.0 && (value > 0.0 || zero_ok && value == 0.0);
            if !ok {
                let low = if zero_ok { "0" } else { "more than 0" };
                push(
                    &format!("server.{name}"),
                    format!("must be {low} and at most 86400 seconds (got {value})"),
                );
            }
        }
        if self.upstreams.is_empty() {
            push("upstreams", "at least one upstream is needed".into());
        }
        if let Some(c) = &self.cluster {
            for (field, message) in c.issues() {
                push(&format!("cluster.{field}"), message);
            }
        }
        let mut listens: Vec<(SocketAddr, String)> = server_addr
            .map(|a| vec![(a, "server.listen".to_owned())])
            .unwrap_or_default();
        if let Some(a) = tls_addr {
            if let Some((_, other)) = listens.iter().find(|(o, _)| a.port() != 0 && *o == a) {
                push(
                    "server.tls_listen",
                    format!("`{a}` is also used by {other}"),
                );
            }
            listens.push((a, "server.tls_listen".to_owned()));
        }
        for (k, u) in self.upstreams.iter().enumerate() {
            let i = index.get(k).copied().unwrap_or(k);
            let f = |field: &str| format!("upstreams[{i}].{field}");
            let name_ok = !u.name.is_empty()
                && u.name.len() <= 64
                && u.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                push(
                    &f("name"),
                    format!(
                        "`{}` must be 1 to 64 letters, digits, `-` or `_` (it names the upstream in metrics)",
                        u.name
                    ),
                );
            }
            if self.upstreams[..k].iter().any(|o| o.name == u.name) {
                push(
                    &f("name"),
                    format!("`{}` names more than one upstream", u.name),
                );
            }
            let base = BaseUrl::parse(&u.url)
                .map_err(|e| push(&f("url"), e.to_string()))
                .ok();
            let mut origins = Vec::with_capacity(u.origins.len());
            for (j, o) in u.origins.iter().enumerate() {
                match BaseUrl::parse(o) {
                    Ok(parsed) => {
                        if origins.contains(&parsed) {
                            push(
                                &f(&format!("origins[{j}]")),
                                format!("`{o}` is listed twice"),
                            );
                        } else {
                            origins.push(parsed);
                        }
                    }
                    Err(e) => push(&f(&format!("origins[{j}]")), e.to_string()),
                }
            }
            for (j, parsed) in origins.iter().enumerate() {
                let clash = self.upstreams[..k].iter().find(|other| {
                    let theirs: Vec<BaseUrl> = if other.origins.is_empty() {
                        BaseUrl::parse(&other.url).into_iter().collect()
                    } else {
                        other
                            .origins
                            .iter()
                            .filter_map(|x| BaseUrl::parse(x).ok())
                            .collect()
                    };
                    theirs.contains(parsed)
                });
                if let Some(other) = clash {
                    push(
                        &f(&format!("origins[{j}]")),
                        format!(
                            "`{}` is also an origin of upstream `{}`: a request naming it must reach one upstream",
                            u.origins[j], other.name
                        ),
                    );
                }
            }
            if let Some(file) = &u.ca_file {
                if file.trim().is_empty() {
                    push(&f("ca_file"), "must name a PEM file".into());
                }
            }
            if let Some(p) = &u.prefix {
                if let Err(e) = check_prefix(p) {
                    push(&f("prefix"), e.to_string());
                }
                if self.upstreams[..k]
                    .iter()
                    .any(|o| o.prefix.as_deref() == Some(p.as_str()))
                {
                    push(
                        &f("prefix"),
                        format!("`{p}` is the prefix of another upstream"),
                    );
                }
            }
            if let Some(l) = &u.listen {
                match l.parse::<SocketAddr>() {
                    Err(_) => push(&f("listen"), format!("`{l}` is not an ip:port address")),
                    Ok(a) => {
                        if let Some((_, other)) =
                            listens.iter().find(|(o, _)| a.port() != 0 && *o == a)
                        {
                            push(&f("listen"), format!("`{l}` is also used by {other}"));
                        }
                        listens.push((a, f("listen")));
                    }
                }
            }
            let coordination = u
                .coordination
                .compile()
                .map_err(|errors| {
                    for e in errors.0 {
                        push(
                            &format!("upstreams[{i}].coordination.{}", e.field),
                            e.problem.to_string(),
                        );
                    }
                })
                .ok();
            if let (Some(base), Some(coordination)) = (base, coordination) {
                if origins.is_empty() {
                    origins.push(base.clone());
                }
                checked.push(CheckedUpstream {
                    base,
                    origins,
                    prefix: u.prefix.clone(),
                    coordination,
                });
            }
        }
        let names: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
        for (field, message) in
            crate::signing::spec::check(&self.credentials, &self.clients, &names)
        {
            out.push(Issue::new(field, message));
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            let d = u.signing.deadline_secs;
            if !(d.is_finite() && d > 0.0 && d <= 86_400.0) {
                out.push(Issue::new(
                    format!(
                        "upstreams[{}].signing.deadline_secs",
                        index.get(i).copied().unwrap_or(i)
                    ),
                    format!("{d} must be more than 0 and at most 86400 seconds"),
                ));
            }
        }
        (out, checked)
    }

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
        let mut root = toml::Table::try_from(&*self)
            .map_err(|e| ConfigFileErrors::single("", format!("cannot override: {e}")))?;
        for (key_path, value) in items {
            Self::set_in(&mut root, key_path, value)?;
        }
        let mut issues = Vec::new();
        let (config, _) = Self::from_table(root, &mut issues);
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

/// Each `(field, message)` located in `text` (at the field, or its nearest
/// parent present in the file).
pub fn locate_fields(text: &str, issues: Vec<(String, String)>) -> ConfigFileErrors {
    let (doc, _) = DeTable::parse_recoverable(text);
    let issues = issues
        .into_iter()
        .map(|(field, message)| Issue::new(field, message))
        .collect();
    locate_all(text, doc.get_ref(), issues)
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

pub fn join(base: &str, rest: &str) -> String {
    if rest.is_empty() {
        base.to_owned()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}

fn errors_without_positions(issues: Vec<Issue>) -> Result<(), ConfigFileErrors> {
    if issues.is_empty() {
        return Ok(());
    }
    Err(ConfigFileErrors(
        issues
            .into_iter()
            .map(|issue| issue.located(None, None))
            .collect(),
    ))
}

/// Why an upstream's `prefix` is refused; the variants hold the prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PrefixError {
    #[error("`{0}` must start with `/`")]
    NoLeadingSlash(String),
    #[error("`/` would capture every request; leave the prefix out instead")]
    Root,
    #[error("`{0}`: segments must be letters, digits, `-`, `_`, `.` or `~`, with no empty, `.` or `..` segment and no trailing `/`")]
    Segments(String),
}

/// A path prefix: `/` then segments of unreserved characters, no trailing
/// slash.
pub(crate) fn check_prefix(p: &str) -> Result<(), PrefixError> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(PrefixError::NoLeadingSlash(p.to_owned()));
    };
    if rest.is_empty() {
        return Err(PrefixError::Root);
    }
    for seg in rest.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if !ok {
            return Err(PrefixError::Segments(p.to_owned()));
        }
    }
    Ok(())
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[2].c` into segments. Keys with dots in them (scope names) cannot
/// be told apart; locating then stops at the nearest parent, which is
/// still a useful position.
fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segs.push(Seg::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(close) = inner.find(']') else { break };
                match inner[..close].parse() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => segs.push(Seg::Key(inner[..close].to_owned())),
                }
                rest = &inner[close + 1..];
            }
        } else {
            segs.push(Seg::Key(rest.to_owned()));
        }
    }
    segs
}

/// The span of the deepest part of `path` present in the document: the
/// key of a field, or the value of an array element.
fn locate(doc: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let segs = parse_path(path);
    let mut found = None;
    let mut table: Option<&DeTable<'_>> = Some(doc);
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in &segs {
        let next = match (seg, table, value) {
            (Seg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                .map(|(key, v)| (key.span(), v)),
            (Seg::Index(i), _, Some(v)) => match v.get_ref() {
                DeValue::Array(a) => a.get(*i).map(|v| (v.span(), v)),
                _ => None,
            },
            _ => None,
        };
        let Some((span, v)) = next else { break };
        found = Some(span);
        value = Some(v);
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    found
}

fn locate_all(text: &str, doc: &DeTable<'_>, issues: Vec<Issue>) -> ConfigFileErrors {
    ConfigFileErrors(
        issues
            .into_iter()
            .map(|issue| {
                let (line, column) = locate(doc, &issue.field)
                    .map(|s| line_col(text, s.start))
                    .map_or((None, None), |(l, c)| (Some(l), Some(c)));
                issue.located(line, column)
            })
            .collect(),
    )
}

/// 1-based line and column (in characters) of byte `offset` in `text`:
/// how a TOML span is reported (here, and in the mock's keys file).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = ProxyConfig::from_toml_str("").unwrap();
        assert_eq!(c, ProxyConfig::default());
        assert_eq!(c.upstreams[0].coordination, coinbase::advanced_trade());
        assert_eq!(c.upstreams[1].coordination, coinbase::exchange());
        c.validate().unwrap();
        c.validate_for_edge().unwrap();
    }

    #[test]
    fn coordination_merges_over_the_preset() {
        let text = r#"
[[upstreams]]
name = "ex"
url = "https://api.exchange.coinbase.com"
preset = "coinbase-exchange"
[upstreams.coordination.queue]
max_len = 500
[upstreams.coordination.scopes.public]
rate = 5.0
"#;
        let c = ProxyConfig::from_toml_str(text).unwrap();
        assert_eq!(c.upstreams.len(), 1);
        let co = &c.upstreams[0].coordination;
        let preset = coinbase::exchange();
        assert_eq!(co.queue.max_len, 500);
        assert_eq!(
            co.queue.default_deadline_secs,
            preset.queue.default_deadline_secs
        );
        assert_eq!(co.scopes["public"].rate, 5.0);
        // The rest of the table keeps the preset's values.
        assert_eq!(co.scopes["public"].burst, preset.scopes["public"].burst);
        assert_eq!(co.routes, preset.routes);
        // Arrays replace.
        let c = ProxyConfig::from_toml_str(
            "[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\npreset = \"coinbase-advanced\"\n[upstreams.coordination.credential]\nothers = [\"X-Key\"]\n",
        )
        .unwrap();
        assert_eq!(c.upstreams[0].coordination.credential.others, ["X-Key"]);
        assert_eq!(
            c.upstreams[0].coordination.credential.header, "Authorization",
            "the rest of the table is the preset's"
        );
    }

    #[test]
    fn errors_name_field_and_position() {
        let text = r#"[server]
listen = "nowhere"

[[upstreams]]
name = "advanced"
url = "https://api.coinbase.com"
preset = "coinbase-advanced"

[[upstreams.coordination.routes]]
path = "/x"
scopes = ["public", "fils"]
"#;
        let err = ProxyConfig::from_toml_str(text).unwrap_err();
        let shown = err.display_with("config.toml").to_string();
        assert!(
            shown.contains("config.toml:2:1: server.listen: `nowhere` is not an ip:port address"),
            "{shown}"
        );
        assert!(
            shown.contains("config.toml:11:21: upstreams[0].coordination.routes[0].scopes[1]: unknown scope `fils` (known: private, public)"),
            "{shown}"
        );
        assert_eq!(err.0.len(), 2, "{shown}");
    }

    #[test]
    fn unknown_fields_and_bad_types_are_located() {
        let text = "[server]\nlisen = \"x\"\n\n[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\n[upstreams.coordination.queue]\nmax_len = \"many\"\n\n[[upstreams]]\nname = \"b\"\n";
        let err = ProxyConfig::from_toml_str(text).unwrap_err();
        let shown = err.display_with("f").to_string();
        assert_eq!(err.0.len(), 3, "{shown}");
        assert!(shown.contains("unknown field `lisen`"), "{shown}");
        let e = err.0.iter().find(|e| e.message.contains("lisen")).unwrap();
        assert_eq!(
            (e.field.as_str(), e.line, e.column),
            ("server.lisen", Some(2), Some(1))
        );
        let e = err
            .0
            .iter()
            .find(|e| e.field == "upstreams[0].coordination.queue.max_len");
        assert_eq!(e.map(|e| e.line), Some(Some(8)), "{shown}");
        let e = err
            .0
            .iter()
            .find(|e| e.message.contains("missing field `url`"));
        assert_eq!(e.map(|e| e.field.as_str()), Some("upstreams[1]"), "{shown}");
    }

    #[test]
    fn fields_from_the_preset_point_at_the_nearest_parent_in_the_file() {
        let text = "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n[upstreams.coordination]\npriorities = [\"a\", \"b\"]\n";
        let err = ProxyConfig::from_toml_str(text).unwrap_err();
        let e = err
            .0
            .iter()
            .find(|e| e.field == "upstreams[0].coordination.routes[0].priority")
            .unwrap_or_else(|| panic!("{err}"));
        // The preset's route is not in the file; `[upstreams.coordination]` is.
        assert_eq!(e.line, Some(5), "{err}");
        assert!(e
            .message
            .contains("unknown priority class `trading` (known: a, b)"));
    }

    #[test]
    fn unreadable_upstreams_do_not_hide_problems_of_the_others() {
        let text = "[[upstreams]]\nname = \"a\"\nurl = 3\n[[upstreams]]\nname = \"b b\"\nurl = \"https://h\"\n";
        let err = ProxyConfig::from_toml_str(text).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["upstreams[0].url", "upstreams[1].name"], "{err}");
        assert_eq!(err.0[1].line, Some(5));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = ProxyConfig::from_toml_str("[server]\nlisten = \n").unwrap_err();
        assert_eq!(err.0[0].line, Some(2), "{err}");
        assert!(err.0[0].field.is_empty());
        let shown = err.display_with("c.toml").to_string();
        assert!(shown.starts_with("c.toml:2:"), "{shown}");
        // Several syntax errors are reported together.
        let err = ProxyConfig::from_toml_str("a = \nb = [\n[x\n").unwrap_err();
        assert!(err.0.len() >= 2, "{err}");
    }

    #[test]
    fn upstream_checks() {
        let text = r#"
[[upstreams]]
name = "a"
url = "ftp://x"
prefix = "x/"
listen = "127.0.0.1:8787"
[[upstreams]]
name = "a"
url = "https://h/base?q"
prefix = "/p"
[[upstreams]]
name = "c d"
url = "https://h"
prefix = "/p"
"#;
        let err = ProxyConfig::from_toml_str(text).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "upstreams[0].url",
                "upstreams[0].prefix",
                "upstreams[0].listen",
                "upstreams[1].name",
                "upstreams[1].url",
                "upstreams[2].name",
                "upstreams[2].prefix",
            ],
            "{err}"
        );
        assert!(ProxyConfig::from_toml_str("upstreams = []").is_err());
        assert!(ProxyConfig::from_toml_str("[other]").is_err());
    }

    #[test]
    fn origins_and_tls_settings_are_checked_and_located() {
        let text = r#"
[server]
tls_listen = "localhost:8443"
tls_key = "k.pem"

[[upstreams]]
name = "a"
url = "http://127.0.0.1:9000"
origins = ["https://api.coinbase.com", "ftp://x", "https://api.coinbase.com"]

[[upstreams]]
name = "b"
url = "http://127.0.0.1:9001"
prefix = "/b"
origins = ["https://api.coinbase.com"]
ca_file = ""
"#;
        let err = ProxyConfig::from_toml_str(text).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "server.tls_listen",
                "server.tls_cert",
                "upstreams[0].origins[1]",
                "upstreams[0].origins[2]",
                "upstreams[1].origins[0]",
                "upstreams[1].ca_file",
            ],
            "{err}"
        );
        assert!(err.0.iter().all(|e| e.line.is_some()), "{err}");
        let ok = ProxyConfig::from_toml_str(
            "[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\norigins = [\"https://api.coinbase.com\"]\nca_file = \"x.pem\"\n",
        )
        .unwrap();
        assert_eq!(ok.upstreams[0].origins, ["https://api.coinbase.com"]);
        // The Worker cannot add roots to fetch().
        assert!(ok
            .validate_for_edge()
            .unwrap_err()
            .to_string()
            .contains("ca_file"));
    }

    #[test]
    fn server_ranges() {
        let err = ProxyConfig::from_toml_str(
            "[server]\nmax_headers = 0\nrequest_timeout_secs = -1.0\ndrain_secs = 0.0\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["server.max_headers", "server.request_timeout_secs"]
        );
        assert_eq!(err.0[0].line, Some(2));
    }

    #[test]
    fn connection_limits_are_settings_and_bad_ones_are_located() {
        let ok = ProxyConfig::from_toml_str(
            "[server]\nmax_connections = 50\nheader_timeout_secs = 2.5\nbody_timeout_secs = 4.0\nwrite_timeout_secs = 6.0\nidle_timeout_secs = 7.0\n",
        )
        .unwrap();
        assert_eq!(ok.server.max_connections, 50);
        assert_eq!(ok.server.header_timeout(), Duration::from_millis(2500));
        assert_eq!(ok.server.body_timeout(), Duration::from_secs(4));
        assert_eq!(ok.server.write_timeout(), Duration::from_secs(6));
        assert_eq!(ok.server.idle_timeout(), Duration::from_secs(7));
        let text = "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 0\nheader_timeout_secs = 0.0\nbody_timeout_secs = -2.0\nwrite_timeout_secs = 1e9\n";
        let err = ProxyConfig::from_toml_str(text).unwrap_err();
        let found: Vec<(&str, Option<usize>, Option<usize>)> = err
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.line, e.column))
            .collect();
        assert_eq!(
            found,
            [
                ("server.max_connections", Some(3), Some(1)),
                ("server.header_timeout_secs", Some(4), Some(1)),
                ("server.body_timeout_secs", Some(5), Some(1)),
                ("server.write_timeout_secs", Some(6), Some(1)),
            ],
            "{err}"
        );
        let shown = err.display_with("syncoord.toml").to_string();
        assert!(
            shown.contains(
                "syncoord.toml:3:1: server.max_connections: must be between 1 and 1000000 (got 0)"
            ),
            "{shown}"
        );
    }

    #[test]
    fn preset_none_is_generic_and_valid() {
        let c = ProxyConfig::from_toml_str(
            "[[upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1234/v1\"\n",
        )
        .unwrap();
        let co = &c.upstreams[0].coordination;
        assert!(co.routes.is_empty());
        assert_eq!(co.scopes.keys().collect::<Vec<_>>(), ["global"]);
    }

    #[test]
    fn edge_refuses_mixed_routes() {
        let text = r#"
[[upstreams]]
name = "a"
url = "https://h"
preset = "coinbase-exchange"
[[upstreams.coordination.routes]]
name = "mixed"
path = "/x"
scopes = ["public", "private"]
"#;
        let c = ProxyConfig::from_toml_str(text).unwrap();
        let err = c.validate_for_edge().unwrap_err();
        assert!(err.to_string().contains("route `mixed` mixes"), "{err}");
        let err = ProxyConfig::from_toml_str_for_edge(text).unwrap_err();
        assert_eq!(err.0[0].line, Some(9), "{err}");
    }

    #[test]
    fn overrides() {
        let mut c = ProxyConfig::default();
        c.apply_override("server.listen", "127.0.0.1:0").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:0");
        c.apply_override("upstreams.exchange.url", "http://127.0.0.1:9")
            .unwrap();
        assert_eq!(c.upstreams[1].url, "http://127.0.0.1:9");
        c.apply_override("upstreams[0].coordination.queue.max_len", "7")
            .unwrap();
        assert_eq!(c.upstreams[0].coordination.queue.max_len, 7);
        let before = c.clone();
        assert!(c.apply_override("server.max_headers", "0").is_err());
        assert!(c.apply_override("server.nope", "1").is_err());
        assert!(c.apply_override("upstreams.zzz.url", "x").is_err());
        assert_eq!(c, before);
        // A pair is checked once both are in (`--set` given one by one).
        let pair = [
            ("server.tls_listen", "127.0.0.1:0"),
            ("server.tls_cert", "c.pem"),
            ("server.tls_key", "k.pem"),
            (
                "upstreams.advanced.origins",
                r#"["https://api.coinbase.com"]"#,
            ),
        ];
        assert!(c.apply_override(pair[1].0, pair[1].1).is_err());
        c.apply_overrides(&pair).unwrap();
        assert_eq!(c.server.tls_key.as_deref(), Some("k.pem"));
        assert_eq!(c.upstreams[0].origins, ["https://api.coinbase.com"]);
    }

    #[test]
    fn serde_round_trip_keeps_the_effective_config() {
        let c = ProxyConfig::default();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(ProxyConfig::from_toml_str(&text).unwrap(), c);
        let direct: ProxyConfig = toml::from_str(&text).unwrap();
        assert_eq!(direct, c);
    }

    /// Every config error names its field, line and column, and says what
    /// is wrong in the file's terms (issue 9: overflowing integers had no
    /// position and a garbled message; `routes = []` passed silently).
    #[test]
    fn bad_configs_are_located_and_worded() {
        const UP: &str =
            "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n";
        let table: &[(&str, &str, usize, usize, &str)] = &[
            (
                "[server]\nmax_headers = 99999999999999999999\n",
                "server.max_headers",
                2,
                15,
                "`99999999999999999999` does not fit in a 64-bit integer",
            ),
            (
                "[server]\nmax_headers = -1\n",
                "server.max_headers",
                2,
                1,
                "`-1` is out of range: expected a whole number from 0 to 9223372036854775807",
            ),
            (
                &format!("{UP}[upstreams.coordination.scopes.private]\nburst = 5000000000\n"),
                "upstreams[0].coordination.scopes.private.burst",
                6,
                1,
                "`5000000000` is out of range: expected a whole number from 0 to 4294967295",
            ),
            (
                &format!("{UP}[upstreams.coordination.queue]\nmax_len = 0x7fffffffffffffffff\n"),
                "upstreams[0].coordination.queue.max_len",
                6,
                11,
                "does not fit in a 64-bit integer",
            ),
            (
                &format!("{UP}[upstreams.coordination]\nroutes = []\n"),
                "upstreams[0].coordination.routes",
                6,
                1,
                "an empty list would drop all 17 route rules of the preset",
            ),
            (
                &format!("{UP}[upstreams.coordination.defaults]\nscopes = \"global\"\n"),
                "upstreams[0].coordination.defaults.scopes",
                6,
                1,
                "expected an array, found string \"global\"",
            ),
            (
                &format!("{UP}[upstreams.coordination.scopes.private]\nrate = \"fast\"\n"),
                "upstreams[0].coordination.scopes.private.rate",
                6,
                1,
                "expected a number, found string \"fast\"",
            ),
            (
                &format!("{UP}[upstreams.coordination.defaults]\nprivate = 1\n"),
                "upstreams[0].coordination.defaults.private",
                6,
                1,
                "expected true or false, found integer `1`",
            ),
            (
                "[server]\nlisten = 5\n",
                "server.listen",
                2,
                1,
                "expected a string, found integer `5`",
            ),
            (
                &format!("{UP}[upstreams.coordination.credential]\nheader = \"bad header\"\n"),
                "upstreams[0].coordination.credential.header",
                6,
                1,
                "`bad header` is not a header name",
            ),
            (
                &format!("{UP}[upstreams.coordination.credential.aliases]\nk1 = \"t\"\nk2 = \"t\"\n"),
                "upstreams[0].coordination.credential.aliases.k2",
                7,
                1,
                "`t` appears more than once",
            ),
            (
                &format!("{UP}[[upstreams.coordination.routes]]\npath = \"/x\"\ncredential_required = \"yes\"\n"),
                "upstreams[0].coordination.routes[0].credential_required",
                7,
                1,
                "expected true or false",
            ),
            (
                "upstreams = []\n",
                "upstreams",
                1,
                1,
                "at least one upstream is needed",
            ),
            (
                "[cluster]\nredis_url = \"http://h:6379\"\nname = \"a\"\n",
                "cluster.redis_url",
                2,
                1,
                "scheme `http` is not supported (redis:// or rediss:// for TLS)",
            ),
            (
                "[cluster]\nredis_url = \"redis://h:6379\"\nname = \"a b\"\n",
                "cluster.name",
                3,
                1,
                "it prefixes every Redis key",
            ),
            (
                "[cluster]\nredis_url = \"redis://h\"\nname = \"a\"\nfallback_share = 1.5\n",
                "cluster.fallback_share",
                4,
                1,
                "must be more than 0 and at most 1 (got 1.5)",
            ),
            (
                "[cluster]\nredis_url = \"redis://h\"\nname = \"a\"\ncall_timeout_secs = 0\n",
                "cluster.call_timeout_secs",
                4,
                1,
                "must be more than 0",
            ),
            (
                "[cluster]\nname = \"a\"\n",
                "cluster.redis_url",
                1,
                2,
                "is required",
            ),
            (
                "[cluster]\nredis_url = \"redis://h\"\nname = \"a\"\nheartbeat = 1\n",
                "cluster.heartbeat",
                4,
                1,
                "unknown field",
            ),
        ];
        for (text, field, line, column, message) in table {
            let err = ProxyConfig::from_toml_str(text).expect_err(text);
            let e = err
                .0
                .iter()
                .find(|e| e.field == *field)
                .unwrap_or_else(|| panic!("no error for {field} in:\n{err}\n---\n{text}"));
            assert_eq!(
                (e.line, e.column),
                (Some(*line), Some(*column)),
                "{field}: {err}"
            );
            assert!(e.message.contains(message), "{field}: {}", e.message);
            assert!(e.message.len() < 300, "too long: {}", e.message);
            for e in &err.0 {
                assert!(
                    !e.field.is_empty() && e.line.is_some() && e.column.is_some(),
                    "{err}"
                );
            }
            let shown = err.display_with("f.toml").to_string();
            assert!(
                shown.starts_with(&format!("f.toml:{line}:{column}: ")) || err.0.len() > 1,
                "{shown}"
            );
        }
    }

    #[test]
    fn routes_replaced_by_rules_or_on_preset_none_are_fine() {
        let c = ProxyConfig::from_toml_str(
            "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\n[upstreams.coordination]\nroutes = []\n",
        )
        .expect("preset none has no rules to drop");
        assert!(c.upstreams[0].coordination.routes.is_empty());
        let c = ProxyConfig::from_toml_str(
            "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n[[upstreams.coordination.routes]]\npath = \"/x\"\n",
        )
        .expect("a list of rules replaces the preset's");
        assert_eq!(c.upstreams[0].coordination.routes.len(), 1);
    }

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("upstreams[0].coordination.routes[2].scopes[0]"),
            vec![
                Seg::Key("upstreams".into()),
                Seg::Index(0),
                Seg::Key("coordination".into()),
                Seg::Key("routes".into()),
                Seg::Index(2),
                Seg::Key("scopes".into()),
                Seg::Index(0),
            ]
        );
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
