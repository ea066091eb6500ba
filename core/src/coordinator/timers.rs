//! Time passing, and when the host must wake next.

use super::*;

impl<P: Clone> Coordinator<P> {
    /// Lets time pass: deadlines, backoffs, call timeouts, aging. It
    /// starts a new round of [`Self::poll_output`]: call it when
    /// [`Output::WakeAt`]'s instant comes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.round = output::Round::Dispatching;
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
            self.shares.forget_idle(now);
            self.cache.purge(now);
            if let Some(t) = now.checked_sub(self.call_timeout) {
                self.marks.forget_before(t);
            }
            self.next_housekeeping = now + HOUSEKEEPING;
        }
    }

    /// When the host must call [`Self::handle_timeout`] or
    /// [`Self::poll_dispatch`] next, if nothing else happens first.
    #[must_use = "the host must wake at this instant and call handle_timeout"]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now;
        let dispatch = match self.select(now) {
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
    pub(crate) fn poll_finished(&mut self) -> Option<Finished> {
        self.finished.pop_front()
    }
}
