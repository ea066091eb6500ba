//! The signing-mode sections of the config file: `[[credentials]]` (keys
//! syncoord holds), `[[clients]]` (bots and the tokens they prove
//! themselves with), and an upstream's `[upstreams.signing]`.
//!
//! ```toml
//! [[credentials]]
//! name = "desk"                     # what stats, the cache and fairness call it
//! upstream = "advanced"
//! kind = "coinbase-cdp"
//! key_file = "/etc/syncoord/cdp_api_key.json"   # the portal's download
//!
//! [[credentials]]
//! name = "exchange-main"
//! upstream = "exchange"
//! kind = "coinbase-exchange"
//! key = "f2a1..."                   # the API key id (not a secret)
//! secret_env = "CB_EXCHANGE_SECRET"
//! passphrase_file = "/etc/syncoord/exchange.passphrase"
//!
//! [[clients]]
//! name = "bot7"
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! credentials = ["desk", "exchange-main"]
//! ```
//!
//! What is written here names where secrets are (an env var, a file),
//! never a secret itself, so the parsed config may be printed whole.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What a credential signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// Coinbase Developer Platform keys (Advanced Trade, and CDP APIs):
    /// a JWT per request, ES256 or Ed25519.
    CoinbaseCdp,
    /// Coinbase Exchange keys: `CB-ACCESS-*` headers, HMAC-SHA256.
    CoinbaseExchange,
}

impl CredentialKind {
    /// The name the config file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::CoinbaseCdp => "coinbase-cdp",
            CredentialKind::CoinbaseExchange => "coinbase-exchange",
        }
    }
}

/// One `[[credentials]]` entry: a key syncoord holds and signs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// Names the credential for clients (`X-Syncoord-Credential`), the
    /// cache, the limiter, fairness and stats.
    pub name: String,
    /// The `[[upstreams]]` name it signs for.
    pub upstream: String,
    /// What it signs for: which scheme, which material.
    pub kind: CredentialKind,
    /// `coinbase-cdp`: the JSON file the CDP portal downloads (`name` and
    /// `privateKey`). Or give `key_name` and the private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// `coinbase-cdp`: the key name, `organizations/.../apiKeys/...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// `coinbase-cdp`: env var holding the private key (PEM or base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_env: Option<String>,
    /// `coinbase-cdp`: file holding the private key (PEM or base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    /// `coinbase-exchange`: the API key (`CB-ACCESS-KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `coinbase-exchange`: env var holding the base64 secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// `coinbase-exchange`: file holding the base64 secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// `coinbase-exchange`: env var holding the passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// `coinbase-exchange`: file holding the passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<String>,
    /// Use this credential's files even when other users may read them
    /// (group or world permission bits). Off by default: such a file is
    /// refused, as ssh refuses a private key others can read. For a
    /// file whose access is guarded otherwise (ACLs, a container's
    /// read-only secret mount).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_readable_files: bool,
}

/// One `[[clients]]` entry: a bot that proves who it is with a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// The bot's name in stats and fairness (unless it sends its own
    /// `X-Syncoord-Client`).
    pub name: String,
    /// Hex SHA-256 of the token (`syncoord token` prints a token and
    /// this line). The token itself need not be stored anywhere here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// Or: env var holding the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The `[[credentials]]` this client may have its calls signed with
    /// (none for a client known by `api_keys`: it signs for itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// The highest priority class this client's requests get (a name from
    /// each upstream's `priorities`, e.g. `market`): a request that asks
    /// for more (`X-Syncoord-Priority`), or whose route is ranked higher
    /// (an order's `trading`), is lowered to it, or refused when
    /// `above_max_priority = "refuse"`. Unset: no ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<String>,
    /// What a request above `max_priority` gets: `lower` (queued at the
    /// ceiling, the default) or `refuse` (403 `priority_not_allowed`,
    /// nothing sent upstream).
    #[serde(default, skip_serializing_if = "AbovePriority::is_lower")]
    pub above_max_priority: AbovePriority,
    /// For a bot that signs for itself (no token, no `credentials`): the
    /// API key names it is known by, as upstream authenticates them (the
    /// `sub` of an Advanced Trade JWT, `organizations/.../apiKeys/...`,
    /// or an Exchange `CB-ACCESS-KEY`). Key names, not secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<String>,
    /// The fraction, in (0, 1], of every rate-limit bucket its calls draw
    /// on that this client may spend (its calls together, whatever
    /// `X-Syncoord-Client` names they give). Unset: no cap beyond the
    /// buckets' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// What a request over `share` gets: `wait` (queued until the share
    /// admits it, the default) or `refuse` (429 `client_share_exceeded`
    /// with `Retry-After`, nothing sent upstream).
    #[serde(default, skip_serializing_if = "AboveShare::is_wait")]
    pub above_share: AboveShare,
}

