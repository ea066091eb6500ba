//! Circuit breakers with a blast radius of one route: one [`Breaker`] per
//! route (and per credential where the route is private, and per path
//! for requests no rule matched), never one per upstream or per limiter
//! bucket. A path that fails takes down only itself: ten 5xx on one
//! endpoint leave every other endpoint answering.
//!
//! Only upstream's own failures count (a 5xx, a broken or timed-out
//! exchange). What the client caused never does: a 4xx, a request the
//! upstream client cannot send (refused by the host before it reaches
//! the core), our own local exhaustion. Each transition (open, half-open,
//! closed) is recorded once as a [`BreakerEvent`] for the host to log,
//! and counted in the stats.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use web_time::{Duration, Instant};

use crate::breaker::{Breaker, BreakerState};
use crate::request::Credential;
use crate::HashMap;

/// Which breaker a call answers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BreakerKey {
    /// The route's name (stable across a reload, unlike its position).
    route: Arc<str>,
    /// The path, for requests no rule matched: each is its own route.
    path: Option<Box<str>>,
    /// Whose, where the route is private.
    credential: Option<Credential>,
}

impl BreakerKey {
    pub(crate) fn new(
        route: Arc<str>,
        path: Option<&str>,
        credential: Option<&Credential>,
    ) -> Self {
        BreakerKey {
            route,
            path: path.map(Box::from),
            credential: credential.cloned(),
        }
    }

    /// The credential identity, where the route is private.
    pub(crate) fn credential_str(&self) -> Option<&str> {
        self.credential.as_ref().map(|c| c.as_str())
    }

    /// How stats and logs name it: the route, or for an unmatched request
    /// `default <path>`.
    pub(crate) fn name(&self) -> String {
        match &self.path {
            Some(p) => format!("{} {p}", self.route),
            None => self.route.to_string(),
        }
    }
}

/// A breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Tripped: calls on the route are refused (or answered stale) until
    /// the open period ends.
    Opened,
    /// The open period ended and one probe left to test upstream.
    HalfOpen,
    /// The probe succeeded: calls flow again.
    Closed,
}

/// One breaker transition, for the host to log once (never per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerEvent {
    /// The route (for an unmatched request, `default <path>`).
    pub route: String,
    /// The credential identity, where the route is private.
    pub credential: Option<String>,
    /// What happened.
    pub transition: Transition,
    /// Why: the failure that opened it, or what the probe got.
    pub reason: String,
    /// For `Opened`: how long it stays open, in seconds.
    pub open_secs: Option<f64>,
}

/// A breaker that is not closed and idle, for stats, health and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerSnapshot {
    /// The route (for an unmatched request, `default <path>`).
    pub route: String,
    /// The credential identity, where the route is private.
    pub credential: Option<String>,
    /// Closed (counting failures), open, or half-open.
    pub state: BreakerState,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    /// While open: seconds until a probe may go.
    pub retry_after_secs: Option<f64>,
}

/// Every route's breaker that holds information (a closed breaker with no
/// failures is not kept: it is a new one).
#[derive(Debug)]
pub(crate) struct Breakers {
    map: HashMap<BreakerKey, Breaker>,
    template: Breaker,
    events: VecDeque<BreakerEvent>,
}

/// Events kept for a host that does not drain them (a simulation):
/// enough for any burst between two drains, never unbounded.
const MAX_EVENTS: usize = 256;

/// Breakers kept at most: a storm of failures over random unmatched
/// paths must not grow memory without bound. Past it, closed breakers
/// (which have not tripped) are forgotten first.
const MAX_BREAKERS: usize = 4096;

impl Breakers {
    pub(crate) fn new(threshold: u32, base_open: Duration, max_open: Duration) -> Self {
        Breakers {
            map: HashMap::default(),
            template: Breaker::new(threshold, base_open, max_open),
            events: VecDeque::new(),
        }
    }

    /// `None` if a call may go now; else when to look again (`None`
    /// inside: when the probe in flight ends).
    pub(crate) fn blocked_until(&self, now: Instant, key: &BreakerKey) -> Option<Option<Instant>> {
        self.map.get(key)?.blocked_until(now)
    }

    /// A call on `key` leaves: if the open period is over, it is the probe.
    pub(crate) fn on_dispatch(&mut self, now: Instant, key: &BreakerKey) -> bool {
        let Some(b) = self.map.get_mut(key) else {
            return false;
        };
        let was_probing = b.blocked_until(now) == Some(None);
        b.on_dispatch(now);
        let probing = !was_probing && b.blocked_until(now) == Some(None);
        if probing {
            self.record(
                key,
                Transition::HalfOpen,
                "open period over: one probe sent".into(),
                None,
            );
        }
        probing
    }

