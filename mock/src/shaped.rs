//! Echo answers shaped by their own request-target, so a black-box test
//! can make upstream answer what an HTTP rule is about (a status, a
//! `Cache-Control`, an `Expires`, a `Location`...) on one path only,
//! without touching the global faults every other path shares.
//!
//! Query parameters of an `/__echo/...` request (percent-decoded):
//! - `__status=N`: answer with status N (100 to 599) instead of 200;
//! - `__h=Name: value`: add that response header (repeatable, in order).
//!
//! Anything else in the query is left alone (it is echoed as usual).
//! Because the shape is part of the target, it is part of the cache key
//! too: each shaped path is its own entry, as a test wants.

use syncoord_server::Response;

/// `response` with the status and headers `query` asks for. A malformed
/// `__status` or `__h` is answered `400` naming it, so a test that
/// misspells its shape fails loudly instead of testing a plain echo.
pub(crate) fn shape(query: &str, mut response: Response) -> Response {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value);
        match key {
            "__status" => match value.parse::<u16>() {
                Ok(status) if (100..600).contains(&status) => response.status = status,
                _ => return refused(&format!("__status={value:?} is not a status code")),
            },
            "__h" => match value.split_once(':') {
                Some((name, v)) if is_token(name.trim()) => {
                    response = response.with_header(name.trim(), v.trim());
                }
                _ => return refused(&format!("__h={value:?} is not `Name: value`")),
            },
            _ => {}
        }
    }
    response
}

fn refused(why: &str) -> Response {
    Response::new(400, format!("mock: {why}\n"))
        .with_header("Content-Type", "text/plain; charset=utf-8")
}

/// A header name (RFC 9110 §5.1: a token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Percent-decoding (`+` as a space), lossy on invalid UTF-8.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_headers_come_from_the_query() {
        let r = shape(
            "a=1&__status=201&__h=Cache-Control%3A%20max-age%3D5&__h=Location:+/x%3Fy=1",
            Response::new(200, "{}"),
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.header("cache-control"), Some("max-age=5"));
        assert_eq!(r.header("location"), Some("/x?y=1"));
        let plain = shape("a=1&b=%2", Response::new(200, "{}"));
        assert_eq!((plain.status, plain.headers.len()), (200, 0));
    }

    #[test]
    fn a_malformed_shape_is_refused() {
        for q in [
            "__status=abc",
            "__status=99",
            "__h=NoColon",
            "__h=Bad%20Name:1",
        ] {
            assert_eq!(shape(q, Response::new(200, "")).status, 400, "{q}");
        }
    }
}
