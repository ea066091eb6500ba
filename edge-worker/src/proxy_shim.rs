//! TEMPORARY stand-in for `syncoord_core::proxy` (being written on branch
//! `proxy`), with the same names and shapes as the agreed contract so that
//! the Worker can be built and run before it lands. It is deliberately
//! minimal (prefix routing, the two `X-Syncoord-*` request headers, the
//! cache header, hop-by-hop stripping, a JSON error body) and is deleted,
//! not extended, once the real module is merged: the rule is that no proxy
//! logic is written twice.

use std::fmt;

use serde::Deserialize;
use syncoord_core::config::coinbase;
use syncoord_core::proxy::Outgoing;
use syncoord_core::{Answer, Config, Failure, Method, Request};

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1),
/// plus `host` (the upstream's comes from its URL) and `content-length`
/// (the HTTP layer recomputes it).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

pub const PRIORITY_HEADER: &str = "x-syncoord-priority";
pub const CLIENT_HEADER: &str = "x-syncoord-client";
pub const CACHE_HEADER: &str = "x-syncoord-cache";

/// Where the stats endpoints live.
pub const STATS_PATH: &str = "/api/v1/sync-coordination/stats";
pub const HEALTH_PATH: &str = "/api/v1/sync-coordination/health";
pub const METRICS_PATH: &str = "/api/v1/sync-coordination/metrics";

/// One config-file problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    pub field: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigFileErrors(pub Vec<ConfigFileError>);

impl fmt::Display for ConfigFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match e.line {
                Some(line) => write!(f, "{} (line {line}): {}", e.field, e.message)?,
                None => write!(f, "{}: {}", e.field, e.message)?,
            }
        }
        Ok(())
    }
}

fn problem(field: &str, message: impl Into<String>) -> ConfigFileErrors {
    ConfigFileErrors(vec![ConfigFileError {
        field: field.to_owned(),
        line: None,
        message: message.into(),
    }])
}

/// One upstream API.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub url: String,
    pub prefix: Option<String>,
    pub listen: Option<String>,
    pub coordination: Config,
}

/// The config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub upstreams: Vec<UpstreamConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    #[allow(dead_code)]
    server: Option<toml::Table>,
    #[serde(default)]
    upstreams: Vec<UpstreamShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamShape {
    name: String,
    url: String,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    listen: Option<String>,
}

fn preset(name: Option<&str>) -> Result<Config, String> {
    match name {
        None | Some("coinbase-advanced-trade") => Ok(coinbase::advanced_trade()),
        Some("coinbase-exchange") => Ok(coinbase::exchange()),
        Some("none") => Ok(Config::default()),
        Some(other) => Err(format!("unknown preset `{other}`")),
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            upstreams: vec![
                UpstreamConfig {
                    name: "coinbase-advanced-trade".into(),
                    url: "https://api.coinbase.com".into(),
                    prefix: Some("/advanced".into()),
                    listen: None,
                    coordination: coinbase::advanced_trade(),
                },
                UpstreamConfig {
                    name: "coinbase-exchange".into(),
                    url: "https://api.exchange.coinbase.com".into(),
                    prefix: Some("/exchange".into()),
                    listen: None,
                    coordination: coinbase::exchange(),
                },
            ],
        }
    }
}

impl ProxyConfig {
    pub fn from_toml_str(text: &str) -> Result<ProxyConfig, ConfigFileErrors> {
        let shape: FileShape =
            toml::from_str(text).map_err(|e| problem("(file)", e.message().to_owned()))?;
        let mut upstreams = Vec::new();
        for (i, u) in shape.upstreams.into_iter().enumerate() {
            let coordination = preset(u.preset.as_deref())
                .map_err(|m| problem(&format!("upstreams[{i}].preset"), m))?;
            upstreams.push(UpstreamConfig {
                name: u.name,
                url: u.url,
                prefix: u.prefix,
                listen: u.listen,
                coordination,
            });
        }
        if upstreams.is_empty() {
            return Err(problem("upstreams", "at least one [[upstreams]] is needed"));
        }
        Ok(ProxyConfig { upstreams })
    }

    pub fn single_upstream(url: &str) -> ProxyConfig {
        ProxyConfig {
            upstreams: vec![UpstreamConfig {
                name: "upstream".into(),
                url: url.to_owned(),
                prefix: None,
                listen: None,
                coordination: coinbase::advanced_trade(),
            }],
        }
    }

