//! Sharing one budget, and answers, with other coordinators through a
//! store the host talks to (Redis, natively): the core's side of it.
//!
//! The core stays sans-IO. A host that shares (see
//! [`Coordinator::enable_sharing`](crate::Coordinator::enable_sharing))
//! finds in each [`Dispatch`](crate::Dispatch) what the store must be asked
//! before the call leaves ([`SharedSpend`]: the call's buckets, at their
//! full rate, its cost and the reserve it must leave), and tells the core
//! what the store said: "not yet, at T"
//! ([`Coordinator::handle_shared_refusal`](crate::Coordinator::handle_shared_refusal):
//! the call goes back to its queue, costing no attempt and no backoff, and
//! the local buckets learn that the shared one is empty until T), or an
//! answer another coordinator stored
//! ([`Coordinator::handle_shared_answer`](crate::Coordinator::handle_shared_answer)).
//! What the others must hear of (a 429 pauses a bucket for everyone; an
//! answer worth sharing) comes out of
//! [`Output::Shared`](crate::Output::Shared). When the
//! store cannot be reached, [`StoreState::Fallback`] makes the local
//! limiter run at a share of the budget and health say so.
//!
//! [`gcra`](crate::gcra) is the shared bucket's arithmetic, in whole microseconds: the
//! host's store script computes exactly this, and the tests hold both to
//! it and it to the core's own limiter.

use std::sync::Arc;

use web_time::Duration;

use crate::request::{Credential, Response};

/// One limiter bucket as a shared store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBucket {
    /// The scope's name, from `[scopes]`.
    pub scope: String,
    /// Whose bucket, for a per-credential scope (an identity, never a
    /// secret); `None` for one bucket per upstream IP.
    pub credential: Option<Credential>,
    /// Time one unit of cost takes at the scope's full rate (after
    /// headroom), whatever share the local limiter runs at.
    pub interval: Duration,
    /// The usable burst at the full rate (after headroom, at least 1).
    pub burst: u32,
}

/// What a call must spend in the shared buckets before it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedSpend {
    /// The call's buckets; empty when the host does not share.
    pub buckets: Vec<SharedBucket>,
    /// Cost units the call spends in each.
    pub cost: u32,
    /// Cost units the call must leave in each bucket: the
    /// `[queue] top_class_reserve` for every class but the highest, 0 for
    /// the highest. A lower class of any coordinator thus never takes the
    /// last tokens an order of another coordinator needs.
    pub reserve: u32,
}

/// What the shared store said about a call's spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedRefusal {
    /// The shared buckets have not enough tokens: the call may go after
    /// this long.
    Until(Duration),
    /// Another coordinator got a 429 on one of the buckets: paused for
    /// this long.
    Paused(Duration),
}

/// Something the other coordinators should hear of.
#[derive(Debug, Clone)]
pub enum SharedOutput {
    /// Upstream answered 429: pause these buckets for everyone, for `pause`.
    Pause {
        /// The buckets of the call that got the 429.
        buckets: Vec<SharedBucket>,
        /// How long they stay paused.
        pause: Duration,
    },
    /// An answer now in the local cache: share it under `key` for `ttl`.
    Store {
        /// The answer's cache key, rendered: method, target and, for a
        /// private route, the credential identity, exactly as the local
        /// cache keys it.
        key: String,
        /// The answer.
        response: Arc<Response>,
        /// How long it stays fresh from now.
        ttl: Duration,
    },
}

/// Whether the host reaches its shared store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreState {
    /// Reached: the shared buckets are the budget; the local limiter runs
    /// at the full rate in front of them.
    Shared,
    /// Not reached: limit locally at `share` of every bucket's rate and
    /// burst (e.g. 1 / the coordinators last seen alive); health is
    /// degraded naming `store`.
    Fallback {
        /// The store, as health names it (e.g. `redis://10.0.0.5:6379`,
        /// without credentials).
        store: String,
        /// Fraction of the budget this coordinator may use, in (0, 1].
        share: f64,
    },
}

/// `d` in whole microseconds, rounded up (a shared interval is never
/// shorter than the local one, so the budget bound stays exact).
pub fn micros_ceil(d: Duration) -> u64 {
    let micros = d.as_micros();
    let up = if d.as_nanos().is_multiple_of(1000) {
        micros
    } else {
        micros + 1
    };
    u64::try_from(up).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{gcra, Gcra};

    #[test]
    fn a_full_bucket_takes_a_burst_then_paces() {
        let (t, b) = (1000, 3);
        let mut tat = None;
        for _ in 0..3 {
            match gcra(tat, 0, t, b, 1, 0) {
                Gcra::Spend { tat: n } => tat = Some(n),
                Gcra::Wait { .. } => panic!("burst refused"),
            }
        }
        assert_eq!(gcra(tat, 0, t, b, 1, 0), Gcra::Wait { wait: 1000 });
        assert!(matches!(gcra(tat, 1000, t, b, 1, 0), Gcra::Spend { .. }));
    }

    #[test]
    fn a_lower_class_leaves_the_reserve() {
        // Two of three tokens spent: one left. A call that must leave one
        // waits a whole interval; the top class (no reserve) goes now.
        let tat = Some(2000);
        assert_eq!(gcra(tat, 0, 1000, 3, 1, 1), Gcra::Wait { wait: 1000 });
        assert_eq!(gcra(tat, 0, 1000, 3, 1, 0), Gcra::Spend { tat: 3000 });
    }

    #[test]
    fn micros_round_up() {
        assert_eq!(micros_ceil(Duration::from_nanos(33_333_334)), 33_334);
        assert_eq!(micros_ceil(Duration::from_micros(5)), 5);
    }
}
