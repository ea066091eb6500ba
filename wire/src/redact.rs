//! Secrets out of log text: whatever a log line quotes (a header dump, a
//! request's debug form, an error that echoes a value), the bearer
//! credentials in it are replaced before the line is written.
//!
//! Why here: both hosts sign, and a signed call carries live
//! credentials (a JWT is a bearer token for 120 s, an Exchange
//! passphrase for as long as the key lives). The hosts mark those headers
//! sensitive where their HTTP client allows it; this is the last line,
//! applied to every log line at every level.

use std::borrow::Cow;

/// Headers whose values are credentials: never logged as they are.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cb-access-sign",
    "cb-access-passphrase",
    "x-syncoord-token",
    "x-syncoord-admin-token",
    "cookie",
    "set-cookie",
];

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Whether header `name` carries a credential ([`SECRET_HEADERS`]).
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// `text` with every secret replaced by [`REDACTED`]: the value after a
/// [`SECRET_HEADERS`] name (`name: value`, `"name": "value"`,
/// `("name", "value")`, `name=value`), and anything shaped like a JWT
/// (`eyJ...` header, payload and signature) wherever it stands. Borrowed
/// when there is nothing to replace.
pub fn redact(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for name in SECRET_HEADERS {
        let mut from = 0;
        while let Some(found) = lower[from..].find(name) {
            let start = from + found;
            let end = start + name.len();
            from = end;
            // A whole name, not the tail of another word.
            let before = lower[..start].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                continue;
            }
            if let Some(span) = value_after(text, end) {
                spans.push(span);
            }
        }
    }
    let mut from = 0;
    while let Some(found) = text[from..].find("eyJ") {
        let start = from + found;
        let end = jwt_end(text, start);
        from = start + 3;
        if let Some(end) = end {
            spans.push((start, end));
            from = end;
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        out.push_str(&text[at..start.max(at)]);
        if start >= at {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// The value that follows a header name ending at `end`: past the
/// separators a dump puts between them (quotes, `:`, `=`, `,`, spaces),
/// up to the quote, line end or delimiter that closes it. `None` when
/// no separator follows (the name is a word in a sentence, not a key).
fn value_after(text: &str, end: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = end;
    let mut quote = None;
    // Quotes escaped as `\"`: a dump inside a JSON string.
    let mut escaped = false;
    let mut separated = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                escaped = true;
                i += 1;
            }
            b'"' | b'\'' => {
                quote = Some(bytes[i]);
                i += 1;
            }
            b':' | b'=' | b',' => {
                separated = true;
                quote = None;
                i += 1;
            }
            b' ' | b'\t' => i += 1,
            _ => break,
        }
    }
    if !separated || i >= bytes.len() {
        return None;
    }
    let start = i;
    let stop: &[u8] = match quote {
        Some(_) if escaped => b"\\\n\r",
        Some(q) => &[q, b'\n', b'\r'],
        None => b"\n\r,;)]}\"",
    };
    while i < bytes.len() && !stop.contains(&bytes[i]) {
        // A backslash-escaped quote inside a quoted value (Debug output).
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            i += 2;
            continue;
        }
        i += 1;
    }
    let i = i.min(bytes.len());
    (i > start).then_some((start, i))
}

/// The end of a JWT starting at `start` (`eyJ` then base64url, `.`,
/// base64url, `.`, base64url), if one does.
fn jwt_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = start;
    let mut dots = 0;
    let mut part = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            part += 1;
        } else if b == b'.' && dots < 2 && part > 0 {
            dots += 1;
            part = 0;
        } else {
            break;
        }
        i += 1;
    }
    (dots == 2).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJvcmcva2V5In0.c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn header_values_are_redacted_in_every_dump_shape() {
        let cases = [
            (
                format!("headers={{\"authorization\": \"Bearer {JWT}\", \"accept\": \"*/*\"}}"),
                "headers={\"authorization\": \"[redacted]\", \"accept\": \"*/*\"}",
            ),
            (
                "[(\"CB-ACCESS-PASSPHRASE\", \"my pass phrase\"), (\"CB-ACCESS-KEY\", \"k\")]"
                    .into(),
                "[(\"CB-ACCESS-PASSPHRASE\", \"[redacted]\"), (\"CB-ACCESS-KEY\", \"k\")]",
            ),
            (
                "cb-access-sign: r+yxqYXCMMvv/R+=\r\nhost: a".into(),
                "cb-access-sign: [redacted]\r\nhost: a",
            ),
            (
                "X-Syncoord-Token=abc123 next=1".into(),
                "X-Syncoord-Token=[redacted]",
            ),
            (
                r#"{"message":"{\"cb-access-passphrase\": \"open sesame\", \"a\": 1}"}"#.into(),
                r#"{"message":"{\"cb-access-passphrase\": \"[redacted]\", \"a\": 1}"}"#,
            ),
            (
                "Proxy-Authorization: Basic Ym90Nzp0b2tlbg==".into(),
                "Proxy-Authorization: [redacted]",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(&input), expected, "{input}");
        }
    }

    #[test]
    fn a_jwt_is_redacted_wherever_it_stands() {
        let line = format!("sent token {JWT} upstream");
        assert_eq!(redact(&line), "sent token [redacted] upstream");
        let escaped = format!("\"Bearer {JWT}\\\"\"");
        assert!(!redact(&escaped).contains("c2lnbmF0dXJl"));
    }

    #[test]
    fn text_without_secrets_is_untouched() {
        for text in [
            "listening listen=127.0.0.1:8787",
            "the authorization of a request is checked",
            "eyJ alone, eyJa.b but not three parts",
            "",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(_)), "{text}");
        }
    }
}