    /// Upstream answered `status` (not a failure of its own). Below 400
    /// the route works: its breaker closes and its count starts over. A
    /// 4xx or 429 says nothing of upstream's health (the client's fault,
    /// or upstream pacing us), except that a probe that got one found
    /// upstream up. Returns whether this closed a tripped breaker.
    pub(crate) fn on_answer(&mut self, now: Instant, key: &BreakerKey, status: u16) -> bool {
        let Some(b) = self.map.get(key) else {
            return false;
        };
        let probing = b.blocked_until(now) == Some(None);
        let tripped = b.state(now) != BreakerState::Closed;
        if status >= 400 && !probing {
            return false;
        }
        self.map.remove(key);
        if tripped {
            self.record(
                key,
                Transition::Closed,
                format!("probe answered {status}"),
                None,
            );
        }
        tripped
    }

    /// Upstream failed a call on `key` (`reason`: what it did). Returns
    /// whether this opened the breaker.
    pub(crate) fn on_failure(&mut self, now: Instant, key: &BreakerKey, reason: &str) -> bool {
        if !self.map.contains_key(key) && self.map.len() >= MAX_BREAKERS {
            self.map.retain(|_, b| b.state(now) != BreakerState::Closed);
            if self.map.len() >= MAX_BREAKERS {
                return false;
            }
        }
        let b = self
            .map
            .entry(key.clone())
            .or_insert_with(|| self.template.clone());
        if !b.on_failure(now) {
            return false;
        }
        let open_for = b
            .blocked_until(now)
            .flatten()
            .map(|t| t.saturating_duration_since(now).as_secs_f64());
        self.record(key, Transition::Opened, reason.to_owned(), open_for);
        true
    }

    fn record(
        &mut self,
        key: &BreakerKey,
        transition: Transition,
        reason: String,
        open_secs: Option<f64>,
    ) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(BreakerEvent {
            route: key.name(),
            credential: key.credential.as_ref().map(|c| c.as_str().to_owned()),
            transition,
            reason,
            open_secs,
        });
    }

    /// The transitions since the last call, oldest first.
    pub(crate) fn drain_events(&mut self) -> Vec<BreakerEvent> {
        self.events.drain(..).collect()
    }

    /// Breakers that are not closed and idle, by route name.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<BreakerSnapshot> {
        let mut out: Vec<BreakerSnapshot> = self
            .map
            .iter()
            .map(|(key, b)| BreakerSnapshot {
                route: key.name(),
                credential: key.credential.as_ref().map(|c| c.as_str().to_owned()),
                state: b.state(now),
                failures: b.failures(),
                retry_after_secs: b
                    .blocked_until(now)
                    .flatten()
                    .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            })
            .collect();
        out.sort_by(|a, b| (&a.route, &a.credential).cmp(&(&b.route, &b.credential)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(route: &str) -> BreakerKey {
        BreakerKey::new(Arc::from(route), None, None)
    }

    #[test]
    fn one_route_failing_leaves_the_others_closed_and_each_transition_is_one_event() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = Breakers::new(2, s(5), s(60));
        let (bad, good) = (key("candles"), key("ticker"));
        assert!(!b.on_failure(t0, &bad, "503"));
        assert!(b.on_failure(t0, &bad, "503"));
        assert!(
            !b.on_failure(t0, &bad, "503"),
            "a late failure opens nothing"
        );
        assert_eq!(b.blocked_until(t0, &bad), Some(Some(t0 + s(5))));
        assert_eq!(b.blocked_until(t0, &good), None);
        assert!(!b.on_dispatch(t0 + s(5) - Duration::from_millis(1), &good));
        assert!(
            b.on_dispatch(t0 + s(5), &bad),
            "the first call after is the probe"
        );
        assert!(!b.on_dispatch(t0 + s(5), &bad));
        assert!(b.on_answer(t0 + s(6), &bad, 200));
        assert!(!b.on_answer(t0 + s(6), &good, 200));
        let events: Vec<Transition> = b.drain_events().iter().map(|e| e.transition).collect();
        assert_eq!(
            events,
            [Transition::Opened, Transition::HalfOpen, Transition::Closed]
        );
        assert!(b.drain_events().is_empty());
        assert!(
            b.snapshot(t0 + s(6)).is_empty(),
            "closed breakers are not kept"
        );
    }

    #[test]
    fn failures_over_endless_paths_stay_bounded() {
        let t0 = Instant::now();
        let mut b = Breakers::new(3, Duration::from_secs(5), Duration::from_secs(60));
        for i in 0..(MAX_BREAKERS * 2) {
            let k = BreakerKey::new(Arc::from("default"), Some(&format!("/p/{i}")), None);
            b.on_failure(t0, &k, "503");
        }
        assert!(b.map.len() <= MAX_BREAKERS);
    }
}