/// What happens to a request over its client's `share`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AboveShare {
    /// Queued until the share admits it; others' calls go ahead.
    #[default]
    Wait,
    /// Refused at once.
    Refuse,
}

impl AboveShare {
    fn is_wait(&self) -> bool {
        *self == AboveShare::Wait
    }
}

/// What happens to a request above its client's `max_priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbovePriority {
    /// Queued at the ceiling.
    #[default]
    Lower,
    /// Refused before anything is sent.
    Refuse,
}

impl AbovePriority {
    fn is_lower(&self) -> bool {
        *self == AbovePriority::Lower
    }
}

/// An upstream's `[upstreams.signing]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningSettings {
    /// On an upstream that has `[[credentials]]`, let requests without a
    /// token through as they are (bots that sign for themselves). Off by
    /// default: such a request is refused with 401.
    pub pass_through: bool,
    /// How long a call syncoord signs may wait in the queue. It has no
    /// signature to expire, so this is about the bot: a bot that gives up
    /// and hangs up cancels its call anyway. Requests a bot signs keep
    /// `coordination.queue.default_deadline_secs` (25 s by default, under
    /// the 30 s an Exchange signature lives).
    pub deadline_secs: f64,
}

impl Default for SigningSettings {
    fn default() -> Self {
        SigningSettings {
            pass_through: false,
            deadline_secs: 600.0,
        }
    }
}

