//! Targets that make the mock's `/__echo` answer what a check is about
//! (its `?__status=N` and `?__h=Name:%20value`, see `mock/src/shaped.rs`),
//! on that one path only.

/// `path` with a query asking the mock to answer `status` (200 if `None`)
/// with `headers` added.
pub(crate) fn shaped(path: &str, status: Option<u16>, headers: &[(&str, &str)]) -> String {
    let mut query: Vec<String> = status
        .map(|s| format!("__status={s}"))
        .into_iter()
        .collect();
    for (name, value) in headers {
        query.push(format!("__h={}", encode(&format!("{name}: {value}"))));
    }
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `unix` seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn http_date(unix: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
