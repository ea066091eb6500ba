//! The core driven by threads: a synchronous, thread-safe coordinator.
//!
//! ```text
//!  bot threads ──submit──▶ [ Mutex: core + result slots + jobs ] ◀──complete── workers
//!       ▲                         │ poll_output: Dispatch                │ Upstream::send
//!       └──── one-shot slot ◀─────┘ dispatcher thread (Condvar sleep     │ (no lock held)
//!             (Output::Finished)    until Output::WakeAt or a notify) ───┘
//! ```
//!
//! A dispatcher thread sleeps until the core's next timer or a new
//! submission, completion or shutdown; it hands due calls to a bounded pool
//! of worker threads, which call the [`Upstream`] with no lock held. The
//! synchronization lives in `sync.rs` (model-checked with loom).

mod events;
mod sync;

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use syncoord_core::{
    Answer, ClassId, CompiledConfig, Coordinator as Core, Failure, Health, Instant, Request,
    StatsSnapshot, Ticket,
};
use syncoord_wire::Outgoing;

use crate::upstream::Unsendable;
pub use crate::upstream::Upstream;
use sync::{Shared, Slot, Submitted};

/// Threads and timing of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOptions {
    /// Worker threads calling upstream: at most this many calls in flight.
    pub upstream_threads: usize,
    /// Seeds the core's jitter; `None` takes one from the clock.
    pub seed: Option<u64>,
    /// How long a call already sent upstream may still take, past the
    /// drain deadline of `shutdown`, to bring back its real answer. Set it
    /// to the upstream client's own timeout, so that every call that left
    /// gets its answer unless upstream never gives one. When it runs out,
    /// the call's waiters get [`CallError::OutcomeUnknown`].
    pub in_flight_grace: Duration,
    /// Prefix of the host's thread names (`<name>-dispatch`, `<name>-up-3`).
    pub thread_name: String,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            upstream_threads: 8,
            seed: None,
            in_flight_grace: Duration::from_secs(5),
            thread_name: "syncoord".into(),
        }
    }
}

/// Why [`Coordinator::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("HostOptions::upstream_threads is 0; at least one worker is needed to call upstream")]
    NoWorkers,
    #[error("could not spawn host thread `{name}`: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
}

/// Why a call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The coordinator ended the request without an answer (shed, deadline,
    /// rate limited, upstream failure, breaker open, aborted).
    #[error(transparent)]
    Failed(Failure),
    /// The caller stopped waiting; the request was cancelled.
    #[error("gave up after waiting {waited:?}; the request was cancelled")]
    TimedOut { waited: Duration },
    /// The coordinator is shutting down and takes no new requests.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    /// The request can never be sent upstream ([`Upstream::check`]); it
    /// was not submitted.
    #[error("the request cannot be sent upstream: {0}")]
    Invalid(Unsendable),
    /// The call had been sent upstream, and the host stopped before the
    /// answer came back ([`Coordinator::stop_now`], or the in-flight grace
    /// of a shutdown ran out). Upstream may have acted on it: check (an
    /// order by its client order id) before sending it again.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

/// A thread-safe handle to a running coordinator; clones share it. When
/// the last clone is dropped the host shuts down at once (no drain).
#[derive(Clone)]
pub struct Coordinator {
    host: Arc<Host>,
}

