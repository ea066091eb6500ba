//! Refresh-ahead: re-sending the stored request of keys bots keep
//! reading, from spare budget, so their cache entries stay young.

use super::*;

impl<P: Clone> Coordinator<P> {
    /// A read of a refreshed entry whose stored request is getting old
    /// lends its own: refreshes then re-send a request young enough that
    /// its signature is still valid.
    pub(super) fn lend_template(
        &mut self,
        now: Instant,
        key: &CacheKey,
        route: RouteId,
        credential: Option<&crate::request::Credential>,
        payload: P,
        headers: crate::RequestHeaders,
    ) {
        let r = self.config.routes().get(route);
        let lane: Lane = self.limiter.keys(&r.scopes, credential).into();
        let cost = r.cost;
        let breaker = self.breaker_key(route, key.path(), credential);
        let in_flight = self.templates.get(key).and_then(|t| t.in_flight);
        self.templates.insert(
            key.clone(),
            Template {
                payload,
                at: now,
                route,
                lane,
                cost,
                in_flight,
                breaker,
                headers,
            },
        );
        self.cache
            .set_renew_after(key, now + self.refresh_resend / 2);
        self.refresh_dirty = true;
    }

    /// The next refresh-ahead call, if one is due and the budget has room:
    /// the oldest entry among keys read within the idle window, older than
    /// its route's `min_age`, with no real call for it underway, whose
    /// buckets no real call waits on and would each keep their reserve.
    pub(super) fn poll_refresh(&mut self, now: Instant) -> Option<Dispatch<P>> {
        if self.templates.is_empty() || !self.refresh_on {
            return None;
        }
        if !self.refresh_dirty && self.next_refresh.is_none_or(|t| now < t) {
            return None;
        }
        self.refresh_dirty = false;
        self.next_refresh = None;
        let reserve = self.config().refresh.reserve;
        let min_reads = self.config().refresh.min_reads;
        let floor = self.config().queue.top_class_reserve;
        let routes = self.config.routes();
        let mut best: Option<(Instant, &CacheKey)> = None;
        let mut next: Option<Instant> = None;
        let mut dead = Vec::new();
        let mut starved = std::collections::HashSet::new();
        let was_starved = std::mem::take(&mut self.refresh_starved);
        // The buckets real requests wait on, gathered once (not once per
        // template): a refresh never takes a token one of them needs.
        let waited_on: std::collections::HashSet<&BucketKey> = self
            .calls
            .values()
            .filter(|c| !c.refresh && !matches!(c.state, CallState::InFlight { .. }))
            .flat_map(|c| c.lane.iter())
            .collect();
        for (key, t) in &self.templates {
            if t.in_flight.is_some() || self.by_key.contains_key(key) {
                continue;
            }
            let Some(entry) = self.cache.refresh_view(key) else {
                dead.push(key.clone());
                continue;
            };
            // A refresh must pay for itself: only an answer that served
            // reads since it was stored predicts reads of the next one
            // (each refresh follows reads that made no call, so calls
            // never outnumber requests), and only `[refresh] min_reads`
            // of them make it cheaper than fetching on demand (see
            // `on_demand`): a key read less is left to its next reader.
            // When reads stop, the answer the last ones saw is refreshed
            // once (at most one interval after it was stored, budget
            // allowing), and then no more: nobody read that one. A read
            // older than the idle window pays for nothing (the budget was
            // too short to use it), nor does a request too old to re-send;
            // a served read (which marks refresh dirty) starts it again.
            // A refresh upstream failed spent the reads before it: the
            // next needs a new read, not the same ones again.
            let interval =
                refresh_interval(entry.wanted, routes.get(t.route).min_age, self.refresh_idle);
            if entry.unspent == 0
                || now.saturating_duration_since(entry.last_read) > self.refresh_idle
                || now.saturating_duration_since(t.at) > self.refresh_resend
            {
                continue;
            }
            // Due when the answer reaches the interval, not before: the
            // latest a refresh can leave and still replace the answer
            // before readers would want a younger one.
            let due = entry.stored + interval;
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            // Decided when due, not before: the reads are still coming in
            // until then. On a contended bucket no read fetches on demand
            // (see `on_demand`), so every read key takes its turn, oldest
            // first, as the budget allows.
            if entry.reads < min_reads && !t.lane.iter().any(|b| was_starved.contains(b)) {
                continue;
            }
            if best.is_some_and(|(stored, _)| stored <= entry.stored) {
                continue;
            }
            if t.lane.iter().any(|b| waited_on.contains(b)) {
                starved.extend(t.lane.iter().cloned());
                continue;
            }
            // A route whose breaker is open is not asked, not even to
            // refresh: its probe is a bot's call.
            if self.breakers.blocked_until(now, &t.breaker).is_some() {
                continue;
            }
            match self
                .limiter
                .check_spare(now, &t.lane, t.cost, reserve, floor)
            {
                Ok(()) => best = Some((entry.stored, key)),
                Err(Some(at)) => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    starved.extend(t.lane.iter().cloned());
                }
                Err(None) => {}
            }
        }
        self.refresh_starved = starved;
        let key = best.map(|(_, k)| k.clone());
        for k in dead {
            self.templates.remove(&k);
        }
        self.next_refresh = next;
        let key = key?;
        // The refresh itself changes what the next scan finds.
        self.refresh_dirty = true;
        let call_id = CallId(self.next_id());
        let t = self.templates.get_mut(&key)?;
        t.in_flight = Some(call_id);
        let (lane, cost, route_id) = (t.lane.clone(), t.cost, t.route);
        let breaker = t.breaker.clone();
        let payload = t.payload.clone();
        let sent_headers = t.headers.clone();
        self.limiter.acquire(now, &lane, cost);
        self.breaker_dispatched(now, &breaker);
        let timeout_at = now + self.call_timeout;
        self.timers.insert((timeout_at, call_id));
        self.stats.upstream.calls += 1;
        self.stats.upstream.refreshes += 1;
        let lowest = ClassId(self.config().priorities.len().saturating_sub(1) as u8);
        self.calls.insert(
            call_id,
            Call {
                share: None,
                route: route_id,
                idempotent: true,
                key: Some(key),
                cacheable: true,
                lane,
                cost,
                class: lowest,
                client: Arc::from("(refresh)"),
                origin: Ticket(0),
                waiters: Vec::new(),
                state: CallState::InFlight { timeout_at },
                attempts: 1,
                first_sent: Some(now),
                sent: Some(now),
                refresh: true,
                // It exists to bring a younger answer than the one held:
                // from upstream, not from another coordinator's store.
                age_bounded: true,
                write: None,
                breaker,
                sent_headers,
                sent_by: None,
            },
        );
        let (shared, shared_key) = self.shared_spend(call_id);
        Some(Dispatch {
            call: call_id,
            attempt: 1,
            payload,
            route: self.config.routes().get(route_id).name.clone(),
            timeout: self.call_timeout,
            refresh: true,
            shared,
            shared_key,
        })
    }

    /// Whether a read of `key` on a refresh-ahead route, `age` old, goes
    /// upstream instead of being served: the answer held is past its
    /// refresh interval (counting this reader's `wanted`) and served
    /// fewer than `[refresh] min_reads` reads, so no refresh replaced it
    /// (see [`Self::poll_refresh`]), and the call would be sent now with
    /// budget a refresh could have spent: spare tokens above the reserve
    /// on each of the reader's buckets (so real calls waiting for tokens
    /// keep them), none of them contended by refreshes (which then go to
    /// the oldest answer first, not to whichever key is read next), the
    /// route's breaker closed. Otherwise the answer held is
    /// served, as it would have been without refresh-ahead: a key read
    /// less is fetched by its next reader (coalesced) only with budget a
    /// refresh could have spent. Each such call is a bot's request, a
    /// read gap later than the refresh would have left.
    pub(super) fn on_demand(
        &self,
        now: Instant,
        key: &CacheKey,
        route: RouteId,
        credential: Option<&crate::request::Credential>,
        age: Duration,
        wanted: Duration,
    ) -> bool {
        let r = self.config.routes().get(route);
        if !r.refresh_ahead || !self.refresh_on {
            return false;
        }
        let Some(entry) = self.cache.refresh_view(key) else {
            return false;
        };
        let interval = refresh_interval(entry.wanted.min(wanted), r.min_age, self.refresh_idle);
        if age < interval || entry.reads >= self.config().refresh.min_reads {
            return false;
        }
        // The budget terms of a refresh (see `poll_refresh`); reached by
        // the reads of a key read seldom, past its interval.
        if self
            .templates
            .get(key)
            .is_some_and(|t| t.in_flight.is_some())
        {
            return false;
        }
        let lane = self.limiter.keys(&r.scopes, credential);
        if lane.iter().any(|b| self.refresh_starved.contains(b)) {
            return false;
        }
        let breaker = self.breaker_key(route, key.path(), credential);
        self.breakers.blocked_until(now, &breaker).is_none()
            && self
                .limiter
                .check_spare(
                    now,
                    &lane,
                    r.cost,
                    self.config().refresh.reserve,
                    self.config().queue.top_class_reserve,
                )
                .is_ok()
    }

    /// Stops refresh-ahead for good (a host draining before shutdown:
    /// what bots asked for finishes, nothing new starts).
    /// [`Self::abort_waiting`] does it too.
    pub fn stop_refreshing(&mut self) {
        self.refresh_on = false;
    }

    /// Whether refresh-ahead is keeping some key young (its answer read
    /// since stored, within the idle window): a host that sleeps while idle should
    /// still keep its timer armed for [`Output::WakeAt`] then.
    pub fn refreshing(&self) -> bool {
        let now = self.now;
        self.refresh_on
            && self.templates.keys().any(|k| {
                self.cache.refresh_view(k).is_some_and(|e| {
                    e.reads > 0 && now.saturating_duration_since(e.last_read) <= self.refresh_idle
                })
            })
    }
}

/// How often a key is refreshed: as often as its strictest reader asks
/// (`wanted`: its `max-age`, less a margin), never more often than the
/// route's `min_age`; a reader who asks nothing gets `min_age`. Never
/// longer than `[refresh] idle_secs`, the longest a key stays refreshed
/// after its last read.
pub(super) fn refresh_interval(wanted: Duration, min_age: Duration, idle: Duration) -> Duration {
    wanted.max(min_age).min(idle.max(min_age))
}
