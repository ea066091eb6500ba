//! Admission: what becomes of a request as it arrives (answered from the
//! cache, joined to an identical call, queued, or refused).

use super::*;

/// What [`Coordinator::submit`] learns of a request before deciding.
struct Admit {
    client: Arc<str>,
    route: RouteId,
    class: ClassId,
    cost: u32,
    cacheable: bool,
    coalesce: bool,
    /// Cache / coalescing key (reads only).
    key: Option<CacheKey>,
    /// The oldest answer the request accepts.
    limit: Option<Duration>,
    /// When a write lately changed what it reads: no call that left
    /// before then may answer it.
    written: Option<Instant>,
}

impl<P: Clone> Coordinator<P> {
    /// Takes a request: answers it from the cache, joins it to an identical
    /// call, queues it, or refuses it.
    ///
    /// The request's [`Freshness`](crate::Freshness) decides which cached
    /// answer will do: `max-age` / `no-cache` turn an older hit into a
    /// call (joining an identical one only if it left late enough),
    /// `max-stale` takes an expired entry instead of waiting, and
    /// `only-if-cached` ends here, answered or [`Failure::NotCached`].
    /// A call made for freshness is queued and paced like any other.
    pub fn submit(&mut self, now: Instant, request: Request, payload: P) -> Admission {
        let now = self.advance(now);
        let a = self.classify(&request);
        let payload = match self.answer_from_cache(now, &a, &request, payload) {
            Ok(answered) => return answered,
            Err(payload) => payload,
        };
        if request.freshness.only_if_cached {
            self.stats.ended(&a.client, End::NotCached);
            return Admission::Refused(Failure::NotCached);
        }
        let ticket = Ticket(self.next_id());
        let deadline = request
            .deadline
            .unwrap_or_else(|| now + request.max_wait.unwrap_or(self.default_deadline));
        let lane: Lane = self
            .limiter
            .keys(
                &self.config.routes().get(a.route).scopes,
                request.credential.as_ref(),
            )
            .into();
        // Its call is set once it has one.
        let waiter = Waiter {
            call: CallId(0),
            lane,
            client: a.client.clone(),
            class: a.class,
            submitted: now,
            deadline,
            payload,
            wait_recorded: false,
            headers: request.headers.clone(),
        };
        let cache_key = a.key.as_ref().filter(|_| a.cacheable);
        if deadline <= now {
            let failure = Failure::DeadlineUnreachable {
                earliest: Duration::ZERO,
                deadline: Duration::ZERO,
            };
            return self.refuse(now, &a.client, cache_key, failure);
        }
        let waiter = match self.join_existing(now, &a, ticket, waiter) {
            Ok(admission) => return admission,
            Err(waiter) => waiter,
        };
        let breaker = self.breaker_key(a.route, &request.path, request.credential.as_ref());
        if let Some(failure) = self.breaker_refusal(now, &breaker) {
            return self.refuse(now, &a.client, cache_key, failure);
        }
        if let Some(admission) = self.check_budget(now, &a, &waiter, cache_key) {
            return admission;
        }
        if let Some(admission) = self.check_share(now, &a, &request, &waiter, cache_key) {
            return admission;
        }
        if let Some(admission) = self.make_room(now, &a, cache_key) {
            return admission;
        }
        self.enqueue(now, a, &request, ticket, waiter, breaker)
    }

    /// Step 1: what the request is (its route, class, keys), counted as
    /// submitted.
    fn classify(&mut self, request: &Request) -> Admit {
        let client = self.stats.intern(&request.client);
        self.stats.submitted(&client);
        let routes = self.config.routes();
        let route_id = self
            .route_memo
            .lookup(routes, &request.method, &request.path);
        let route = routes.get(route_id);
        let (route_class, private, cost) = (route.class, route.private, route.cost);
        let class = request.priority.unwrap_or(route_class);
        let class = ClassId(class.0.min(self.config().priorities.len() as u8 - 1));
        let read = request.method.is_cacheable();
        let cacheable = read && route.cacheable;
        let coalesce = read && route.coalesce;
        let credential = request.credential.as_ref();
        // Once answers for it are known to vary, the request reads (and
        // joins calls for) the variant its headers select.
        let key = (cacheable || coalesce).then(|| {
            let primary = CacheKey::new(
                &request.method,
                &request.path,
                request.query.as_deref(),
                credential.filter(|_| private),
            );
            self.cache.select(primary, request.headers.fields())
        });
        let written = key.as_ref().and_then(|k| self.marks.since(k, route_id));
        Admit {
            client,
            route: route_id,
            class,
            cost,
            cacheable,
            coalesce,
            key,
            limit: request.freshness.age_limit(),
            written,
        }
    }

