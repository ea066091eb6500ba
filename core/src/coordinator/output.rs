//! The one output loop: what the host must do next, in a fixed order.
//!
//! A host drives the core with inputs (`submit`, `complete`, `cancel`,
//! `handle_timeout`, the shared store's answers) and then asks
//! [`Coordinator::poll_output`] what to do until it says to sleep
//! ([`Output::WakeAt`] or [`Output::Idle`]). The outputs of one such
//! *round* come in one order: every call due now ([`Output::Dispatch`]),
//! then every request that ended ([`Output::Finished`]), then what the
//! other coordinators must hear of ([`Output::Shared`]), then when to wake.
//! The host cannot call things in the wrong order because there is only
//! one thing to call (as in str0m's `poll_output`).

use super::*;

/// What the host must do next; see [`Coordinator::poll_output`].
#[derive(Debug)]
#[must_use = "an output is work the host must do (send, answer, publish or sleep)"]
pub enum Output<P> {
    /// Send this call upstream now, and report what upstream said with
    /// [`Coordinator::complete`] (or, when sharing, what the store said
    /// with [`Coordinator::handle_shared_refusal`] /
    /// [`Coordinator::handle_shared_answer`]).
    Dispatch(Dispatch<P>),
    /// A waiting request ended: hand its caller the result.
    Finished(Finished),
    /// Something the other coordinators should hear of (a 429's pause, an
    /// answer to share): write it to the shared store. Only when sharing
    /// ([`Coordinator::enable_sharing`]).
    Shared(SharedOutput),
    /// Nothing more to do now: call [`Coordinator::handle_timeout`] at
    /// this instant (or at the next input, if sooner), then poll again.
    WakeAt(Instant),
    /// Nothing more to do until the next input.
    Idle,
}

/// Where the current round of outputs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Round {
    /// Handing out calls due now (a new round starts here).
    #[default]
    Dispatching,
    /// Handing out ended requests.
    Finishing,
    /// Handing out what the store must hear.
    Sharing,
}

impl<P: Clone> Coordinator<P> {
    /// What the host must do next, as of `now`.
    ///
    /// Call it after every input until it returns [`Output::WakeAt`] or
    /// [`Output::Idle`], which end the round; the next call (or
    /// [`Self::handle_timeout`], or a later `now`) starts a new one.
    #[must_use = "an output is work the host must do"]
    pub fn poll_output(&mut self, now: Instant) -> Output<P> {
        if now > self.now {
            self.round = Round::Dispatching;
        }
        if self.round == Round::Dispatching {
            match self.poll_dispatch(now) {
                Some(call) => return Output::Dispatch(call),
                None => self.round = Round::Finishing,
            }
        }
        self.poll_rest()
    }

    /// [`Self::poll_output`] for a host that cannot send anything right now
    /// (every sender busy): the round skips its calls, which stay queued
    /// in priority order, and hands out only ended requests, what the
    /// store must hear, and when to wake.
    #[must_use = "an output is work the host must do"]
    pub fn poll_output_unsent(&mut self) -> Output<P> {
        if self.round == Round::Dispatching {
            self.round = Round::Finishing;
        }
        self.poll_rest()
    }

    /// The round after its calls: ended requests, then the store's news,
    /// then when to wake (which ends the round).
    fn poll_rest(&mut self) -> Output<P> {
        if self.round == Round::Finishing {
            match self.poll_finished() {
                Some(finished) => return Output::Finished(finished),
                None => self.round = Round::Sharing,
            }
        }
        if let Some(shared) = self.poll_shared() {
            return Output::Shared(shared);
        }
        self.round = Round::Dispatching;
        match self.poll_timeout() {
            Some(at) => Output::WakeAt(at),
            None => Output::Idle,
        }
    }
}
