//! What the handler shares across connections: rates and buckets, faults,
//! counters, orders, strict mode's keys and the ban rule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::faults::FaultState;
use crate::account::Orders;
use crate::limits::{Buckets, MockRates, WindowPeak};
use crate::verify::Verifier;
use crate::{Faults, MockOptions, MockStats};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) stats: MockStats,
    pub(super) all: WindowPeak,
}

/// Everything the handler shares across connections. Each piece has its
/// own lock, none held across a sleep or another lock.
pub(crate) struct State {
    pub(super) rates: MockRates,
    pub(super) latency: Duration,
    pub(super) retry_after: Option<u64>,
    pub(super) buckets: Mutex<Buckets>,
    pub(super) faults: Mutex<FaultState>,
    pub(super) counters: Mutex<Counters>,
    pub(super) orders: Mutex<Orders>,
    pub(super) in_flight: AtomicU64,
    /// Strict mode's keys.
    pub(super) verify: Option<Arc<Verifier>>,
    pub(super) headers: crate::HeaderStyle,
    pub(super) ban: Option<crate::Ban>,
    /// Recent 429s (for the ban rule) and the ban's end.
    pub(super) banned: Mutex<(std::collections::VecDeque<Instant>, Option<Instant>)>,
}

/// A poisoned lock only means a handler panicked mid-update of plain
/// counters; keep serving with what is there.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(crate) fn new(options: &MockOptions) -> Self {
        let mut faults = FaultState::default();
        faults.set(options.faults.clone(), Instant::now());
        State {
            rates: options.rates,
            latency: options.latency,
            retry_after: options.retry_after,
            buckets: Mutex::new(Buckets::default()),
            faults: Mutex::new(faults),
            counters: Mutex::new(Counters::default()),
            orders: Mutex::new(Orders::default()),
            in_flight: AtomicU64::new(0),
            verify: options.verify.clone(),
            headers: options.headers,
            ban: options.ban,
            banned: Mutex::new(Default::default()),
        }
    }

    pub(crate) fn stats(&self) -> MockStats {
        let mut stats = lock(&self.counters).stats.clone();
        stats.in_flight = self.in_flight.load(Ordering::SeqCst);
        stats.max_admitted_in_1s = lock(&self.buckets).max_admitted_in_1s().collect();
        stats
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        lock(&self.faults).set(faults, Instant::now());
    }

    pub(crate) fn reset(&self) {
        *lock(&self.counters) = Counters::default();
        *lock(&self.buckets) = Buckets::default();
    }

    pub(super) fn count(&self, pattern: &str, identity: Option<&str>, now: Instant) {
        let mut c = lock(&self.counters);
        c.all.record(now);
        c.stats.max_requests_in_1s = c.all.max;
        c.stats.requests_total += 1;
        *c.stats.by_route.entry(pattern.to_owned()).or_default() += 1;
        *c.stats
            .by_credential
            .entry(identity.unwrap_or("anonymous").to_owned())
            .or_default() += 1;
    }

    pub(super) fn counters(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }
}

/// Tracks a request in flight for `max_concurrent`.
pub(super) struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    pub(super) fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut c = state.counters();
        c.stats.max_concurrent = c.stats.max_concurrent.max(now);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
