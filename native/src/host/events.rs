//! Events worth a log line, said once per occurrence and never per
//! request: a limiter bucket paused by an upstream 429 (scope, whose,
//! how long), and the same bucket sending again. A storm of 429s on the
//! calls already in flight extends one pause and logs nothing more. And
//! each route breaker's transition, as the core recorded it once.

use std::collections::HashSet;

use syncoord_core::stats::BucketSnapshot;
use syncoord_core::{BreakerEvent, BreakerTransition};

/// Logs route breaker transitions: opening at `warn` (a route stops
/// being asked), half-open and closing at `info`. Returns the lines.
pub(crate) fn log_breakers(upstream: &str, events: &[BreakerEvent]) -> usize {
    for e in events {
        let credential = e.credential.as_deref().unwrap_or("-");
        match e.transition {
            BreakerTransition::Opened => tracing::warn!(
                upstream,
                route = %e.route,
                credential,
                reason = %e.reason,
                open_secs = format_args!("{:.1}", e.open_secs.unwrap_or(0.0)),
                "circuit breaker opened: the route's calls are refused (or served stale) until a probe succeeds"
            ),
            BreakerTransition::HalfOpen => tracing::info!(
                upstream,
                route = %e.route,
                credential,
                reason = %e.reason,
                "circuit breaker half-open: one probe sent"
            ),
            BreakerTransition::Closed => tracing::info!(
                upstream,
                route = %e.route,
                credential,
                reason = %e.reason,
                "circuit breaker closed: the route is answering again"
            ),
        }
    }
    events.len()
}

/// The buckets whose pause was logged and whose recovery was not yet.
#[derive(Debug, Default)]
pub(crate) struct PauseLog {
    /// The upstream's name, for the log lines.
    upstream: String,
    /// (scope, credential) of each paused bucket.
    paused: HashSet<(String, Option<String>)>,
}

impl PauseLog {
    pub(crate) fn new(upstream: String) -> PauseLog {
        PauseLog {
            upstream,
            paused: HashSet::new(),
        }
    }

    /// The upstream's name, for other log lines of its own.
    pub(crate) fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Whether a pause was logged and its end was not: the host looks at
    /// the buckets after each completion until it is.
    pub(crate) fn watching(&self) -> bool {
        !self.paused.is_empty()
    }

    /// Compares `buckets` with what was logged; logs each pause that
    /// began and each that ended. Returns how many lines it logged.
    pub(crate) fn observe(&mut self, buckets: &[BucketSnapshot]) -> usize {
        let mut logged = 0;
        let mut seen = HashSet::with_capacity(buckets.len());
        for b in buckets {
            let key = (b.scope.clone(), b.credential.clone());
            let was = self.paused.contains(&key);
            match (b.paused_for_secs, was) {
                (Some(secs), false) => {
                    tracing::warn!(
                        upstream = %self.upstream,
                        scope = %b.scope,
                        credential = b.credential.as_deref().unwrap_or("-"),
                        pause_secs = format_args!("{secs:.1}"),
                        rate_limited_total = b.rate_limited,
                        "upstream 429: scope paused; its calls wait until the pause ends"
                    );
                    self.paused.insert(key.clone());
                    logged += 1;
                }
                (None, true) => {
                    tracing::info!(
                        upstream = %self.upstream,
                        scope = %b.scope,
                        credential = b.credential.as_deref().unwrap_or("-"),
                        rate_per_sec = format_args!("{:.2}", b.rate_per_sec),
                        "scope recovering: pause over, sending again"
                    );
                    self.paused.remove(&key);
                    logged += 1;
                }
                _ => {}
            }
            seen.insert(key);
        }
        // A bucket that is gone (a reload, an idle credential) has no
        // pause left to end.
        self.paused.retain(|k| seen.contains(k));
        logged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(paused: Option<f64>) -> BucketSnapshot {
        BucketSnapshot {
            scope: "public".into(),
            credential: None,
            tokens: 0.0,
            burst: 10,
            rate_per_sec: 5.0,
            budget_per_sec: 10.0,
            learned_per_sec: None,
            learned_from: None,
            learned_secs_ago: None,
            paused_for_secs: paused,
            calls: 1,
            rate_limited: 1,
        }
    }

    #[test]
    fn one_line_per_pause_and_one_per_recovery() {
        let mut log = PauseLog::new("advanced".into());
        assert_eq!(log.observe(&[bucket(None)]), 0);
        assert!(!log.watching());
        assert_eq!(log.observe(&[bucket(Some(2.0))]), 1);
        // More 429s while paused: the pause grows, nothing more is said.
        for secs in [3.0, 4.0, 1.5] {
            assert_eq!(log.observe(&[bucket(Some(secs))]), 0);
        }
        assert!(log.watching());
        assert_eq!(log.observe(&[bucket(None)]), 1);
        assert!(!log.watching());
        assert_eq!(
            log.observe(&[bucket(Some(1.0))]),
            1,
            "a new pause is a new event"
        );
        assert_eq!(log.observe(&[]), 0, "a bucket that is gone is forgotten");
        assert!(!log.watching());
    }
}
