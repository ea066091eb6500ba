//! `[cluster]`: daemons that share one budget, and their answers, through
//! Redis.
//!
//! ```toml
//! [cluster]
//! redis_url = "rediss://:secret@redis.internal:6380/2"
//! name = "prod-coinbase"     # daemons with the same name share; prefixes every key
//! ```
//!
//! Without `[cluster]` a daemon coordinates alone, exactly as before. The
//! host does the Redis calls; this is only what the file says, checked.

use serde::{Deserialize, Serialize};
use syncoord_core::config::secs;
use syncoord_core::Duration;

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// `redis://[user][:password@]host[:port][/db]`, or `rediss://` for
    /// TLS. Required.
    pub redis_url: String,
    /// Daemons with the same name share budgets and answers; it prefixes
    /// every key (letters, digits, `-`, `_`, `.`). Required.
    pub name: String,
    /// Longest wait for one Redis call (a script run, a read, a write);
    /// past it the call counts as an error and the daemon limits locally.
    pub call_timeout_secs: f64,
    /// Longest wait to open a connection to Redis.
    pub connect_timeout_secs: f64,
    /// How often a daemon records that it is alive; the others count the
    /// daemons seen within three of these.
    pub heartbeat_secs: f64,
    /// Share of each budget a daemon uses while Redis cannot be reached.
    /// Absent: 1 / the number of daemons last seen alive.
    pub fallback_share: Option<f64>,
    /// Share answers: on a local miss look in Redis before calling
    /// upstream, and store what upstream answers there for its TTL.
    pub share_answers: bool,
    /// Answers larger than this (body and headers) are not shared.
    pub max_answer_bytes: usize,
    /// Shared coalescing: the daemon fetching a key holds a lease this
    /// long; the others poll for its answer meanwhile rather than fetch
    /// too. A leader that dies loses the lease when it expires.
    pub lease_secs: f64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            redis_url: String::new(),
            name: String::new(),
            call_timeout_secs: 0.05,
            connect_timeout_secs: 0.25,
            heartbeat_secs: 1.0,
            fallback_share: None,
            share_answers: true,
            max_answer_bytes: 256 * 1024,
            lease_secs: 1.0,
        }
    }
}

impl ClusterSettings {
    /// [`Self::call_timeout_secs`].
    pub fn call_timeout(&self) -> Duration {
        secs(self.call_timeout_secs)
    }
    /// [`Self::connect_timeout_secs`].
    pub fn connect_timeout(&self) -> Duration {
        secs(self.connect_timeout_secs)
    }
    /// [`Self::heartbeat_secs`].
    pub fn heartbeat(&self) -> Duration {
        secs(self.heartbeat_secs)
    }
    /// [`Self::lease_secs`].
    pub fn lease(&self) -> Duration {
        secs(self.lease_secs)
    }

    /// The store as health and logs name it: the URL without user or
    /// password.
    pub fn store_name(&self) -> String {
        match self.redis_url.split_once("://") {
            Some((scheme, rest)) => {
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{rest}")
            }
            None => self.redis_url.clone(),
        }
    }

    /// Every problem, as `(field under cluster, message)`.
    pub fn issues(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(why) = check_redis_url(&self.redis_url) {
            out.push(("redis_url", why));
        }
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            out.push((
                "name",
                format!(
                    "`{}` must be 1 to 64 letters, digits, `-`, `_` or `.` (it prefixes every Redis key)",
                    self.name
                ),
            ));
        }
        let times = [
            ("call_timeout_secs", self.call_timeout_secs, 10.0),
            ("connect_timeout_secs", self.connect_timeout_secs, 60.0),
            ("heartbeat_secs", self.heartbeat_secs, 3600.0),
            ("lease_secs", self.lease_secs, 60.0),
        ];
        for (field, value, max) in times {
            if !(value.is_finite() && value > 0.0 && value <= max) {
                out.push((
                    field,
                    format!("must be more than 0 and at most {max} seconds (got {value})"),
                ));
            }
        }
        if let Some(share) = self.fallback_share {
            if !(share.is_finite() && share > 0.0 && share <= 1.0) {
                out.push((
                    "fallback_share",
                    format!("must be more than 0 and at most 1 (got {share})"),
                ));
            }
        }
        if !(1..=(64 << 20)).contains(&self.max_answer_bytes) {
            out.push((
                "max_answer_bytes",
                format!(
                    "must be between 1 and {} (got {})",
                    64 << 20,
                    self.max_answer_bytes
                ),
            ));
        }
        out
    }
}

/// What makes two daemons' shared state the same, published by each
/// daemon (one per upstream) so that peers under one cluster `name` can
/// see when they disagree.
///
/// - `url`: where the calls go. Budgets and answers are keyed by it, so a
///   staging daemon and a production daemon under one name never share an
///   answer or a bucket (their upstreams are different servers).
/// - `limits`: a digest of the limits this daemon paces by (scopes and the
///   queue's reserve). It is compared, not keyed by: two daemons that pace
///   one upstream budget with different limits still share one GCRA state
///   per bucket, which keeps them together under the larger of the two
///   limits, where separate states would let them spend the sum.
///   Disagreeing is a configuration error, logged at `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The upstream's name in this daemon's file (for messages only).
    pub upstream: String,
    /// The upstream's URL, without user or password, scheme and host in
    /// lower case, no trailing `/`.
    pub url: String,
    /// 16 hex digits of SHA-256 over the limits, as the daemon renders them.
    pub limits: String,
}

