//! What crosses between threads: the state the rest of the server shares
//! with the loops ([`Shared`]: limits, counters, the stop flag) and each
//! loop's [`Mailbox`], through which connections, pool replies and waiter
//! wake-ups reach the loop that owns a connection.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mio::Waker;

use crate::{Handler, Limits, Reply};

/// What the rest of the server shares with the loops.
pub(crate) struct Shared {
    /// The limits in force; set live by [`Shared::set_limits`]. Loops read
    /// it only when [`Shared::limits_generation`] moves, so the hot path
    /// takes no lock.
    pub(super) limits: Mutex<Arc<Limits>>,
    /// Moves on every [`Shared::set_limits`]; each loop compares it with
    /// the generation of its own copy once per turn.
    pub(super) limits_generation: AtomicU64,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) local: SocketAddr,
    pub(crate) stopping: AtomicBool,
    pub(crate) connections: AtomicUsize,
    /// One per loop, indexed like the loops.
    pub(super) mailboxes: Vec<Mailbox>,
    /// Loops still running; the last one out stops the handler pool.
    pub(super) running: AtomicUsize,
    /// The connection bound in force: [`Limits::max_connections`], lowered
    /// to what the descriptor limit allows.
    pub(crate) max_connections: AtomicUsize,
    /// A TLS listener: every connection starts with this handshake.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A waiting request's answer may be ready ([`Wake::wake`](crate::Wake::wake)).
    pub(crate) fn ready(&self, index: usize, key: usize, generation: u64) {
        let Some(mailbox) = self.mailboxes.get(index) else {
            return;
        };
        lock(&mailbox.ready).push((key, generation));
        if let Err(e) = mailbox.waker.wake() {
            tracing::error!(error = %e, "cannot wake an event loop");
        }
    }

    /// The limits in force now.
    pub(crate) fn limits(&self) -> Arc<Limits> {
        Arc::clone(&lock(&self.limits))
    }

    /// Puts `limits` in force: every loop picks them up on its next turn
    /// (woken here, so an idle loop does too); open connections use them
    /// from their next request or deadline. The connection bound is
    /// `max_connections` (already lowered to the descriptor limit).
    pub(crate) fn set_limits(&self, limits: Limits, max_connections: usize) {
        *lock(&self.limits) = Arc::new(limits);
        self.max_connections
            .store(max_connections, Ordering::SeqCst);
        self.limits_generation.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }

    /// Wakes every loop (to stop).
    pub(crate) fn wake_all(&self) {
        for mailbox in &self.mailboxes {
            if let Err(e) = mailbox.waker.wake() {
                tracing::error!(error = %e, "cannot wake an event loop");
            }
        }
    }
}

/// What reaches a loop from other threads.
pub(super) struct Mailbox {
    pub(super) waker: Waker,
    /// Replies from pool threads, for the loop to write.
    pub(super) done: Mutex<VecDeque<Done>>,
    /// Waiting requests whose answer may be ready: (key, generation).
    pub(super) ready: Mutex<Vec<(usize, u64)>>,
    /// Connections loop 0 accepted for this loop.
    pub(super) incoming: Mutex<Incoming>,
    /// Connections given to this loop and not yet closed (counted when
    /// given, so a burst of accepts spreads before any is admitted).
    pub(super) assigned: AtomicUsize,
}

/// A connection accepted for a loop.
pub(super) struct Arrival {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    /// It arrived at the connection bound: the loop makes room for it.
    pub(super) at_bound: bool,
    /// Loops that had no connection to give up for it.
    pub(super) passed: usize,
}

#[derive(Default)]
pub(super) struct Incoming {
    pub(super) streams: Vec<Arrival>,
    /// The loop has ended: a connection given now is closed at once.
    pub(super) closed: bool,
}

/// A handler's reply to a request handled on a pool thread.
pub(super) struct Done {
    pub(super) key: usize,
    pub(super) generation: u64,
    pub(super) reply: Reply,
}

/// A reply from a pool thread, to the loop that owns its connection.
pub(super) fn deliver(shared: &Shared, index: usize, key: usize, generation: u64, reply: Reply) {
    let mailbox = &shared.mailboxes[index];
    lock(&mailbox.done).push_back(Done {
        key,
        generation,
        reply,
    });
    if let Err(e) = mailbox.waker.wake() {
        tracing::error!(error = %e, "cannot wake the event loop");
    }
}

/// The mutexes here guard queues and plain values that a panic cannot
/// leave half-changed, so a poisoned one is used as it is.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
