//! The host's synchronization, in one place so that loom can check it.
//!
//! One mutex guards everything shared: the core, the result slot of every
//! waiting ticket, the calls handed to workers, and the lifecycle phase.
//! Three rules make the protocol hold:
//!
//! 1. Every change to the core is followed, before the lock is released,
//!    by [`State::deliver`]: finished tickets go into their slots. So a
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
    Admission, Answer, Coordinator as Core, Dispatch, Failure, Instant, Outcome, Request, Ticket,
    TransportError,
};
use syncoord_proxy::Outgoing;

use crate::upstream::{unix_now, Upstream};

/// What a request ends with.
pub(crate) type Ended = Result<Answer, Failure>;

/// While every worker is busy the dispatcher cannot send what the core
/// says is due, so `poll_timeout` would say "now" over and over. It then
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
}

impl Slot {
    fn put(&self, ended: Ended) {
        *lock(&self.value) = Some(ended);
        self.ready.notify_all();
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
    Draining {
        until: Instant,
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
}

impl State {
    /// Hands every finished ticket its answer (rule 1 of the module doc).
    fn deliver(&mut self) {
        while let Some(finished) = self.core.poll_finished() {
            if let Some(slot) = self.slots.remove(&finished.ticket) {
                slot.put(finished.result);
            }
        }
    }

    fn has_capacity(&self) -> bool {
        self.jobs.len() + self.busy < self.workers
    }

    /// Ends everything still open: queued work through the core (stale
    /// data where the core has some), in-flight tickets as aborted.
    fn stop(&mut self, now: Instant) {
        self.core.abort_waiting(now, "the host is shutting down");
        self.deliver();
        for (ticket, slot) in self.slots.drain() {
            self.core.cancel(ticket);
            slot.put(Err(Failure::Aborted(
                "the host shut down before upstream answered".into(),
            )));
        }
        self.jobs.clear();
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
    pub(crate) fn new(core: Core<Outgoing>, workers: usize, threads: usize) -> Shared {
        Shared {
            state: Mutex::new(State {
                core,
                slots: HashMap::new(),
                jobs: VecDeque::new(),
                busy: 0,
                workers,
                live: threads,
                phase: Phase::Running,
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
        s.deliver();
        drop(s);
        if matches!(submitted, Submitted::Waiting { .. }) {
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

    /// Stops taking requests and lets work finish until `drain` from now
    /// (an earlier deadline from a previous call stands).
    pub(crate) fn begin_shutdown(&self, drain: Duration) {
        let mut s = lock(&self.state);
        let until = after(Instant::now(), drain);
        match s.phase {
            Phase::Running => {
                // Draining finishes what bots asked for; nothing new starts.
                s.core.stop_refreshing();
                s.phase = Phase::Draining { until }
            }
            Phase::Draining { until: before } if until < before => {
                s.phase = Phase::Draining { until }
            }
            _ => {}
        }
        drop(s);
        self.dispatcher.notify_one();
    }

    /// Waits until every host thread has left its loop, or `deadline`
    /// passes (`false`: some thread is still inside an upstream call).
    pub(crate) fn wait_exited(&self, deadline: Instant) -> bool {
        let mut s = lock(&self.state);
        loop {
            if s.live == 0 {
                return true;
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
            if let Phase::Draining { until } = s.phase {
                let idle = s.core.waiting() == 0 && s.jobs.is_empty() && s.busy == 0;
                if now >= until || idle {
                    s.stop(now);
                }
            }
            if s.phase == Phase::Stopped {
                self.work.notify_all();
                break;
            }
            while s.has_capacity() {
                match s.core.poll_dispatch(now) {
                    Some(call) => {
                        s.jobs.push_back(call);
                        self.work.notify_one();
                    }
                    None => break,
                }
            }
            s.deliver();
            let mut wake = s.core.poll_timeout();
            if let Phase::Draining { until } = s.phase {
                wake = Some(wake.map_or(until, |w| w.min(until)));
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
            let outcome = send_guarded(upstream, &job.payload);
            s = lock(&self.state);
            s.busy -= 1;
            if s.phase != Phase::Stopped {
                // `Err`: the core already gave up on the call (its call
                // timeout); the outcome is stale and ignored.
                let _ = s.core.complete(Instant::now(), job.call, outcome);
                s.deliver();
            }
            self.dispatcher.notify_one();
        }
        self.leave(s);
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
