//! Settling: what upstream's answer (or its absence) does to a call:
//! answer and cache it, retry it, or fail it, and tell its route's breaker.

use super::*;
use crate::refresh_stops::StopReason;

impl<P: Clone> Coordinator<P> {
    /// Reports what upstream answered for a dispatched call.
    pub fn complete(
        &mut self,
        now: Instant,
        call_id: CallId,
        outcome: Outcome,
    ) -> Result<(), UnknownCall> {
        let now = self.advance(now);
        match self.calls.get(&call_id).map(|c| c.state) {
            Some(CallState::InFlight { timeout_at }) => {
                self.timers.remove(&(timeout_at, call_id));
                let sent = self.calls.get(&call_id).and_then(|c| c.sent);
                if let (Outcome::Response { .. }, Some(sent)) = (&outcome, sent) {
                    self.stats
                        .latency
                        .observe(now.saturating_duration_since(sent));
                }
                self.settle(now, call_id, outcome);
                Ok(())
            }
            _ => Err(UnknownCall(call_id)),
        }
    }

    pub(super) fn settle(&mut self, now: Instant, call_id: CallId, outcome: Outcome) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let lane = call.lane.clone();
        let sent = call.sent;
        let verdict = self.retry.verdict(&outcome);
        let upstream_wait = match &outcome {
            Outcome::Response {
                response,
                received_unix,
            } => http::upstream_wait(&response.headers, *received_unix),
            Outcome::Transport(_) => None,
        };
        // What upstream says of its limits, on any answer: a stated limit
        // sets the effective rate, what remains caps the level (a spent
        // window waits for its reset rather than earn a 429).
        let signals = match &outcome {
            Outcome::Response {
                response,
                received_unix,
            } => crate::signals::read_signals(
                &response.headers,
                &self.config.config().limiter.signals,
                http::server_unix(&response.headers, *received_unix),
            ),
            Outcome::Transport(_) => Default::default(),
        };
        self.limiter.on_signals(now, &lane, &signals);
        let mut pause = None;
        match verdict {
            Verdict::Answer => {
                self.limiter.on_success(&lane);
            }
            Verdict::RateLimited => {
                self.stats.rate_limited(now);
                let p = self.limiter.on_rate_limited(
                    now,
                    &lane,
                    upstream_wait,
                    &mut self.rng,
                    sent,
                    signals.stated.is_none(),
                );
                if self.sharing {
                    let buckets = self.limiter.shared_buckets(&lane);
                    self.push_shared(SharedOutput::Pause { buckets, pause: p });
                }
                pause = Some(p);
            }
            // Our own exhaustion (threads, descriptors) is not upstream's
            // failure: no breaker, no error count; retried like a call
            // never sent.
            Verdict::Transport { .. } if matches!(&outcome, Outcome::Transport(e) if e.is_local()) =>
                {}
            Verdict::ServerError => self.stats.upstream.server_errors += 1,
            Verdict::Transport { .. } => self.stats.upstream.transport_errors += 1,
        }
        let breaker = self.calls.get(&call_id).map(|c| c.breaker.clone());
        // What the breaker makes of it, judged before the outcome is
        // consumed and applied after (a retry scheduled below is then one
        // of the calls an opening breaker fails at once).
        let settle_breaker = breaker.map(|b| (b, breaking::judge(verdict, &outcome)));

