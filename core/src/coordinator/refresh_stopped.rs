//! Reporting a refresh-ahead call upstream stopped (see
//! `crate::refresh_stops`): recorded where settling drops it, drained by
//! the host.

use super::*;
use crate::breakers::BreakerKey;
use crate::refresh_stops::{RefreshStop, StopReason};

impl<P: Clone> Coordinator<P> {
    /// Records that upstream stopped a refresh call of the route
    /// `breaker` names, for `reason`. Does nothing for a call that is not
    /// a refresh (`refresh` false): a bot's call that fails ends its
    /// requests, which say so themselves.
    pub(super) fn refresh_stopped(
        &mut self,
        refresh: bool,
        breaker: &BreakerKey,
        reason: StopReason,
        status: Option<u16>,
    ) {
        if !refresh {
            return;
        }
        self.refresh_stops.record(RefreshStop {
            route: breaker.name(),
            credential: breaker.credential_str().map(str::to_owned),
            reason,
            status,
        });
    }

    /// The refreshes upstream stopped since the last call, oldest first,
    /// for the host to log (rate-limited: a failing refresh is retried
    /// until its breaker opens). The counts stay in the stats
    /// (`refresh_stops`).
    pub fn refresh_stop_events(&mut self) -> Vec<RefreshStop> {
        self.refresh_stops.drain()
    }
}

/// Why upstream stopped a refresh that got `verdict` (not an answer).
pub(super) fn stop_reason(verdict: Verdict) -> StopReason {
    match verdict {
        Verdict::RateLimited => StopReason::RateLimited,
        Verdict::ServerError => StopReason::ServerError,
        Verdict::Transport { .. } => StopReason::Transport,
        // An answer that is not stored is reported where storing fails.
        Verdict::Answer => StopReason::Status,
    }
}
