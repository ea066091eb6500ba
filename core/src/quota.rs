//! One quota and one GCRA step: the arithmetic every bucket runs on.
//!
//! A [`Quota`] is a scope's budget as a bucket spends it: the time one
//! unit of cost takes (the period over the rate, after headroom) and the
//! usable burst. It is built once, by a checked constructor that config
//! compilation calls, so a zero burst or a zero, negative or non-finite
//! interval cannot exist past it (as `governor`'s `Quota`); nothing
//! downstream re-clamps.
//!
//! [`gcra_step`] is GCRA (the generic cell rate algorithm) written once,
//! over any timeline: the local limiter runs it on [`Instant`]s (integer
//! nanoseconds), the shared store's arithmetic ([`crate::gcra`]) on whole
//! microseconds, which the store's script computes exactly. Keeping one
//! function keeps the two from drifting apart.

use std::num::NonZeroU32;

use web_time::{Duration, Instant};

use crate::config::ScopeConfig;

/// A bucket's budget: one cost unit every `interval`, up to `burst` at
/// once. Both are positive by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval: Duration,
    burst: NonZeroU32,
}

/// Why a scope's numbers make no quota.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum QuotaError {
    /// Rate, period or headroom give no positive, finite interval.
    #[error("rate {rate} per {period_secs} s at headroom {headroom} is no positive, finite pace")]
    Pace {
        /// `rate`, as configured.
        rate: f64,
        /// `period_secs`, as configured.
        period_secs: f64,
        /// `headroom`, as configured.
        headroom: f64,
    },
    /// The burst is zero.
    #[error("burst must be at least 1")]
    Burst,
}

impl Quota {
    /// The quota of a configured scope, after headroom: the interval is
    /// `period / (rate * headroom)` rounded up to whole nanoseconds (never
    /// faster than configured, so the window bound stays exact), the burst
    /// `burst * headroom` rounded down, and never below one.
    pub fn for_scope(scope: &ScopeConfig) -> Result<Quota, QuotaError> {
        let burst = NonZeroU32::new(scope.burst).ok_or(QuotaError::Burst)?;
        let nanos = (scope.period_secs / (scope.rate * scope.headroom) * 1e9).ceil();
        if !(nanos.is_finite() && nanos >= 1.0) {
            return Err(QuotaError::Pace {
                rate: scope.rate,
                period_secs: scope.period_secs,
                headroom: scope.headroom,
            });
        }
        Ok(Quota {
            interval: Duration::from_nanos(nanos.min(1e18) as u64),
            burst: usable_burst(burst.get(), scope.headroom),
        })
    }

