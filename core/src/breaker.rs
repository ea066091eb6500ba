//! A circuit breaker: after enough consecutive failures, stop calling a
//! route for a while, then let a single probe through to see
//! whether it has recovered.
//!
//! Closed --(threshold consecutive failures)--> Open --(open time passes)-->
//! half-open: one probe --(success)--> Closed, --(failure)--> Open for twice
//! as long (up to a cap).

use serde::{Deserialize, Serialize};
use web_time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Breaker {
    state: State,
    threshold: u32,
    base_open: Duration,
    max_open: Duration,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    /// No calls until `until`; the next open period lasts `open_for * 2`.
    Open {
        until: Instant,
        open_for: Duration,
    },
    /// The probe is in flight; everything else waits for its outcome.
    Probing {
        open_for: Duration,
    },
}

/// The breaker's state for stats and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow normally (fewer than the threshold of consecutive failures).
    Closed,
    /// Tripped: no calls to this scope until the open period ends.
    Open,
    /// The open period is over: one probe may go, or is in flight, to test
    /// whether upstream has recovered.
    HalfOpen,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, base_open: Duration, max_open: Duration) -> Self {
        Breaker {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            base_open,
            max_open,
        }
    }

    /// `None` if a call may go now; else when to look again (`None` inside
    /// means "when the probe in flight ends").
    pub(crate) fn blocked_until(&self, now: Instant) -> Option<Option<Instant>> {
        match self.state {
            State::Closed { .. } => None,
            State::Open { until, .. } if now >= until => None,
            State::Open { until, .. } => Some(Some(until)),
            State::Probing { .. } => Some(None),
        }
    }

    /// A call is going out: if the open period is over, it is the probe.
    pub(crate) fn on_dispatch(&mut self, now: Instant) {
        if let State::Open { until, open_for } = self.state {
            if now >= until {
                self.state = State::Probing { open_for };
            }
        }
    }

    /// Records a failure; returns true if this opened the breaker.
    pub(crate) fn on_failure(&mut self, now: Instant) -> bool {
        let open_for = match self.state {
            State::Closed { failures } if failures + 1 >= self.threshold => self.base_open,
            State::Closed { failures } => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                return false;
            }
            // A late failure from before the breaker opened changes nothing.
            State::Open { .. } => return false,
            State::Probing { open_for } => (open_for * 2).min(self.max_open),
        };
        self.state = State::Open {
            until: now + open_for,
            open_for,
        };
        true
    }

    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until, .. } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::Probing { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed.
    pub(crate) fn failures(&self) -> u32 {
        match self.state {
            State::Closed { failures } => failures,
            _ => self.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_and_backs_off() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = Breaker::new(3, s(5), s(12));
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert_eq!(b.failures(), 2);
        // Success is forgetting the breaker (see `breakers`): a new one.
        b = Breaker::new(3, s(5), s(12));
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert!(b.on_failure(t0), "third consecutive failure opens");
        assert_eq!(b.blocked_until(t0), Some(Some(t0 + s(5))));
        assert_eq!(b.state(t0 + s(5)), BreakerState::HalfOpen);
        assert_eq!(b.blocked_until(t0 + s(5)), None, "one probe may go");
        b.on_dispatch(t0 + s(5));
        assert_eq!(b.blocked_until(t0 + s(5)), Some(None), "only one probe");
        assert!(b.on_failure(t0 + s(6)));
        assert_eq!(
            b.blocked_until(t0 + s(6)),
            Some(Some(t0 + s(16))),
            "open twice as long"
        );
        b.on_dispatch(t0 + s(16));
        assert!(b.on_failure(t0 + s(16)));
        assert_eq!(
            b.blocked_until(t0 + s(16)),
            Some(Some(t0 + s(28))),
            "capped at 12 s"
        );
        b.on_dispatch(t0 + s(28));
        assert_eq!(b.state(t0 + s(28)), BreakerState::HalfOpen);
    }
}
