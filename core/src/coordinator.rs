//! The coordinator: the state machine hosts drive.
//!
//! ```text
//!   submit(now, request, payload) -> Admission      a bot asks
//!   poll_dispatch(now)            -> Option<Dispatch> what to send upstream now
//!   complete(now, call, outcome)                    what upstream said
//!   poll_finished()               -> Option<Finished> requests that ended
//!   poll_timeout()                -> Option<Instant>  when to wake next
//!   handle_timeout(now)                             time passed
//!   cancel(ticket)                                  a bot gave up
//! ```
//!
//! A host loop: after any input, drain `poll_dispatch` (send each call),
//! drain `poll_finished` (answer each waiter), then sleep until
//! `poll_timeout` or the next input. Nothing here reads a clock, sleeps or
//! does I/O; the same inputs give the same outputs, which is what makes
//! hours of traffic testable in milliseconds.
//!
//! Vocabulary: a *ticket* is one submitted request; a *call* is one piece
//! of upstream work, which answers every ticket waiting on it (coalescing).
//! The payload `P` is the host's own request data (headers, body,
//! signature), carried per ticket and handed back at dispatch.

use std::collections::{BTreeSet, VecDeque};

use crate::HashMap;
use std::sync::Arc;

use web_time::{Duration, Instant};

use crate::backoff::{RetryPolicy, Verdict};
use crate::cache::{Cache, CacheKey, Lookup, Store};
use crate::compile::CompiledConfig;
use crate::config::{secs, ClassId, Config};
use crate::freshness::Storable;
use crate::health::{self, Health};
use crate::http;
use crate::limiter::{BucketKey, Limiter, Wait};
use crate::queue::{Lane, Queue, Selection};
use crate::request::{
    Answer, CallId, Failure, Finished, Outcome, Request, Source, Ticket, TransportError,
};
use crate::route::{RouteId, RouteMemo};
use crate::shared::{SharedOutput, SharedRefusal, SharedSpend, StoreState};
use crate::stats::{self, ClassSnapshot, End, QueueSnapshot, Stats, StatsSnapshot};

/// How often idle limiter buckets and dead cache entries are swept.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// What became of a submitted request.
#[derive(Debug, Clone)]
#[must_use = "a request that is Waiting ends later through poll_finished; Answered and Refused must be passed on to the caller"]
pub enum Admission {
    /// Answered at once (fresh cache, or stale cache when upstream cannot
    /// be asked). The request has ended.
    Answered(Answer),
    /// Waiting; it ends later through [`Coordinator::poll_finished`].
    /// `joined` is true when it joined an identical call already waiting
    /// or in flight.
    Waiting {
        /// Names the request in [`Finished`] and for [`Coordinator::cancel`].
        ticket: Ticket,
        /// Whether it joined an identical call already waiting or in flight.
        joined: bool,
    },
    /// Refused at once, with a reason the caller can act on. The request
    /// has ended.
    Refused(Failure),
}

/// A call the host must send upstream now.
#[derive(Debug, Clone)]
#[must_use = "a dropped dispatch stays in flight until its call timeout; send it and report the outcome with complete"]
pub struct Dispatch<P> {
    /// Names the call: report its outcome with [`Coordinator::complete`].
    pub call: CallId,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The payload of the waiting ticket whose deadline is furthest away
    /// (its signature lives longest).
    pub payload: P,
    /// Name of the route rule the call fell under.
    pub route: String,
    /// Report an outcome within this long; after it the core fails the
    /// call as a timeout on its own. Hosts should set their upstream
    /// timeouts below it.
    pub timeout: Duration,
    /// A refresh-ahead call: it re-sends the stored request of a key bots
    /// keep reading, from spare budget. Send and complete it like any
    /// other; its answer only refreshes the cache and ends no request.
    pub refresh: bool,
    /// What the call must spend in the shared buckets before it leaves
    /// (empty unless [`Coordinator::enable_sharing`]).
    pub shared: SharedSpend,
    /// The call's cache key as a shared store names it, for a cacheable
    /// read when sharing: look there before calling upstream.
    pub shared_key: Option<String>,
}