    /// Step 2: a cached answer the request's freshness accepts ends it
    /// here (`Ok`); otherwise the payload comes back (`Err`).
    fn answer_from_cache(
        &mut self,
        now: Instant,
        a: &Admit,
        request: &Request,
        payload: P,
    ) -> Result<Admission, P> {
        let (true, Some(k)) = (a.cacheable, &a.key) else {
            return Err(payload);
        };
        let fresh = request.freshness;
        let limit = a.limit;
        match self.cache.lookup(now, k) {
            Lookup::Fresh {
                response,
                age,
                left,
                woke,
                renew,
            } => {
                let wanted = refresh_wanted(limit);
                let credential = request.credential.as_ref();
                if limit.is_none_or(|l| age <= l)
                    && !self.on_demand(now, k, a.route, credential, age, wanted)
                {
                    // Only a read this answer served counts towards a
                    // refresh of it (one the age rejected makes its own
                    // call): what keeps refresh calls below the reads.
                    self.refresh_dirty |= woke;
                    self.cache.served(k, wanted);
                    if renew {
                        let headers = request.headers.clone();
                        self.lend_template(
                            now,
                            k,
                            a.route,
                            request.credential.as_ref(),
                            payload,
                            headers,
                        );
                    }
                    let answer = Answer {
                        response,
                        source: Source::Cache,
                        age,
                        ttl_secs: Some(crate::request::ttl_secs(left, Duration::ZERO)),
                        timing: Default::default(),
                    };
                    return Ok(self.answered(&a.client, answer));
                }
            }
            Lookup::Stale {
                response,
                age,
                past_expiry,
            } => {
                let accepted = fresh.max_stale.is_some_and(|m| past_expiry <= m)
                    && limit.is_none_or(|l| age <= l);
                if accepted {
                    let answer = Answer {
                        response,
                        source: Source::Stale,
                        age,
                        ttl_secs: Some(crate::request::ttl_secs(Duration::ZERO, past_expiry)),
                        timing: Default::default(),
                    };
                    return Ok(self.answered(&a.client, answer));
                }
            }
            Lookup::Miss => {}
        }
        Err(payload)
    }

    /// Step 3: an identical call young enough to give the answer the
    /// request accepts takes it as one more waiter (`Ok`); otherwise the
    /// waiter comes back (`Err`).
    fn join_existing(
        &mut self,
        now: Instant,
        a: &Admit,
        ticket: Ticket,
        mut waiter: Waiter<P>,
    ) -> Result<Admission, Waiter<P>> {
        // An answer at most `limit` old: a call that left before
        // `not_before` cannot give it.
        let not_before = a.limit.map(|l| now.checked_sub(l).unwrap_or(now));
        // Nor can one that left before a write changed what it reads.
        let not_before = not_before.max(a.written);
        let joinable = a
            .key
            .as_ref()
            .filter(|_| a.coalesce)
            .and_then(|k| self.by_key.get(k))
            .and_then(|id| self.calls.get(id).map(|c| (*id, c)))
            .filter(|(_, c)| match (not_before, c.state) {
                (Some(t), CallState::InFlight { .. }) => c.sent.is_some_and(|s| s >= t),
                _ => true,
            })
            .map(|(id, c)| (id, !matches!(c.state, CallState::InFlight { .. })));
        let Some((call_id, refresh_waiting)) = joinable else {
            return Err(waiter);
        };
        if let (true, true, None, Some(k)) = (refresh_waiting, a.cacheable, a.limit, &a.key) {
            if let Some((response, age)) = self.cache.while_revalidating(now, k) {
                let answer = Answer {
                    response,
                    source: Source::Stale,
                    age,
                    ttl_secs: None,
                    timing: Default::default(),
                };
                return Ok(self.answered(&a.client, answer));
            }
        }
        if a.limit.is_some() || a.written.is_some() {
            if let Some(call) = self.calls.get_mut(&call_id) {
                call.age_bounded = true;
            }
        }
        waiter.call = call_id;
        self.join(now, ticket, waiter);
        Ok(Admission::Waiting {
            ticket,
            joined: true,
        })
    }

