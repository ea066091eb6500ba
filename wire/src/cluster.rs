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
}
