//! The simulated upstream: its latency, its faults, and its own GCRA per
//! documented limit (a call past it is answered 429).

use syncoord_core::config::secs;
use syncoord_core::{Duration, Instant, Response};

use super::{Sent, Sim};
use crate::scenario::{FaultKind, Latency};

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
            if tat + interval > arrival + interval * l.burst {
                self.limits[i].rejected += 1;
                self.upstream_429s += 1;
                return Some(Response::new(
                    429,
                    r#"{"message":"Public rate limit exceeded"}"#,
                ));
            }
            counted.push((key, tat + interval));
        }
        for (key, tat) in counted {
            self.limits[key.0].accepted += 1;
            self.upstream_tat.insert(key, tat);
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
        Some(Response::new(200, body).with_header("content-type", "application/json"))
    }
}
