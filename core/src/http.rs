//! The HTTP semantics the coordinator itself needs: header lookup and how
//! long upstream asks us to wait (`Retry-After`, the `x-ratelimit-*`
//! family). What a bot's request means as a whole (identity, hop-by-hop
//! headers, routing) is the proxy crate's.

use web_time::Duration;

/// First value of header `name` (case-insensitive), trimmed.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// The value of the first of `names` present: one header, several
/// spellings in the wild (`x-ratelimit-*`, the IETF draft's `ratelimit-*`,
/// `x-rate-limit-*`).
fn first_header<'a>(headers: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| header(headers, name))
}

/// Longest wait upstream may ask for that we honour as asked; anything
/// longer is clamped (a bogus header must not wedge a scope for days).
pub(crate) const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(3600);

/// How long upstream asks us to wait before the next call, from
/// `Retry-After` (seconds or an HTTP date) or, failing that, from the
/// `x-ratelimit-reset` family (seconds, or a Unix time when large).
///
/// HTTP dates are read against upstream's own `Date` header when present
/// (no clock skew), else against `now_unix`, the host's wall clock.
/// Returns `None` when nothing usable is there: the core then picks its own
/// exponential backoff, never depending on upstream to say.
pub(crate) fn upstream_wait(
    headers: &[(String, String)],
    now_unix: Option<u64>,
) -> Option<Duration> {
    let server_now = server_unix(headers, now_unix);
    if let Some(v) = header(headers, "retry-after") {
        if let Some(d) = parse_delay_or_date(v, server_now, false) {
            return Some(d.min(MAX_UPSTREAM_WAIT));
        }
    }
    first_header(
        headers,
        &["x-ratelimit-reset", "ratelimit-reset", "x-rate-limit-reset"],
    )
    .and_then(|v| parse_delay_or_date(v, server_now, true))
    .map(|d| d.min(MAX_UPSTREAM_WAIT))
}

/// Upstream's own clock (its `Date` header) when it sent one, else the
/// host's: epoch times in its headers are read against it (no skew).
pub(crate) fn server_unix(headers: &[(String, String)], now_unix: Option<u64>) -> Option<u64> {
    header(headers, "date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .or(now_unix)
}

/// Unix times are larger than this; delays in seconds are smaller.
const UNIX_TIME_THRESHOLD: f64 = 1_000_000_000.0;

fn parse_delay_or_date(
    value: &str,
    now_unix: Option<u64>,
    epoch_allowed: bool,
) -> Option<Duration> {
    if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        if n >= UNIX_TIME_THRESHOLD {
            if !epoch_allowed {
                return None;
            }
            let now = now_unix? as f64;
            return Some(Duration::from_secs_f64((n - now).max(0.0)));
        }
        return Some(Duration::from_secs_f64(n));
    }
    let at = httpdate::parse_http_date(value)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(at.saturating_sub(now_unix?)))
}

/// Header fields from `(name, value)` pairs, for this crate's tests.
#[cfg(test)]
pub(crate) fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(
            upstream_wait(&h(&[("Retry-After", "7")]), None),
            Some(Duration::from_secs(7))
        );
        let dated = h(&[
            ("Date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
        ]);
        // Read against upstream's own clock, not ours.
        assert_eq!(
            upstream_wait(&dated, Some(0)),
            Some(Duration::from_secs(30))
        );
        let undated = h(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]);
        assert_eq!(
            upstream_wait(&undated, Some(1_445_412_500)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(upstream_wait(&undated, None), None);
        // A date in the past means "now".
        assert_eq!(
            upstream_wait(&undated, Some(1_445_412_520)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn ratelimit_reset_delta_or_epoch() {
        assert_eq!(
            upstream_wait(&h(&[("x-ratelimit-reset", "2.5")]), None),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            upstream_wait(
                &h(&[("x-ratelimit-reset", "1700000012")]),
                Some(1_700_000_000)
            ),
            Some(Duration::from_secs(12))
        );
        // Retry-After wins over the reset headers.
        let both = h(&[("x-ratelimit-reset", "50"), ("Retry-After", "3")]);
        assert_eq!(upstream_wait(&both, None), Some(Duration::from_secs(3)));
    }

    #[test]
    fn garbage_and_huge_waits() {
        for bad in ["soon", "-3", "NaN", "inf", ""] {
            assert_eq!(
                upstream_wait(&h(&[("Retry-After", bad)]), None),
                None,
                "{bad}"
            );
        }
        assert_eq!(
            upstream_wait(&h(&[("Retry-After", "99999999")]), None),
            Some(MAX_UPSTREAM_WAIT)
        );
        assert_eq!(upstream_wait(&[], None), None);
    }
}