    /// Step 4: a limiter that cannot let the call go before the deadline
    /// refuses it, and a paused scope answers from stale cache where it
    /// can.
    fn check_budget(
        &mut self,
        now: Instant,
        a: &Admit,
        waiter: &Waiter<P>,
        cache_key: Option<&CacheKey>,
    ) -> Option<Admission> {
        let wait = self.limiter.check(now, &waiter.lane, a.cost)?;
        if let Some(failure) = unreachable(now, wait, waiter.deadline) {
            return Some(self.refuse(now, &a.client, cache_key, failure));
        }
        if wait.is_degraded() {
            if let Some(answer) = cache_key.and_then(|k| self.stale_answer(now, k)) {
                return Some(self.answered(&a.client, answer));
            }
        }
        None
    }

    /// Step 4b: a client whose share is spent, and whose share says to
    /// refuse rather than wait, is refused (with when to retry).
    fn check_share(
        &mut self,
        now: Instant,
        a: &Admit,
        request: &Request,
        waiter: &Waiter<P>,
        cache_key: Option<&CacheKey>,
    ) -> Option<Admission> {
        let share = request.share.as_ref().filter(|s| s.refuse)?;
        let until = self
            .shares
            .check(now, &self.limiter, share, &waiter.lane, a.cost)?;
        let failure = Failure::ShareExceeded {
            holder: share.holder.to_string(),
            retry_after: until - now,
        };
        Some(self.refuse(now, &a.client, cache_key, failure))
    }

    /// Step 5: a full queue sheds its least important call, or refuses
    /// this one if nothing queued matters less.
    fn make_room(
        &mut self,
        now: Instant,
        a: &Admit,
        cache_key: Option<&CacheKey>,
    ) -> Option<Admission> {
        if self.queue.len() < self.config().queue.max_len {
            return None;
        }
        match self.queue.shed_candidate(a.class) {
            Some(victim) => {
                let failure =
                    self.shed_failure(self.calls.get(&victim).map_or(a.class, |c| c.class));
                self.fail_call(now, victim, failure);
                None
            }
            None => {
                let failure = self.shed_failure(a.class);
                Some(self.refuse(now, &a.client, cache_key, failure))
            }
        }
    }

    /// Step 6: a new call for the request, queued.
    fn enqueue(
        &mut self,
        now: Instant,
        a: Admit,
        request: &Request,
        ticket: Ticket,
        mut waiter: Waiter<P>,
        breaker: crate::breakers::BreakerKey,
    ) -> Admission {
        let call_id = CallId(self.next_id());
        if let (true, Some(k)) = (a.coalesce, &a.key) {
            // A call made because an older one was too old becomes the one
            // later reads join; the older one still lands in the cache.
            self.by_key.insert(k.clone(), call_id);
        }
        let lane = waiter.lane.clone();
        self.queue.push(
            now,
            call_id,
            a.class,
            lane.clone(),
            a.client.clone(),
            a.cost,
        );
        self.calls.insert(
            call_id,
            Call {
                route: a.route,
                idempotent: request.method.is_idempotent(),
                key: a.key,
                cacheable: a.cacheable,
                lane,
                cost: a.cost,
                class: a.class,
                client: a.client,
                origin: ticket,
                waiters: vec![ticket],
                state: CallState::Queued,
                attempts: 0,
                first_sent: None,
                sent: None,
                refresh: false,
                age_bounded: a.limit.is_some() || a.written.is_some(),
                write: invalidation::WriteTarget::of(request),
                breaker,
                share: request.share.clone(),
                sent_headers: request.headers.clone(),
                sent_by: None,
            },
        );
        self.deadlines.insert((waiter.deadline, ticket));
        waiter.call = call_id;
        self.waiters.insert(ticket, waiter);
        Admission::Waiting {
            ticket,
            joined: false,
        }
    }

