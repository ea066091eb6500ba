//! The threads blocking handler work runs on: one per job being run, up
//! to [`Limits::handler_threads`](crate::Limits::handler_threads); beyond
//! it jobs queue for the next free thread. A handler may block without
//! holding up the event loop; requests that merely wait for an answer do
//! not come here at all (`waiting.rs`). An idle thread waits for the next
//! job for a while, then leaves. A thread that cannot be spawned (the
//! process's thread limit) is not an error while another thread runs: the
//! job queues for it; the failure is logged once per pool.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A unit of work: a handler call and the delivery of its reply.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// How long an idle thread waits for work before it leaves.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// Threads kept even when idle, so a steady trickle of requests never
/// spawns.
const KEEP: usize = 4;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    stopping: bool,
}

#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<State>,
    work: Condvar,
    /// Signalled when a thread leaves (for `join`).
    left: Condvar,
    name: String,
    /// Most threads at once.
    max: usize,
    /// A spawn failure has been logged (once per pool).
    spawn_failed: AtomicBool,
}

impl Pool {
    pub(crate) fn new(name: String, max: NonZeroUsize) -> Arc<Pool> {
        Arc::new(Pool {
            name,
            max: max.get(),
            ..Pool::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on an idle thread, or on a new one when none is idle
    /// and the bound allows, or queues it for the next free thread.
    /// `Err` (with the job back) only when no thread could be spawned and
    /// none runs.
    pub(crate) fn run(self: &Arc<Self>, job: Job) -> Result<(), Job> {
        let mut s = self.lock();
        if s.idle > s.jobs.len() || s.threads >= self.max {
            s.jobs.push_back(job);
            drop(s);
            self.work.notify_one();
            return Ok(());
        }
        s.threads += 1;
        let id = s.threads;
        drop(s);
        let pool = Arc::clone(self);
        // Where the job waits for its thread: taken back if none starts.
        let slot = Arc::new(Mutex::new(Some(job)));
        let first = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{id}", self.name))
            .spawn(move || {
                let job = first.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(job) = job {
                    job();
                }
                pool.serve();
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                if !self.spawn_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, pool = %self.name, "could not spawn a handler thread (the process's thread limit?); work queues for the threads running (logged once)");
                }
                let job = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                let mut s = self.lock();
                s.threads -= 1;
                match job {
                    // A busy thread takes it when it is done.
                    Some(job) if s.threads > 0 => {
                        s.jobs.push_back(job);
                        Ok(())
                    }
                    Some(job) => Err(job),
                    None => Ok(()),
                }
            }
        }
    }

    /// A thread's life after its first job: take jobs until idle too long
    /// (beyond the threads kept) or the pool stops.
    fn serve(&self) {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.jobs.pop_front() {
                drop(s);
                job();
                s = self.lock();
                continue;
            }
            if s.stopping {
                break;
            }
            s.idle += 1;
            let (guard, timeout) = self
                .work
                .wait_timeout(s, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            s = guard;
            s.idle -= 1;
            if timeout.timed_out() && s.jobs.is_empty() && s.threads > KEEP {
                break;
            }
        }
        s.threads -= 1;
        drop(s);
        self.left.notify_all();
    }

    /// Lets every thread finish its job and leave; returns when they have.
    pub(crate) fn stop(&self) {
        let mut s = self.lock();
        s.stopping = true;
        self.work.notify_all();
        while s.threads > 0 {
            s = self.left.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
