//! Sharing: budgets and answers shared with other coordinators through a
//! store the host talks to.

use super::*;

impl<P: Clone> Coordinator<P> {
    /// Shares budgets and answers through a store the host talks to: from
    /// now on each [`Dispatch`] carries what the store must be asked
    /// ([`Dispatch::shared`], [`Dispatch::shared_key`]), and what the other
    /// coordinators must hear of comes out as [`Output::Shared`].
    pub fn enable_sharing(&mut self) {
        self.sharing = true;
    }

    /// The next thing the other coordinators should hear of (a 429's
    /// pause, an answer to share), for the host to write to its store.
    #[must_use = "a shared output must be written to the store"]
    pub(crate) fn poll_shared(&mut self) -> Option<SharedOutput> {
        self.shared_out.pop_front()
    }

    pub(super) fn push_shared(&mut self, out: SharedOutput) {
        if self.shared_out.len() >= SHARED_OUT_MAX {
            self.shared_out.pop_front();
        }
        self.shared_out.push_back(out);
    }

    /// What a call must spend in the shared buckets, and its shared cache
    /// key (nothing unless sharing).
    pub(super) fn shared_spend(&self, call_id: CallId) -> (SharedSpend, Option<String>) {
        let Some(call) = self.calls.get(&call_id).filter(|_| self.sharing) else {
            return (SharedSpend::default(), None);
        };
        let reserve = self.class_reserve(call.class);
        let spend = SharedSpend {
            buckets: self.limiter.shared_buckets(&call.lane),
            cost: call.cost,
            reserve,
        };
        let key = call
            .key
            .as_ref()
            // A variant is never in the store (see `answer_call`).
            .filter(|k| call.cacheable && !call.age_bounded && k.variant().is_none())
            .map(|k| k.shared_name());
        (spend, key)
    }

    /// Cost units a call of `class` must leave in every bucket: the
    /// top-class reserve, for every class but the highest.
    pub(super) fn class_reserve(&self, class: ClassId) -> u32 {
        if class == ClassId(0) {
            0
        } else {
            self.config().queue.top_class_reserve
        }
    }

    /// Undoes a dispatch that never left (the shared store refused it or
    /// answered it): no attempt, no upstream call counted, its local
    /// tokens back. Returns the call's lane and cost.
    pub(super) fn undispatch(
        &mut self,
        now: Instant,
        call_id: CallId,
    ) -> Option<(Vec<BucketKey>, u32)> {
        let call = self.calls.get_mut(&call_id)?;
        let CallState::InFlight { timeout_at } = call.state else {
            return None;
        };
        self.timers.remove(&(timeout_at, call_id));
        self.stats.upstream.calls = self.stats.upstream.calls.saturating_sub(1);
        if call.attempts > 1 {
            self.stats.upstream.retries = self.stats.upstream.retries.saturating_sub(1);
        }
        if call.refresh {
            self.stats.upstream.refreshes = self.stats.upstream.refreshes.saturating_sub(1);
        } else {
            self.stats.upstream.bot_calls = self.stats.upstream.bot_calls.saturating_sub(1);
        }
        call.attempts = call.attempts.saturating_sub(1);
        if call.attempts == 0 {
            call.first_sent = None;
            call.sent = None;
        }
        let (lane, cost) = (call.lane.to_vec(), call.cost);
        self.limiter.refund(now, &lane, cost);
        Some((lane, cost))
    }

    /// The shared store refused a dispatched call before it left ("not
    /// yet, try after T"): the call goes back to its queue, costing no
    /// attempt and no backoff, and its local buckets hold it until then,
    /// so priority order among what waits here still decides who goes
    /// first when tokens come. A refresh-ahead call is simply dropped.
    pub fn handle_shared_refusal(
        &mut self,
        now: Instant,
        call_id: CallId,
        refusal: SharedRefusal,
    ) -> Result<(), UnknownCall> {
        let now = self.advance(now);
        let (lane, cost) = self.undispatch(now, call_id).ok_or(UnknownCall(call_id))?;
        self.stats.upstream.shared_refusals += 1;
        match refusal {
            SharedRefusal::Until(wait) => {
                // The store's wait is for the cost plus the reserve this
                // class must leave: locally, that much fits at T exactly.
                let reserve = self
                    .calls
                    .get(&call_id)
                    .map_or(0, |c| self.class_reserve(c.class));
                let need = self.limiter.fit_cost(&lane, cost.saturating_add(reserve));
                self.limiter.hold_until(&lane, need, now + wait);
            }
            SharedRefusal::Paused(wait) => self.limiter.pause_shared(&lane, now + wait),
        }
        let Some(call) = self.calls.get(&call_id) else {
            return Ok(());
        };
        // A refresh is optional, and a call whose waiters all left while
        // the store was asked has nobody to send it for.
        if call.refresh || call.waiters.is_empty() {
            self.remove_call(call_id);
            return Ok(());
        }
        for t in call.waiters.clone() {
            if let Some(w) = self.waiters.get(&t) {
                self.deadlines.insert((w.deadline, t));
            }
        }
        self.requeue(now, call_id);
        self.relane(call_id);
        self.refresh_dirty = true;
        Ok(())
    }

    /// The shared store had an answer for a dispatched read
    /// ([`Dispatch::shared_key`]), `age` old with `ttl_left` of freshness
    /// left: the call never leaves (no upstream call, its tokens back), the
    /// answer goes into the local cache for `ttl_left` and every waiter
    /// gets it as a cache hit.
    pub fn handle_shared_answer(
        &mut self,
        now: Instant,
        call_id: CallId,
        response: crate::request::Response,
        age: Duration,
        ttl_left: Duration,
    ) -> Result<(), UnknownCall> {
        let now = self.advance(now);
        self.undispatch(now, call_id).ok_or(UnknownCall(call_id))?;
        self.stats.upstream.shared_answers += 1;
        self.answer_call(now, call_id, response, Some((age, ttl_left)), None);
        Ok(())
    }

    /// Whether the shared store is reached. While it is not, every bucket
    /// is limited locally at the given share of its rate and burst, and
    /// health is degraded naming the store; once it is again, the local
    /// limiter runs at the full rate in front of the shared buckets.
    pub fn set_store_state(&mut self, now: Instant, state: StoreState) {
        self.advance(now);
        match state {
            StoreState::Shared => {
                self.limiter.set_share(1.0);
                self.fallback = None;
            }
            StoreState::Fallback { store, share } => {
                self.limiter.set_share(share);
                self.fallback = Some((store, share));
            }
        }
    }
}
