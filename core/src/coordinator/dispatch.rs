//! Dispatch: which queued call leaves next, paced by the limiter and in
//! priority order, and what the host is handed to send.

use super::*;

impl<P: Clone> Coordinator<P> {
    /// The next call to send upstream now, paced and in priority order.
    #[must_use = "a dispatched call must be sent and completed"]
    pub(crate) fn poll_dispatch(&mut self, now: Instant) -> Option<Dispatch<P>> {
        let now = self.advance(now);
        self.expire(now);
        loop {
            let call_id = match self.select(now) {
                Selection::Go(call) => call,
                Selection::Wait(_) => return self.poll_refresh(now),
            };
            self.queue.take(call_id);
            self.refresh_dirty = true;
            // Its route's breaker opened (or its probe left) since it was
            // queued: it fails now, or gets stale data, rather than wait.
            let refusal = self
                .calls
                .get(&call_id)
                .and_then(|c| self.breaker_refusal(now, &c.breaker));
            if let Some(failure) = refusal {
                self.fail_call(now, call_id, failure);
                continue;
            }
            if let Some(d) = self.dispatch(now, call_id) {
                return Some(d);
            }
        }
    }

    /// What the queue would send at `now`: paced by the limiter, and by
    /// each call's client share.
    pub(super) fn select(&self, now: Instant) -> Selection {
        let (limiter, calls, shares) = (&self.limiter, &self.calls, &self.shares);
        self.queue.select(
            |lane, cost| limiter.check(now, lane, limiter.fit_cost(lane, cost)),
            |call, cost| {
                if shares.is_empty() {
                    return None;
                }
                let c = calls.get(&call)?;
                shares.check(now, limiter, c.share.as_ref()?, &c.lane, cost)
            },
        )
    }

    pub(super) fn dispatch(&mut self, now: Instant, call_id: CallId) -> Option<Dispatch<P>> {
        let call = self.calls.get_mut(&call_id)?;
        let sender = call
            .waiters
            .iter()
            .filter_map(|t| {
                self.waiters
                    .get(t)
                    .filter(|w| w.lane == call.lane)
                    .map(|w| (w.deadline, std::cmp::Reverse(*t)))
            })
            .max()
            .map(|(_, std::cmp::Reverse(t))| t);
        let Some(sender) = sender else {
            // Nobody on the call's lane waits any more. `relane` runs
            // whenever a waiter leaves, so this cannot happen; if it did,
            // the waiters still get an answer rather than wait for nothing.
            let failure = Failure::Aborted("no waiting request can send this call".into());
            self.fail_call(now, call_id, failure);
            return None;
        };
        self.limiter.acquire(now, &call.lane, call.cost);
        let breaker = call.breaker.clone();
        if let Some(share) = &call.share {
            self.shares
                .acquire(now, &self.limiter, share, &call.lane, call.cost);
        }
        call.attempts += 1;
        call.first_sent.get_or_insert(now);
        call.sent = Some(now);
        let timeout_at = now + self.call_timeout;
        call.state = CallState::InFlight { timeout_at };
        self.timers.insert((timeout_at, call_id));
        self.stats.upstream.calls += 1;
        self.stats.upstream.bot_calls += 1;
        if call.attempts > 1 {
            self.stats.upstream.retries += 1;
        }
        for t in &call.waiters {
            if let Some(w) = self.waiters.get_mut(t) {
                self.deadlines.remove(&(w.deadline, *t));
                if !w.wait_recorded {
                    w.wait_recorded = true;
                    self.stats.waited(w.class.0 as usize, now - w.submitted);
                }
            }
        }
        if self.breakers.on_dispatch(now, &breaker) {
            self.stats.upstream.breaker_half_opened += 1;
        }
        call.sent_by = Some(sender);
        let sender = self.waiters.get(&sender)?;
        let payload = sender.payload.clone();
        // Whose headers upstream sees: what a `Vary`'d answer is for.
        call.sent_headers = sender.headers.clone();
        let route = self.config.routes().get(call.route);
        if let (true, true, Some(key)) = (route.refresh_ahead, call.cacheable, &call.key) {
            let template = Template {
                payload: payload.clone(),
                at: sender.submitted,
                route: call.route,
                lane: call.lane.clone(),
                cost: call.cost,
                in_flight: None,
                breaker: call.breaker.clone(),
                headers: sender.headers.clone(),
            };
            match self.templates.get_mut(key) {
                Some(t) => {
                    let in_flight = t.in_flight;
                    *t = Template {
                        in_flight,
                        ..template
                    };
                }
                None => {
                    self.templates.insert(key.clone(), template);
                }
            }
        }
        let (attempt, route) = (call.attempts, route.name.clone());
        let (shared, shared_key) = self.shared_spend(call_id);
        Some(Dispatch {
            call: call_id,
            attempt,
            payload,
            route,
            timeout: self.call_timeout,
            refresh: false,
            shared,
            shared_key,
        })
    }
}
