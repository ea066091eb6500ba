//! What a request must look like before anything about it is believed:
//! method, header and target syntax, and credentials that cannot be
//! read two ways.

use percent_encoding::percent_decode_str;
use syncoord_core::config::CredentialConfig;

use super::headers::may_carry_secret;
use crate::rejection::{Rejection, RejectionKind};

/// Longest client name kept from `X-Syncoord-Client`.
pub const MAX_CLIENT_LEN: usize = 64;
/// Longest method accepted.
const MAX_METHOD_LEN: usize = 32;

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// A table of 256 entries, true for the bytes of `set` (and for ASCII
/// letters and digits when `alphanumeric`): one load per byte on the hit
/// path instead of a search of `set`.
const fn byte_table(set: &[u8], alphanumeric: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = alphanumeric && (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < set.len() {
        table[set[i] as usize] = true;
        i += 1;
    }
    table
}

/// [`is_tchar`]'s table.
static TCHAR: [bool; 256] = byte_table(b"!#$%&'*+-.^_`|~", true);

pub(super) fn check_method(method: &str) -> Result<String, Rejection> {
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.bytes().all(is_tchar) {
        return Err(Rejection::new(
            RejectionKind::BadMethod,
            format!(
                "`{}` is not an HTTP method (1 to {MAX_METHOD_LEN} token characters)",
                method.escape_debug()
            ),
        ));
    }
    Ok(method.to_ascii_uppercase())
}

pub(super) fn check_headers(headers: &[(String, String)]) -> Result<(), Rejection> {
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(Rejection::new(
                RejectionKind::BadHeader,
                format!("`{}` is not a valid header name", name.escape_debug()),
            ));
        }
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(Rejection::new(
                RejectionKind::BadHeader,
                format!("header `{name}` contains CR, LF or NUL"),
            ));
        }
    }
    Ok(())
}

/// A credential header sent twice with different values: the cache would
/// file the answer under the first while upstream may authenticate the
/// other, and then serve one key's private data to the other key's bots.
pub(super) fn check_credential_unambiguous(
    headers: &[(String, String)],
    rules: &CredentialConfig,
) -> Result<(), Rejection> {
    let names = std::iter::once(rules.header.as_str())
        .chain(rules.others.iter().map(String::as_str))
        .chain(std::iter::once("authorization"));
    for name in names {
        let mut values = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim());
        if let Some(first) = values.next() {
            if values.any(|v| v != first) {
                return Err(Rejection::new(
                    RejectionKind::AmbiguousCredential,
                    format!("`{name}` is sent more than once with different values"),
                ));
            }
        }
    }
    Ok(())
}

/// A `Connection` header naming a credential header (or any header that
/// may carry a secret) would have it dropped at this hop: the identity
/// would then be computed from one credential while upstream
/// authenticates another. Refused rather than guessed.
pub(super) fn check_connection(
    headers: &[(String, String)],
    rules: &CredentialConfig,
) -> Result<(), Rejection> {
    let listed = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim_matches([' ', '\t']));
    for token in listed {
        let credential = token.eq_ignore_ascii_case(&rules.header)
            || token.eq_ignore_ascii_case("authorization")
            || rules.others.iter().any(|o| token.eq_ignore_ascii_case(o))
            || may_carry_secret(token);
        if credential {
            return Err(Rejection::new(
                RejectionKind::CredentialHopByHop,
                format!(
                    "`Connection` names `{}`, a header that carries a credential: it would be dropped here while the identity is read from it; credentials are end-to-end",
                    sanitize_client(token)
                ),
            ));
        }
    }
    Ok(())
}

