//! Nothing reachable by accident: which `Host` names the daemon answers
//! for, and where its admin endpoints (dashboard, stats, metrics) answer.
//!
//! DNS rebinding: a web page a trader opens can point its own name at
//! 127.0.0.1 and read whatever the daemon answers to it. A browser always
//! sends that name in `Host`, so the daemon answers only names it knows:
//! any IP address (a rebinding page has a name, never an address),
//! `localhost` and `*.localhost` (which no outsider can own), a name
//! without a dot (a machine or container name from `/etc/hosts` or a
//! compose network, which public DNS cannot hand an attacker), the
//! configured upstreams' hosts, and the operator's `server.allowed_hosts`.
//! Requests in absolute form (`http://host/...`), CONNECTs and requests
//! inside an intercepted tunnel name their origin, which the proxy only
//! routes to configured upstreams, so they need no `Host` check.
//!
//! The admin endpoints name every client and credential. They are served
//! on `server.admin_listen` when it is set, otherwise on loopback
//! listeners; anywhere else only to requests carrying the admin token
//! (`server.admin_token_env`). Health stays open: probes must reach it.

use std::net::{IpAddr, SocketAddr};

use subtle::ConstantTimeEq;
use syncoord_core::Response;
use syncoord_proxy::{Endpoint, ProxyConfig};
use syncoord_server::HttpRequest;
use syncoord_wire::SecretSource;
use zeroize::Zeroizing;

/// The shortest admin token accepted: 32 characters (128 bits or more
/// from any of the usual generators).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Why the exposure settings do not make a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    /// `admin_token_env` names a variable that is not set.
    #[error("server.admin_token_env: env var `{0}` is not set")]
    TokenUnset(String),
    /// The admin token is too short to resist guessing.
    #[error("server.admin_token_env: the token in `{name}` has {chars} characters; at least {MIN_ADMIN_TOKEN_CHARS} are needed (make one with `openssl rand -hex 32`)")]
    TokenWeak {
        /// The variable's name.
        name: String,
        /// How many characters it holds.
        chars: usize,
    },
}

/// The Host allowlist and the admin token, from `[server]`.
pub(crate) struct Exposure {
    /// Lower-case names accepted besides the built-in ones.
    names: Vec<String>,
    any_host: bool,
    token: Option<Zeroizing<String>>,
    /// `admin_listen` is set: only that listener serves the admin endpoints
    /// without a token.
    dedicated_admin: bool,
}

/// What a listener may answer of the admin endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminAccess {
    /// Served to any request (the admin listener, or a loopback listener
    /// when there is none).
    Open,
    /// Served only to requests carrying the admin token.
    TokenOnly,
}

impl Exposure {
    pub(crate) fn new(
        config: &ProxyConfig,
        secrets: &dyn SecretSource,
    ) -> Result<Exposure, ExposureError> {
        let settings = &config.server;
        let mut names: Vec<String> = settings
            .allowed_hosts
            .iter()
            .map(|h| strip_port(h).to_ascii_lowercase())
            .collect();
        names.extend(
            config
                .upstreams
                .iter()
                .filter_map(|u| url_host(&u.url))
                .map(str::to_ascii_lowercase),
        );
        let token = match &settings.admin_token_env {
            None => None,
            Some(name) => {
                let token = secrets
                    .env(name)
                    .ok_or_else(|| ExposureError::TokenUnset(name.clone()))?;
                let chars = token.trim().chars().count();
                if chars < MIN_ADMIN_TOKEN_CHARS {
                    return Err(ExposureError::TokenWeak {
                        name: name.clone(),
                        chars,
                    });
                }
                Some(Zeroizing::new(token.trim().to_owned()))
            }
        };
        Ok(Exposure {
            any_host: settings.allowed_hosts.iter().any(|h| h == "*"),
            names,
            token,
            dedicated_admin: settings.admin_listen.is_some(),
        })
    }

