//! Refreshes that upstream stopped: a refresh-ahead call whose answer did
//! not renew its cache entry because upstream refused it (a 429, a 5xx,
//! no answer at all, an error status) or said not to keep it (`no-store`,
//! `max-age=0`, an uncacheable status).
//!
//! A refresh answers no request, so nobody sees it fail: without a word
//! from the core the entry would simply age while the operator wonders why
//! bots get older answers. Each stop is recorded once, as a
//! [`RefreshStop`] for the host to log (rate-limited there: a refresh that
//! keeps failing is retried from spare budget until its route's breaker
//! opens, and that must not become a line per attempt), and counted by
//! reason for the stats and `/metrics` ([`RefreshStops`]).
//!
//! A refresh a route's open breaker holds back is not a stop: the breaker's
//! opening is its own event, and the refresh resumes after its probe.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Why upstream stopped a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Upstream answered 429 (or another overload answer): the bucket
    /// pauses, and the entry ages until it ends.
    RateLimited,
    /// Upstream answered a retryable status (`[retry] retry_statuses`).
    ServerError,
    /// No answer: a connection error or a timeout.
    Transport,
    /// An answer whose status the cache does not keep (401, 404, ...): the
    /// key is not refreshed again until a bot's read is served from cache.
    Status,
    /// An answer upstream said not to keep (`no-store`, `max-age=0`, a
    /// `private` answer to a request with no credential): not refreshed
    /// again either.
    NotStorable,
}

impl StopReason {
    /// Every reason, in the order the stats and metrics list them.
    pub const ALL: [StopReason; 5] = [
        StopReason::RateLimited,
        StopReason::ServerError,
        StopReason::Transport,
        StopReason::Status,
        StopReason::NotStorable,
    ];

    /// The reason's name in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::RateLimited => "rate_limited",
            StopReason::ServerError => "server_error",
            StopReason::Transport => "transport",
            StopReason::Status => "status",
            StopReason::NotStorable => "not_storable",
        }
    }
}

/// One refresh upstream stopped, for the host to log (never per request:
/// refreshes are not requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStop {
    /// The route (for an unmatched request, `default <path>`).
    pub route: String,
    /// The credential identity, where the route is private.
    pub credential: Option<String>,
    /// Why.
    pub reason: StopReason,
    /// Upstream's status, when it answered.
    pub status: Option<u16>,
}

/// Refreshes stopped since start, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStops {
    /// Upstream answered 429.
    pub rate_limited: u64,
    /// Upstream answered a retryable status.
    pub server_error: u64,
    /// No answer.
    pub transport: u64,
    /// An answer with a status the cache does not keep.
    pub status: u64,
    /// An answer upstream said not to keep.
    pub not_storable: u64,
}

impl RefreshStops {
    /// Refreshes stopped for `reason`.
    pub fn get(&self, reason: StopReason) -> u64 {
        match reason {
            StopReason::RateLimited => self.rate_limited,
            StopReason::ServerError => self.server_error,
            StopReason::Transport => self.transport,
            StopReason::Status => self.status,
            StopReason::NotStorable => self.not_storable,
        }
    }

    /// Refreshes stopped, all reasons.
    pub fn total(&self) -> u64 {
        StopReason::ALL.iter().map(|r| self.get(*r)).sum()
    }

    fn count(&mut self, reason: StopReason) {
        let n = match reason {
            StopReason::RateLimited => &mut self.rate_limited,
            StopReason::ServerError => &mut self.server_error,
            StopReason::Transport => &mut self.transport,
            StopReason::Status => &mut self.status,
            StopReason::NotStorable => &mut self.not_storable,
        };
        *n += 1;
    }
}

/// Events kept for a host that does not drain them (a simulation, the
/// Worker): enough for any burst between two drains, never unbounded.
const MAX_EVENTS: usize = 256;

/// The stops not yet handed to the host, and the counts.
#[derive(Debug, Default)]
pub(crate) struct StopLog {
    events: VecDeque<RefreshStop>,
    counts: RefreshStops,
}

impl StopLog {
    /// Records one stop: counted, and queued for the host (the oldest
    /// dropped past [`MAX_EVENTS`]; the count keeps it).
    pub(crate) fn record(&mut self, stop: RefreshStop) {
        self.counts.count(stop.reason);
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(stop);
    }

    /// The stops since the last call, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<RefreshStop> {
        self.events.drain(..).collect()
    }

    /// The counts since start.
    pub(crate) fn counts(&self) -> &RefreshStops {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(reason: StopReason) -> RefreshStop {
        RefreshStop {
            route: "ticker".into(),
            credential: None,
            reason,
            status: None,
        }
    }

    #[test]
    fn counts_every_stop_and_keeps_a_bounded_queue() {
        let mut log = StopLog::default();
        for _ in 0..300 {
            log.record(stop(StopReason::ServerError));
        }
        log.record(stop(StopReason::NotStorable));
        assert_eq!(log.counts().server_error, 300);
        assert_eq!(log.counts().not_storable, 1);
        assert_eq!(log.counts().total(), 301);
        let drained = log.drain();
        assert_eq!(drained.len(), MAX_EVENTS);
        assert_eq!(
            drained.last().map(|s| s.reason),
            Some(StopReason::NotStorable)
        );
        assert!(log.drain().is_empty());
        assert_eq!(log.counts().total(), 301, "draining keeps the counts");
    }
}
