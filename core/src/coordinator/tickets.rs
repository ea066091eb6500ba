//! Tickets and calls ending or moving: deadlines, cancellation, aborts,
//! a call losing its waiters or its lane.

use super::*;

impl<P: Clone> Coordinator<P> {
    /// Ends one waiting ticket (the only way a waiting ticket ends besides
    /// `cancel`). The caller detaches it from its call.
    pub(super) fn end_waiter(&mut self, ticket: Ticket, result: Result<Answer, Failure>, end: End) {
        if let Some(w) = self.waiters.remove(&ticket) {
            self.deadlines.remove(&(w.deadline, ticket));
            self.stats.ended(&w.client, end);
            if let Ok(answer) = &result {
                self.stats.served(answer.source, answer.age);
            }
            self.finished.push_back(Finished { ticket, result });
        }
    }

    /// Ends every waiter of a call with `failure` (or stale data), and
    /// forgets the call.
    pub(super) fn fail_call(&mut self, now: Instant, call_id: CallId, failure: Failure) {
        let Some(call) = self.remove_call(call_id) else {
            return;
        };
        let key = call.key.as_ref().filter(|_| call.cacheable);
        for ticket in call.waiters {
            let (result, end) = self.fallback(now, key, failure.clone());
            self.end_waiter(ticket, result, end);
        }
    }

    /// Forgets a call everywhere (queue, timers, coalescing index).
    pub(super) fn remove_call(&mut self, call_id: CallId) -> Option<Call> {
        let call = self.calls.remove(&call_id)?;
        self.queue.remove(call_id);
        match call.state {
            CallState::Backoff { until } => {
                self.timers.remove(&(until, call_id));
            }
            CallState::InFlight { timeout_at } => {
                self.timers.remove(&(timeout_at, call_id));
            }
            CallState::Queued => {}
        }
        if let Some(k) = &call.key {
            if self.by_key.get(k) == Some(&call_id) {
                self.by_key.remove(k);
            }
            if let Some(t) = self.templates.get_mut(k) {
                if t.in_flight == Some(call_id) {
                    t.in_flight = None;
                }
            }
        }
        self.refresh_dirty = true;
        Some(call)
    }

    /// Ends tickets whose send-by deadline has passed.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, ticket)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(w) = self.waiters.get(&ticket) else {
                continue;
            };
            let (call_id, waited) = (w.call, now - w.submitted);
            let key = self
                .calls
                .get(&call_id)
                .and_then(|c| c.key.clone().filter(|_| c.cacheable));
            self.detach(call_id, ticket);
            let (result, end) = self.fallback(now, key.as_ref(), Failure::Deadline { waited });
            self.end_waiter(ticket, result, end);
        }
    }

    /// Takes `ticket` off its call; a call left with no waiters and not in
    /// flight is dropped (one in flight still lands in the cache).
    pub(super) fn detach(&mut self, call_id: CallId, ticket: Ticket) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.waiters.retain(|t| *t != ticket);
        if matches!(call.state, CallState::InFlight { .. }) {
            return;
        }
        if call.waiters.is_empty() {
            self.remove_call(call_id);
            return;
        }
        self.relane(call_id);
    }

    /// A shared read whose remaining waiters hold other credentials: the
    /// next send spends one of theirs, so it waits on their buckets. Run
    /// whenever a call not in flight may have lost its lane's waiters
    /// (a waiter left, or a call whose creator left mid-flight is retried).
    pub(super) fn relane(&mut self, call_id: CallId) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let waiters = &self.waiters;
        let on_lane = call
            .waiters
            .iter()
            .any(|t| waiters.get(t).is_some_and(|w| w.lane == call.lane));
        if on_lane {
            return;
        }
        let Some(lane) = call
            .waiters
            .iter()
            .filter_map(|t| waiters.get(t))
            .max_by_key(|w| w.deadline)
            .map(|w| w.lane.clone())
        else {
            return;
        };
        call.lane = lane;
        // A queued call moves to its new lane; one in backoff takes it
        // when it is queued again.
        if self.queue.remove(call_id) {
            self.requeue(self.now, call_id);
        }
    }

    /// (Re)queues a call under its own class, lane, client and cost.
    pub(super) fn requeue(&mut self, now: Instant, call_id: CallId) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.state = CallState::Queued;
        let (class, lane, client, cost) = (
            call.class,
            call.lane.clone(),
            call.client.clone(),
            call.cost,
        );
        self.queue.push(now, call_id, class, lane, client, cost);
    }

    /// The caller gave up on `ticket`; returns false if it had already
    /// ended. No `Finished` follows for a cancelled ticket.
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        let Some(w) = self.waiters.remove(&ticket) else {
            return false;
        };
        self.deadlines.remove(&(w.deadline, ticket));
        self.stats.ended(&w.client, End::Cancelled);
        self.detach(w.call, ticket);
        true
    }

    /// Ends every request not yet sent upstream (stale data if any, else
    /// `Aborted`), for a host shutting down; calls in flight still finish.
    pub fn abort_waiting(&mut self, now: Instant, reason: &str) {
        let now = self.advance(now);
        // A host shutting down sends nothing new.
        self.refresh_on = false;
        let mut ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| !matches!(c.state, CallState::InFlight { .. }))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            self.fail_call(now, id, Failure::Aborted(reason.to_owned()));
        }
    }
}
