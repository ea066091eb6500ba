//! Which of a bot's headers go upstream, and which may be logged.

use crate::http::HopHeaders;

/// Hop-by-hop headers (RFC 9110 7.6.1), the ones the host sets itself,
/// `Proxy-*` and our own `X-Syncoord-*`, plus whatever `Connection` names.
const NOT_FORWARDED: HopHeaders<'static> = HopHeaders {
    names: &[
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        // The host reads the whole body before forwarding; it answers
        // `Expect: 100-continue` itself.
        "expect",
        "proxy-connection",
    ],
    prefixes: &["proxy-", "x-syncoord-"],
    connection_listed: true,
};

/// The bot's headers as they go upstream: without hop-by-hop headers
/// (and those `Connection` names), `Proxy-*`, `Host` and `Content-Length`
/// (the host sets both), our own `X-Syncoord-*`, and names with an
/// underscore (see [`forwarded_headers`]).
pub fn forwardable_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    forwarded_headers(headers, false)
}

/// [`forwardable_headers`], keeping names with an underscore when
/// `underscores` (an upstream's `underscores_in_headers`). By default they
/// are dropped, as nginx does (`underscores_in_headers off`): CGI-style
/// servers map `-` and `_` to the same name, so `CB_ACCESS_KEY` could be
/// what upstream authenticates while the identity is read from
/// `CB-ACCESS-KEY`.
pub fn forwarded_headers(headers: &[(String, String)], underscores: bool) -> Vec<(String, String)> {
    forwarded_where(headers, underscores, |_| true)
}

/// [`forwarded_headers`] that `keep` also keeps. Every header is judged
/// before any is copied, and names are compared without lower-casing
/// copies of them: this runs for every request, hits included.
pub(super) fn forwarded_where(
    headers: &[(String, String)],
    underscores: bool,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let hop = &NOT_FORWARDED;
    let listed: Vec<&str> = if hop.connection_listed {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(',').map(str::trim))
            .collect()
    } else {
        Vec::new()
    };
    headers
        .iter()
        .filter(|(n, _)| {
            (underscores || !n.contains('_'))
                && !(hop.names.iter().any(|h| n.eq_ignore_ascii_case(h))
                    || hop.prefixes.iter().any(|p| starts_with_ignore_case(n, p))
                    || listed.iter().any(|t| t.eq_ignore_ascii_case(n)))
                && keep(n)
        })
        .cloned()
        .collect()
}

/// Whether `s` starts with `prefix` (lower-case ASCII), whatever its case.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Whether a header of this name may carry a secret: `Authorization`,
/// cookies, `CB-ACCESS-*`, names with key, secret, sign, token,
/// passphrase, password, auth or session in them.
pub(super) fn may_carry_secret(name: &str) -> bool {
    // Lower-cased on the stack for names of usual length.
    let mut buf = [0u8; 64];
    let owned;
    let lower: &[u8] = match buf.get_mut(..name.len()) {
        Some(b) => {
            b.copy_from_slice(name.as_bytes());
            b.make_ascii_lowercase();
            b
        }
        None => {
            owned = name.to_ascii_lowercase();
            owned.as_bytes()
        }
    };
    let contains = |w: &str| lower.windows(w.len()).any(|x| x == w.as_bytes());
    lower.starts_with(b"cb-access-")
        || contains("cookie")
        || [
            "auth",
            "key",
            "secret",
            "sign",
            "token",
            "passphrase",
            "password",
            "session",
        ]
        .iter()
        .any(|w| contains(w))
}

/// Headers safe to log: values of anything that may carry a secret
/// (`Authorization`, cookies, `CB-ACCESS-*`, names with key, secret, sign,
/// token, passphrase, password, auth or session in them) are replaced.
pub fn redact(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let shown = if may_carry_secret(n) {
                "[redacted]".to_owned()
            } else {
                v.clone()
            };
            (n.clone(), shown)
        })
        .collect()
}