/// `complete` was told about a call the core is not waiting on (already
/// timed out, or never dispatched). The outcome is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("call {0:?} is not in flight (it may have timed out already)")]
pub struct UnknownCall(pub CallId);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Queued,
    Backoff { until: Instant },
    InFlight { timeout_at: Instant },
}

#[derive(Debug)]
struct Call {
    route: RouteId,
    idempotent: bool,
    /// Cache / coalescing key (reads only).
    key: Option<CacheKey>,
    cacheable: bool,
    lane: Lane,
    cost: u32,
    class: ClassId,
    /// The creating request's client, for fair queueing.
    client: Arc<str>,
    /// The creating ticket: answered as `Upstream`, the others as `Coalesced`.
    origin: Ticket,
    waiters: Vec<Ticket>,
    state: CallState,
    attempts: u32,
    first_sent: Option<Instant>,
    /// When the latest attempt left: whether a request that needs an
    /// answer at most so old may join it.
    sent: Option<Instant>,
    /// A refresh-ahead call: no waiters, never joined.
    refresh: bool,
    /// A waiter bounds the age of its answer (`max-age`, `no-cache`): an
    /// answer another coordinator stored may be older than it accepts, so
    /// the shared store is not asked for one (its budget still is).
    age_bounded: bool,
}

/// What refresh-ahead re-sends for one key: the request of the latest
/// real call (or of a read that lent it), as the host made it.
#[derive(Debug)]
struct Template<P> {
    payload: P,
    /// When that request was submitted (its signature is at least this old).
    at: Instant,
    route: RouteId,
    lane: Lane,
    cost: u32,
    /// The refresh call underway, if any.
    in_flight: Option<CallId>,
}

#[derive(Debug)]
struct Waiter<P> {
    call: CallId,
    /// The buckets its own payload would spend (its credential's): only a
    /// waiter on the call's lane may lend the call its payload.
    lane: Lane,
    client: Arc<str>,
    class: ClassId,
    submitted: Instant,
    deadline: Instant,
    payload: P,
    /// Its queue wait is recorded once, at the first dispatch.
    wait_recorded: bool,
}

/// The rate-limit coordinator for one upstream API: queue, limiter, cache,
/// coalescing and retries, with no I/O of its own; the host feeds it time
/// and outcomes. `P` is the host's per-request payload.
pub struct Coordinator<P = ()> {
    config: CompiledConfig,
    retry: RetryPolicy,
    limiter: Limiter,
    cache: Cache,
    queue: Queue,
    calls: HashMap<CallId, Call>,
    waiters: HashMap<Ticket, Waiter<P>>,
    /// Calls that identical reads may join.
    by_key: HashMap<CacheKey, CallId>,
    /// Refresh-ahead: the request to re-send, per key of a refreshed route.
    templates: HashMap<CacheKey, Template<P>>,
    /// The routes of GET paths seen lately.
    route_memo: RouteMemo,
    /// Refresh-ahead has something new to consider (a template, an answer,
    /// a call that left the queue, a key read again after idling).
    refresh_dirty: bool,
    /// The earliest instant a refresh may become due, as of the last scan.
    next_refresh: Option<Instant>,
    /// False once a host shuts down ([`Self::abort_waiting`]).
    refresh_on: bool,
    /// `[refresh]`, as durations.
    refresh_idle: Duration,
    refresh_resend: Duration,
    /// Send-by deadlines of tickets whose call is not in flight.
    deadlines: BTreeSet<(Instant, Ticket)>,
    /// Backoff ends and in-flight timeouts.
    timers: BTreeSet<(Instant, CallId)>,
    finished: VecDeque<Finished>,
    stats: Stats,
    rng: fastrand::Rng,
    /// The latest instant seen: time never moves backwards in here.
    now: Instant,
    next_id: u64,
    default_deadline: Duration,
    call_timeout: Duration,
    next_housekeeping: Instant,
    /// The host shares budgets and answers through a store.
    sharing: bool,
    /// What the other coordinators should hear of, for the host to send.
    shared_out: VecDeque<SharedOutput>,
    /// The store cannot be reached: its name and our share of the budget.
    fallback: Option<(String, f64)>,
}

/// Outputs for the store kept at most, should a host not drain them.
const SHARED_OUT_MAX: usize = 4096;

