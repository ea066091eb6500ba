//! Health: healthy, degraded or unhealthy, with the reasons, as hosts
//! publish at `/api/v1/sync-coordination/health` (200, 200, 503).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::breaker::BreakerState;
use crate::breakers::BreakerSnapshot;
use crate::config::HealthConfig;
use crate::limiter::BucketSnapshot;

/// Overall verdict, or one reason's severity; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing wrong (HTTP 200).
    Healthy,
    /// Working, but slowed or partly impaired (HTTP 200).
    Degraded,
    /// Seriously impaired: many 429s or a long queue wait (HTTP 503).
    Unhealthy,
}

/// One reason the coordinator is not plainly healthy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// How bad this reason is on its own (never `Healthy`).
    pub severity: Status,
    /// Stable machine-readable name, one of [`CODES`].
    pub code: &'static str,
    /// Human-readable detail, e.g. the wait or the scope concerned.
    pub message: String,
}

/// Every [`Reason::code`] the coordinator gives. Deserialising a health
/// report (the edge host carries them from its Durable Objects to the
/// Worker as JSON) maps a code back to its `'static` name here.
pub const CODES: &[&str] = &[
    "upstream_rate_limited",
    "queue_wait",
    "queue_full",
    "breaker_open",
    "scope_paused",
    "shared_store_unreachable",
    // The daemon's local CA for CONNECT interception cannot be opened.
    "ca_unavailable",
];

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            severity: Status,
            code: String,
            message: String,
        }
        let w = Wire::deserialize(d)?;
        let code = CODES
            .iter()
            .find(|c| **c == w.code)
            .copied()
            .ok_or_else(|| D::Error::custom(format!("unknown health reason code `{}`", w.code)))?;
        Ok(Reason {
            severity: w.severity,
            code,
            message: w.message,
        })
    }
}

/// A health report: the body of `/api/v1/sync-coordination/health` and
/// the `health` field of the stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// The worst severity among `reasons`; `Healthy` when there are none.
    pub status: Status,
    /// Everything that is not plainly healthy; empty when healthy.
    pub reasons: Vec<Reason>,
}

/// What health is judged on.
pub(crate) struct Inputs<'a> {
    pub recent_rate_limited: u64,
    pub oldest_wait_secs: Option<f64>,
    pub queue_depth: usize,
    pub queue_max: usize,
    pub scopes: &'a [BucketSnapshot],
    /// Route breakers that are not closed and idle.
    pub breakers: &'a [BreakerSnapshot],
    /// The shared store this coordinator cannot reach, and the share of the
    /// budget it limits itself to meanwhile.
    pub store: Option<(&'a str, f64)>,
}