    pub(super) fn join(&mut self, now: Instant, ticket: Ticket, mut joiner: Waiter<P>) {
        let Some(call) = self.calls.get_mut(&joiner.call) else {
            return;
        };
        call.waiters.push(ticket);
        let in_flight = matches!(call.state, CallState::InFlight { .. });
        if joiner.class < call.class && !in_flight {
            call.class = joiner.class;
            self.queue.promote(now, joiner.call, joiner.class);
        }
        if !in_flight {
            self.deadlines.insert((joiner.deadline, ticket));
        }
        // Joining a call already sent: it waits for no queue.
        joiner.wait_recorded = in_flight;
        self.waiters.insert(ticket, joiner);
    }

    /// Name of the first scope in `lane` that refuses a call now.
    pub(super) fn blocking_scope(&self, now: Instant, lane: &[BucketKey]) -> String {
        let key = lane
            .iter()
            .find(|k| {
                self.limiter
                    .check(now, std::slice::from_ref(*k), 1)
                    .is_some()
            })
            .or(lane.first());
        key.map_or_else(String::new, |k| self.limiter.scope_name(k.scope).to_owned())
    }

    pub(super) fn shed_failure(&self, class: ClassId) -> Failure {
        Failure::Shed {
            class: self.config().class_name(class).to_owned(),
            depth: self.queue.len(),
            retry_after: Duration::from_secs(1),
        }
    }

    pub(super) fn stale_answer(&mut self, now: Instant, key: &CacheKey) -> Option<Answer> {
        let (response, age, source, ttl) = match self.cache.lookup(now, key) {
            Lookup::Fresh {
                response,
                age,
                left,
                ..
            } => (response, age, Source::Cache, (left, Duration::ZERO)),
            Lookup::Stale {
                response,
                age,
                past_expiry,
            } => (response, age, Source::Stale, (Duration::ZERO, past_expiry)),
            Lookup::Miss => return None,
        };
        Some(Answer {
            response,
            source,
            age,
            ttl_secs: Some(crate::request::ttl_secs(ttl.0, ttl.1)),
            timing: Default::default(),
        })
    }

    /// The answer for a request that cannot get a fresh one: stale cache
    /// if there is any, else the failure.
    pub(super) fn fallback(
        &mut self,
        now: Instant,
        key: Option<&CacheKey>,
        failure: Failure,
    ) -> (Result<Answer, Failure>, End) {
        match key.and_then(|k| self.stale_answer(now, k)) {
            Some(answer) => {
                let end = answer.source.into();
                (Ok(answer), end)
            }
            None => {
                let end = match failure {
                    Failure::Shed { .. } => End::Shed,
                    Failure::Deadline { .. } | Failure::DeadlineUnreachable { .. } => End::Expired,
                    Failure::Aborted(_) => End::Aborted,
                    _ => End::Failed,
                };
                (Err(failure), end)
            }
        }
    }

    /// Ends a request at once with `answer`.
    pub(super) fn answered(&mut self, client: &Arc<str>, answer: Answer) -> Admission {
        self.stats.ended(client, answer.source.into());
        self.stats.served(answer.source, answer.age);
        Admission::Answered(answer)
    }

    pub(super) fn refuse(
        &mut self,
        now: Instant,
        client: &Arc<str>,
        key: Option<&CacheKey>,
        failure: Failure,
    ) -> Admission {
        let (result, end) = self.fallback(now, key, failure);
        self.stats.ended(client, end);
        if let Ok(answer) = &result {
            self.stats.served(answer.source, answer.age);
        }
        match result {
            Ok(answer) => Admission::Answered(answer),
            Err(failure) => Admission::Refused(failure),
        }
    }
}

/// A failure if the limiter's `wait` makes `deadline` impossible.
fn unreachable(now: Instant, wait: Wait, deadline: Instant) -> Option<Failure> {
    let t = wait.instant();
    (t > deadline).then(|| Failure::DeadlineUnreachable {
        earliest: t - now,
        deadline: deadline - now,
    })
}

/// The refresh interval a reader's age limit asks for: a little under the
/// limit, so the refreshed answer lands before the reader would reject
/// the one held; zero (the route's `min_age` decides) for a reader who
/// set none.
fn refresh_wanted(limit: Option<Duration>) -> Duration {
    limit.map_or(Duration::ZERO, |l| l.mul_f64(REFRESH_MARGIN))
}

/// See [`refresh_wanted`]: a refresh leaves at 80% of the readers'
/// `max-age`, leaving a fifth of it for the round trip.
const REFRESH_MARGIN: f64 = 0.8;
