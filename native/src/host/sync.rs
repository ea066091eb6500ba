//! The host's synchronization, in one place so that loom can check it.
//!
//! One mutex guards everything shared: the core, the result slot of every
//! waiting ticket, the calls handed to workers, and the lifecycle phase.
//! Three rules make the protocol hold:
//!
//! 1. Every change to the core is followed, before the lock is released,
//!    by [`State::deliver`]: finished tickets go into their slots (the
//!    core's output loop, run without taking calls). So a
//!    ticket the core no longer knows already has its answer in its slot,
//!    and a waiter that gives up ([`Shared::cancel`]) either cancels it in
//!    the core or finds the answer: exactly one of the two, never both,
//!    never neither.
//! 2. Threads sleep on condition variables of that same mutex, after
//!    re-checking the state they wait for under it, so a wake-up cannot be
//!    lost between the check and the sleep.
//! 3. Nothing blocks with the lock held except the condition waits: the
//!    upstream call runs unlocked, and a slot's own lock (state -> slot,
//!    never the other way round) is held only to move a value.
//!
//! Under `--cfg loom` the primitives are loom's, and `loom_tests` explores
//! the interleavings of submit, dispatch, completion, cancellation and
//! shutdown with the real core.

use std::collections::{HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};

use syncoord_core::{
    Admission, Answer, Coordinator as Core, Dispatch, Failure, Finished, Instant, Outcome, Output,
    Request, SharedOutput, Ticket, TransportError,
};
use syncoord_wire::Outgoing;

use super::CallError;
use crate::cluster::{Before, Cluster};
use crate::upstream::{unix_now, Upstream};

/// What a request ends with.
pub(crate) type Ended = Result<Answer, CallError>;

/// What a request whose call had left for upstream is told when the host
/// stops before upstream answered: upstream may have acted on it.
const OUTCOME_UNKNOWN: &str =
    "syncoord stopped before upstream answered this call; upstream may have acted on it";

/// While every worker is busy the dispatcher cannot send what the core
/// says is due, so its wake-up ([`Output::WakeAt`]) would say "now" over
/// and over. It then
/// waits for a worker to report, re-checking the core's other timers
/// (deadlines, call timeouts) this often.
const SATURATED_RECHECK: Duration = Duration::from_millis(20);

/// The shortest sleep of the dispatcher: if the core ever said "due now"
/// and then had nothing to send, this keeps the loop from spinning.
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// `now + d`, saturating far in the future instead of overflowing, so
/// `Duration::MAX` means "no limit" wherever a caller passes a duration.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(CENTURY)).unwrap_or(now)
}

/// A poisoned lock means a thread panicked while holding it; the state is
/// still consistent (no code here panics half-way through an update), and
/// refusing to go on would strand every waiter.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

