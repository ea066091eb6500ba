//! Coinbase's documented rate limits as lazy-fill token buckets, plus the
//! evidence a test needs: the most calls admitted in any one-second window
//! per bucket.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One bucket's shape: it refills `per_second` tokens a second, up to
/// `burst`; a call spends one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub per_second: f64,
    pub burst: f64,
}

impl BucketSpec {
    pub const fn new(per_second: f64, burst: f64) -> Self {
        BucketSpec { per_second, burst }
    }
}

/// The limits of every scope, defaulting to what Coinbase documents:
/// Exchange public 10/s burst 15 per IP, private 15/s burst 30 per
/// profile, `/fills` 10/s burst 20; Advanced Trade public 10/s per IP and
/// private 30/s per key (no burst is documented; a burst of one second's
/// worth is assumed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MockRates {
    pub exchange_public: BucketSpec,
    pub exchange_private: BucketSpec,
    pub exchange_fills: BucketSpec,
    pub advanced_public: BucketSpec,
    pub advanced_private: BucketSpec,
}

impl Default for MockRates {
    fn default() -> Self {
        MockRates {
            exchange_public: BucketSpec::new(10.0, 15.0),
            exchange_private: BucketSpec::new(15.0, 30.0),
            exchange_fills: BucketSpec::new(10.0, 20.0),
            advanced_public: BucketSpec::new(10.0, 10.0),
            advanced_private: BucketSpec::new(30.0, 30.0),
        }
    }
}

impl MockRates {
    /// Every scope with the same limit (tests use tight ones).
    pub fn uniform(spec: BucketSpec) -> Self {
        MockRates {
            exchange_public: spec,
            exchange_private: spec,
            exchange_fills: spec,
            advanced_public: spec,
            advanced_private: spec,
        }
    }

    pub(crate) fn spec(&self, scope: Scope) -> BucketSpec {
        match scope {
            Scope::ExchangePublic => self.exchange_public,
            Scope::ExchangePrivate => self.exchange_private,
            Scope::ExchangeFills => self.exchange_fills,
            Scope::AdvancedPublic => self.advanced_public,
            Scope::AdvancedPrivate => self.advanced_private,
        }
    }
}

/// Which limit a call spends; public scopes are keyed by client IP,
/// private ones by credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    ExchangePublic,
    ExchangePrivate,
    ExchangeFills,
    AdvancedPublic,
    AdvancedPrivate,
}

impl Scope {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scope::ExchangePublic => "exchange_public",
            Scope::ExchangePrivate => "exchange_private",
            Scope::ExchangeFills => "exchange_fills",
            Scope::AdvancedPublic => "advanced_public",
            Scope::AdvancedPrivate => "advanced_private",
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Admissions in the last second and their peak.
    admitted: WindowPeak,
    /// Admissions in the current minute (weight-style headers): its start
    /// and the count.
    minute: (Instant, u64),
}

/// All buckets, created full on first use.
#[derive(Default)]
pub(crate) struct Buckets {
    buckets: HashMap<(Scope, String), Bucket>,
}

const WINDOW: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

impl Buckets {
    /// Spends a token if one is there; `false` means answer 429.
    pub(crate) fn take(&mut self, scope: Scope, key: &str, spec: BucketSpec, now: Instant) -> bool {
        let bucket = self
            .buckets
            .entry((scope, key.to_owned()))
            .or_insert_with(|| Bucket {
                tokens: spec.burst,
                last: now,
                admitted: WindowPeak::default(),
                minute: (now, 0),
            });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * spec.per_second).min(spec.burst);
        bucket.last = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        bucket.admitted.record(now);
        let (start, used) = &mut bucket.minute;
        if now.saturating_duration_since(*start) >= MINUTE {
            // Whole minutes from the first use, as Binance counts from
            // the top of each minute.
            let whole = now.saturating_duration_since(*start).as_secs() / 60;
            *start += MINUTE * whole as u32;
            *used = 0;
        }
        *used += 1;
        true
    }

    /// Units admitted in the bucket's current minute, as a weight header
    /// (`X-MBX-USED-WEIGHT-1M`) reports them: every call weighs 1.
    pub(crate) fn used_this_minute(&self, scope: Scope, key: &str, now: Instant) -> u64 {
        match self.buckets.get(&(scope, key.to_owned())) {
            Some(b) if now.saturating_duration_since(b.minute.0) < MINUTE => b.minute.1,
            _ => 0,
        }
    }

    /// Whole tokens left in a bucket and seconds until it is full, as of
    /// its last use (a bucket never used is full).
    pub(crate) fn level(&self, scope: Scope, key: &str, spec: BucketSpec) -> (u64, f64) {
        match self.buckets.get(&(scope, key.to_owned())) {
            Some(b) => (
                b.tokens.max(0.0).floor() as u64,
                ((spec.burst - b.tokens) / spec.per_second).max(0.0),
            ),
            None => (spec.burst.floor() as u64, 0.0),
        }
    }

    /// Most admissions in any one-second window, per `scope key`.
    pub(crate) fn max_admitted_in_1s(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.buckets
            .iter()
            .map(|((scope, key), b)| (format!("{} {key}", scope.name()), b.admitted.max))
    }
}

/// Counts events in a sliding one-second window and remembers the peak.
#[derive(Default)]
pub(crate) struct WindowPeak {
    window: VecDeque<Instant>,
    pub(crate) max: u64,
}

impl WindowPeak {
    pub(crate) fn record(&mut self, now: Instant) {
        while self
            .window
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
        {
            self.window.pop_front();
        }
        self.window.push_back(now);
        self.max = self.max.max(self.window.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut b = Buckets::default();
        let spec = BucketSpec::new(2.0, 3.0);
        let t0 = Instant::now();
        let admitted = (0..10)
            .filter(|_| b.take(Scope::ExchangePublic, "ip", spec, t0))
            .count();
        assert_eq!(admitted, 3);
        // Half a second later: one more token.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(Scope::ExchangePublic, "ip", spec, t1));
        assert!(!b.take(Scope::ExchangePublic, "ip", spec, t1));
        // Other keys have their own bucket.
        assert!(b.take(Scope::ExchangePublic, "other", spec, t1));
        let peaks: HashMap<_, _> = b.max_admitted_in_1s().collect();
        assert_eq!(peaks["exchange_public ip"], 4);
        // The window slides: a second after t0, the first three are gone.
        let t2 = t0 + Duration::from_millis(1500);
        assert!(b.take(Scope::ExchangePublic, "ip", spec, t2));
        assert!(b.take(Scope::ExchangePublic, "ip", spec, t2));
        let peaks: HashMap<_, _> = b.max_admitted_in_1s().collect();
        assert_eq!(peaks["exchange_public ip"], 4);
    }
}
