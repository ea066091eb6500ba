//! Breakers per route (see `crate::breakers`): which breaker a call
//! answers to, refusing calls on an open route, and what upstream's
//! outcome does to it.

use super::*;
use crate::breakers::BreakerKey;
use crate::request::Credential;

/// Retry-After for a request refused while its route's probe is in
/// flight: the probe's outcome is usually known within a round trip.
const PROBING_RETRY: Duration = Duration::from_secs(1);

impl<P: Clone> Coordinator<P> {
    /// The breaker a call on `route` for `path` by `credential` answers
    /// to: the route's; per credential where the route is private (one
    /// account's failures are not another's); per path where no rule
    /// matched (an unknown endpoint is a route of its own, so a generic
    /// upstream with no rules never has one breaker for everything).
    pub(super) fn breaker_key(
        &self,
        route: RouteId,
        path: &str,
        credential: Option<&Credential>,
    ) -> BreakerKey {
        let r = self.config.routes().get(route);
        let path = matches!(route, RouteId::Default).then_some(path);
        BreakerKey::new(
            Arc::from(r.name.as_str()),
            path,
            credential.filter(|_| r.private),
        )
    }

    /// The refusal for a call on `key` if its breaker is open (or its
    /// probe is in flight), else `None`.
    pub(super) fn breaker_refusal(&self, now: Instant, key: &BreakerKey) -> Option<Failure> {
        let until = self.breakers.blocked_until(now, key)?;
        Some(Failure::BreakerOpen {
            route: key.name(),
            retry_after: until.map_or(PROBING_RETRY, |t| t.saturating_duration_since(now)),
        })
    }

    /// A call on `key` leaves: the first after an open period is the probe.
    pub(super) fn breaker_dispatched(&mut self, now: Instant, key: &BreakerKey) {
        if self.breakers.on_dispatch(now, key) {
            self.stats.upstream.breaker_half_opened += 1;
        }
    }

    /// Applies what upstream's outcome said of a route (see [`judge`]).
    pub(super) fn breaker_settle(&mut self, now: Instant, key: &BreakerKey, judgement: Judgement) {
        match judgement {
            Judgement::Nothing => {}
            Judgement::Failed(reason) => {
                if self.breakers.on_failure(now, key, &reason) {
                    self.stats.upstream.breaker_opened += 1;
                    self.trip(now, key);
                }
            }
            Judgement::Answered(status) => {
                if self.breakers.on_answer(now, key, status) {
                    self.stats.upstream.breaker_closed += 1;
                }
            }
        }
    }

    /// A breaker opened on `key`: calls waiting for it (queued or backing
    /// off) fail now, or get stale data, instead of waiting out the open
    /// period. Calls on other routes are untouched.
    fn trip(&mut self, now: Instant, key: &BreakerKey) {
        let mut victims: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| &c.breaker == key && !matches!(c.state, CallState::InFlight { .. }))
            .map(|(id, _)| *id)
            .collect();
        victims.sort();
        for call_id in victims {
            if let Some(failure) = self.breaker_refusal(now, key) {
                self.fail_call(now, call_id, failure);
            }
        }
    }

    /// Breaker transitions since the last call (opened, half-open,
    /// closed), oldest first, for the host to log once each.
    pub fn breaker_events(&mut self) -> Vec<crate::BreakerEvent> {
        self.breakers.drain_events()
    }
}

/// What an outcome says of its route's health.
pub(super) enum Judgement {
    /// Upstream's own failure (a 5xx, a broken or timed-out exchange),
    /// with what happened.
    Failed(String),
    /// Upstream answered with this status: below 400 the route works; a
    /// 4xx or 429 (the client's fault, or upstream pacing us) counts for
    /// nothing, except that a probe that got one found upstream up.
    Answered(u16),
    /// Our own exhaustion: nothing was sent, nothing is learned.
    Nothing,
}

/// Only upstream's own failures count against a route's breaker.
pub(super) fn judge(verdict: Verdict, outcome: &Outcome) -> Judgement {
    match (verdict, outcome) {
        (Verdict::Transport { .. }, Outcome::Transport(e)) if e.is_local() => Judgement::Nothing,
        (Verdict::ServerError | Verdict::Transport { .. }, Outcome::Response { response, .. }) => {
            Judgement::Failed(format!("upstream answered {}", response.status))
        }
        (Verdict::ServerError | Verdict::Transport { .. }, Outcome::Transport(e)) => {
            Judgement::Failed(e.to_string())
        }
        (_, Outcome::Response { response, .. }) => Judgement::Answered(response.status),
        (_, Outcome::Transport(_)) => Judgement::Nothing,
    }
}