struct Host {
    shared: Arc<Shared>,
    /// Asked whether each submitted call can be sent at all. Weak: the
    /// workers own the upstream, and once they are joined nothing does.
    upstream: Weak<dyn Upstream>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    in_flight_grace: Duration,
    /// The cluster's heartbeat and reconnect thread, if in a cluster.
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl Coordinator {
    /// Starts the dispatcher and `options.upstream_threads` workers on
    /// `config` (see [`syncoord_core::Config::compile`]).
    pub fn start(
        config: CompiledConfig,
        upstream: Arc<dyn Upstream>,
        options: HostOptions,
    ) -> Result<Coordinator, StartError> {
        Self::start_in_cluster(config, upstream, options, None)
    }

    /// [`Self::start`] for one of several hosts that share budgets and
    /// answers through `cluster` (none: alone, as [`Self::start`]). Its
    /// workers consult the store before each call leaves, with no lock
    /// held; a thread keeps the heartbeat and reconnects.
    pub fn start_in_cluster(
        config: CompiledConfig,
        upstream: Arc<dyn Upstream>,
        options: HostOptions,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Result<Coordinator, StartError> {
        if options.upstream_threads == 0 {
            return Err(StartError::NoWorkers);
        }
        let seed = options.seed.unwrap_or_else(clock_seed);
        let mut core = Core::new(config, Instant::now(), seed);
        core.set_replaced_request_headers(upstream.replaced_request_headers());
        let workers = options.upstream_threads;
        let shared = Arc::new(Shared::with_cluster(
            core,
            workers,
            workers + 1,
            cluster.clone(),
            options.thread_name.clone(),
        ));
        let host = Host {
            shared: shared.clone(),
            upstream: Arc::downgrade(&upstream),
            threads: Mutex::new(Vec::with_capacity(workers + 1)),
            in_flight_grace: options.in_flight_grace,
            heartbeat: Mutex::new(None),
        };
        // From here on, dropping `coordinator` (on a spawn error) stops
        // whatever threads did start.
        let coordinator = Coordinator {
            host: Arc::new(host),
        };
        let spawn = |name: String, body: Box<dyn FnOnce() + Send>| {
            let spawned = thread::Builder::new().name(name.clone()).spawn(body);
            match spawned {
                Ok(handle) => {
                    coordinator.host.lock_threads().push(handle);
                    Ok(())
                }
                Err(source) => {
                    // The thread that never started will never leave.
                    shared.not_started();
                    Err(StartError::Spawn { name, source })
                }
            }
        };
        let dispatcher = shared.clone();
        spawn(
            format!("{}-dispatch", options.thread_name),
            Box::new(move || dispatcher.run_dispatcher()),
        )?;
        for i in 0..workers {
            let worker = shared.clone();
            let upstream = upstream.clone();
            spawn(
                format!("{}-up-{i}", options.thread_name),
                Box::new(move || worker.run_worker(upstream.as_ref())),
            )?;
        }
        if let Some(cluster) = cluster {
            let name = format!("{}-cluster", options.thread_name);
            let beat = shared.clone();
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    cluster.run_heartbeat(&|| beat.store_changed(), &|| beat.share_learned())
                })
                .map_err(|source| StartError::Spawn { name, source })?;
            *coordinator
                .host
                .heartbeat
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(handle);
        }
        Ok(coordinator)
    }

    /// Submits a request; the [`Pending`] answers it. `outgoing` is what
    /// goes upstream if the core decides a call is needed.
    pub fn submit(&self, request: Request, outgoing: Outgoing) -> Pending {
        let unsendable = self
            .host
            .upstream
            .upgrade()
            .and_then(|upstream| upstream.check(&outgoing).err());
        if let Some(why) = unsendable {
            return Pending {
                state: Some(PendingState::Ready(Err(CallError::Invalid(why)))),
            };
        }
        let state = match self.host.shared.submit(request, outgoing) {
            Submitted::Answered(answer) => PendingState::Ready(Ok(answer)),
            Submitted::Refused(failure) => PendingState::Ready(Err(CallError::Failed(failure))),
            Submitted::ShuttingDown => PendingState::Ready(Err(CallError::ShuttingDown)),
            Submitted::Waiting { ticket, slot } => PendingState::Waiting {
                shared: self.host.shared.clone(),
                ticket,
                slot,
                since: Instant::now(),
            },
        };
        Pending { state: Some(state) }
    }

    /// Submits and waits for the answer.
    pub fn call(&self, request: Request, outgoing: Outgoing) -> Result<Answer, CallError> {
        self.submit(request, outgoing).wait()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let mut stats = self
            .host
            .shared
            .with_core(|core| core.stats(Instant::now()));
        stats.cluster = self.host.shared.cluster().map(|c| c.stats());
        stats
    }

    /// The budget a call by `credential` on `method` `path` draws on, as
    /// its bot is told ([`syncoord_core::Coordinator::budgets`]).
    pub fn budgets(
        &self,
        method: &syncoord_core::Method,
        path: &str,
        credential: Option<&syncoord_core::Credential>,
    ) -> Vec<syncoord_core::Budget> {
        self.host
            .shared
            .with_core(|core| core.budgets(Instant::now(), method, path, credential))
    }