fn wait_for<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>, d: Duration) -> MutexGuard<'a, T> {
    match cv.wait_timeout(guard, d) {
        Ok((g, _)) => g,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// A one-shot result for one ticket. Filled once, under the state lock;
/// read by the waiter under the slot's own lock only.
#[derive(Default)]
pub(crate) struct Slot {
    value: Mutex<Option<Ended>>,
    ready: Condvar,
    /// Called once the value is in: how a waiter that holds no thread (an
    /// event loop's) learns of its answer. Its own lock, taken after the
    /// value's is released, never while holding it.
    notify: Mutex<Option<Notify>>,
}

/// Tells a waiter that holds no thread that its answer is in.
pub(crate) type Notify = Box<dyn Fn() + Send + Sync>;

impl Slot {
    fn put(&self, ended: Ended) {
        *lock(&self.value) = Some(ended);
        self.ready.notify_all();
        let notify = lock(&self.notify).take();
        if let Some(notify) = notify {
            notify();
        }
    }

    /// Has `notify` called once the answer is in (at once if it is in
    /// already). Either `put` finds it stored or this finds the value:
    /// a wake-up cannot be lost between the two (it may come twice).
    pub(crate) fn on_ready(&self, notify: Notify) {
        *lock(&self.notify) = Some(notify);
        if lock(&self.value).is_some() {
            let notify = lock(&self.notify).take();
            if let Some(notify) = notify {
                notify();
            }
        }
    }

    pub(crate) fn take(&self) -> Option<Ended> {
        lock(&self.value).take()
    }

    /// Blocks until the answer arrives.
    pub(crate) fn wait(&self) -> Ended {
        let mut value = lock(&self.value);
        loop {
            if let Some(ended) = value.take() {
                return ended;
            }
            value = wait(&self.ready, value);
        }
    }

    /// Blocks until the answer arrives or `deadline` passes (`None`).
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<Ended> {
        let mut value = lock(&self.value);
        loop {
            if let Some(ended) = value.take() {
                return Some(ended);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            value = wait_for(&self.ready, value, deadline - now);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// No new requests; queued and in-flight work may finish until `until`.
    /// After it, calls already sent upstream still get until
    /// `until + grace` for their real answer.
    Draining {
        until: Instant,
        grace: Duration,
    },
    /// The drain deadline passed: every request not yet sent has been
    /// aborted and nothing more is sent; calls in flight may finish until
    /// `by`, after which their waiters are told the outcome is unknown.
    Finishing {
        by: Instant,
    },
    /// Every waiter has its answer; threads are leaving.
    Stopped,
}

pub(crate) struct State {
    core: Core<Outgoing>,
    slots: HashMap<Ticket, Arc<Slot>>,
    /// Calls the dispatcher took from the core for a worker to send.
    jobs: VecDeque<Dispatch<Outgoing>>,
    /// Workers inside `Upstream::send`.
    busy: usize,
    workers: usize,
    /// Host threads that have not yet left their loop.
    live: usize,
    phase: Phase,
    /// What the other coordinators must hear of, for a worker to publish
    /// with no lock held (empty unless in a cluster).
    outbox: Vec<SharedOutput>,
    /// Pauses logged and not yet over (one line each way, never per call).
    pauses: super::events::PauseLog,
    /// Refreshes upstream stopped, logged once per route a minute.
    refresh_stops: super::events::RefreshStopLog,
}

impl State {
    /// Hands every finished ticket its answer (rule 1 of the module doc),
    /// and keeps what the store must hear for a worker to publish: one
    /// round of the core's output loop that takes no calls. Returns when
    /// the core wants to be woken next.
    fn deliver(&mut self) -> Option<Instant> {
        let stops = self.core.refresh_stop_events();
        if !stops.is_empty() {
            self.refresh_stops
                .observe(self.pauses.upstream(), Instant::now(), &stops);
        }
        loop {
            let output = self.core.poll_output_unsent();
            if let Err(wake) = self.take(output) {
                return wake;
            }
        }
    }

    /// Acts on one output of the core: `Ok(true)` a call was queued for a
    /// worker, `Ok(false)` something else was done, `Err(wake)` the round
    /// is over and the core wants to be woken then.
    fn take(&mut self, output: Output<Outgoing>) -> Result<bool, Option<Instant>> {
        match output {
            // Only the dispatcher's round, with a worker free, hands out calls.
            Output::Dispatch(call) => {
                self.jobs.push_back(call);
                return Ok(true);
            }
            Output::Finished(finished) => self.finished(finished),
            Output::Shared(out) => self.outbox.push(out),
            Output::WakeAt(at) => return Err(Some(at)),
            Output::Idle => return Err(None),
        }
        Ok(false)
    }

    fn finished(&mut self, finished: Finished) {
        if let Some(slot) = self.slots.remove(&finished.ticket) {
            slot.put(finished.result.map_err(CallError::Failed));
        }
    }

    fn has_capacity(&self) -> bool {
        self.jobs.len() + self.busy < self.workers
    }

    /// Ends every request that has not left for upstream: queued ones
    /// through the core (stale data where it has some, else `Aborted`),
    /// and calls handed to a worker that has not sent them yet, reported
    /// to the core as never sent (then aborted in turn if it would retry).
    fn abort_unsent(&mut self, now: Instant) {
        for job in std::mem::take(&mut self.jobs) {
            let never_sent = Outcome::Transport(TransportError::Connect(
                "not sent: the host is shutting down".into(),
            ));
            let _ = self.core.complete(now, job.call, never_sent);
        }
        self.core.abort_waiting(now, "the host is shutting down");
        self.deliver();
    }

    /// Ends everything still open. Requests never sent are aborted; a
    /// request whose call is still inside upstream is told its outcome is
    /// unknown (never a retry hint: upstream may have acted on it).
    fn stop(&mut self, now: Instant) {
        self.abort_unsent(now);
        for (ticket, slot) in self.slots.drain() {
            self.core.cancel(ticket);
            slot.put(Err(CallError::OutcomeUnknown(OUTCOME_UNKNOWN.into())));
        }
        self.phase = Phase::Stopped;
    }
}

/// How `submit` went.
pub(crate) enum Submitted {
    Answered(Answer),
    Refused(Failure),
    Waiting { ticket: Ticket, slot: Arc<Slot> },
    ShuttingDown,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// The shared store of a cluster, consulted by workers with no lock
    /// held.
    cluster: Option<Arc<Cluster>>,
    /// The dispatcher sleeps here: new work, a free worker, shutdown.
    dispatcher: Condvar,
    /// Idle workers sleep here: a job, or shutdown.
    work: Condvar,
    /// `shutdown` waits here for threads to leave.
    exited: Condvar,
}

impl Shared {
    /// `threads` is how many host threads (dispatcher + workers) will run
    /// the loops below; `shutdown` waits for that many to leave.
    #[cfg(loom)]
    pub(crate) fn new(core: Core<Outgoing>, workers: usize, threads: usize) -> Shared {
        Self::with_cluster(core, workers, threads, None, String::new())
    }

    /// [`Self::new`] for a host in a cluster: the core shares through
    /// `cluster`.
    pub(crate) fn with_cluster(
        mut core: Core<Outgoing>,
        workers: usize,
        threads: usize,
        cluster: Option<Arc<Cluster>>,
        name: String,
    ) -> Shared {
        if let Some(c) = &cluster {
            core.enable_sharing();
            core.set_store_state(Instant::now(), c.state());
        }
        Shared {
            cluster,
            state: Mutex::new(State {
                core,
                slots: HashMap::new(),
                jobs: VecDeque::new(),
                busy: 0,
                workers,
                live: threads,
                phase: Phase::Running,
                outbox: Vec::new(),
                pauses: super::events::PauseLog::new(name),
                refresh_stops: Default::default(),
            }),
            dispatcher: Condvar::new(),
            work: Condvar::new(),
            exited: Condvar::new(),
        }
    }

    pub(crate) fn submit(&self, request: Request, outgoing: Outgoing) -> Submitted {
        let mut s = lock(&self.state);
        if s.phase != Phase::Running {
            return Submitted::ShuttingDown;
        }
        let admission = s.core.submit(Instant::now(), request, outgoing);
        let submitted = match admission {
            Admission::Answered(answer) => Submitted::Answered(answer),
            Admission::Refused(failure) => Submitted::Refused(failure),
            Admission::Waiting { ticket, .. } => {
                let slot = Arc::new(Slot::default());
                s.slots.insert(ticket, slot.clone());
                Submitted::Waiting { ticket, slot }
            }
        };
        // A submission can shed another request.
        let wake = s.deliver();
        drop(s);
        // A request that waits needs the dispatcher; so does a read served
        // from the cache that makes something due at once (the first read
        // of a refreshed answer restarts refresh-ahead): the dispatcher
        // may be asleep until much later, or for good. Other hits leave
        // it asleep.
        let due_now = wake.is_some_and(|at| at <= Instant::now());
        if due_now || matches!(submitted, Submitted::Waiting { .. }) {
            self.dispatcher.notify_one();
        }
        submitted
    }

    /// The waiter of `ticket` gives up. `None`: cancelled in the core, no
    /// answer will ever come. `Some`: it had already ended; here is how.
    pub(crate) fn cancel(&self, ticket: Ticket, slot: &Slot) -> Option<Ended> {
        let mut s = lock(&self.state);
        if s.core.cancel(ticket) {
            s.slots.remove(&ticket);
            drop(s);
            // The queue changed; the next timer may have too.
            self.dispatcher.notify_one();
            None
        } else {
            // Rule 1: an ended ticket's answer is already in its slot.
            drop(s);
            slot.take()
        }
    }

    /// The waiter of `ticket` leaves (its client hung up). A call still
    /// queued is cancelled as by [`Self::cancel`] (`Ok`); one that has
    /// left for upstream is not: `report` gets its answer when it comes,
    /// under the host's lock (`Err(())`, nothing to wait for here).
    pub(crate) fn abandon(
        &self,
        ticket: Ticket,
        slot: &Arc<Slot>,
        report: Box<dyn FnOnce(Ended) + Send>,
    ) -> Result<Option<Ended>, ()> {
        let s = lock(&self.state);
        if !s.core.in_flight(ticket) {
            drop(s);
            return Ok(self.cancel(ticket, slot));
        }
        let once = Mutex::new(Some(report));
        let taken = Arc::clone(slot);
        slot.on_ready(Box::new(move || {
            let report = lock(&once).take();
            if let (Some(report), Some(ended)) = (report, taken.take()) {
                report(ended);
            }
        }));
        drop(s);
        Err(())
    }

    /// Stops taking requests and lets work finish until `drain` from now;
    /// calls already sent upstream then get `grace` more for their real
    /// answer. An earlier deadline from a previous call stands.
    pub(crate) fn begin_shutdown(&self, drain: Duration, grace: Duration) {
        let mut s = lock(&self.state);
        let now = Instant::now();
        let until = after(now, drain);
        match s.phase {
            Phase::Running => {
                // Draining finishes what bots asked for; nothing new starts.
                s.core.stop_refreshing();
                s.phase = Phase::Draining { until, grace }
            }
            Phase::Draining { until: before, .. } if until < before => {
                s.phase = Phase::Draining { until, grace }
            }
            Phase::Finishing { by } if until < by && drain.is_zero() && grace.is_zero() => {
                s.phase = Phase::Finishing { by: now }
            }
            _ => {}
        }
        drop(s);
        self.dispatcher.notify_one();
    }

    /// Ends everything now: no drain, no grace. Requests not yet sent are
    /// aborted; requests inside upstream are told the outcome is unknown.
    pub(crate) fn stop_now(&self) {
        let mut s = lock(&self.state);
        if s.phase != Phase::Stopped {
            s.stop(Instant::now());
        }
        drop(s);
        self.dispatcher.notify_one();
        self.work.notify_all();
        self.exited.notify_all();
    }

    /// Waits until every host thread has left its loop (`true`), or
    /// `deadline` passes, or the host has stopped and the only threads
    /// left are workers inside an upstream call (`false`: they leave when
    /// their call returns; nobody waits for its answer any more).
    pub(crate) fn wait_exited(&self, deadline: Instant) -> bool {
        let mut s = lock(&self.state);
        loop {
            if s.live == 0 {
                return true;
            }
            if s.phase == Phase::Stopped && s.live <= s.busy {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = wait_for(&self.exited, s, deadline - now);
        }
    }

    /// A host thread counted in `new` could not be spawned.
    pub(crate) fn not_started(&self) {
        self.leave(lock(&self.state));
    }

    fn leave(&self, mut s: MutexGuard<'_, State>) {
        s.live -= 1;
        drop(s);
        self.exited.notify_all();
    }

    /// The dispatcher thread: lets the core's time pass, hands due calls
    /// to idle workers, and sleeps until the core's next timer or a
    /// notification. Returns once the host has stopped.
    pub(crate) fn run_dispatcher(&self) {
        let mut s = lock(&self.state);
        loop {
            let now = Instant::now();
            s.core.handle_timeout(now);
            s.deliver();
            // Nobody waits for anything: a call still inside upstream whose
            // waiters all gave up holds nothing back.
            let idle = s.core.waiting() == 0 && s.jobs.is_empty();
            match s.phase {
                Phase::Draining { .. } | Phase::Finishing { .. } if idle => s.stop(now),
                Phase::Draining { until, grace } if now >= until => {
                    s.abort_unsent(now);
                    s.phase = Phase::Finishing {
                        by: after(until, grace),
                    };
                    if s.core.waiting() == 0 {
                        s.stop(now);
                    }
                }
                // A call that came back for a retry is not sent again.
                Phase::Finishing { by } if now < by => s.abort_unsent(now),
                Phase::Finishing { .. } => s.stop(now),
                _ => {}
            }
            if s.phase == Phase::Stopped {
                self.work.notify_all();
                break;
            }
            let sending = matches!(s.phase, Phase::Running | Phase::Draining { .. });
            // One round of the core's output loop: calls due while a
            // worker is free, then what ended, then when to wake.
            let mut wake = loop {
                let output = if sending && s.has_capacity() {
                    s.core.poll_output(now)
                } else {
                    s.core.poll_output_unsent()
                };
                match s.take(output) {
                    Ok(true) => self.work.notify_one(),
                    Ok(false) => {}
                    Err(wake) => break wake,
                }
            };
            let phase_end = match s.phase {
                Phase::Draining { until, .. } => Some(until),
                Phase::Finishing { by } => Some(by),
                _ => None,
            };
            if let Some(end) = phase_end {
                wake = Some(wake.map_or(end, |w| w.min(end)));
            }
            if !s.has_capacity() {
                wake = wake.map(|w| w.max(now + SATURATED_RECHECK));
            }
            s = match wake {
                None => wait(&self.dispatcher, s),
                Some(at) => wait_for(
                    &self.dispatcher,
                    s,
                    at.saturating_duration_since(now).max(MIN_SLEEP),
                ),
            };
        }
        self.leave(s);
    }

    /// A worker thread: takes a call, sends it with no lock held, reports
    /// the outcome to the core and wakes the dispatcher. Returns once the
    /// host has stopped.
    pub(crate) fn run_worker(&self, upstream: &dyn Upstream) {
        let mut s = lock(&self.state);
        loop {
            if s.phase == Phase::Stopped {
                break;
            }
            let Some(job) = s.jobs.pop_front() else {
                s = wait(&self.work, s);
                continue;
            };
            s.busy += 1;
            drop(s);
            let before = match &self.cluster {
                Some(c) if !job.shared.buckets.is_empty() || job.shared_key.is_some() => {
                    c.before(&job.shared, job.shared_key.as_deref())
                }
                _ => Before::Send { leader: None },
            };
            let mut leader = None;
            // Ok: sent, with this outcome; Err: the store refused or answered.
            let sent = match before {
                Before::Send { leader: l } => {
                    leader = l;
                    Ok(send_guarded(upstream, &job.payload))
                }
                other => Err(other),
            };
            s = lock(&self.state);
            s.busy -= 1;
            if s.phase != Phase::Stopped {
                let now = Instant::now();
                // `Err`: the core already gave up on the call (its call
                // timeout); the outcome is stale and ignored.
                let rate_limited = matches!(
                    &sent,
                    Ok(Outcome::Response { response, .. }) if response.status == 429
                );
                let _ = match sent {
                    Ok(outcome) => s.core.complete(now, job.call, outcome),
                    Err(Before::Refused(r)) => s.core.handle_shared_refusal(now, job.call, r),
                    Err(Before::Answered(a)) => s
                        .core
                        .handle_shared_answer(now, job.call, a.response, a.age, a.ttl_left),
                    Err(Before::Send { .. }) => Ok(()),
                };
                if rate_limited || s.pauses.watching() {
                    let buckets = s.core.buckets(now);
                    s.pauses.observe(&buckets);
                }
                let breakers = s.core.breaker_events();
                if !breakers.is_empty() {
                    super::events::log_breakers(s.pauses.upstream(), &breakers);
                }
                s.deliver();
            }
            if let Some(cluster) = &self.cluster {
                s.core.set_store_state(Instant::now(), cluster.state());
                let outputs = std::mem::take(&mut s.outbox);
                if !outputs.is_empty() || leader.is_some() {
                    drop(s);
                    cluster.publish(outputs, leader.as_deref());
                    s = lock(&self.state);
                }
            }
            self.dispatcher.notify_one();
        }
        self.leave(s);
    }

    /// Tells the core whether the cluster's store is reached (the
    /// heartbeat thread, after a change), and wakes the dispatcher.
    pub(crate) fn store_changed(&self) {
        if let Some(cluster) = &self.cluster {
            let mut s = lock(&self.state);
            s.core.set_store_state(Instant::now(), cluster.state());
            drop(s);
            self.dispatcher.notify_one();
        }
    }

    /// Exchanges learned rates with the other daemons through the shared
    /// store (after a heartbeat), taking up theirs where lower; the store
    /// round trip is made outside the core's lock.
    pub(crate) fn share_learned(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let mine = lock(&self.state).core.learned_rates(Instant::now());
        let Some(theirs) = cluster.exchange_learned(&mine) else {
            return;
        };
        if theirs.is_empty() {
            return;
        }
        let taken = lock(&self.state)
            .core
            .adopt_learned(Instant::now(), &theirs);
        if taken > 0 {
            tracing::info!(taken, "learned rates taken up from other daemons");
            self.dispatcher.notify_one();
        }
    }

    /// Swaps the core's configuration (hot reload) and wakes the
    /// dispatcher: new rules may make a call due sooner.
    pub(crate) fn reconfigure(
        &self,
        config: syncoord_core::CompiledConfig,
    ) -> Result<(), syncoord_core::NeedsRestart> {
        let mut s = lock(&self.state);
        s.core.reconfigure(config)?;
        drop(s);
        self.dispatcher.notify_one();
        Ok(())
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut Core<Outgoing>) -> R) -> R {
        let mut s = lock(&self.state);
        let r = f(&mut s.core);
        s.deliver();
        r
    }
}

/// Calls upstream; a panic inside it becomes a `Broken` outcome, so one
/// faulty call neither kills its worker nor strands its waiters.
fn send_guarded(upstream: &dyn Upstream, call: &Outgoing) -> Outcome {
    match panic::catch_unwind(AssertUnwindSafe(|| upstream.send(call))) {
        Ok(Outcome::Response {
            response,
            received_unix,
        }) => Outcome::Response {
            response,
            received_unix: received_unix.or_else(unix_now),
        },
        Ok(transport) => transport,
        Err(_) => {
            tracing::error!(method = %call.method, path = %call.path_and_query, "upstream panicked");
            Outcome::Transport(TransportError::Broken(
                "the upstream client panicked during the call".into(),
            ))
        }
    }
}

#[cfg(all(loom, test))]
mod loom_tests;