/// A field path and what is wrong with it.
pub type SpecIssue = (String, String);

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Checks the `[[credentials]]` and `[[clients]]` against each other and
/// against the upstreams' names. Every problem at once.
pub fn check_signing_specs(
    credentials: &[CredentialSpec],
    clients: &[ClientSpec],
    upstreams: &[&str],
) -> Vec<SpecIssue> {
    let mut out: Vec<SpecIssue> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in credentials.iter().enumerate() {
        let at = |f: &str| format!("credentials[{i}].{f}");
        if !valid_name(&c.name) {
            out.push((at("name"), format!("`{}` must be 1 to 64 letters, digits, `-`, `_` or `.` (clients name it in X-Syncoord-Credential)", c.name)));
        } else if !seen.insert(c.name.as_str()) {
            out.push((at("name"), format!("`{}` names two credentials", c.name)));
        }
        if !upstreams.contains(&c.upstream.as_str()) {
            out.push((
                at("upstream"),
                format!(
                    "`{}` is not a configured upstream (configured: {})",
                    c.upstream,
                    upstreams.join(", ")
                ),
            ));
        }
        let cdp_fields = [
            ("key_file", c.key_file.is_some()),
            ("key_name", c.key_name.is_some()),
            ("private_key_env", c.private_key_env.is_some()),
            ("private_key_file", c.private_key_file.is_some()),
        ];
        let exchange_fields = [
            ("key", c.key.is_some()),
            ("secret_env", c.secret_env.is_some()),
            ("secret_file", c.secret_file.is_some()),
            ("passphrase_env", c.passphrase_env.is_some()),
            ("passphrase_file", c.passphrase_file.is_some()),
        ];
        let (issues, foreign, theirs) = match c.kind {
            CredentialKind::CoinbaseCdp => (
                cdp_issues(c, &at),
                &exchange_fields[..],
                CredentialKind::CoinbaseExchange,
            ),
            CredentialKind::CoinbaseExchange => (
                exchange_issues(c, &at),
                &cdp_fields[..],
                CredentialKind::CoinbaseCdp,
            ),
        };
        out.extend(issues);
        for (field, set) in foreign {
            if *set {
                out.push((
                    at(field),
                    format!(
                        "is a `{}` field; this credential's kind is `{}`",
                        theirs.as_str(),
                        c.kind.as_str()
                    ),
                ));
            }
        }
        for (field, env) in [
            ("private_key_env", &c.private_key_env),
            ("secret_env", &c.secret_env),
            ("passphrase_env", &c.passphrase_env),
        ] {
            if let Some(name) = env.as_deref().filter(|n| !valid_env_name(n)) {
                out.push((
                    at(field),
                    format!("`{name}` is not an environment variable name (letters, digits, `_`)"),
                ));
            }
        }
    }
    let mut client_names = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for (i, c) in clients.iter().enumerate() {
        let at = |f: &str| format!("clients[{i}].{f}");
        if !valid_name(&c.name) {
            out.push((
                at("name"),
                format!(
                    "`{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                    c.name
                ),
            ));
        } else if !client_names.insert(c.name.as_str()) {
            out.push((at("name"), format!("`{}` names two clients", c.name)));
        }
        if let Some(share) = c.share {
            if !(share > 0.0 && share <= 1.0) {
                out.push((
                    at("share"),
                    format!(
                        "{share} must be more than 0 and at most 1 (a fraction of each bucket)"
                    ),
                ));
            }
        }
        for (k, key) in c.api_keys.iter().enumerate() {
            if key.trim().is_empty() || key.len() > 512 || key.chars().any(char::is_control) {
                out.push((
                    format!("clients[{i}].api_keys[{k}]"),
                    "must be an API key name (1 to 512 printable characters)".into(),
                ));
            } else if let Some(other) = clients[..i].iter().position(|o| o.api_keys.contains(key)) {
                out.push((
                    format!("clients[{i}].api_keys[{k}]"),
                    format!("`{key}` is also clients[{other}]'s: a key names one client"),
                ));
            }
        }
        let tokenless = c.token_sha256.is_none() && c.token_env.is_none();
        if !c.api_keys.is_empty() {
            if !tokenless {
                out.push((
                    at("api_keys"),
                    "a client is known by its token (signing mode) or by its `api_keys` (it signs for itself), not both".into(),
                ));
            }
            if !c.credentials.is_empty() {
                out.push((
                    at("credentials"),
                    "a client known by `api_keys` signs for itself: it has no `credentials`".into(),
                ));
            }
            continue;
        }
        match (&c.token_sha256, &c.token_env) {
            (Some(_), Some(_)) => out.push((
                at("token_env"),
                "give `token_sha256` or `token_env`, not both".into(),
            )),
            (None, None) => out.push((
                at("name"),
                "a client needs `token_sha256` (hex SHA-256 of its token; `syncoord token` makes one) or `token_env` (or, for a bot that signs for itself, `api_keys`)".into(),
            )),
            (Some(hex), None) => match super::clients::parse_sha256_hex(hex) {
                Some(h) => {
                    if !hashes.insert(h) {
                        out.push((at("token_sha256"), "another client has the same token: each client needs its own".into()));
                    }
                }
                None => out.push((
                    at("token_sha256"),
                    "must be 64 hex digits (the SHA-256 of the token, e.g. `printf %s TOKEN | sha256sum`)".into(),
                )),
            },
            (None, Some(env)) => {
                if !valid_env_name(env) {
                    out.push((at("token_env"), format!("`{env}` is not an environment variable name (letters, digits, `_`)")));
                }
            }
        }
        if c.credentials.is_empty() {
            out.push((
                at("credentials"),
                "list the `[[credentials]]` this client may use".into(),
            ));
        }
        for (k, name) in c.credentials.iter().enumerate() {
            if !credentials.iter().any(|cred| &cred.name == name) {
                out.push((
                    format!("clients[{i}].credentials[{k}]"),
                    format!(
                        "`{name}` is not a configured credential (configured: {})",
                        credentials
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    out
}

fn cdp_issues(c: &CredentialSpec, at: &dyn Fn(&str) -> String) -> Vec<SpecIssue> {
    let mut out = Vec::new();
    let sources = [&c.private_key_env, &c.private_key_file]
        .iter()
        .filter(|s| s.is_some())
        .count();
    match (&c.key_file, &c.key_name) {
        (Some(_), None) => {
            if sources > 0 {
                out.push((at("key_file"), "the key file holds the private key: drop `private_key_env`/`private_key_file`, or use them with `key_name` instead of `key_file`".into()));
            }
        }
        (Some(_), Some(_)) => out.push((
            at("key_name"),
            "the key file names the key: give `key_file` alone, or `key_name` with `private_key_env` or `private_key_file`".into(),
        )),
        (None, Some(name)) => {
            if name.trim().is_empty() {
                out.push((at("key_name"), "is empty".into()));
            }
            if sources != 1 {
                out.push((at("key_name"), "needs exactly one of `private_key_env` or `private_key_file`".into()));
            }
        }
        (None, None) => out.push((
            at("kind"),
            "a `coinbase-cdp` credential needs `key_file` (the CDP portal's JSON) or `key_name` with `private_key_env` or `private_key_file`".into(),
        )),
    }
    out
}

fn exchange_issues(c: &CredentialSpec, at: &dyn Fn(&str) -> String) -> Vec<SpecIssue> {
    let mut out = Vec::new();
    match c.key.as_deref() {
        None => out.push((
            at("kind"),
            "a `coinbase-exchange` credential needs `key` (the API key)".into(),
        )),
        Some(k) if k.trim().is_empty() || k.contains(|ch: char| ch.is_control()) => {
            out.push((at("key"), "must be the API key as Coinbase shows it".into()))
        }
        Some(_) => {}
    }
    for (what, env, file) in [
        ("secret", &c.secret_env, &c.secret_file),
        ("passphrase", &c.passphrase_env, &c.passphrase_file),
    ] {
        match (env, file) {
            (Some(_), Some(_)) => out.push((
                at(&format!("{what}_file")),
                format!("give `{what}_env` or `{what}_file`, not both"),
            )),
            (None, None) => out.push((
                at("kind"),
                format!("a `coinbase-exchange` credential needs `{what}_env` or `{what}_file`"),
            )),
            _ => {}
        }
    }
    out
}

/// Fields that read files: the Worker has no files (its secrets come from
/// `wrangler secret put`, read like vars).
pub fn edge_signing_issues(credentials: &[CredentialSpec]) -> Vec<SpecIssue> {
    let mut out = Vec::new();
    for (i, c) in credentials.iter().enumerate() {
        for (field, set) in [
            ("key_file", c.key_file.is_some()),
            ("private_key_file", c.private_key_file.is_some()),
            ("secret_file", c.secret_file.is_some()),
            ("passphrase_file", c.passphrase_file.is_some()),
        ] {
            if set {
                let instead = match field {
                    "key_file" => "`key_name` and `private_key_env`",
                    "private_key_file" => "`private_key_env`",
                    "secret_file" => "`secret_env`",
                    _ => "`passphrase_env`",
                };
                out.push((
                    format!("credentials[{i}].{field}"),
                    format!(
                        "the Worker reads no files: use {instead}, set with `wrangler secret put`"
                    ),
                ));
            }
        }
    }
    out
}