    /// The Worker has no listeners of its own.
    pub fn validate_for_edge(&self) -> Result<(), ConfigFileErrors> {
        for (i, u) in self.upstreams.iter().enumerate() {
            if u.listen.is_some() {
                return Err(problem(
                    &format!("upstreams[{i}].listen"),
                    "a Worker has no listeners; use `prefix`",
                ));
            }
        }
        Ok(())
    }
}

/// What a bot's request becomes.
#[derive(Debug, Clone)]
pub struct Forward {
    pub upstream: usize,
    pub request: Request,
    pub outgoing: Outgoing,
}

/// A response ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ProxyResponse {
    fn json(status: u16, value: &serde_json::Value) -> ProxyResponse {
        ProxyResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }
}

/// A request the proxy refuses before it reaches the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no upstream serves `{0}`")]
    NoUpstream(String),
    #[error("unknown priority class `{0}`")]
    UnknownPriority(String),
}

impl Rejection {
    pub fn into_response(self) -> ProxyResponse {
        let status = match self {
            Rejection::NoUpstream(_) => 404,
            Rejection::UnknownPriority(_) => 400,
        };
        ProxyResponse::json(status, &serde_json::json!({ "error": self.to_string() }))
    }
}

pub fn answer_response(answer: &Answer) -> ProxyResponse {
    let r = &answer.response;
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| !HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h)))
        .cloned()
        .collect();
    headers.push((CACHE_HEADER.into(), answer.source.as_str().into()));
    ProxyResponse {
        status: r.status,
        headers,
        body: r.body.clone(),
    }
}

pub fn failure_response(failure: &Failure) -> ProxyResponse {
    ProxyResponse::json(503, &serde_json::json!({ "error": failure.to_string() }))
}

/// The proxy: config plus routing.
#[derive(Debug, Clone)]
pub struct Proxy {
    config: ProxyConfig,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Result<Proxy, ConfigFileErrors> {
        for (i, u) in config.upstreams.iter().enumerate() {
            u.coordination
                .validate()
                .map_err(|e| problem(&format!("upstreams[{i}].coordination"), e.to_string()))?;
        }
        Ok(Proxy { config })
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    pub fn route(
        &self,
        _listener: Option<usize>,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Forward, Rejection> {
        let (upstream, rest) = self
            .config
            .upstreams
            .iter()
            .enumerate()
            .find_map(|(i, u)| match u.prefix.as_deref() {
                Some(p) => target
                    .strip_prefix(p)
                    .filter(|r| r.is_empty() || r.starts_with('/') || r.starts_with('?'))
                    .map(|r| (i, r)),
                None => Some((i, target)),
            })
            .ok_or_else(|| Rejection::NoUpstream(target.to_owned()))?;
        let path_and_query = if rest.is_empty() || rest.starts_with('?') {
            format!("/{rest}")
        } else {
            rest.to_owned()
        };
        let coordination = &self.config.upstreams[upstream].coordination;
        let client = syncoord_core::http::header(headers, CLIENT_HEADER).unwrap_or("anonymous");
        let mut request = Request::new(Method::new(method), &path_and_query, client);
        if let Some(p) = syncoord_core::http::header(headers, PRIORITY_HEADER) {
            let class = coordination
                .class_id(p)
                .ok_or_else(|| Rejection::UnknownPriority(p.to_owned()))?;
            request = request.with_priority(class);
        }
        request.credential =
            syncoord_core::http::credential_identity(headers, &coordination.credential_headers);
        let outgoing = Outgoing {
            method: method.to_ascii_uppercase(),
            path_and_query,
            headers: headers
                .iter()
                .filter(|(n, _)| {
                    !HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h))
                        && !n.to_ascii_lowercase().starts_with("x-syncoord-")
                })
                .cloned()
                .collect(),
            body,
        };
        Ok(Forward {
            upstream,
            request,
            outgoing,
        })
    }

    /// One core per upstream rate-limit scope instance.
    pub fn shard(&self, forward: &Forward) -> String {
        let name = &self.config.upstreams[forward.upstream].name;
        match &forward.request.credential {
            Some(c) => format!("{name}/cred/{}", c.as_str()),
            None => format!("{name}/global"),
        }
    }
}
