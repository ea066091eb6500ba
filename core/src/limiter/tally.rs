//! Per-bucket counters that outlive the bucket's state.
//!
//! A full, calm bucket is forgotten (it equals a new one), which keeps
//! per-credential buckets from piling up. Its counters must not go with
//! it: a bucket's series in `/metrics` would vanish whenever it went idle,
//! and restart from zero when it came back, so dashboards and alerts would
//! lose exactly the quiet scopes. The counters live here instead: a global
//! scope's for as long as the scope is configured (from the start, before
//! its first call), a per-credential bucket's until [`KEEP`] after its
//! last call, which bounds them by the credentials active in that time.

use web_time::{Duration, Instant};

use super::BucketKey;
use crate::HashMap;

/// How long a per-credential bucket's counters are kept after its last
/// call: longer than the usual `rate()` windows of alerts and dashboards.
pub(super) const KEEP: Duration = Duration::from_secs(3600);

/// One bucket's counters since the coordinator started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub calls: u64,
    pub rate_limited: u64,
    last: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Tallies {
    map: HashMap<BucketKey, Tally>,
}

impl Tallies {
    /// Counters for `keys` (the global scopes' buckets), listed from the
    /// start.
    pub(super) fn new(keys: impl IntoIterator<Item = BucketKey>) -> Self {
        Tallies {
            map: keys.into_iter().map(|k| (k, Tally::default())).collect(),
        }
    }

    fn entry(&mut self, key: &BucketKey) -> &mut Tally {
        self.map.entry(key.clone()).or_default()
    }

    /// A call was dispatched on `key`.
    pub(super) fn call(&mut self, key: &BucketKey, now: Instant) {
        let t = self.entry(key);
        t.calls += 1;
        t.last = Some(now);
    }

    /// A call on `key` was handed back before it left.
    pub(super) fn refund(&mut self, key: &BucketKey) {
        if let Some(t) = self.map.get_mut(key) {
            t.calls = t.calls.saturating_sub(1);
        }
    }

    /// Upstream answered 429 for a call on `key`.
    pub(super) fn rate_limited(&mut self, key: &BucketKey, now: Instant) {
        let t = self.entry(key);
        t.rate_limited += 1;
        t.last = Some(now);
    }

    /// `key`'s counters (zero for a bucket never counted).
    pub(super) fn get(&self, key: &BucketKey) -> Tally {
        self.map.get(key).copied().unwrap_or_default()
    }

    /// Every bucket with counters.
    pub(super) fn keys(&self) -> impl Iterator<Item = &BucketKey> {
        self.map.keys()
    }

    /// Drops the counters of per-credential buckets that are not `live`
    /// and saw nothing for [`KEEP`]; a global scope's are never dropped.
    pub(super) fn prune(&mut self, now: Instant, live: impl Fn(&BucketKey) -> bool) {
        self.map.retain(|k, t| {
            k.credential.is_none()
                || live(k)
                || t.last
                    .is_some_and(|l| now.saturating_duration_since(l) < KEEP)
        });
    }
}
