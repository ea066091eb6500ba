//! The simulated upstream: its latency, its faults, and its own GCRA per
//! documented limit (a call past it is answered 429).

use syncoord_core::config::secs;
use syncoord_core::{Duration, Instant, Response};

use super::{Sent, Sim};
use crate::scenario::{FaultKind, HeaderStyle, Latency};

/// What the binding limit looked like after a call: for headers.
struct Level {
    /// Calls per period, and the period in seconds.
    rate: f64,
    period: f64,
    /// Whole calls left now.
    remaining: u64,
    /// Seconds until the bucket is full again.
    reset: f64,
    /// Units accepted in the current minute.
    used: u64,
}

impl Sim<'_> {
    pub(super) fn latency(&mut self) -> Duration {
        match self.s.upstream.latency {
            Latency::Uniform(lo, hi) => lo + (hi.saturating_sub(lo)).mul_f64(self.rng.f64()),
            Latency::LogNormal { median, p99 } => {
                // Box-Muller: a standard normal from two uniforms.
                let (u1, u2) = (1.0 - self.rng.f64(), self.rng.f64());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let sigma = (p99.as_secs_f64() / median.as_secs_f64()).ln() / 2.326_348;
                secs(median.as_secs_f64() * (sigma * z).exp())
            }
        }
    }

    /// The upstream receives a call at `arrival`: a fault window first,
    /// then its limits, then answers like Coinbase would.
    pub(super) fn upstream(&mut self, arrival: Instant, sent: &Sent) -> Option<Response> {
        let u = &self.s.upstream;
        let since = arrival.saturating_duration_since(self.t0);
        if self.banned_until.is_some_and(|b| arrival < b) {
            self.banned_calls += 1;
            return Some(Response::new(418, r#"{"message":"IP banned"}"#));
        }
        for f in &u.faults {
            if since < f.start || since >= f.start + f.duration {
                continue;
            }
            match f.kind {
                FaultKind::RateLimited { retry_after } => {
                    self.fault_429s += 1;
                    let mut r = Response::new(429, r#"{"message":"Rate limit exceeded"}"#);
                    if let Some(after) = retry_after {
                        r = r.with_header("retry-after", &after.as_secs().max(1).to_string());
                    }
                    return Some(r);
                }
                FaultKind::Outage => return None,
                FaultKind::ServerErrors { probability } => {
                    if self.rng.f64() < probability {
                        return Some(Response::new(503, "<html>Service Unavailable</html>"));
                    }
                }
            }
        }
        let route = self.p.rules.route(&sent.method, &sent.path);
        let mut counted = Vec::new();
        let mut level: Option<Level> = None;
        for (i, l) in u.limits.iter().enumerate() {
            if let Some(scope) = self.p.limits[i] {
                if !route.scopes.contains(&scope) {
                    continue;
                }
            } else if l.scope.is_some() {
                continue;
            }
            let key = (i, if l.per_credential { sent.credential } else { 0 });
            let interval = l.period.div_f64(l.rate);
            let tat = self
                .upstream_tat
                .get(&key)
                .copied()
                .unwrap_or(self.t0)
                .max(arrival);
            let minute = since.as_secs() / 60;
            if tat + interval > arrival + interval * l.burst {
                self.limits[i].rejected += 1;
                self.upstream_429s += 1;
                self.rejected(arrival);
                let mut r = Response::new(429, r#"{"message":"Public rate limit exceeded"}"#);
                if u.headers != HeaderStyle::None {
                    let wait =
                        (tat + interval).saturating_duration_since(arrival + interval * l.burst);
                    r = r.with_header(
                        "retry-after",
                        &wait.as_secs_f64().ceil().max(1.0).to_string(),
                    );
                }
                return Some(r);
            }
            let after = tat + interval;
            let used = match self.upstream_weight.get(&key) {
                Some(&(m, n)) if m == minute => n + 1,
                _ => 1,
            };
            let full = after.saturating_duration_since(arrival);
            let remaining = ((interval * l.burst).saturating_sub(full).as_secs_f64()
                / interval.as_secs_f64())
            .floor() as u64;
            if level.as_ref().is_none_or(|lv| remaining < lv.remaining) {
                level = Some(Level {
                    rate: l.rate,
                    period: l.period.as_secs_f64(),
                    remaining,
                    reset: full.as_secs_f64(),
                    used,
                });
            }
            counted.push((key, after, minute, used));
        }
        for (key, tat, minute, used) in counted {
            self.limits[key.0].accepted += 1;
            self.upstream_tat.insert(key, tat);
            self.upstream_weight.insert(key, (minute, used));
        }
        if self.rng.f64() < u.timeout_rate {
            return None;
        }
        if self.rng.f64() < u.error_rate {
            return Some(Response::new(503, "<html>Service Unavailable</html>"));
        }
        let body = if sent.path.ends_with("/accounts") {
            format!(
                r#"{{"credential":{},"accounts":[{{"currency":"USD","available":"1000.00"}}]}}"#,
                sent.credential
            )
        } else if !sent.method.is_cacheable() {
            r#"{"success":true,"order_id":"sim"}"#.to_owned()
        } else {
            format!(
                r#"{{"path":"{}","price":"{}"}}"#,
                sent.path,
                self.rng.u32(10_000..70_000)
            )
        };
        let mut r = Response::new(200, body).with_header("content-type", "application/json");
        if let Some(lv) = level {
            r = with_level(r, u.headers, &lv);
        }
        Some(r)
    }

    /// A 429 past the limits: the learning curve, and the ban rule.
    fn rejected(&mut self, arrival: Instant) {
        let minute = arrival.saturating_duration_since(self.t0).as_secs() as usize / 60;
        if self.curve.len() <= minute {
            self.curve.resize(minute + 1, 0);
        }
        self.curve[minute] += 1;
        let Some(ban) = self.s.upstream.ban else {
            return;
        };
        self.recent_429s.push_back(arrival);
        while self
            .recent_429s
            .front()
            .is_some_and(|&t| arrival.saturating_duration_since(t) > ban.within)
        {
            self.recent_429s.pop_front();
        }
        if self.recent_429s.len() >= ban.after as usize {
            self.bans += 1;
            self.banned_until = Some(arrival + ban.ban_for);
            self.recent_429s.clear();
        }
    }
}

/// `r` with the headers of `style` stating `lv`.
fn with_level(r: Response, style: HeaderStyle, lv: &Level) -> Response {
    let reset = lv.reset.ceil().to_string();
    match style {
        HeaderStyle::None => r,
        HeaderStyle::XRateLimit => r
            .with_header("x-ratelimit-limit", &lv.rate.to_string())
            .with_header("x-ratelimit-remaining", &lv.remaining.to_string())
            .with_header("x-ratelimit-reset", &reset),
        HeaderStyle::RateLimit => r
            .with_header(
                "ratelimit-policy",
                &format!(r#""sim";q={};w={}"#, lv.rate.floor(), lv.period.ceil()),
            )
            .with_header(
                "ratelimit",
                &format!(r#""sim";r={};t={reset}"#, lv.remaining),
            ),
        HeaderStyle::Weight => r.with_header("x-mbx-used-weight-1m", &lv.used.to_string()),
    }
}
