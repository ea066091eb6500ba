//! Injected faults ([`Faults`]): a storm of 429s, dropped connections,
//! error statuses, by count or by an exact, deterministic fraction.

use std::time::{Duration, Instant};

use crate::Faults;

/// Fault bookkeeping behind [`Faults`].
#[derive(Default)]
pub(super) struct FaultState {
    faults: Faults,
    storm_until: Option<Instant>,
    /// Requests seen by the fraction counters.
    status_seen: u64,
    drop_seen: u64,
}

/// Deterministic fraction: the `n`th event (from 0) is hit when it carries
/// the running total of `n * fraction` past an integer.
fn fraction_hit(n: u64, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    ((n + 1) as f64 * fraction).floor() > (n as f64 * fraction).floor()
}

pub(super) enum FaultAction {
    Storm,
    Drop,
    Status(u16),
}

impl FaultState {
    pub(super) fn set(&mut self, faults: Faults, now: Instant) {
        self.storm_until =
            (faults.storm_ms > 0).then(|| now + Duration::from_millis(faults.storm_ms));
        self.faults = faults;
        self.status_seen = 0;
        self.drop_seen = 0;
    }

    pub(super) fn decide(&mut self, now: Instant) -> (Option<FaultAction>, Duration) {
        let latency = Duration::from_millis(self.faults.latency_ms);
        if self.storm_until.is_some_and(|until| now < until) {
            return (Some(FaultAction::Storm), latency);
        }
        let f = &mut self.faults;
        if f.drop_next > 0 {
            f.drop_next -= 1;
            return (Some(FaultAction::Drop), latency);
        }
        let n = self.drop_seen;
        self.drop_seen += 1;
        if fraction_hit(n, f.drop_fraction) {
            return (Some(FaultAction::Drop), latency);
        }
        let status = f.status.unwrap_or(503);
        if f.status_next > 0 {
            f.status_next -= 1;
            return (Some(FaultAction::Status(status)), latency);
        }
        let n = self.status_seen;
        self.status_seen += 1;
        if fraction_hit(n, f.status_fraction) {
            return (Some(FaultAction::Status(status)), latency);
        }
        (None, latency)
    }

    /// The faults as they stand (counts already spent are subtracted).
    pub(super) fn current(&self, now: Instant) -> Faults {
        let mut f = self.faults.clone();
        f.storm_ms = self
            .storm_until
            .map_or(0, |u| u.saturating_duration_since(now).as_millis() as u64);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_exact() {
        let hits = (0..100).filter(|&n| fraction_hit(n, 0.25)).count();
        assert_eq!(hits, 25);
        assert_eq!((0..10).filter(|&n| fraction_hit(n, 1.0)).count(), 10);
        assert_eq!((0..10).filter(|&n| fraction_hit(n, 0.0)).count(), 0);
    }
}
