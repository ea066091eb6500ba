//! Signals in: what upstream's response headers say about its limits, as
//! plain data the limiter learns from. I/O-free, shared by every host.
//!
//! Read per [`SignalsConfig`]: the IETF `RateLimit-Policy` / `RateLimit`
//! fields (draft-ietf-httpapi-ratelimit-headers-12, Structured Fields,
//! parsed by `sfv`), the `x-ratelimit-limit/remaining/reset` family
//! (reset in seconds or a Unix time) and weight-style headers (units used
//! in a named window). A malformed field is ignored, never fatal: the
//! limiter then learns from 429s alone.

use web_time::Duration;

use crate::config::{ResetUnit, SignalsConfig};
use crate::http::{header, MAX_UPSTREAM_WAIT};

/// A limit upstream states: `quota` units per `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stated {
    /// Units allowed per window.
    pub quota: f64,
    /// The window.
    pub window: Duration,
}

impl Stated {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.quota / self.window.as_secs_f64()
    }
}

/// What one answer's headers say about upstream's limits; every part is
/// optional and independent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signals {
    /// The most restrictive limit stated.
    pub stated: Option<Stated>,
    /// Units left in the current window.
    pub remaining: Option<f64>,
    /// When the current window resets (or the quota is fully restored).
    pub reset: Option<Duration>,
    /// Units used in the current window of the given length (weights).
    pub used: Option<(f64, Duration)>,
}

impl Signals {
    /// Whether any signal is present.
    pub fn is_empty(&self) -> bool {
        *self == Signals::default()
    }
}

/// Reads `headers` as `config` says. `now_unix` reads an epoch reset
/// (upstream's own `Date` is preferred by the caller when present).
pub fn read_signals(
    headers: &[(String, String)],
    config: &SignalsConfig,
    now_unix: Option<u64>,
) -> Signals {
    let mut s = Signals::default();
    if config.ratelimit_fields {
        ietf(headers, &mut s);
    }
    let first = |names: &[String]| names.iter().find_map(|n| header(headers, n));
    if s.stated.is_none() {
        if let (Some(q), Some(w)) = (
            first(&config.limit).and_then(number),
            config.limit_window_secs,
        ) {
            s.stated = stated(q, w);
        }
    }
    if s.remaining.is_none() {
        s.remaining = first(&config.remaining).and_then(number);
    }
    if s.reset.is_none() {
        s.reset = first(&config.reset).and_then(|v| reset(v, config.reset_unit, now_unix));
    }
    if let Some(name) = &config.weight {
        if let Some(u) = header(headers, name).and_then(number) {
            if config.weight_window_secs > 0.0 && config.weight_window_secs.is_finite() {
                s.used = Some((u, Duration::from_secs_f64(config.weight_window_secs)));
            }
        }
    }
    s
}

/// A non-negative finite number.
fn number(v: &str) -> Option<f64> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

fn stated(quota: f64, window_secs: f64) -> Option<Stated> {
    (quota > 0.0 && quota.is_finite() && window_secs > 0.0 && window_secs.is_finite()).then(|| {
        Stated {
            quota,
            window: Duration::from_secs_f64(window_secs.min(1e9)),
        }
    })
}

/// Unix times are larger than this; delays in seconds are smaller.
const UNIX_TIME_THRESHOLD: f64 = 1_000_000_000.0;

fn reset(v: &str, unit: ResetUnit, now_unix: Option<u64>) -> Option<Duration> {
    let n = number(v)?;
    let epoch = match unit {
        ResetUnit::Seconds => false,
        ResetUnit::Epoch => true,
        ResetUnit::Auto => n >= UNIX_TIME_THRESHOLD,
    };
    let secs = if epoch {
        (n - now_unix? as f64).max(0.0)
    } else {
        n
    };
    Some(Duration::from_secs_f64(secs).min(MAX_UPSTREAM_WAIT))
}

/// `RateLimit-Policy` and `RateLimit` (draft 12): Lists of Items whose
/// value names the policy (String or Token), with `q` (quota) and `w`
/// (window, seconds) on a policy, `r` (remaining) and `t` (reset, seconds)
/// on a limit. Several fields of one name are one List (RFC 9651 3.1).
/// With several policies, the one of the lowest rate is the binding one;
/// with several limits, the lowest remaining.
fn ietf(headers: &[(String, String)], s: &mut Signals) {
    let joined = |name: &str| {
        let parts: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    };
    let mut policies = Vec::new();
    if let Some(v) = joined("ratelimit-policy") {
        for params in list(&v) {
            let q = params.iter().find(|(k, _)| k == "q").and_then(|(_, n)| *n);
            // Without `w` the draft leaves the window to the server;
            // nothing here can be learned as a rate.
            let w = params.iter().find(|(k, _)| k == "w").and_then(|(_, n)| *n);
            if let Some(stated) = q.zip(w).and_then(|(q, w)| stated(q, w)) {
                policies.push(stated);
            }
        }
    }
    s.stated = policies
        .into_iter()
        .min_by(|a, b| a.rate().total_cmp(&b.rate()));
    if let Some(v) = joined("ratelimit") {
        let mut best: Option<(f64, Option<f64>)> = None;
        for params in list(&v) {
            let r = params.iter().find(|(k, _)| k == "r").and_then(|(_, n)| *n);
            let t = params.iter().find(|(k, _)| k == "t").and_then(|(_, n)| *n);
            // Whichever policy it names, the lowest remaining binds.
            if let Some(r) = r {
                if best.is_none_or(|(b, _)| r < b) {
                    best = Some((r, t));
                }
            }
        }
        if let Some((r, t)) = best {
            s.remaining = Some(r);
            s.reset = t.map(|t| Duration::from_secs_f64(t).min(MAX_UPSTREAM_WAIT));
        }
    }
}

/// A Structured Fields List of Items as their numeric parameters (the
/// item itself names the policy, which nothing here needs); an unparsable
/// field is an empty list. Inner lists are skipped.
fn list(v: &str) -> Vec<Vec<(String, Option<f64>)>> {
    let Ok(parsed) = sfv::Parser::new(v).parse_list::<sfv::List>() else {
        return Vec::new();
    };
    parsed
        .into_iter()
        .filter_map(|entry| match entry {
            sfv::ListEntry::Item(item) => Some(item),
            sfv::ListEntry::InnerList(_) => None,
        })
        .map(|item| {
            item.params
                .iter()
                .map(|(k, v)| {
                    let n = match v {
                        sfv::BareItem::Integer(i) => Some(i64::from(*i) as f64),
                        sfv::BareItem::Decimal(d) => Some(f64::from(*d)),
                        _ => None,
                    };
                    (k.as_str().to_owned(), n.filter(|n| *n >= 0.0))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests;