    /// Every bucket's learned rate, to save across a restart
    /// ([`syncoord_core::Coordinator::learned_rates`]).
    pub fn learned_rates(&self) -> Vec<syncoord_core::LearnedRate> {
        self.host
            .shared
            .with_core(|core| core.learned_rates(Instant::now()))
    }

    /// Takes up rates saved before a restart; returns how many were taken
    /// ([`syncoord_core::Coordinator::restore_learned`]).
    pub fn restore_learned(&self, rates: &[syncoord_core::LearnedRate]) -> usize {
        self.host
            .shared
            .with_core(|core| core.restore_learned(Instant::now(), rates))
    }

    pub fn health(&self) -> Health {
        self.host
            .shared
            .with_core(|core| core.health(Instant::now()))
    }

    /// Requests submitted and not yet ended (waiting in the queue or on an
    /// upstream call).
    pub fn waiting(&self) -> usize {
        self.host.shared.with_core(|core| core.waiting())
    }

    /// The priority class called `name` in this coordinator's config, for
    /// [`Request::with_priority`].
    pub fn class_id(&self, name: &str) -> Option<ClassId> {
        self.host
            .shared
            .with_core(|core| core.config().class_id(name))
    }

    /// Runs on `config` from now on (hot reload): the cache, the limiter's
    /// buckets, queued requests and calls in flight are kept; or refuses
    /// it, changing nothing, when it changes what needs a restart
    /// (budgets, classes, sizes: see [`syncoord_core::needs_restart`]).
    pub fn reconfigure(&self, config: CompiledConfig) -> Result<(), syncoord_core::NeedsRestart> {
        self.host.shared.reconfigure(config)
    }

    /// Refuses new requests ([`CallError::ShuttingDown`]) and lets queued
    /// and in-flight work finish for up to `drain`. Then every request not
    /// yet sent upstream is aborted ([`syncoord_core::Failure::Aborted`]),
    /// and calls already sent get up to [`HostOptions::in_flight_grace`]
    /// more for their real answer; only past that is a waiter told
    /// [`CallError::OutcomeUnknown`]. Each waiter gets exactly one answer.
    /// Returns once every waiter has it, joining the host's threads
    /// (a worker still inside an upstream call nobody waits for is left to
    /// finish on its own). Idempotent; later calls never extend the
    /// deadline. So it returns within `drain + in_flight_grace`.
    pub fn shutdown(&self, drain: Duration) {
        self.host.shutdown(drain);
    }

    /// Ends every open request now, from any thread (a second signal):
    /// requests not yet sent are aborted, requests whose call is inside
    /// upstream get [`CallError::OutcomeUnknown`]. A [`Self::shutdown`]
    /// under way returns at once.
    pub fn stop_now(&self) {
        self.host.shared.stop_now();
    }
}

