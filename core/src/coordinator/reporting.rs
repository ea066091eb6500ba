//! Reporting: counts, health and the stats snapshot, read-only.

use super::*;

impl<P: Clone> Coordinator<P> {
    /// Requests submitted and not yet ended.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Calls dispatched whose outcome has not been reported (or timed out).
    pub fn calls_in_flight(&self) -> usize {
        self.calls
            .values()
            .filter(|c| matches!(c.state, CallState::InFlight { .. }))
            .count()
    }

    /// Whether `ticket`'s call has left for upstream and not come back: a
    /// host whose caller leaves then keeps watching for the answer (an
    /// order's real outcome) instead of losing it.
    pub fn in_flight(&self, ticket: Ticket) -> bool {
        self.waiters
            .get(&ticket)
            .and_then(|w| self.calls.get(&w.call))
            .is_some_and(|c| matches!(c.state, CallState::InFlight { .. }))
    }

    /// Calls queued for the limiter (coalesced requests share one; calls in
    /// backoff or in flight are not counted).
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Every limiter bucket as of `now` (what `stats` lists under
    /// `scopes`), without the rest of the snapshot: cheap enough for a host
    /// to look after each upstream 429 whether a pause began or ended.
    pub fn buckets(&self, now: Instant) -> Vec<crate::limiter::BucketSnapshot> {
        self.limiter.snapshot(now.max(self.now))
    }

    /// Health as of `now`: healthy, degraded or unhealthy, with reasons.
    /// Reads state only; an instant before the latest one seen reads as
    /// that one (time never moves backwards in here).
    pub fn health(&self, now: Instant) -> Health {
        let now = now.max(self.now);
        let scopes = self.limiter.snapshot(now);
        self.assess(now, &scopes, &self.breakers.snapshot(now))
    }

    pub(super) fn assess(
        &self,
        now: Instant,
        scopes: &[crate::limiter::BucketSnapshot],
        breakers: &[crate::breakers::BreakerSnapshot],
    ) -> Health {
        let inputs = health::Inputs {
            recent_rate_limited: self.stats.recent_rate_limited(now),
            oldest_wait_secs: self.queue.oldest_arrival().map(|t| (now - t).as_secs_f64()),
            queue_depth: self.queue.len(),
            queue_max: self.config().queue.max_len,
            scopes,
            breakers,
            store: self
                .fallback
                .as_ref()
                .map(|(s, share)| (s.as_str(), *share)),
        };
        health::assess(&self.config().health, &inputs)
    }

    /// Every bucket's learned rate (see [`crate::LearnedRate`]), for a
    /// host to save across a restart or share with other daemons.
    pub fn learned_rates(&self, now: Instant) -> Vec<crate::LearnedRate> {
        self.limiter.learned(now.max(self.now))
    }

    /// Takes up rates saved before a restart (or learned by another
    /// daemon), so learning does not start over: each for a scope this
    /// configuration still has, within today's ceiling and floor, keeping
    /// its age (an expired one is dropped); never over what this
    /// coordinator learned itself. Returns how many were taken.
    pub fn restore_learned(&mut self, now: Instant, rates: &[crate::LearnedRate]) -> usize {
        let now = now.max(self.now);
        self.limiter.restore(now, rates)
    }

    /// Takes up rates other daemons learned (a shared store's), each only
    /// where it is lower than this coordinator's own, without emptying
    /// the bucket. Returns how many were taken.
    pub fn adopt_learned(&mut self, now: Instant, rates: &[crate::LearnedRate]) -> usize {
        let now = now.max(self.now);
        self.limiter.adopt(now, rates)
    }

    /// The budget a call by `credential` on `method` `path` draws on, bucket
    /// by bucket, as of `now`: what syncoord tells the bot that sent it
    /// (`RateLimit-Policy` / `RateLimit`). Reads state only.
    pub fn budgets(
        &self,
        now: Instant,
        method: &crate::Method,
        path: &str,
        credential: Option<&crate::Credential>,
    ) -> Vec<crate::Budget> {
        let now = now.max(self.now);
        let routes = self.config.routes();
        let route = routes.get(routes.lookup(method, path));
        let keys = self.limiter.keys(&route.scopes, credential);
        self.limiter.budgets(now, &keys)
    }

    /// Everything the coordinator counts, as of `now`, with its health.
    /// Reads state only, like [`Self::health`].
    pub fn stats(&self, now: Instant) -> StatsSnapshot {
        let now = now.max(self.now);
        let scopes = self.limiter.snapshot(now);
        let breakers = self.breakers.snapshot(now);
        let health = self.assess(now, &scopes, &breakers);
        let r = self.stats.requests.clone();
        let ended = r.ended();
        let classes = self
            .config()
            .priorities
            .iter()
            .enumerate()
            .map(|(i, name)| ClassSnapshot {
                class: name.clone(),
                depth: self.queue.depth(ClassId(i as u8)),
                wait: self.stats.wait_summary(i),
                wait_buckets: self.stats.wait_buckets(i),
            })
            .collect();
        StatsSnapshot {
            uptime_secs: self.stats.uptime(now).as_secs_f64(),
            in_progress: r.submitted - ended,
            cache_hit_rate: stats::ratio(r.hit + r.stale, ended),
            served_without_upstream_rate: stats::ratio(r.hit + r.stale + r.coalesced, ended),
            api_call_reduction: stats::call_reduction(self.stats.upstream.calls, r.submitted),
            requests: r,
            upstream: self.stats.upstream.clone(),
            refresh_stops: self.refresh_stops.counts().clone(),
            served_age: self.stats.served_age(),
            upstream_latency: self.stats.latency.clone(),
            recent_rate_limited: self.stats.recent_rate_limited(now),
            calls_in_flight: self.calls_in_flight(),
            queue: QueueSnapshot {
                depth: self.queue.len(),
                max_len: self.config().queue.max_len,
                oldest_wait_secs: self.queue.oldest_arrival().map(|t| (now - t).as_secs_f64()),
                classes,
            },
            cache: self.cache.snapshot(),
            scopes,
            breakers,
            clients: self.stats.clients(),
            health,
            cluster: None,
            orders: stats::OrderFates::default(),
        }
    }
}
