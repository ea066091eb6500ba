//! Durations counted into fixed buckets, for Prometheus histograms.
//!
//! A percentile since start (what the stats' summaries show) cannot be
//! aggregated over daemons nor looked at over the last five minutes; the
//! per-bucket counts of a Prometheus histogram can, with
//! `histogram_quantile(0.99, rate(..._bucket[5m]))`. The bounds are fixed
//! (the same for every daemon and every release) so that series from
//! different daemons add up.

use std::fmt::Debug;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use web_time::Duration;

/// Upper bounds of the buckets, in seconds (the last bucket, unbounded,
/// is implied): from a millisecond (a queue that did not wait, a nearby
/// upstream) to five minutes (a paused scope's queue).
pub const BOUNDS_SECS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Upper bounds of the served-age buckets, in seconds: ages run from zero
/// (an answer straight from upstream, in the first bucket) to a route's
/// TTL (seconds for refreshed market data, 30 s to 5 minutes for
/// products and candles) and past it for stale answers. Finer around
/// 1 to 3 s, where a refreshed key's p99 lives (the demo holds it under
/// 2 s), coarse beyond.
pub const AGE_BOUNDS_SECS: [f64; 15] = [
    0.05, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 180.0, 300.0,
];

/// A fixed set of bucket bounds, one type per histogram kind, so that
/// counts of one kind are never read against the other's bounds.
pub trait Bounds: Debug + Clone + Default + PartialEq {
    /// The upper bounds, in seconds, ascending (`+Inf` implied).
    const SECS: &'static [f64];
}

/// [`BOUNDS_SECS`]: queue waits and upstream latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationBounds;

impl Bounds for DurationBounds {
    const SECS: &'static [f64] = &BOUNDS_SECS;
}

/// [`AGE_BOUNDS_SECS`]: the age of answers served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgeBounds;

impl Bounds for AgeBounds {
    const SECS: &'static [f64] = &AGE_BOUNDS_SECS;
}

/// Durations observed, counted per bucket of `B::SECS` (not cumulative:
/// `counts[i]` holds those in `(SECS[i-1], SECS[i]]`; the last entry,
/// beyond the bounds, those above the last bound), with their exact sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Buckets<B: Bounds> {
    /// One count per bucket, `SECS.len() + 1` of them once anything was
    /// observed (empty before).
    pub counts: Vec<u64>,
    /// The durations summed, in seconds.
    pub sum_secs: f64,
    #[serde(skip)]
    bounds: PhantomData<B>,
}

/// Queue waits and upstream latency, in [`BOUNDS_SECS`].
pub type DurationBuckets = Buckets<DurationBounds>;

/// Ages of answers served, in [`AGE_BOUNDS_SECS`].
pub type AgeBuckets = Buckets<AgeBounds>;

impl<B: Bounds> Buckets<B> {
    /// Counts `d` into its bucket.
    pub fn observe(&mut self, d: Duration) {
        if self.counts.len() != B::SECS.len() + 1 {
            self.counts.resize(B::SECS.len() + 1, 0);
        }
        let secs = d.as_secs_f64();
        let i = B::SECS.partition_point(|&b| b < secs);
        self.counts[i] += 1;
        self.sum_secs += secs;
    }

    /// Durations observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, count)` per bucket, not cumulative, the last bound
    /// infinite: what a Prometheus encoder takes. Every bucket is listed,
    /// empty ones too, so the series exist from the start.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        B::SECS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
            .map(|(i, b)| (b, self.counts.get(i).copied().unwrap_or(0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_first_bucket_that_holds_it() {
        let mut b = DurationBuckets::default();
        assert_eq!(b.count(), 0);
        assert!(b.buckets().iter().all(|&(_, n)| n == 0));
        assert_eq!(b.buckets().len(), 17);
        for ms in [0, 1, 2, 100, 101, 300_000, 300_001, 7_200_000] {
            b.observe(Duration::from_millis(ms));
        }
        let got = b.buckets();
        let at = |bound: f64| got.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        // Bounds are inclusive (Prometheus `le`).
        assert_eq!(at(0.001), Some(2), "0 ms and 1 ms");
        assert_eq!(at(0.0025), Some(1), "2 ms");
        assert_eq!(at(0.1), Some(1), "100 ms");
        assert_eq!(at(0.25), Some(1), "101 ms");
        assert_eq!(at(300.0), Some(1), "300 s");
        assert_eq!(at(f64::INFINITY), Some(2), "past the bounds");
        assert_eq!(b.count(), 8);
        assert!(
            (b.sum_secs - (0.001 + 0.002 + 0.1 + 0.101 + 300.0 + 300.001 + 7200.0)).abs() < 1e-9
        );
    }

    #[test]
    fn ages_have_their_own_bounds_and_keep_them_through_json() {
        let mut b = AgeBuckets::default();
        assert_eq!(b.buckets().len(), AGE_BOUNDS_SECS.len() + 1);
        for ms in [0, 50, 51, 2_000, 2_001, 400_000] {
            b.observe(Duration::from_millis(ms));
        }
        let json = serde_json::to_string(&b).unwrap();
        let back: AgeBuckets = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        let got = back.buckets();
        let at = |bound: f64| got.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(at(0.05), Some(2), "an upstream answer (0) and 50 ms");
        assert_eq!(at(0.25), Some(1), "51 ms");
        assert_eq!(at(2.0), Some(1), "2 s");
        assert_eq!(at(3.0), Some(1), "2.001 s");
        assert_eq!(at(f64::INFINITY), Some(1), "past 5 minutes");
        assert_eq!(at(0.001), None, "not a latency bound");
    }
}