impl Host {
    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shutdown(&self, drain: Duration) {
        self.shared.begin_shutdown(drain, self.in_flight_grace);
        // The dispatcher ends everything by this deadline; the margin only
        // covers its wake-up.
        let deadline = sync::after(
            Instant::now(),
            drain
                .saturating_add(self.in_flight_grace)
                .saturating_add(Duration::from_secs(1)),
        );
        let all_left = self.shared.wait_exited(deadline);
        if let Some(cluster) = self.shared.cluster() {
            cluster.stop();
        }
        let heartbeat = self
            .heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = heartbeat {
            if handle.join().is_err() {
                tracing::error!("the cluster heartbeat thread panicked");
            }
        }
        let threads = std::mem::take(&mut *self.lock_threads());
        if all_left {
            for handle in threads {
                if handle.join().is_err() {
                    tracing::error!("a host thread panicked");
                }
            }
        } else {
            tracing::warn!(
                "host threads still inside an upstream call nobody waits for; leaving them to finish on their own"
            );
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shared.stop_now();
        self.shutdown(Duration::ZERO);
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
}

/// A submitted request's answer to come. Dropping it before the answer
/// cancels the request in the core.
#[must_use = "dropping a Pending cancels its request"]
pub struct Pending {
    state: Option<PendingState>,
}

enum PendingState {
    Ready(Result<Answer, CallError>),
    Waiting {
        shared: Arc<Shared>,
        ticket: Ticket,
        slot: Arc<Slot>,
        since: Instant,
    },
}

impl Pending {
    /// A request that has ended without an answer to give: what a
    /// [`Pending`] taken out of its place leaves behind (it answers
    /// [`CallError::ShuttingDown`] and cancels nothing).
    pub fn ended() -> Pending {
        Pending { state: None }
    }

    /// The core's ticket, while the request waits (`None` when it was
    /// answered or refused at once).
    pub fn ticket(&self) -> Option<Ticket> {
        match &self.state {
            Some(PendingState::Waiting { ticket, .. }) => Some(*ticket),
            _ => None,
        }
    }

    /// Has `notify` called (on whatever thread ends the request, or at
    /// once if it has ended) when the answer is in, so a caller that holds
    /// no thread for it (an event loop) knows when to take it with
    /// [`Self::wait_for`]`(Duration::ZERO)`, which then never blocks.
    /// `notify` must be quick and must not block: it runs under the host's
    /// lock.
    pub fn on_ready(&mut self, notify: impl Fn() + Send + Sync + 'static) {
        match &self.state {
            Some(PendingState::Waiting { slot, .. }) => slot.on_ready(Box::new(notify)),
            _ => notify(),
        }
    }

    /// The caller leaves (a bot hung up). A request not yet sent is
    /// cancelled, as dropping it would (`false`). One whose call has left
    /// for upstream runs on, and `late` gets its real answer when it comes
    /// (`true`): an order's fate stays on record even with nobody to tell.
    /// `late` runs under the host's lock: it must be quick (a log line).
    pub fn abandon(
        mut self,
        late: impl FnOnce(Result<Answer, CallError>) + Send + 'static,
    ) -> bool {
        match self.state.take() {
            Some(PendingState::Waiting {
                shared,
                ticket,
                slot,
                ..
            }) => shared.abandon(ticket, &slot, Box::new(late)).is_err(),
            _ => false,
        }
    }

    /// Blocks until the request ends. Every waiting request ends: by an
    /// answer, its deadline, the core's call timeout, or shutdown.
    pub fn wait(mut self) -> Result<Answer, CallError> {
        match self.state.take() {
            Some(PendingState::Ready(result)) => result,
            Some(PendingState::Waiting { slot, .. }) => slot.wait(),
            None => Err(CallError::ShuttingDown),
        }
    }

    /// Blocks for at most `timeout` without giving up: `Some` once the
    /// request has ended (this `Pending` is then spent), `None` while it
    /// still waits, still queued. Lets a caller wait in slices and check
    /// between them whether anyone still wants the answer (the daemon
    /// cancels the request of a client that hung up by dropping it).
    pub fn wait_for(&mut self, timeout: Duration) -> Option<Result<Answer, CallError>> {
        match &self.state {
            Some(PendingState::Waiting { slot, .. }) => {
                let ended = slot.wait_until(sync::after(Instant::now(), timeout))?;
                self.state = None;
                Some(ended)
            }
            Some(PendingState::Ready(_)) => match self.state.take() {
                Some(PendingState::Ready(result)) => Some(result),
                _ => Some(Err(CallError::ShuttingDown)),
            },
            None => Some(Err(CallError::ShuttingDown)),
        }
    }

    /// Blocks for at most `timeout`; on expiry the request is cancelled
    /// (unless its answer arrived meanwhile, which is then returned).
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Answer, CallError> {
        match self.state.take() {
            Some(PendingState::Ready(result)) => result,
            Some(PendingState::Waiting {
                shared,
                ticket,
                slot,
                since,
            }) => {
                let deadline = sync::after(Instant::now(), timeout);
                if let Some(ended) = slot.wait_until(deadline) {
                    return ended;
                }
                match shared.cancel(ticket, &slot) {
                    Some(ended) => ended,
                    None => Err(CallError::TimedOut {
                        waited: since.elapsed(),
                    }),
                }
            }
            None => Err(CallError::ShuttingDown),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(PendingState::Waiting {
            shared,
            ticket,
            slot,
            ..
        }) = self.state.take()
        {
            let _ = shared.cancel(ticket, &slot);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