pub(crate) fn assess(config: &HealthConfig, inputs: &Inputs<'_>) -> Health {
    let mut reasons = Vec::new();
    let mut push = |severity, code, message: String| {
        debug_assert!(
            CODES.contains(&code),
            "reason code `{code}` missing from CODES"
        );
        reasons.push(Reason {
            severity,
            code,
            message,
        })
    };

    if let Some((store, share)) = inputs.store {
        push(
            Status::Degraded,
            "shared_store_unreachable",
            format!(
                "shared store {store} unreachable: limiting locally at {:.0}% of the budget",
                share * 100.0
            ),
        );
    }
    let n = inputs.recent_rate_limited;
    if n > 0 {
        let severity = if n >= config.unhealthy_429s {
            Status::Unhealthy
        } else {
            Status::Degraded
        };
        push(
            severity,
            "upstream_rate_limited",
            format!(
                "upstream answered 429 {n} time(s) in the last {:.0} s",
                config.window_secs
            ),
        );
    }
    if let Some(wait) = inputs.oldest_wait_secs {
        if wait > config.unhealthy_wait_secs {
            push(
                Status::Unhealthy,
                "queue_wait",
                format!(
                    "oldest queued request has waited {wait:.1} s (unhealthy above {:.1} s)",
                    config.unhealthy_wait_secs
                ),
            );
        } else if wait > config.degraded_wait_secs {
            push(
                Status::Degraded,
                "queue_wait",
                format!(
                    "oldest queued request has waited {wait:.1} s (degraded above {:.1} s)",
                    config.degraded_wait_secs
                ),
            );
        }
    }
    let fill = inputs.queue_depth as f64 / inputs.queue_max.max(1) as f64;
    if fill > config.degraded_queue_fill {
        push(
            Status::Degraded,
            "queue_full",
            format!(
                "queue is {:.0}% full ({} of {})",
                fill * 100.0,
                inputs.queue_depth,
                inputs.queue_max
            ),
        );
    }
    for s in inputs.scopes {
        let whose = s
            .credential
            .as_deref()
            .map(|c| format!(" for {c}"))
            .unwrap_or_default();
        if let Some(p) = s.paused_for_secs {
            push(
                Status::Degraded,
                "scope_paused",
                format!(
                    "scope `{}`{whose} is paused for {p:.1} s after an upstream 429",
                    s.scope
                ),
            );
        }
    }
    // One route's breaker takes down that route alone (other routes
    // answer): degraded, never unhealthy.
    for b in inputs.breakers {
        let whose = b
            .credential
            .as_deref()
            .map(|c| format!(" for {c}"))
            .unwrap_or_default();
        let state = match b.state {
            BreakerState::Closed => continue,
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        };
        push(
            Status::Degraded,
            "breaker_open",
            format!("circuit breaker for route `{}`{whose} is {state}", b.route),
        );
    }
    let status = reasons
        .iter()
        .map(|r| r.severity)
        .max()
        .unwrap_or(Status::Healthy);
    Health { status, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(credential: Option<&str>, paused: Option<f64>) -> BucketSnapshot {
        BucketSnapshot {
            scope: "public".into(),
            credential: credential.map(str::to_owned),
            tokens: 1.0,
            burst: 10,
            rate_per_sec: 9.0,
            budget_per_sec: 9.0,
            learned_per_sec: None,
            learned_from: None,
            learned_secs_ago: None,
            paused_for_secs: paused,
            calls: 1,
            rate_limited: 0,
        }
    }

    fn inputs(scopes: &[BucketSnapshot]) -> Inputs<'_> {
        Inputs {
            recent_rate_limited: 0,
            oldest_wait_secs: None,
            queue_depth: 0,
            queue_max: 100,
            scopes,
            breakers: &[],
            store: None,
        }
    }

    #[test]
    fn healthy_when_nothing_is_wrong() {
        let h = assess(&HealthConfig::default(), &inputs(&[bucket(None, None)]));
        assert_eq!(h.status, Status::Healthy);
        assert!(h.reasons.is_empty());
    }

    #[test]
    fn each_signal_degrades_with_a_reason() {
        let c = HealthConfig::default();
        let mut i = inputs(&[]);
        i.recent_rate_limited = 1;
        assert_eq!(assess(&c, &i).status, Status::Degraded);
        i.recent_rate_limited = c.unhealthy_429s;
        let h = assess(&c, &i);
        assert_eq!(h.status, Status::Unhealthy);
        assert_eq!(h.reasons[0].code, "upstream_rate_limited");

        let mut i = inputs(&[]);
        i.oldest_wait_secs = Some(c.degraded_wait_secs + 1.0);
        assert_eq!(assess(&c, &i).status, Status::Degraded);
        i.oldest_wait_secs = Some(c.unhealthy_wait_secs + 1.0);
        assert_eq!(assess(&c, &i).status, Status::Unhealthy);

        let mut i = inputs(&[]);
        i.queue_depth = 95;
        assert_eq!(assess(&c, &i).reasons[0].code, "queue_full");

        // A route's breaker open is that route's trouble alone.
        let open = [BreakerSnapshot {
            route: "candles".into(),
            credential: None,
            state: BreakerState::Open,
            failures: 5,
            retry_after_secs: Some(4.0),
        }];
        let mut i = inputs(&[]);
        i.breakers = &open;
        let h = assess(&c, &i);
        assert_eq!(
            (h.status, h.reasons[0].code),
            (Status::Degraded, "breaker_open")
        );
        assert!(h.reasons[0].message.contains("`candles`"));
        let paused = [bucket(None, Some(3.0))];
        let h = assess(&c, &inputs(&paused));
        assert_eq!(
            (h.status, h.reasons[0].code),
            (Status::Degraded, "scope_paused")
        );
    }

    #[test]
    fn health_round_trips_through_json() {
        let h = Health {
            status: Status::Degraded,
            reasons: CODES
                .iter()
                .map(|code| Reason {
                    severity: Status::Degraded,
                    code,
                    message: format!("because {code}"),
                })
                .collect(),
        };
        let json = serde_json::to_string(&h).expect("serialises");
        assert_eq!(
            serde_json::from_str::<Health>(&json).expect("deserialises"),
            h
        );
        let unknown =
            r#"{"status":"healthy","reasons":[{"severity":"healthy","code":"nope","message":""}]}"#;
        let err = serde_json::from_str::<Health>(unknown).expect_err("unknown code");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
