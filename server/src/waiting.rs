//! Requests that wait on the event loop instead of on a thread.
//!
//! A handler whose answer comes later (a proxy call queued for its turn
//! upstream) returns [`Handled::Wait`](crate::Handled::Wait) with a
//! [`Waiter`]. The waiter stays in the connection's state on the loop that
//! owns it: ten thousand waiting requests are ten thousand small values in
//! the loops' tables, not ten thousand parked threads. Whoever produces
//! the answer (any thread) calls [`Wake::wake`]; the loop then asks the
//! waiter for its reply. The loop also asks every waiter at each sweep
//! (at most every 250 ms) and whenever its client's socket stirs, so a
//! waiter can give up on its own: its time ran out, its client hung up.

use std::sync::{Arc, Weak};

use crate::event_loop::shared::Shared;
use crate::Reply;

/// A request waiting for its reply on the event loop (see the module
/// documentation). Every method runs on the loop thread and must not
/// block.
pub trait Waiter: Send {
    /// Called once, before the first [`Waiter::poll`]: `wake` is to be
    /// woken (from any thread) when the reply may be ready. Waking when it
    /// is not, or more than once, is harmless.
    fn start(&mut self, wake: Wake);

    /// The reply, if there is one now: the answer that came, or the one
    /// the waiter gives up with (its time ran out; its client is gone, for
    /// which [`Reply::DropConnection`] is the usual answer). `None`: keep
    /// waiting. Once it has answered, it is not asked again; a waiter
    /// dropped without answering (its connection closed) should give its
    /// work up.
    fn poll(&mut self) -> Option<Reply>;
}

/// Wakes the loop that owns a waiting request's connection. Cheap to
/// clone; callable from any thread; a wake for a connection that has
/// since ended (or a server that has stopped) is ignored.
#[derive(Clone)]
pub struct Wake {
    shared: Weak<Shared>,
    index: usize,
    key: usize,
    generation: u64,
}

impl Wake {
    pub(crate) fn new(shared: &Arc<Shared>, index: usize, key: usize, generation: u64) -> Wake {
        Wake {
            shared: Arc::downgrade(shared),
            index,
            key,
            generation,
        }
    }

    /// Tells the loop to ask the waiter for its reply.
    pub fn wake(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.ready(self.index, self.key, self.generation);
        }
    }
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake")
            .field("loop", &self.index)
            .field("key", &self.key)
            .finish()
    }
}