/// Request-targets are printable ASCII without spaces (RFC 9112 3.2).
pub(super) fn check_target_chars(target: &str, what: &str) -> Result<(), Rejection> {
    if target.is_empty() {
        return Err(Rejection::new(
            RejectionKind::BadTarget,
            format!("empty {what}"),
        ));
    }
    if let Some((at, b)) = target
        .bytes()
        .enumerate()
        .find(|(_, b)| !b.is_ascii_graphic())
    {
        let what_char = match b {
            b'\r' => "CR".to_owned(),
            b'\n' => "LF".to_owned(),
            0 => "NUL".to_owned(),
            b' ' => "a space".to_owned(),
            b if b >= 0x80 => "a non-ASCII byte (percent-encode it)".to_owned(),
            b => format!("control byte 0x{b:02x}"),
        };
        return Err(Rejection::new(
            RejectionKind::BadTarget,
            format!("{what} contains {what_char} at byte {at}"),
        ));
    }
    Ok(())
}

/// The byte offset of the first `%` not followed by two hex digits.
pub(super) fn check_percent_encoding(s: &str) -> Result<(), usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(i);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Bytes outside RFC 3986's URI characters among printable ASCII.
static NOT_IN_URI: [bool; 256] = byte_table(b"\"<>\\^`{|}", false);

/// The path the route rules and upstream will see must mean the same to
/// both: no `.`/`..` segments (raw or encoded) that upstream would
/// resolve to a different route than ours (say, from a shared market
/// route's cache into a private one), no encoded `/` or `\`, no fragment,
/// valid percent-encoding.
pub(super) fn check_path_and_query(pq: &str) -> Result<(), Rejection> {
    check_target_chars(pq, "path")?;
    // Printable ASCII that RFC 3986 never allows in a URI. An HTTP client
    // refuses to send such a target (ureq fails to build it), and that
    // local failure must not be retried and counted as an upstream failure
    // that opens a whole scope's circuit breaker for every bot.
    if let Some((at, b)) = pq
        .bytes()
        .enumerate()
        .find(|(_, b)| NOT_IN_URI[usize::from(*b)])
    {
        return Err(Rejection::new(
            RejectionKind::BadTarget,
            format!(
                "the target contains `{}` at byte {at}, which a URI never holds (percent-encode it)",
                b as char
            ),
        ));
    }
    if pq.contains('#') {
        return Err(Rejection::new(
            RejectionKind::BadTarget,
            "a fragment (`#...`) is never sent in a request",
        ));
    }
    let path = pq.split('?').next().unwrap_or(pq);
    if !path.starts_with('/') {
        return Err(Rejection::new(
            RejectionKind::BadTarget,
            "the path must start with `/`",
        ));
    }
    check_percent_encoding(path).map_err(|at| {
        Rejection::new(
            RejectionKind::BadTarget,
            format!("invalid percent-encoding at byte {at} of the path `{path}`"),
        )
    })?;
    for seg in path.split('/') {
        if !seg.contains('%') {
            // Nothing to decode (the common case, copied nowhere).
            if seg == "." || seg == ".." {
                return Err(Rejection::new(
                    RejectionKind::BadTarget,
                    format!("the path `{path}` contains a `.` or `..` segment"),
                ));
            }
            continue;
        }
        let decoded = percent_decode_str(seg).collect::<Vec<u8>>();
        if decoded == b"." || decoded == b".." {
            return Err(Rejection::new(
                RejectionKind::BadTarget,
                format!("the path `{path}` contains a `.` or `..` segment"),
            ));
        }
        if decoded.len() != seg.len() && decoded.iter().any(|b| matches!(b, b'/' | b'\\')) {
            return Err(Rejection::new(
                RejectionKind::BadTarget,
                format!("the path `{path}` contains an encoded `/` or `\\`"),
            ));
        }
    }
    if path.contains('\\') {
        return Err(Rejection::new(
            RejectionKind::BadTarget,
            format!("the path `{path}` contains `\\`"),
        ));
    }
    Ok(())
}

/// Keeps a client name printable and short: letters, digits and
/// `-_.:@/+` stay, anything else becomes `_`.
pub(super) fn sanitize_client(raw: &str) -> String {
    raw.trim()
        .chars()
        .take(MAX_CLIENT_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:@/+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
