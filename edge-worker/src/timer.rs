//! When a scope object arms its next timer (the `Output::WakeAt` step of
//! the driver loop in `wasm/driver.rs`), kept pure so it is tested natively.
//!
//! Timers are `setTimeout`, with millisecond resolution, and cannot be
//! cancelled cheaply from the loop, so the driver keeps at most one
//! "earliest" timer: a new one is armed only when the core wants to wake
//! before the one already pending. A later wake-up needs no timer of its
//! own: the pending one fires first and the loop asks again then.

use syncoord_core::{Duration, Instant};

/// Shortest timer: a zero or past due time would spin the loop, and the
/// runtime's timers cannot fire sooner anyway.
pub const MIN_TIMER: Duration = Duration::from_millis(1);

/// Longest timer: `worker::Delay` hands `setTimeout` the milliseconds as an
/// `i32`, so anything past about 24.8 days would wrap negative and fire at
/// once, every time the loop re-arms it (a busy loop). A day is far beyond
/// any wake-up the core asks for while busy; if it asks for a later one,
/// the loop simply wakes after a day and asks again.
pub const MAX_TIMER: Duration = Duration::from_secs(86_400);

/// The instant to arm a new timer for, if one is needed: the core's
/// `Output::WakeAt` (`next`), only while requests wait or calls are in
/// flight or refresh-ahead keeps keys young (`busy`; an idle object sleeps
/// until its next request), and only
/// if it is earlier than the timer already `armed`.
pub fn to_arm(next: Option<Instant>, busy: bool, armed: Option<Instant>) -> Option<Instant> {
    let at = next.filter(|_| busy)?;
    armed.is_none_or(|a| at < a).then_some(at)
}

/// How long to sleep from `now` until `at`, within
/// [`MIN_TIMER`]..=[`MAX_TIMER`].
pub fn delay(at: Instant, now: Instant) -> Duration {
    at.saturating_duration_since(now)
        .clamp(MIN_TIMER, MAX_TIMER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_object_arms_nothing() {
        let t = Instant::now();
        assert_eq!(to_arm(Some(t), false, None), None);
        assert_eq!(to_arm(None, true, None), None);
    }

    #[test]
    fn only_an_earlier_wake_up_arms_a_new_timer() {
        let t = Instant::now();
        let later = t + Duration::from_millis(50);
        assert_eq!(to_arm(Some(t), true, None), Some(t));
        assert_eq!(to_arm(Some(t), true, Some(later)), Some(t));
        assert_eq!(to_arm(Some(later), true, Some(t)), None);
        assert_eq!(to_arm(Some(t), true, Some(t)), None, "already armed for it");
    }

    #[test]
    fn delays_never_reach_zero() {
        let t = Instant::now();
        assert_eq!(delay(t, t + Duration::from_secs(1)), MIN_TIMER);
        assert_eq!(delay(t, t), MIN_TIMER);
        assert_eq!(
            delay(t + Duration::from_millis(20), t),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn delays_fit_set_timeouts_i32_milliseconds() {
        let t = Instant::now();
        let far = delay(t + Duration::from_secs(40 * 86_400), t);
        assert_eq!(far, MAX_TIMER);
        assert!(i32::try_from(far.as_millis()).is_ok());
    }
}
