//! Events worth a log line, said once per occurrence and never per
//! request: a limiter bucket paused by an upstream 429 (scope, whose,
//! how long), and the same bucket sending again. A storm of 429s on the
//! calls already in flight extends one pause and logs nothing more. Each
//! route breaker's transition, as the core recorded it once. And a
//! refresh upstream stopped, at most one line per route a minute.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use syncoord_core::stats::BucketSnapshot;
use syncoord_core::{BreakerEvent, BreakerTransition, RefreshStop};

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

/// At most one "refresh stopped" line per route this often: a refresh
/// that keeps failing is retried from spare budget (until its breaker
/// opens), and each attempt is a stop; the count says how many.
pub(crate) const REFRESH_STOP_WINDOW: Duration = Duration::from_secs(60);

/// Routes whose window is remembered at most (unmatched paths are each a
/// route of their own): past it, windows that ended are forgotten, and if
/// that is not enough, all of them (a few more lines, never more memory).
const MAX_ROUTES: usize = 1024;

/// Refreshes upstream stopped, logged at most once per route per
/// [`REFRESH_STOP_WINDOW`], with the number left unsaid since the last line.
#[derive(Debug, Default)]
pub(crate) struct RefreshStopLog {
    /// Per route: when its last line was written, and stops since then.
    routes: HashMap<String, (Instant, u64)>,
}

impl RefreshStopLog {
    /// Logs what `stops` warrant at `now`; returns how many lines.
    pub(crate) fn observe(&mut self, upstream: &str, now: Instant, stops: &[RefreshStop]) -> usize {
        let mut logged = 0;
        for stop in stops {
            if let Some((since, unsaid)) = self.routes.get_mut(&stop.route) {
                if now.saturating_duration_since(*since) < REFRESH_STOP_WINDOW {
                    *unsaid += 1;
                    continue;
                }
            }
            if self.routes.len() >= MAX_ROUTES && !self.routes.contains_key(&stop.route) {
                self.routes.retain(|_, (since, _)| {
                    now.saturating_duration_since(*since) < REFRESH_STOP_WINDOW
                });
                if self.routes.len() >= MAX_ROUTES {
                    self.routes.clear();
                }
            }
            let unsaid = self
                .routes
                .insert(stop.route.clone(), (now, 0))
                .map_or(0, |(_, n)| n);
            tracing::warn!(
                upstream,
                route = %stop.route,
                credential = stop.credential.as_deref().unwrap_or("-"),
                reason = %stop.reason.as_str(),
                status = %stop.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                more_since_last_line = unsaid,
                "refresh stopped by upstream: the cached answer ages until a bot's call or a later refresh renews it"
            );
            logged += 1;
        }
        logged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncoord_core::RefreshStopReason;

    fn stop(route: &str) -> RefreshStop {
        RefreshStop {
            route: route.into(),
            credential: None,
            reason: RefreshStopReason::ServerError,
            status: Some(503),
        }
    }

    #[test]
    fn one_refresh_stop_line_per_route_per_window() {
        let mut log = RefreshStopLog::default();
        let t0 = Instant::now();
        let many: Vec<_> = (0..20).map(|_| stop("ticker")).collect();
        assert_eq!(log.observe("advanced", t0, &many), 1);
        assert_eq!(
            log.observe("advanced", t0 + Duration::from_secs(30), &many),
            0
        );
        assert_eq!(
            log.observe("advanced", t0 + Duration::from_secs(30), &[stop("book")]),
            1,
            "another route has its own window"
        );
        assert_eq!(log.routes.get("ticker").map(|r| r.1), Some(39));
        assert_eq!(
            log.observe("advanced", t0 + REFRESH_STOP_WINDOW, &many),
            1,
            "a new window, a new line"
        );
        assert_eq!(log.routes.get("ticker").map(|r| r.1), Some(19));
    }

    #[test]
    fn the_routes_remembered_are_bounded() {
        let mut log = RefreshStopLog::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ROUTES + 10) {
            assert_eq!(log.observe("u", t0, &[stop(&format!("default /p{i}"))]), 1);
        }
        assert!(log.routes.len() <= MAX_ROUTES);
    }

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
