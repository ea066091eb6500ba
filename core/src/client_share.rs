//! Per-client shares of a bucket: a client held to `fraction` of the rate
//! and burst of every bucket its calls draw on.
//!
//! The queue's fair rounds already stop one client *name* from starving
//! another inside a class; a share bounds what one *identity* (a token's
//! client, however many names or connections it uses) may spend of the
//! budget at all, so a runaway bot cannot take the whole order budget or
//! the fleet's reads. A call over its holder's share waits in the queue
//! without holding up anyone else's call on the same bucket (or, when the
//! share says so, is refused at arrival).
//!
//! The allowance is a GCRA per (holder, bucket) at the bucket's own
//! effective quota scaled by `fraction`, so a bucket's learned or reduced
//! rate shrinks every share with it. Calls are charged when they leave;
//! answers from the cache and joins of an identical call cost nothing.

use std::sync::Arc;

use web_time::Instant;

use crate::limiter::{BucketKey, Limiter};
use crate::quota::gcra_step;
use crate::HashMap;

/// A client's share of the buckets its calls draw on: what a host attaches
/// to each [`Request`](crate::Request) of a client that has one (its
/// `[[clients]] share`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientShare {
    /// Whose allowance the call spends: calls with the same holder draw on
    /// one allowance, whatever client name they give.
    pub holder: Arc<str>,
    /// The fraction of each bucket's rate and burst, in (0, 1].
    pub fraction: f64,
    /// A request that would have to wait for the share is refused at once
    /// ([`Failure::ShareExceeded`](crate::Failure::ShareExceeded)) rather
    /// than queued.
    pub refuse: bool,
}

/// Every holder's spending, per bucket.
#[derive(Debug, Default)]
pub(crate) struct ShareLedger {
    /// Theoretical arrival time per holder and bucket.
    tats: HashMap<Arc<str>, HashMap<BucketKey, Instant>>,
}

impl ShareLedger {
    /// Whether no holder has spent anything lately: then every share is
    /// full and holds nothing (the queue's scan skips its look-ups).
    pub(crate) fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    /// `None` if a call of `cost` on `lane` fits `share` now; else the
    /// instant it will.
    pub(crate) fn check(
        &self,
        now: Instant,
        limiter: &Limiter,
        share: &ClientShare,
        lane: &[BucketKey],
        cost: u32,
    ) -> Option<Instant> {
        let spent = self.tats.get(&share.holder);
        lane.iter()
            .filter_map(|key| {
                let quota = limiter.quota_of(key)?.share(share.fraction);
                // A call dearer than the share's burst still goes, alone.
                let fit = quota.interval() * cost.min(quota.burst());
                let tat = spent.and_then(|s| s.get(key)).copied();
                gcra_step(tat, now, fit, fit, quota.tolerance()).conforms_at
            })
            .max()
    }

    /// Charges a call of `cost` on `lane` to `share`'s holder.
    pub(crate) fn acquire(
        &mut self,
        now: Instant,
        limiter: &Limiter,
        share: &ClientShare,
        lane: &[BucketKey],
        cost: u32,
    ) {
        let spent = self.tats.entry(share.holder.clone()).or_default();
        for key in lane {
            let Some(quota) = limiter.quota_of(key).map(|q| q.share(share.fraction)) else {
                continue;
            };
            let spend = quota.interval() * cost;
            let tat = spent.get(key).copied();
            let step = gcra_step(tat, now, spend, spend, quota.tolerance());
            spent.insert(key.clone(), step.tat);
        }
    }

    /// Forgets allowances that are full again (their holder spent nothing
    /// lately): a full allowance and an absent one are the same.
    pub(crate) fn forget_idle(&mut self, now: Instant) {
        self.tats.retain(|_, spent| {
            spent.retain(|_, tat| *tat > now);
            !spent.is_empty()
        });
    }

    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        self.tats.len()
    }
}
