//! Which of a bot's headers go upstream, and which may be logged.

use crate::http::{strip_hop_headers, HopHeaders};

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
    let mut out = strip_hop_headers(headers, &NOT_FORWARDED);
    if !underscores {
        out.retain(|(n, _)| !n.contains('_'));
    }
    out
}

/// Whether a header of this name may carry a secret: `Authorization`,
/// cookies, `CB-ACCESS-*`, names with key, secret, sign, token,
/// passphrase, password, auth or session in them.
pub(super) fn may_carry_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("cb-access-")
        || lower.contains("cookie")
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
        .any(|w| lower.contains(w))
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