impl<P: Clone> Coordinator<P> {
    /// A coordinator running on `compiled` (see [`Config::compile`]) whose
    /// clock starts at `now`; `seed` drives all jitter (same seed, same
    /// decisions).
    pub fn new(compiled: CompiledConfig, now: Instant, seed: u64) -> Self {
        let config = compiled.config();
        let classes = config.priorities.len();
        Coordinator {
            retry: RetryPolicy::new(&config.retry),
            limiter: Limiter::new(config),
            cache: Cache::new(&config.cache, secs(config.refresh.idle_secs)),
            queue: Queue::new(classes, config.queue.aging_secs.map(secs))
                .with_top_class_reserve(config.queue.top_class_reserve),
            calls: HashMap::default(),
            waiters: HashMap::default(),
            by_key: HashMap::default(),
            templates: HashMap::default(),
            route_memo: RouteMemo::default(),
            refresh_dirty: false,
            next_refresh: None,
            refresh_on: true,
            refresh_idle: secs(config.refresh.idle_secs),
            refresh_resend: secs(config.refresh.resend_max_age_secs),
            deadlines: BTreeSet::new(),
            timers: BTreeSet::new(),
            finished: VecDeque::new(),
            stats: Stats::new(
                now,
                classes,
                config.stats.max_clients,
                secs(config.health.window_secs),
            ),
            rng: fastrand::Rng::with_seed(seed),
            now,
            next_id: 0,
            default_deadline: secs(config.queue.default_deadline_secs),
            call_timeout: secs(config.retry.call_timeout_secs),
            next_housekeeping: now + HOUSEKEEPING,
            sharing: false,
            shared_out: VecDeque::new(),
            fallback: None,
            config: compiled,
        }
    }

    /// The configuration it runs on.
    pub fn config(&self) -> &Config {
        self.config.config()
    }

    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

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
        let key = (cacheable || coalesce).then(|| {
            CacheKey::new(
                &request.method,
                &request.path,
                request.query.as_deref(),
                credential.filter(|_| private),
            )
        });
        let fresh = request.freshness;
        let limit = fresh.age_limit();