impl Fingerprint {
    /// The fingerprint of `upstream` at `url`, pacing by `limits` (any
    /// stable rendering of them: the same limits must give the same text).
    pub fn new(upstream: &str, url: &str, limits: &str) -> Fingerprint {
        Fingerprint {
            upstream: upstream.to_owned(),
            url: normalize_url(url),
            limits: hex16(limits.as_bytes()),
        }
    }

    /// 16 hex digits of SHA-256 over the URL: what keys live under.
    pub fn url_key(&self) -> String {
        hex16(self.url.as_bytes())
    }

    /// As published in the store: `limits url upstream` (the URL and name
    /// hold no space: a URL has none, names are checked).
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.limits, self.url, self.upstream)
    }

    /// [`Self::encode`] read back; `None` for anything else.
    pub fn decode(text: &str) -> Option<Fingerprint> {
        let mut parts = text.splitn(3, ' ');
        let limits = parts.next()?.to_owned();
        let url = parts.next()?.to_owned();
        let upstream = parts.next()?.to_owned();
        (limits.len() == 16 && limits.bytes().all(|b| b.is_ascii_hexdigit())).then_some(
            Fingerprint {
                upstream,
                url,
                limits,
            },
        )
    }

    /// Why a peer's fingerprint disagrees with this one, if it does: the
    /// same upstream name at another URL (its answers and budgets are
    /// kept apart), or the same URL paced by other limits.
    pub fn disagreement(&self, peer: &Fingerprint) -> Option<String> {
        if peer.url == self.url {
            (peer.limits != self.limits).then(|| {
                format!(
                    "a peer paces {} with other limits (fingerprint {}, ours {}): the daemons share one budget but disagree on it; give them the same [scopes] and [queue]",
                    self.url, peer.limits, self.limits
                )
            })
        } else if peer.upstream == self.upstream {
            Some(format!(
                "a peer's upstream `{}` is {}, ours is {}: answers and budgets are not shared between them; use one cluster name per upstream",
                self.upstream, peer.url, self.url
            ))
        } else {
            None
        }
    }
}

fn hex16(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Scheme and host in lower case, no user or password, no trailing `/`.
fn normalize_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

/// `redis://` or `rediss://`, a host, a port if any, a database number if
/// any. The client reads the rest.
fn check_redis_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("is required (e.g. `redis://127.0.0.1:6379`)".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{url}` is not a URL (redis://host:port or rediss://host:port)"
        ));
    };
    if scheme != "redis" && scheme != "rediss" {
        return Err(format!(
            "scheme `{scheme}` is not supported (redis:// or rediss:// for TLS)"
        ));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(format!("`{host_port}`: unclosed `[` in the host")),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("port `{p}` is not a number from 1 to 65535"));
        }
    }
    let db = tail.split('?').next().unwrap_or("").trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("database `{db}` is not a number"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "rediss://:pw@redis.internal:6380/2",
            "redis://user:p%40ss@[::1]:7000/0",
        ] {
            assert_eq!(check_redis_url(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "required"),
            ("http://h:1", "scheme `http`"),
            ("redis://:pw@", "no host"),
            ("redis://h:0", "port `0`"),
            ("redis://h:99999", "port `99999`"),
            ("redis://h:1/x", "database `x`"),
            ("127.0.0.1:6379", "not a URL"),
        ] {
            let e = check_redis_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_store_is_named_without_its_password() {
        let c = ClusterSettings {
            redis_url: "rediss://user:secret@redis.internal:6380/2".into(),
            ..ClusterSettings::default()
        };
        assert_eq!(c.store_name(), "rediss://redis.internal:6380/2");
    }

    #[test]
    fn fingerprints_key_by_the_url_and_compare_the_limits() {
        let prod = Fingerprint::new("cb", "https://API.coinbase.com/", "limits-a");
        let same = Fingerprint::new("coinbase", "https://user:pw@api.coinbase.com", "limits-a");
        assert_eq!(prod.url, "https://api.coinbase.com");
        assert_eq!(prod.url_key(), same.url_key());
        assert_eq!(
            prod.disagreement(&same),
            None,
            "another name, same upstream"
        );
        let staging = Fingerprint::new("cb", "https://api-sandbox.coinbase.com", "limits-a");
        assert_ne!(prod.url_key(), staging.url_key());
        let why = prod.disagreement(&staging).expect("same name, other URL");
        assert!(why.contains("api-sandbox"), "{why}");
        let other_limits = Fingerprint::new("cb", "https://api.coinbase.com", "limits-b");
        let why = prod.disagreement(&other_limits).expect("other limits");
        assert!(why.contains("other limits"), "{why}");
        let unrelated = Fingerprint::new("exchange", "https://api.exchange.coinbase.com", "x");
        assert_eq!(prod.disagreement(&unrelated), None);
        assert_eq!(Fingerprint::decode(&prod.encode()), Some(prod));
        assert_eq!(Fingerprint::decode("garbage"), None);
        assert_eq!(Fingerprint::decode("zz a b"), None);
    }
}