        if verdict == Verdict::Answer {
            if let Outcome::Response {
                response,
                received_unix,
            } = outcome
            {
                let write = self
                    .calls
                    .get(&call_id)
                    .and_then(|c| c.write.clone().map(|w| (c.route, w)));
                if let Some((route, write)) = write {
                    self.invalidate(now, route, &write, &response);
                }
                self.answer_call(now, call_id, response, None, received_unix);
            }
        } else {
            self.retry_or_fail(now, call_id, verdict, outcome, upstream_wait, pause);
        }
        if let Some((key, judgement)) = settle_breaker {
            self.breaker_settle(now, &key, judgement);
        }
    }

    /// Answers every waiter of a call and caches the answer. `shared`:
    /// the answer came from the shared store, `(age, ttl left)`: waiters
    /// get it as a cache hit of that age, kept for what is left of its TTL.
    pub(super) fn answer_call(
        &mut self,
        now: Instant,
        call_id: CallId,
        response: crate::request::Response,
        shared: Option<(Duration, Duration)>,
        received_unix: Option<u64>,
    ) {
        let Some(mut call) = self.remove_call(call_id) else {
            return;
        };
        if shared.is_none() {
            self.split_variants(now, &mut call, &response);
        }
        let response = Arc::new(response);
        if let (true, Some(key)) = (call.cacheable, call.key) {
            let route = self.config.routes().get(call.route);
            // What upstream's answer itself rules out, for a refresh it
            // stops (not a write's mark, a newer entry or the cache's size).
            let mut refused = None;
            let (ttl, no_stale, initial_age) = match shared {
                Some((_, left)) => (left, false, Duration::ZERO),
                None => {
                    let s = Storable::from_headers(&response.headers, received_unix);
                    // A request with no credential identity has no one
                    // account to keep a `private` answer for: it is
                    // stored as a shared one would be, so not at all.
                    let per_credential = route.private && key.credential().is_some();
                    let ttl = s.ttl(route.ttl, route.ttl_pinned, per_credential);
                    if !self.cache.accepts_status(response.status) {
                        refused = Some(StopReason::Status);
                    } else if ttl.is_zero() {
                        refused = Some(StopReason::NotStorable);
                    }
                    // A pinned TTL wins over upstream's directives, this
                    // one included (see `Storable::ttl`), and its age
                    // starts here: upstream's `Age` is a freshness input
                    // like the others the pin overrides.
                    let (no_stale, initial_age) = match route.ttl_pinned {
                        true => (false, Duration::ZERO),
                        false => (s.no_stale, s.age),
                    };
                    (ttl, no_stale, initial_age)
                }
            };
            let renew_after = route
                .refresh_ahead
                .then(|| {
                    self.templates
                        .get(&key)
                        .map(|t| t.at + self.refresh_resend / 2)
                })
                .flatten();
            let sent = call.sent.unwrap_or(now);
            // A call that left before a write changed its answer's source
            // brings what upstream held before: it answers its own
            // waiters (they asked before the write), but is not kept.
            let outdated = self
                .marks
                .since(&key, call.route)
                .is_some_and(|written| sent < written);
            let ttl = if outdated { Duration::ZERO } else { ttl };
            let store = Store {
                ttl,
                sent,
                read: !call.refresh,
                renew_after,
                no_stale,
                initial_age,
            };
            let headers = call.sent_headers.fields();
            let stored_as = self
                .cache
                .store_answer(now, &key, response.clone(), store, headers);
            let stored = stored_as.is_some();
            // A variant is not shared: the store names answers by target
            // and credential only, and another coordinator would serve it
            // to every request.
            let unvaried = stored_as.filter(|k| k.variant().is_none());
            if let (Some(k), true, None) = (unvaried, self.sharing, shared) {
                self.push_shared(SharedOutput::Store {
                    key: k.shared_name(),
                    response: response.clone(),
                    ttl,
                });
            }
            if !stored && !outdated {
                // Upstream would not give a storable answer to this request
                // (an expired signature, a `no-store`): never re-send it.
                // A later read of a cached entry lends a new one. An answer
                // a write made outdated says nothing against the request
                // (and a real call may have renewed it meanwhile): kept.
                self.templates.remove(&key);
                if let Some(reason) = refused {
                    self.refresh_stopped(
                        call.refresh,
                        &call.breaker,
                        reason,
                        Some(response.status),
                    );
                }
            }
        }
        let latency = call
            .sent
            .filter(|_| shared.is_none())
            .map(|s| now.saturating_duration_since(s));
        for ticket in call.waiters {
            let (source, age, ttl_secs) = match shared {
                Some((age, left)) => (
                    Source::Cache,
                    age,
                    Some(crate::request::ttl_secs(left, Duration::ZERO)),
                ),
                None if ticket == call.origin => (Source::Upstream, Duration::ZERO, None),
                None => (Source::Coalesced, Duration::ZERO, None),
            };
            // A waiter that joined after the call left waited for nothing.
            let queue_wait = self.waiters.get(&ticket).and_then(|w| {
                call.first_sent
                    .map(|f| f.saturating_duration_since(w.submitted))
            });
            let answer = Answer {
                response: response.clone(),
                source,
                age,
                ttl_secs,
                timing: crate::Timing {
                    queue_wait,
                    upstream_latency: latency,
                },
            };
            self.end_waiter(ticket, Ok(answer), source.into());
        }
    }

    pub(super) fn retry_or_fail(
        &mut self,
        now: Instant,
        call_id: CallId,
        verdict: Verdict,
        outcome: Outcome,
        upstream_wait: Option<Duration>,
        pause: Option<Duration>,
    ) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.waiters.is_empty() {
            // A refresh has no waiters: dropped here, and reported unless
            // the failure is our own (threads, descriptors).
            if !matches!(&outcome, Outcome::Transport(e) if e.is_local()) {
                let status = match &outcome {
                    Outcome::Response { response, .. } => Some(response.status),
                    Outcome::Transport(_) => None,
                };
                if let Some(call) = self.remove_call(call_id) {
                    if let (true, Some(key)) = (call.refresh, &call.key) {
                        self.cache.reads_spent(key);
                    }
                    let reason = refresh_stopped::stop_reason(verdict);
                    self.refresh_stopped(call.refresh, &call.breaker, reason, status);
                }
                return;
            }
            self.remove_call(call_id);
            return;
        }
        let route = self.config.routes().get(call.route);
        let idempotent = call.idempotent || route.retry_unsafe;
        let latest_deadline = call
            .waiters
            .iter()
            .filter_map(|t| self.waiters.get(t).map(|w| w.deadline))
            .max()
            .unwrap_or(now);
        // After a 429 the limiter's pause is the wait; the call goes back in
        // the queue at once and the paused buckets hold it.
        let wait = pause.or(upstream_wait);
        let delay = self.retry.retry_delay(
            verdict,
            call.attempts,
            idempotent,
            call.first_sent.unwrap_or(now),
            now,
            wait,
            &mut self.rng,
        );
        match delay {
            Some(d) if now + d <= latest_deadline => {
                // Each attempt has its own id: a late outcome of this one
                // must not be taken for the retry's.
                let call_id = self.renumber(call_id);
                let Some(call) = self.calls.get(&call_id) else {
                    return;
                };
                let waiters = call.waiters.clone();
                for t in waiters {
                    if let Some(w) = self.waiters.get(&t) {
                        self.deadlines.insert((w.deadline, t));
                    }
                }
                let Some(call) = self.calls.get_mut(&call_id) else {
                    return;
                };
                if verdict == Verdict::RateLimited {
                    self.requeue(now, call_id);
                } else {
                    let until = now + d;
                    call.state = CallState::Backoff { until };
                    self.timers.insert((until, call_id));
                }
                // Waiters who left while it was in flight were not re-laned.
                self.relane(call_id);
            }
            _ => {
                let attempts = call.attempts;
                let failure = match outcome {
                    Outcome::Response { response, .. } if verdict == Verdict::RateLimited => {
                        Failure::RateLimited {
                            scope: self.blocking_scope(now, &call.lane),
                            attempts,
                            retry_after: pause.unwrap_or_default(),
                            response: Arc::new(response),
                        }
                    }
                    Outcome::Response { response, .. } => Failure::Upstream {
                        attempts,
                        response: Arc::new(response),
                    },
                    // An order that reached upstream and got no answer:
                    // nobody may be told it simply failed.
                    Outcome::Transport(error) if !call.idempotent && !error.never_sent() => {
                        Failure::OutcomeUnknown { attempts, error }
                    }
                    Outcome::Transport(error) => Failure::Transport { attempts, error },
                };
                self.fail_call(now, call_id, failure);
            }
        }
    }

    /// Moves a call (not queued, no timer) to a fresh id.
    pub(super) fn renumber(&mut self, old: CallId) -> CallId {
        let Some(call) = self.calls.remove(&old) else {
            return old;
        };
        let new = CallId(self.next_id());
        if let Some(k) = &call.key {
            if self.by_key.get(k) == Some(&old) {
                self.by_key.insert(k.clone(), new);
            }
        }
        for t in &call.waiters {
            if let Some(w) = self.waiters.get_mut(t) {
                w.call = new;
            }
        }
        self.calls.insert(new, call);
        new
    }
}
