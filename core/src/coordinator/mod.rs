//! The coordinator: the state machine hosts drive.
//!
//! ```text
//!   inputs                                          a bot asks, upstream says, time passes
//!     submit(now, request, payload) -> Admission
//!     complete(now, call, outcome)
//!     cancel(ticket)
//!     handle_timeout(now)
//!     handle_shared_refusal / handle_shared_answer / set_store_state
//!   output, one method (output.rs)
//!     poll_output(now) -> Output::{Dispatch, Finished, Shared, WakeAt, Idle}
//! ```
//!
//! A host loop: after any input, call `poll_output` until it returns
//! `WakeAt` or `Idle` (sending each `Dispatch`, answering each `Finished`,
//! writing each `Shared` to the store), then sleep until that instant or
//! the next input, and call `handle_timeout` on waking. Nothing here reads
//! a clock, sleeps or does I/O; the same inputs give the same outputs,
//! which is what makes hours of traffic testable in milliseconds.
//!
//! One submodule per phase of a request's life, each an `impl` block of
//! its own: `admission` (submit), `dispatch`, `refresh` (refresh-ahead;
//! `refresh_stopped` reports the refreshes upstream stopped),
//! `sharing` (the shared store), `settling` (upstream's outcome), `tickets`
//! (ending, cancelling, re-laning), `timers`, `output` (the output loop)
//! and `reporting` (stats and health).
//!
//! Vocabulary: a *ticket* is one submitted request; a *call* is one piece
//! of upstream work, which answers every ticket waiting on it (coalescing).
//! The payload `P` is the host's own request data (headers, body,
//! signature), carried per ticket and handed back at dispatch.

mod admission;
mod breaking;
mod dispatch;
mod invalidation;
mod output;
mod reconfigure;
mod refresh;
mod refresh_stopped;
mod reporting;
mod settling;
mod sharing;
mod tickets;
mod timers;
mod variants;

pub use output::Output;
pub use reconfigure::{needs_restart, NeedsRestart};

use std::collections::{BTreeSet, VecDeque};

use crate::HashMap;
use std::sync::Arc;

use web_time::{Duration, Instant};

use crate::backoff::{RetryPolicy, Verdict};
use crate::cache::{Cache, CacheKey, Lookup, Store};
use crate::client_share::{ClientShare, ShareLedger};
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
#[must_use = "a request that is Waiting ends later as Output::Finished; Answered and Refused must be passed on to the caller"]
pub enum Admission {
    /// Answered at once (fresh cache, or stale cache when upstream cannot
    /// be asked). The request has ended.
    Answered(Answer),
    /// Waiting; it ends later as an [`Output::Finished`].
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
    /// An unsafe call: what it writes to, invalidated when it succeeds.
    write: Option<invalidation::WriteTarget>,
    /// The route's breaker it answers to.
    breaker: crate::breakers::BreakerKey,
    /// The creating request's client share, charged when the call leaves.
    share: Option<ClientShare>,
    /// The headers of the request last sent for it (the waiter whose
    /// payload left): the ones a `Vary`'d answer was selected by.
    sent_headers: crate::RequestHeaders,
    /// The waiter whose payload left last (`None` before it leaves).
    sent_by: Option<Ticket>,
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
    /// The route's breaker its refreshes answer to.
    breaker: crate::breakers::BreakerKey,
    /// That request's forwarded headers (see [`Call::sent_headers`]).
    headers: crate::RequestHeaders,
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
    /// Its forwarded headers: which variant of a `Vary`'d answer it takes.
    headers: crate::RequestHeaders,
}

/// The rate-limit coordinator for one upstream API: queue, limiter, cache,
/// coalescing and retries, with no I/O of its own; the host feeds it time
/// and outcomes. `P` is the host's per-request payload.
pub struct Coordinator<P = ()> {
    config: CompiledConfig,
    retry: RetryPolicy,
    limiter: Limiter,
    /// A circuit breaker per route (see `crate::breakers`).
    breakers: crate::breakers::Breakers,
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
    /// What writes changed lately (see `invalidation`).
    marks: invalidation::Marks,
    /// Refresh-ahead has something new to consider (a template, an answer,
    /// a call that left the queue, a key read again after idling).
    refresh_dirty: bool,
    /// The earliest instant a refresh may become due, as of the last scan.
    next_refresh: Option<Instant>,
    /// The buckets on which the last scan found a due refresh it could not
    /// afford (or a real call waiting): while they are contended, spare
    /// budget goes to the oldest answer (refresh), not to whichever key
    /// is read next (see `on_demand`).
    refresh_starved: std::collections::HashSet<BucketKey>,
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
    /// Where the current round of [`Coordinator::poll_output`] is.
    round: output::Round,
    /// The host shares budgets and answers through a store.
    sharing: bool,
    /// What the other coordinators should hear of, for the host to send.
    shared_out: VecDeque<SharedOutput>,
    /// The store cannot be reached: its name and our share of the budget.
    fallback: Option<(String, f64)>,
    /// What each client with a share has spent.
    shares: ShareLedger,
    /// Refreshes upstream stopped (see `crate::refresh_stops`).
    refresh_stops: crate::refresh_stops::StopLog,
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
            limiter: Limiter::with_quotas(config, compiled.quotas()),
            breakers: crate::breakers::Breakers::new(
                config.breaker.failure_threshold,
                secs(config.breaker.open_secs),
                secs(config.breaker.max_open_secs),
            ),
            cache: Cache::new(&config.cache, secs(config.refresh.idle_secs)),
            queue: Queue::new(classes, config.queue.aging_secs.map(secs))
                .with_top_class_reserve(config.queue.top_class_reserve),
            calls: HashMap::default(),
            waiters: HashMap::default(),
            by_key: HashMap::default(),
            templates: HashMap::default(),
            route_memo: RouteMemo::default(),
            marks: invalidation::Marks::default(),
            refresh_dirty: false,
            next_refresh: None,
            refresh_starved: Default::default(),
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
            round: output::Round::default(),
            sharing: false,
            shared_out: VecDeque::new(),
            fallback: None,
            shares: ShareLedger::default(),
            refresh_stops: Default::default(),
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
}

#[cfg(test)]
mod tests;
