//! The pieces of HTTP semantics both hosts need, written once: header
//! lookup, which headers stop at a hop, how long upstream asks us to wait,
//! and whose credential a request carries.

use base64::Engine;
use sha2::{Digest, Sha256};
use web_time::Duration;

use crate::request::Credential;

/// First value of header `name` (case-insensitive), trimmed.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Which headers stop at a hop instead of travelling on with the message.
/// Each place that relays headers names its own set; the matching rule is
/// shared so no place drifts from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopHeaders<'a> {
    /// Names, lower-case, dropped whatever their case in the message.
    pub names: &'a [&'a str],
    /// Name prefixes, lower-case (`proxy-`, our own `x-syncoord-`).
    pub prefixes: &'a [&'a str],
    /// Whether the names a `Connection` header lists are dropped too: the
    /// sender declared them hop-by-hop (RFC 9110 7.6.1).
    pub connection_listed: bool,
}

/// `headers` without those `hop` says stop here, in their original order
/// and spelling.
pub fn strip_hop_headers(
    headers: &[(String, String)],
    hop: &HopHeaders<'_>,
) -> Vec<(String, String)> {
    let listed: Vec<String> = if hop.connection_listed {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
            .collect()
    } else {
        Vec::new()
    };
    headers
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            !(hop.names.contains(&lower.as_str())
                || hop.prefixes.iter().any(|p| lower.starts_with(p))
                || listed.contains(&lower))
        })
        .cloned()
        .collect()
}

/// The value of the first of `names` present: one header, several
/// spellings in the wild (`x-ratelimit-*`, the IETF draft's `ratelimit-*`,
/// `x-rate-limit-*`).
fn first_header<'a>(headers: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| header(headers, name))
}

/// Longest wait upstream may ask for that we honour as asked; anything
/// longer is clamped (a bogus header must not wedge a scope for days).
pub const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(3600);

/// How long upstream asks us to wait before the next call, from
/// `Retry-After` (seconds or an HTTP date) or, failing that, from the
/// `x-ratelimit-reset` family (seconds, or a Unix time when large).
///
/// HTTP dates are read against upstream's own `Date` header when present
/// (no clock skew), else against `now_unix`, the host's wall clock.
/// Returns `None` when nothing usable is there: the core then picks its own
/// exponential backoff, never depending on upstream to say.
pub fn upstream_wait(headers: &[(String, String)], now_unix: Option<u64>) -> Option<Duration> {
    let server_now = header(headers, "date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .or(now_unix);
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

/// Whether upstream says the current rate-limit window has no calls left
/// (`x-ratelimit-remaining: 0`, or the `ratelimit-remaining` /
/// `x-rate-limit-remaining` spellings). With [`upstream_wait`] giving the
/// reset, the scope can pause before the next call earns a 429.
pub fn window_exhausted(headers: &[(String, String)]) -> bool {
    let names = [
        "x-ratelimit-remaining",
        "ratelimit-remaining",
        "x-rate-limit-remaining",
    ];
    first_header(headers, &names)
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|n| n <= 0.0)
}

/// The credential identity of a request: whose private data a response
/// is, and whose per-credential rate limit a call spends.
///
/// Checked in order:
/// 1. each header in `key_headers` (e.g. Coinbase Exchange's
///    `CB-ACCESS-KEY`, an API key id): `key:<value>`;
/// 2. `Authorization: Bearer <JWT>` (Coinbase Advanced Trade signs a fresh
///    JWT per request; its `sub` names the API key, so it stays the same
///    across signatures): `jwt:<sub>`;
/// 3. any other `Authorization` value: `auth:<sha256 prefix>`, so distinct
///    secrets never share a cache entry and the secret itself is never kept
///    as a name that stats could show.
///
/// The `sub` claim is read, not verified (the coordinator does not hold the
/// keys): clients of one coordinator are trusted not to forge each other's
/// identity. See the trust model in the README.
pub fn credential_identity(
    headers: &[(String, String)],
    key_headers: &[String],
) -> Option<Credential> {
    for name in key_headers {
        if let Some(v) = header(headers, name).filter(|v| !v.is_empty()) {
            return Some(Credential::new(&format!("key:{v}")));
        }
    }
    let auth = header(headers, "authorization").filter(|v| !v.is_empty())?;
    if let Some(sub) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .and_then(jwt_subject)
    {
        return Some(Credential::new(&format!("jwt:{sub}")));
    }
    Some(Credential::new(&format!("auth:{}", fingerprint(auth))))
}

/// The `sub` claim of a JWT, if the token is shaped like one.
fn jwt_subject(token: &str) -> Option<String> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    (!sub.is_empty()).then(|| sub.to_owned())
}

/// First 128 bits of SHA-256, hex.
fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn strip_hop_headers_drops_names_prefixes_and_connection_listed_only_when_asked() {
        let headers = h(&[
            ("Connection", "close, X-Trace"),
            ("Keep-Alive", "5"),
            ("Proxy-Authorization", "x"),
            ("x-trace", "1"),
            ("Accept", "*/*"),
        ]);
        let names = ["connection", "keep-alive"];
        let full = HopHeaders {
            names: &names,
            prefixes: &["proxy-"],
            connection_listed: true,
        };
        assert_eq!(strip_hop_headers(&headers, &full), h(&[("Accept", "*/*")]));
        let names_only = HopHeaders {
            names: &names,
            prefixes: &[],
            connection_listed: false,
        };
        assert_eq!(
            strip_hop_headers(&headers, &names_only),
            h(&[
                ("Proxy-Authorization", "x"),
                ("x-trace", "1"),
                ("Accept", "*/*")
            ])
        );
    }

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
    fn exhausted_window_is_read_from_remaining_headers() {
        assert!(window_exhausted(&h(&[("X-RateLimit-Remaining", "0")])));
        assert!(window_exhausted(&h(&[("ratelimit-remaining", "0")])));
        assert!(!window_exhausted(&h(&[("x-ratelimit-remaining", "3")])));
        assert!(!window_exhausted(&h(&[("x-ratelimit-remaining", "none")])));
        assert!(!window_exhausted(&[]));
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

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"ES256"}"#),
            e.encode(claims)
        )
    }

    #[test]
    fn credential_from_key_header_jwt_or_fingerprint() {
        let keys = vec!["CB-ACCESS-KEY".to_owned()];
        let id = |pairs: &[(&str, &str)]| {
            credential_identity(&h(pairs), &keys).map(|c| c.as_str().to_owned())
        };
        assert_eq!(id(&[("cb-access-key", "abc")]), Some("key:abc".into()));
        let t1 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":1}"#);
        let t2 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":2}"#);
        let a1 = format!("Bearer {t1}");
        let a2 = format!("Bearer {t2}");
        // Two signatures of one key are one identity.
        assert_eq!(id(&[("Authorization", &a1)]), id(&[("Authorization", &a2)]));
        assert_eq!(
            id(&[("Authorization", &a1)]),
            Some("jwt:organizations/o/apiKeys/k1".into())
        );
        let opaque = id(&[("Authorization", "Bearer not-a-jwt")]).unwrap();
        assert!(opaque.starts_with("auth:") && !opaque.contains("not-a-jwt"));
        assert_ne!(opaque, id(&[("Authorization", "Bearer other")]).unwrap());
        assert_eq!(id(&[("Accept", "*/*")]), None);
        // A JWT without `sub` is an opaque token.
        let nosub = format!("Bearer {}", jwt(r#"{"exp":1}"#));
        assert!(id(&[("Authorization", &nosub)])
            .unwrap()
            .starts_with("auth:"));
    }
}