    /// A shared store's numbers (`interval` in whole microseconds) as the
    /// step takes them: a zero burst reads as one, as the store's script
    /// reads it.
    fn micros(interval: u64, burst: u32) -> (u64, u64) {
        (
            interval,
            u64::from(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN).get()),
        )
    }

    /// `share` (in (0, 1]) of this quota: the interval stretched (rounded
    /// up, at least one nanosecond), the burst shrunk (rounded down, at
    /// least one). A share of 1 or more is the quota itself.
    pub(crate) fn share(self, share: f64) -> Quota {
        if share >= 1.0 {
            return self;
        }
        let nanos = (self.interval.as_nanos() as f64 / share).ceil();
        let burst = (f64::from(self.burst.get()) * share).floor() as u32;
        Quota {
            interval: Duration::from_nanos(nanos.clamp(1.0, 1e18) as u64),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// A quota of `rate` units per second (rounded up to whole
    /// nanoseconds, never below one) and `burst` (at least one).
    pub(crate) fn at_rate(rate: f64, burst: u32) -> Quota {
        let nanos = (1e9 / rate).ceil();
        let nanos = if nanos.is_finite() {
            nanos.clamp(1.0, 1e18)
        } else {
            1e18
        };
        Quota {
            interval: Duration::from_nanos(nanos as u64),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// The slower of two quotas: the longer interval, the smaller burst.
    pub(crate) fn slower_of(self, other: Quota) -> Quota {
        Quota {
            interval: self.interval.max(other.interval),
            burst: self.burst.min(other.burst),
        }
    }

    /// Units per second.
    pub(crate) fn rate(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// Time one unit of cost takes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Cost units that may go at once.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// `burst * interval`: how far ahead of now a bucket's theoretical
    /// arrival time may run.
    pub(crate) fn tolerance(&self) -> Duration {
        self.interval * self.burst.get()
    }
}

/// Calls a scope may make at once after headroom: `burst * headroom`
/// rounded down, and never below one.
pub(crate) fn usable_burst(burst: u32, headroom: f64) -> NonZeroU32 {
    let usable = (f64::from(burst) * headroom).floor() as u32;
    NonZeroU32::new(usable).unwrap_or(NonZeroU32::MIN)
}

/// A point on a timeline GCRA runs on, and its spans.
pub(crate) trait Timeline: Copy + Ord {
    /// A length of time on it.
    type Span: Copy;
    /// `self + d`.
    fn after(self, d: Self::Span) -> Self;
    /// `self - d`, for `d` no later than `self` is from the origin.
    fn before(self, d: Self::Span) -> Self;
}

impl Timeline for Instant {
    type Span = Duration;
    fn after(self, d: Duration) -> Instant {
        self + d
    }
    fn before(self, d: Duration) -> Instant {
        self - d
    }
}

/// Whole microseconds, saturating (the store's integers).
impl Timeline for u64 {
    type Span = u64;
    fn after(self, d: u64) -> u64 {
        self.saturating_add(d)
    }
    fn before(self, d: u64) -> u64 {
        self.saturating_sub(d)
    }
}

/// What one GCRA step finds for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step<T> {
    /// The bucket's theoretical arrival time once the call has spent.
    pub(crate) tat: T,
    /// `None`: the call conforms now; else the instant it will.
    pub(crate) conforms_at: Option<T>,
}

/// GCRA, once. `tat` is the bucket's theoretical arrival time (`None`: a
/// full bucket). A call conforms when `max(tat, now) + fit <= now +
/// tolerance`, `fit` being the time of what must fit (its cost, with any
/// reserve it must leave, stretched while the bucket recovers) and
/// `tolerance` the burst's time; spending moves `tat` on by `spend`.
pub(crate) fn gcra_step<T: Timeline>(
    tat: Option<T>,
    now: T,
    fit: T::Span,
    spend: T::Span,
    tolerance: T::Span,
) -> Step<T> {
    let start = tat.map_or(now, |t| t.max(now));
    let reach = start.after(fit);
    let conforms_at = (reach > now.after(tolerance)).then(|| reach.before(tolerance));
    Step {
        tat: start.after(spend),
        conforms_at,
    }
}

/// One shared bucket's state change, in whole microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gcra {
    /// The call conforms: the bucket's new theoretical arrival time.
    Spend {
        /// New `tat`.
        tat: u64,
    },
    /// The call does not conform: it may go in `wait` microseconds.
    Wait {
        /// Microseconds until it conforms.
        wait: u64,
    },
}

/// The shared bucket's arithmetic ([`gcra_step`], as the local limiter's),
/// in whole microseconds, which a store's script computes exactly
/// (integers below 2^53 are exact in Lua's doubles).
///
/// `tat` is the bucket's theoretical arrival time (`None`: never used or
/// expired, a full bucket), `interval` one cost unit's time, `burst` the
/// usable burst. A call of `cost` that must leave `reserve` conforms when
/// `max(tat, now) + min(cost + reserve, burst) * interval - now <= burst *
/// interval`; it spends only `cost`.
pub fn gcra(
    tat: Option<u64>,
    now: u64,
    interval: u64,
    burst: u32,
    cost: u32,
    reserve: u32,
) -> Gcra {
    let (interval, burst) = Quota::micros(interval, burst);
    let need = u64::from(cost.saturating_add(reserve)).min(burst);
    let step = gcra_step(
        tat,
        now,
        interval.saturating_mul(need),
        interval.saturating_mul(u64::from(cost)),
        interval.saturating_mul(burst),
    );
    match step.conforms_at {
        Some(at) => Gcra::Wait { wait: at - now },
        None => Gcra::Spend { tat: step.tat },
    }
}