        if let (true, Some(k)) = (cacheable, &key) {
            match self.cache.lookup(now, k) {
                Lookup::Fresh {
                    response,
                    age,
                    woke,
                    renew,
                } => {
                    self.refresh_dirty |= woke;
                    if limit.is_none_or(|l| age <= l) {
                        if renew {
                            self.lend_template(now, k, route_id, credential, payload);
                        }
                        let answer = Answer {
                            response,
                            source: Source::Cache,
                            age,
                        };
                        return self.answered(&client, answer);
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
                        };
                        return self.answered(&client, answer);
                    }
                }
                Lookup::Miss => {}
            }
        }
        if fresh.only_if_cached {
            self.stats.ended(&client, End::NotCached);
            return Admission::Refused(Failure::NotCached);
        }
        let ticket = Ticket(self.next_id());
        let deadline = request
            .deadline
            .unwrap_or_else(|| now + request.max_wait.unwrap_or(self.default_deadline));
        let lane: Lane = self
            .limiter
            .keys(&self.config.routes().get(route_id).scopes, credential)
            .into();
        // Its call is set once it has one.
        let mut waiter = Waiter {
            call: CallId(0),
            lane: lane.clone(),
            client: client.clone(),
            class,
            submitted: now,
            deadline,
            payload,
            wait_recorded: false,
        };

        let cache_key = key.as_ref().filter(|_| cacheable);
        if deadline <= now {
            let failure = Failure::DeadlineUnreachable {
                earliest: Duration::ZERO,
                deadline: Duration::ZERO,
            };
            return self.refuse(now, &client, cache_key, failure);
        }
        // An answer at most `limit` old: a call that left before
        // `not_before` cannot give it.
        let not_before = limit.map(|l| now.checked_sub(l).unwrap_or(now));
        let joinable = key
            .as_ref()
            .filter(|_| coalesce)
            .and_then(|k| self.by_key.get(k))
            .and_then(|id| self.calls.get(id).map(|c| (*id, c)))
            .filter(|(_, c)| match (not_before, c.state) {
                (Some(t), CallState::InFlight { .. }) => c.sent.is_some_and(|s| s >= t),
                _ => true,
            })
            .map(|(id, c)| (id, !matches!(c.state, CallState::InFlight { .. })));
        if let Some((call_id, refresh_waiting)) = joinable {
            if let (true, true, None, Some(k)) = (refresh_waiting, cacheable, limit, &key) {
                if let Some((response, age)) = self.cache.while_revalidating(now, k) {
                    let answer = Answer {
                        response,
                        source: Source::Stale,
                        age,
                    };
                    return self.answered(&client, answer);
                }
            }
            if limit.is_some() {
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.age_bounded = true;
                }
            }
            waiter.call = call_id;
            self.join(now, ticket, waiter);
            return Admission::Waiting {
                ticket,
                joined: true,
            };
        }

        if let Some(wait) = self.limiter.check(now, &lane, cost) {
            if let Some(failure) = self.unreachable(now, &lane, wait, deadline) {
                return self.refuse(now, &client, cache_key, failure);
            }
            if wait.is_degraded() {
                if let Some(answer) = cache_key.and_then(|k| self.stale_answer(now, k)) {
                    return self.answered(&client, answer);
                }
            }
        }
        if self.queue.len() >= self.config().queue.max_len {
            match self.queue.shed_candidate(class) {
                Some(victim) => {
                    let failure =
                        self.shed_failure(self.calls.get(&victim).map_or(class, |c| c.class));
                    self.fail_call(now, victim, failure);
                }
                None => {
                    let failure = self.shed_failure(class);
                    return self.refuse(now, &client, cache_key, failure);
                }
            }
        }

        let call_id = CallId(self.next_id());
        if let (true, Some(k)) = (coalesce, &key) {
            // A call made because an older one was too old becomes the one
            // later reads join; the older one still lands in the cache.
            self.by_key.insert(k.clone(), call_id);
        }
        self.queue
            .push(now, call_id, class, lane.clone(), client.clone(), cost);
        self.calls.insert(
            call_id,
            Call {
                route: route_id,
                idempotent: request.method.is_idempotent(),
                key,
                cacheable,
                lane,
                cost,
                class,
                client: client.clone(),
                origin: ticket,
                waiters: vec![ticket],
                state: CallState::Queued,
                attempts: 0,
                first_sent: None,
                sent: None,
                refresh: false,
                age_bounded: limit.is_some(),
            },
        );
        self.deadlines.insert((deadline, ticket));
        waiter.call = call_id;
        self.waiters.insert(ticket, waiter);
        Admission::Waiting {
            ticket,
            joined: false,
        }
    }

    fn join(&mut self, now: Instant, ticket: Ticket, mut joiner: Waiter<P>) {
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

    /// A failure if the limiter's `wait` makes `deadline` impossible or the
    /// breaker refuses outright.
    fn unreachable(
        &self,
        now: Instant,
        lane: &[BucketKey],
        wait: Wait,
        deadline: Instant,
    ) -> Option<Failure> {
        // Open: refuse. Half-open with the probe in flight (`None`): wait
        // for the probe like any paced call.
        if let Wait::BreakerOpen(Some(until)) = wait {
            return Some(Failure::BreakerOpen {
                scope: self.blocking_scope(now, lane),
                retry_after: until - now,
            });
        }
        let t = wait.instant()?;
        (t > deadline).then(|| Failure::DeadlineUnreachable {
            earliest: t - now,
            deadline: deadline - now,
        })
    }

    /// Name of the first scope in `lane` that refuses a call now.
    fn blocking_scope(&self, now: Instant, lane: &[BucketKey]) -> String {
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

    fn shed_failure(&self, class: ClassId) -> Failure {
        Failure::Shed {
            class: self.config().class_name(class).to_owned(),
            depth: self.queue.len(),
            retry_after: Duration::from_secs(1),
        }
    }

    fn stale_answer(&mut self, now: Instant, key: &CacheKey) -> Option<Answer> {
        let (response, age, source) = match self.cache.lookup(now, key) {
            Lookup::Fresh { response, age, .. } => (response, age, Source::Cache),
            Lookup::Stale { response, age, .. } => (response, age, Source::Stale),
            Lookup::Miss => return None,
        };
        Some(Answer {
            response,
            source,
            age,
        })
    }

    /// The answer for a request that cannot get a fresh one: stale cache
    /// if there is any, else the failure.
    fn fallback(
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
    fn answered(&mut self, client: &Arc<str>, answer: Answer) -> Admission {
        self.stats.ended(client, answer.source.into());
        self.stats.served(answer.source, answer.age);
        Admission::Answered(answer)
    }

    fn refuse(
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

    /// Ends one waiting ticket (the only way a waiting ticket ends besides
    /// `cancel`). The caller detaches it from its call.
    fn end_waiter(&mut self, ticket: Ticket, result: Result<Answer, Failure>, end: End) {
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
    fn fail_call(&mut self, now: Instant, call_id: CallId, failure: Failure) {
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
    fn remove_call(&mut self, call_id: CallId) -> Option<Call> {
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

    /// The next call to send upstream now, paced and in priority order.
    #[must_use = "a dispatched call must be sent and completed"]
    pub fn poll_dispatch(&mut self, now: Instant) -> Option<Dispatch<P>> {
        let now = self.advance(now);
        self.expire(now);
        loop {
            let limiter = &self.limiter;
            let call_id = match self
                .queue
                .select(|lane, cost| limiter.check(now, lane, limiter.fit_cost(lane, cost)))
            {
                Selection::Go(call) => call,
                Selection::Wait(_) => return self.poll_refresh(now),
            };
            self.queue.take(call_id);
            self.refresh_dirty = true;
            if let Some(d) = self.dispatch(now, call_id) {
                return Some(d);
            }
        }
    }

    fn dispatch(&mut self, now: Instant, call_id: CallId) -> Option<Dispatch<P>> {
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
        call.attempts += 1;
        call.first_sent.get_or_insert(now);
        call.sent = Some(now);
        let timeout_at = now + self.call_timeout;
        call.state = CallState::InFlight { timeout_at };
        self.timers.insert((timeout_at, call_id));
        self.stats.upstream.calls += 1;
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
        let sender = self.waiters.get(&sender)?;
        let payload = sender.payload.clone();
        let route = self.config.routes().get(call.route);
        if let (true, true, Some(key)) = (route.refresh_ahead, call.cacheable, &call.key) {
            let template = Template {
                payload: payload.clone(),
                at: sender.submitted,
                route: call.route,
                lane: call.lane.clone(),
                cost: call.cost,
                in_flight: None,
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

    /// A read of a refreshed entry whose stored request is getting old
    /// lends its own: refreshes then re-send a request young enough that
    /// its signature is still valid.
    fn lend_template(
        &mut self,
        now: Instant,
        key: &CacheKey,
        route: RouteId,
        credential: Option<&crate::request::Credential>,
        payload: P,
    ) {
        let r = self.config.routes().get(route);
        let lane: Lane = self.limiter.keys(&r.scopes, credential).into();
        let cost = r.cost;
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
    fn poll_refresh(&mut self, now: Instant) -> Option<Dispatch<P>> {
        if self.templates.is_empty() || !self.refresh_on {
            return None;
        }
        if !self.refresh_dirty && self.next_refresh.is_none_or(|t| now < t) {
            return None;
        }
        self.refresh_dirty = false;
        self.next_refresh = None;
        let reserve = self.config().refresh.reserve;
        let floor = self.config().queue.top_class_reserve;
        let routes = self.config.routes();
        let mut best: Option<(Instant, &CacheKey)> = None;
        let mut next: Option<Instant> = None;
        let mut dead = Vec::new();
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
            // Nobody reads it, or its request is too old to re-send: a
            // read (which marks refresh dirty) starts it again.
            if now.saturating_duration_since(entry.last_read) > self.refresh_idle
                || now.saturating_duration_since(t.at) > self.refresh_resend
            {
                continue;
            }
            let due = entry.stored + routes.get(t.route).min_age;
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            if best.is_some_and(|(stored, _)| stored <= entry.stored) {
                continue;
            }
            if t.lane.iter().any(|b| waited_on.contains(b)) {
                continue;
            }
            match self
                .limiter
                .check_spare(now, &t.lane, t.cost, reserve, floor)
            {
                Ok(()) => best = Some((entry.stored, key)),
                Err(Some(at)) => next = Some(next.map_or(at, |n| n.min(at))),
                Err(None) => {}
            }
        }
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
        let payload = t.payload.clone();
        self.limiter.acquire(now, &lane, cost);
        let timeout_at = now + self.call_timeout;
        self.timers.insert((timeout_at, call_id));
        self.stats.upstream.calls += 1;
        self.stats.upstream.refreshes += 1;
        let lowest = ClassId(self.config().priorities.len().saturating_sub(1) as u8);
        self.calls.insert(
            call_id,
            Call {
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

    /// Stops refresh-ahead for good (a host draining before shutdown:
    /// what bots asked for finishes, nothing new starts).
    /// [`Self::abort_waiting`] does it too.
    pub fn stop_refreshing(&mut self) {
        self.refresh_on = false;
    }

    /// Whether refresh-ahead is keeping some key young (read within the
    /// idle window): a host that sleeps while idle should still keep its
    /// timer armed for [`Self::poll_timeout`] then.
    pub fn refreshing(&self) -> bool {
        let now = self.now;
        self.refresh_on
            && self.templates.keys().any(|k| {
                self.cache.refresh_view(k).is_some_and(|e| {
                    now.saturating_duration_since(e.last_read) <= self.refresh_idle
                })
            })
    }

    /// Shares budgets and answers through a store the host talks to: from
    /// now on each [`Dispatch`] carries what the store must be asked
    /// ([`Dispatch::shared`], [`Dispatch::shared_key`]), and what the other
    /// coordinators must hear of comes out of [`Self::poll_shared`].
    pub fn enable_sharing(&mut self) {
        self.sharing = true;
    }

    /// The next thing the other coordinators should hear of (a 429's
    /// pause, an answer to share), for the host to write to its store.
    #[must_use = "a shared output must be written to the store"]
    pub fn poll_shared(&mut self) -> Option<SharedOutput> {
        self.shared_out.pop_front()
    }

    fn push_shared(&mut self, out: SharedOutput) {
        if self.shared_out.len() >= SHARED_OUT_MAX {
            self.shared_out.pop_front();
        }
        self.shared_out.push_back(out);
    }

    /// What a call must spend in the shared buckets, and its shared cache
    /// key (nothing unless sharing).
    fn shared_spend(&self, call_id: CallId) -> (SharedSpend, Option<String>) {
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
            .filter(|_| call.cacheable && !call.age_bounded)
            .map(|k| k.shared_name());
        (spend, key)
    }

    /// Cost units a call of `class` must leave in every bucket: the
    /// top-class reserve, for every class but the highest.
    fn class_reserve(&self, class: ClassId) -> u32 {
        if class == ClassId(0) {
            0
        } else {
            self.config().queue.top_class_reserve
        }
    }

    /// Undoes a dispatch that never left (the shared store refused it or
    /// answered it): no attempt, no upstream call counted, its local
    /// tokens back. Returns the call's lane and cost.
    fn undispatch(&mut self, now: Instant, call_id: CallId) -> Option<(Vec<BucketKey>, u32)> {
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
        self.answer_call(now, call_id, response, Some((age, ttl_left)));
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
                self.settle(now, call_id, outcome);
                Ok(())
            }
            _ => Err(UnknownCall(call_id)),
        }
    }

    fn settle(&mut self, now: Instant, call_id: CallId, outcome: Outcome) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let lane = call.lane.clone();
        let verdict = self.retry.verdict(&outcome);
        let upstream_wait = match &outcome {
            Outcome::Response {
                response,
                received_unix,
            } => http::upstream_wait(&response.headers, *received_unix),
            Outcome::Transport(_) => None,
        };
        let mut opened = Vec::new();
        let mut pause = None;
        match verdict {
            Verdict::Answer => {
                self.limiter.on_success(&lane);
                // Upstream says its window is spent: wait for the reset
                // rather than spend the next call on a 429.
                if let (Outcome::Response { response, .. }, Some(wait)) = (&outcome, upstream_wait)
                {
                    if http::window_exhausted(&response.headers) {
                        self.limiter.pause_until_reset(now, &lane, wait);
                    }
                }
            }
            Verdict::RateLimited => {
                self.stats.rate_limited(now);
                let p = self
                    .limiter
                    .on_rate_limited(now, &lane, upstream_wait, &mut self.rng);
                if self.sharing {
                    let buckets = self.limiter.shared_buckets(&lane);
                    self.push_shared(SharedOutput::Pause { buckets, pause: p });
                }
                pause = Some(p);
            }
            Verdict::ServerError | Verdict::Transport { .. } => {
                if verdict == Verdict::ServerError {
                    self.stats.upstream.server_errors += 1;
                } else {
                    self.stats.upstream.transport_errors += 1;
                }
                opened = self.limiter.on_failure(now, &lane);
                self.stats.upstream.breaker_opened += opened.len() as u64;
            }
        }

        if verdict == Verdict::Answer {
            if let Outcome::Response { response, .. } = outcome {
                self.answer_call(now, call_id, response, None);
            }
        } else {
            self.retry_or_fail(now, call_id, verdict, outcome, upstream_wait, pause);
        }
        if !opened.is_empty() {
            self.trip(now, &opened);
        }
    }

    /// Answers every waiter of a call and caches the answer. `shared`:
    /// the answer came from the shared store, `(age, ttl left)`: waiters
    /// get it as a cache hit of that age, kept for what is left of its TTL.
    fn answer_call(
        &mut self,
        now: Instant,
        call_id: CallId,
        response: crate::request::Response,
        shared: Option<(Duration, Duration)>,
    ) {
        let Some(call) = self.remove_call(call_id) else {
            return;
        };
        let response = Arc::new(response);
        if let (true, Some(key)) = (call.cacheable, call.key) {
            let route = self.config.routes().get(call.route);
            let ttl = match shared {
                Some((_, left)) => left,
                None => Storable::from_headers(&response.headers).ttl(
                    route.ttl,
                    route.ttl_pinned,
                    route.private,
                ),
            };
            let renew_after = route
                .refresh_ahead
                .then(|| {
                    self.templates
                        .get(&key)
                        .map(|t| t.at + self.refresh_resend / 2)
                })
                .flatten();
            let store = Store {
                ttl,
                sent: call.sent.unwrap_or(now),
                read: !call.refresh,
                renew_after,
            };
            let stored = self.cache.insert(now, key.clone(), response.clone(), store);
            if stored && self.sharing && shared.is_none() {
                self.push_shared(SharedOutput::Store {
                    key: key.shared_name(),
                    response: response.clone(),
                    ttl,
                });
            }
            if !stored {
                // Upstream would not give a storable answer to this request
                // (an expired signature, a `no-store`): never re-send it.
                // A later read of a cached entry lends a new one.
                self.templates.remove(&key);
            }
        }
        for ticket in call.waiters {
            let (source, age) = match shared {
                Some((age, _)) => (Source::Cache, age),
                None if ticket == call.origin => (Source::Upstream, Duration::ZERO),
                None => (Source::Coalesced, Duration::ZERO),
            };
            let answer = Answer {
                response: response.clone(),
                source,
                age,
            };
            self.end_waiter(ticket, Ok(answer), source.into());
        }
    }

    fn retry_or_fail(
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
    fn renumber(&mut self, old: CallId) -> CallId {
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

    /// Breakers opened on `buckets`: waiting calls that need them fail now
    /// (or get stale data) instead of waiting out the open period.
    fn trip(&mut self, now: Instant, buckets: &[BucketKey]) {
        let mut victims = self.queue.calls_on(buckets);
        victims.extend(self.calls.iter().filter_map(|(id, c)| {
            let waiting = matches!(c.state, CallState::Backoff { .. });
            (waiting && c.lane.iter().any(|b| buckets.contains(b))).then_some(*id)
        }));
        victims.sort();
        for call_id in victims {
            let Some(lane) = self.calls.get(&call_id).map(|c| c.lane.clone()) else {
                continue;
            };
            let retry_after = match self.limiter.check(now, &lane, 1) {
                Some(Wait::BreakerOpen(Some(t))) => t - now,
                _ => Duration::ZERO,
            };
            let failure = Failure::BreakerOpen {
                scope: self.blocking_scope(now, &lane),
                retry_after,
            };
            self.fail_call(now, call_id, failure);
        }
    }

    /// Ends tickets whose send-by deadline has passed.
    fn expire(&mut self, now: Instant) {
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
    fn detach(&mut self, call_id: CallId, ticket: Ticket) {
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
    fn relane(&mut self, call_id: CallId) {
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
    fn requeue(&mut self, now: Instant, call_id: CallId) {
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

    /// Lets time pass: deadlines, backoffs, call timeouts, aging.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.expire(now);
        while let Some(&(t, call_id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            let Some(call) = self.calls.get_mut(&call_id) else {
                continue;
            };
            match call.state {
                CallState::Backoff { until } if until == t => self.requeue(now, call_id),
                CallState::InFlight { timeout_at } if timeout_at == t => {
                    self.stats.upstream.timeouts += 1;
                    let error = TransportError::Timeout(format!(
                        "no outcome reported within {:?} of dispatch",
                        self.call_timeout
                    ));
                    self.settle(now, call_id, Outcome::Transport(error));
                }
                _ => {}
            }
        }
        self.queue.age(now);
        if now >= self.next_housekeeping {
            self.limiter.forget_idle(now);
            self.cache.purge(now);
            self.next_housekeeping = now + HOUSEKEEPING;
        }
    }

    /// When the host must call [`Self::handle_timeout`] or
    /// [`Self::poll_dispatch`] next, if nothing else happens first.
    #[must_use = "the host must wake at this instant and call handle_timeout"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let limiter = &self.limiter;
        let now = self.now;
        let dispatch = match self
            .queue
            .select(|lane, cost| limiter.check(now, lane, limiter.fit_cost(lane, cost)))
        {
            Selection::Go(_) => Some(now),
            Selection::Wait(t) => t,
        };
        let housekeeping = (!self.calls.is_empty() || self.limiter.bucket_count() > 0)
            .then_some(self.next_housekeeping);
        let refresh = if self.templates.is_empty() || !self.refresh_on {
            None
        } else if self.refresh_dirty {
            Some(now)
        } else {
            self.next_refresh
        };
        [
            self.deadlines.first().map(|(t, _)| *t),
            self.timers.first().map(|(t, _)| *t),
            self.queue.next_aging(),
            dispatch,
            housekeeping,
            refresh,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next request that ended.
    #[must_use = "a finished request must be answered"]
    pub fn poll_finished(&mut self) -> Option<Finished> {
        self.finished.pop_front()
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

    /// Calls queued for the limiter (coalesced requests share one; calls in
    /// backoff or in flight are not counted).
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Health as of `now`: healthy, degraded or unhealthy, with reasons.
    /// Reads state only; an instant before the latest one seen reads as
    /// that one (time never moves backwards in here).
    pub fn health(&self, now: Instant) -> Health {
        let now = now.max(self.now);
        let scopes = self.limiter.snapshot(now);
        self.assess(now, &scopes)
    }

    fn assess(&self, now: Instant, scopes: &[crate::limiter::BucketSnapshot]) -> Health {
        let inputs = health::Inputs {
            recent_rate_limited: self.stats.recent_rate_limited(now),
            oldest_wait_secs: self.queue.oldest_arrival().map(|t| (now - t).as_secs_f64()),
            queue_depth: self.queue.len(),
            queue_max: self.config().queue.max_len,
            scopes,
            store: self
                .fallback
                .as_ref()
                .map(|(s, share)| (s.as_str(), *share)),
        };
        health::assess(&self.config().health, &inputs)
    }

    /// Everything the coordinator counts, as of `now`, with its health.
    /// Reads state only, like [`Self::health`].
    pub fn stats(&self, now: Instant) -> StatsSnapshot {
        let now = now.max(self.now);
        let scopes = self.limiter.snapshot(now);
        let health = self.assess(now, &scopes);
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
            })
            .collect();
        StatsSnapshot {
            uptime_secs: self.stats.uptime(now).as_secs_f64(),
            in_progress: r.submitted - ended,
            cache_hit_rate: stats::ratio(r.hit + r.stale, ended),
            served_without_upstream_rate: stats::ratio(r.hit + r.stale + r.coalesced, ended),
            api_call_reduction: 1.0 - stats::ratio(self.stats.upstream.calls, r.submitted).min(1.0),
            requests: r,
            upstream: self.stats.upstream.clone(),
            served_age: self.stats.served_age(),
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
            clients: self.stats.clients(),
            health,
            cluster: None,
        }
    }
}

#[cfg(test)]
mod tests;
