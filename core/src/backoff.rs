//! Retries: which upstream outcomes are worth another attempt, and when.
//!
//! Delays are exponential with full jitter ("AWS full jitter": a uniform
//! draw between zero and the exponential ceiling), which spreads retries of
//! many callers instead of synchronising them. Upstream's own wait
//! (`Retry-After`) wins when present.

use web_time::{Duration, Instant};

use crate::config::{secs, RetryConfig};
use crate::request::Outcome;

/// `base * 2^(attempt-1)`, capped at `max` (attempt counts from 1).
pub(crate) fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << shift).min(max)
}

/// A uniform draw in `[0, ceiling]`.
pub(crate) fn full_jitter(ceiling: Duration, rng: &mut fastrand::Rng) -> Duration {
    ceiling.mul_f64(rng.f64())
}

/// What an outcome means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A final answer (2xx-4xx other than 429): deliver it.
    Answer,
    /// Upstream refused for rate: the call was not processed.
    RateLimited,
    /// A retryable status (5xx by default): upstream may have acted.
    ServerError,
    /// No answer; `never_sent` when upstream cannot have seen the call.
    Transport { never_sent: bool },
}

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    max_delay: Duration,
    max_total: Duration,
    retry_statuses: Vec<u16>,
}

impl RetryPolicy {
    pub(crate) fn new(config: &RetryConfig) -> Self {
        RetryPolicy {
            max_attempts: config.max_attempts,
            base: secs(config.base_delay_secs),
            max_delay: secs(config.max_delay_secs),
            max_total: secs(config.max_total_secs),
            retry_statuses: config.retry_statuses.clone(),
        }
    }

    pub(crate) fn verdict(&self, outcome: &Outcome) -> Verdict {
        match outcome {
            // Overload: a 429; Binance's 418 (an IP ban for repeated 429s);
            // a 503 that says when to come back.
            Outcome::Response { response, .. }
                if response.status == 429
                    || response.status == 418
                    || (response.status == 503
                        && crate::http::header(&response.headers, "retry-after").is_some()) =>
            {
                Verdict::RateLimited
            }
            Outcome::Response { response, .. }
                if self.retry_statuses.contains(&response.status) =>
            {
                Verdict::ServerError
            }
            Outcome::Response { .. } => Verdict::Answer,
            Outcome::Transport(e) => Verdict::Transport {
                never_sent: e.never_sent(),
            },
        }
    }

    /// When to try again after attempt number `attempt` (from 1) ended with
    /// `verdict`, or `None` to give up. A 429 or a refused connection is
    /// always safe to repeat; a 5xx or a broken connection only for an
    /// idempotent call (`idempotent`) since upstream may have acted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn retry_delay(
        &self,
        verdict: Verdict,
        attempt: u32,
        idempotent: bool,
        first_sent: Instant,
        now: Instant,
        upstream_wait: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        let safe = match verdict {
            Verdict::Answer => return None,
            Verdict::RateLimited | Verdict::Transport { never_sent: true } => true,
            Verdict::ServerError | Verdict::Transport { never_sent: false } => idempotent,
        };
        if !safe || attempt >= self.max_attempts {
            return None;
        }
        let delay = match upstream_wait {
            Some(w) => w,
            None => full_jitter(exponential(self.base, self.max_delay, attempt), rng),
        };
        let elapsed = now.saturating_duration_since(first_sent);
        (elapsed + delay <= self.max_total).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Response, TransportError};

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&RetryConfig {
            max_attempts: 4,
            base_delay_secs: 1.0,
            max_delay_secs: 5.0,
            max_total_secs: 20.0,
            retry_statuses: vec![500, 503],
            call_timeout_secs: 30.0,
        })
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(exponential(s(1), s(5), 1), s(1));
        assert_eq!(exponential(s(1), s(5), 2), s(2));
        assert_eq!(exponential(s(1), s(5), 3), s(4));
        assert_eq!(exponential(s(1), s(5), 4), s(5));
        assert_eq!(exponential(s(1), s(5), u32::MAX), s(5));
    }

    #[test]
    fn full_jitter_spreads_within_ceiling() {
        let mut rng = fastrand::Rng::with_seed(7);
        let ceiling = Duration::from_secs(4);
        let draws: Vec<Duration> = (0..1000).map(|_| full_jitter(ceiling, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        let below_half = draws.iter().filter(|d| **d < ceiling / 2).count();
        assert!(
            (400..600).contains(&below_half),
            "uniform-ish: {below_half}"
        );
    }

    #[test]
    fn verdicts() {
        let p = policy();
        let r = |s| Outcome::response(Response::new(s, ""));
        assert_eq!(p.verdict(&r(200)), Verdict::Answer);
        assert_eq!(p.verdict(&r(404)), Verdict::Answer);
        assert_eq!(p.verdict(&r(502)), Verdict::Answer, "not in retry_statuses");
        assert_eq!(p.verdict(&r(503)), Verdict::ServerError);
        assert_eq!(p.verdict(&r(429)), Verdict::RateLimited);
        assert_eq!(p.verdict(&r(418)), Verdict::RateLimited);
        let busy = Outcome::response(Response::new(503, "").with_header("Retry-After", "3"));
        assert_eq!(p.verdict(&busy), Verdict::RateLimited);
        let refused = Outcome::Transport(TransportError::Connect("refused".into()));
        assert_eq!(p.verdict(&refused), Verdict::Transport { never_sent: true });
    }

    #[test]
    fn only_safe_calls_retry_and_budgets_hold() {
        let p = policy();
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = Instant::now();
        let d = |v, attempt, idem, now, wait, rng: &mut fastrand::Rng| {
            p.retry_delay(v, attempt, idem, t0, now, wait, rng)
        };
        // A POST after a 5xx might double an order: no retry.
        assert_eq!(d(Verdict::ServerError, 1, false, t0, None, &mut rng), None);
        assert!(d(Verdict::ServerError, 1, true, t0, None, &mut rng).is_some());
        // After a 429 or a refused connection even a POST is safe.
        assert!(d(Verdict::RateLimited, 1, false, t0, None, &mut rng).is_some());
        assert!(d(
            Verdict::Transport { never_sent: true },
            1,
            false,
            t0,
            None,
            &mut rng
        )
        .is_some());
        assert_eq!(
            d(
                Verdict::Transport { never_sent: false },
                1,
                false,
                t0,
                None,
                &mut rng
            ),
            None
        );
        // Attempt cap.
        assert_eq!(d(Verdict::RateLimited, 4, true, t0, None, &mut rng), None);
        // Upstream's wait is honoured, but not past the total budget.
        let w = Some(Duration::from_secs(3));
        assert_eq!(d(Verdict::RateLimited, 1, true, t0, w, &mut rng), w);
        let late = t0 + Duration::from_secs(18);
        assert_eq!(d(Verdict::RateLimited, 1, true, late, w, &mut rng), None);
        // Full jitter stays under the exponential ceiling.
        for attempt in 1..4 {
            let delay = d(Verdict::ServerError, attempt, true, t0, None, &mut rng).unwrap();
            assert!(delay <= exponential(Duration::from_secs(1), Duration::from_secs(5), attempt));
        }
    }
}