    /// What a listener bound at `addr` may answer of the admin endpoints;
    /// `admin`: it is `admin_listen`. Warns when it serves them openly on
    /// a non-loopback address.
    pub(crate) fn access(&self, addr: SocketAddr, admin: bool) -> AdminAccess {
        let open = if self.dedicated_admin {
            admin && self.token.is_none()
        } else {
            addr.ip().is_loopback() && self.token.is_none()
        };
        if open && !addr.ip().is_loopback() {
            tracing::warn!(listen = %addr, "the dashboard, stats and metrics are served without a token on a non-loopback address; set server.admin_token_env");
        }
        if !open && !admin && !addr.ip().is_loopback() && self.token.is_none() {
            tracing::info!(listen = %addr, "the dashboard, stats and metrics are not served on this non-loopback listener (set server.admin_listen or server.admin_token_env)");
        }
        if open {
            AdminAccess::Open
        } else {
            AdminAccess::TokenOnly
        }
    }

    /// `None` when the request may be answered; otherwise the refusal.
    pub(crate) fn check_host(&self, request: &HttpRequest) -> Option<Response> {
        if self.any_host
            || request.tunnel.is_some()
            || request.method.eq_ignore_ascii_case("CONNECT")
            || !request.target.starts_with('/')
        {
            return None;
        }
        // HTTP/1.0 without `Host`: no browser sends that.
        let host = request.header("host")?;
        let name = strip_port(host.trim()).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        let known = name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || (!name.is_empty() && !name.contains('.'))
            || self.names.iter().any(|n| n == name);
        if known {
            return None;
        }
        tracing::info!(peer = %request.peer, host = %host.escape_debug(), "refused: Host not allowed");
        Some(refusal(
            403,
            "host_not_allowed",
            "this Host is not one syncoord answers for; add it to server.allowed_hosts",
        ))
    }

    /// `None` when `endpoint` may be answered on a listener with `access`.
    pub(crate) fn check_admin(
        &self,
        endpoint: Endpoint,
        access: AdminAccess,
        request: &HttpRequest,
    ) -> Option<Response> {
        if matches!(endpoint, Endpoint::Health) || access == AdminAccess::Open {
            return None;
        }
        // The page and its assets hold no figures: with a token they are
        // served to anyone, so that a browser (which cannot add a header
        // to a navigation) loads the page; the page then sends the token,
        // taken from its URL fragment, on its fetches of the stats.
        if self.token.is_some() && !endpoint.reads_stats() {
            return None;
        }
        if let Some(token) = &self.token {
            let offered = request
                .header("x-syncoord-admin-token")
                .or_else(|| {
                    request
                        .header("authorization")
                        .and_then(|v| v.strip_prefix("Bearer "))
                })
                .map(str::trim);
            if offered.is_some_and(|o| bool::from(o.as_bytes().ct_eq(token.as_bytes()))) {
                return None;
            }
            tracing::info!(peer = %request.peer, "admin endpoint refused: no valid admin token");
            return Some(refusal(
                401,
                "admin_token_required",
                "this endpoint needs the admin token (Authorization: Bearer <token>)",
            ));
        }
        Some(refusal(
            403,
            "admin_not_here",
            "the dashboard, stats and metrics are served on server.admin_listen or a loopback listener, or with server.admin_token_env",
        ))
    }
}

/// A JSON error of ours, with `X-Syncoord-Error: <kind>`.
pub(crate) fn refusal(status: u16, kind: &str, message: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Syncoord-Error".into(), kind.into()),
        ],
        body: serde_json::json!({ "error": kind, "message": message })
            .to_string()
            .into_bytes(),
    }
}

/// `host[:port]` or `[v6]:port` without the port (and brackets).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}

/// The host of `scheme://host[:port]/...`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    Some(strip_port(authority)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_brackets_come_off() {
        assert_eq!(strip_port("localhost:8787"), "localhost");
        assert_eq!(strip_port("[::1]:8787"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("evil.example"), "evil.example");
        assert_eq!(
            url_host("https://api.coinbase.com/api"),
            Some("api.coinbase.com")
        );
        assert_eq!(url_host("http://127.0.0.1:9/x"), Some("127.0.0.1"));
    }
}
