//! `[server] tunnel`: hosts a `CONNECT` may open a plain TCP tunnel to,
//! untouched (no interception, no cache), so a bot behind `HTTPS_PROXY`
//! can still reach its notification API or price feed. Everything not
//! listed (and not a configured upstream, which is intercepted) stays
//! `403`.
//!
//! Entries: `host:port` (exact, case-insensitive), `*.example.com:443`
//! (any name under `example.com`, not `example.com` itself), and `*`
//! (anything: an open proxy, refused by the configuration check unless
//! every listener is on loopback).

use std::net::SocketAddr;

use crate::url::split_absolute;

/// One `tunnel` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `host:port`.
    Exact(String, u16),
    /// `*.suffix:port`: the suffix with its leading dot.
    Under(String, u16),
    /// `*`.
    Any,
}

/// The hosts `CONNECT` may tunnel to.
#[derive(Debug, Clone, Default)]
pub struct TunnelRules(Vec<Entry>);

/// A `CONNECT` target the rules let through: where to open the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    /// Lower-case host name or IP (IPv6 without brackets), as resolved.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl TunnelRules {
    /// The rules of `entries` (checked by the configuration check; an
    /// entry that does not parse lets nothing through).
    pub fn new(entries: &[String]) -> Self {
        TunnelRules(entries.iter().filter_map(|e| parse_entry(e).ok()).collect())
    }

    /// Whether no tunnel is allowed at all (the default).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The target of `CONNECT authority` if the rules let it through.
    pub fn allows(&self, authority: &str) -> Option<TunnelTarget> {
        if self.0.is_empty() {
            return None;
        }
        let (host, port) = authority_parts(authority)?;
        let ok = self.0.iter().any(|e| match e {
            Entry::Any => true,
            Entry::Exact(h, p) => *p == port && *h == host,
            Entry::Under(suffix, p) => *p == port && host.ends_with(suffix.as_str()),
        });
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map_or(host.clone(), str::to_owned);
        ok.then_some(TunnelTarget { host, port })
    }
}

/// `host:port` of a `CONNECT`, the host lower-case (IPv6 in brackets).
fn authority_parts(authority: &str) -> Option<(String, u16)> {
    let (_, port) = authority.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let url = format!("https://{authority}");
    let (origin, rest) = split_absolute(&url).ok()?;
    if !rest.is_empty() || origin.host.is_empty() {
        return None;
    }
    Some((origin.host, origin.port))
}

/// One entry, or why it is not one.
fn parse_entry(entry: &str) -> Result<Entry, String> {
    if entry == "*" {
        return Ok(Entry::Any);
    }
    let shape = || {
        format!(
            "`{}` is not `host:port`, `*.domain:port` or `*`",
            entry.escape_debug()
        )
    };
    match entry.strip_prefix("*.") {
        Some(rest) => {
            let (host, port) = authority_parts(rest).ok_or_else(shape)?;
            if host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok() {
                return Err(shape());
            }
            Ok(Entry::Under(format!(".{host}"), port))
        }
        None => {
            let (host, port) = authority_parts(entry).ok_or_else(shape)?;
            Ok(Entry::Exact(host, port))
        }
    }
}

/// The problems of `server.tunnel`, as `(field, message)`: entries that do
/// not parse, and `*` when a listener is not on loopback (`listeners`:
/// every address the daemon proxies on).
pub(crate) fn issues(entries: &[String], listeners: &[SocketAddr]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let field = format!("server.tunnel[{i}]");
        match parse_entry(e) {
            Err(why) => out.push((field, why)),
            Ok(Entry::Any) => {
                let open: Vec<String> = listeners
                    .iter()
                    .filter(|a| !a.ip().is_loopback())
                    .map(ToString::to_string)
                    .collect();
                if !open.is_empty() {
                    out.push((
                        field,
                        format!(
                            "`*` tunnels to any host: an open proxy for whoever reaches {}; allowed only when every listener is on loopback (list the hosts instead)",
                            open.join(", ")
                        ),
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(entries: &[&str]) -> TunnelRules {
        TunnelRules::new(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
    }

    fn target(host: &str, port: u16) -> Option<TunnelTarget> {
        Some(TunnelTarget {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn entries_match_host_and_port() {
        let r = rules(&["hooks.slack.com:443", "*.example.com:443", "[::1]:9000"]);
        assert_eq!(
            r.allows("HOOKS.slack.com:443"),
            target("hooks.slack.com", 443)
        );
        assert_eq!(r.allows("hooks.slack.com:80"), None);
        assert_eq!(r.allows("evil-hooks.slack.com:443"), None);
        assert_eq!(
            r.allows("a.b.example.com:443"),
            target("a.b.example.com", 443)
        );
        assert_eq!(
            r.allows("example.com:443"),
            None,
            "the domain itself is not under it"
        );
        assert_eq!(r.allows("badexample.com:443"), None);
        assert_eq!(r.allows("[::1]:9000"), target("::1", 9000));
        assert_eq!(r.allows("hooks.slack.com"), None, "no port");
        assert_eq!(r.allows("hooks.slack.com:443/x"), None);
        assert_eq!(
            rules(&[]).allows("hooks.slack.com:443"),
            None,
            "off by default"
        );
        assert_eq!(
            rules(&["*"]).allows("anything.at.all:22"),
            target("anything.at.all", 22)
        );
    }

    #[test]
    fn a_star_needs_every_listener_on_loopback() {
        let loopback: Vec<SocketAddr> = vec![
            "127.0.0.1:8787".parse().unwrap(),
            "[::1]:8443".parse().unwrap(),
        ];
        assert!(issues(&["*".into()], &loopback).is_empty());
        let open: Vec<SocketAddr> = vec![
            "127.0.0.1:8787".parse().unwrap(),
            "0.0.0.0:8788".parse().unwrap(),
        ];
        let found = issues(&["a.com:443".into(), "*".into()], &open);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "server.tunnel[1]");
        assert!(found[0].1.contains("0.0.0.0:8788"), "{found:?}");
        let bad = issues(
            &["a.com".into(), "*.1.2.3.4:443".into(), "*:443".into()],
            &loopback,
        );
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["server.tunnel[0]", "server.tunnel[1]", "server.tunnel[2]"]
        );
    }
}
