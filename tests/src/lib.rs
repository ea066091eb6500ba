//! The conformance suite: one black-box HTTP suite, written once, that every
//! syncoord host must pass (the native daemon and the Cloudflare Worker under
//! `wrangler dev`), each in front of the mock upstream on 127.0.0.1.
//!
//! A host is described by a [`Target`]: the base URL bots use and the mock
//! upstream's base URL (whose `/__stats`, `/__faults` and `/__echo` paths
//! let the suite see what actually reached upstream). Both hosts run with
//! `tests/conformance.toml`. Checks run one after another; each uses its
//! own paths and credentials so that none depends on another's cache.
//! Signing mode's cases ([`signing`]) run on each host too, with their own
//! config (`tests/conformance-signing.toml`) in front of a strict mock
//! that verifies every signature.
//!
//! The suite asserts behaviour, never speed: the only timing is hang
//! guards and the TTLs the configuration sets.

pub mod browser;
pub mod signing;
mod vary;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running host under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// Shown in failure messages (`native`, `edge`).
    pub name: String,
    /// Base URL bots point at, e.g. `http://127.0.0.1:8787`.
    pub base: String,
    /// The mock upstream's base URL, e.g. `http://127.0.0.1:9000`.
    pub mock: String,
}

/// The configuration every host runs the suite with; `@MOCK@` stands for
/// the mock upstream's base URL.
pub const CONFIG_TEMPLATE: &str = include_str!("../conformance.toml");

/// The suite's configuration for a mock upstream at `mock_url`.
pub fn config_for(mock_url: &str) -> String {
    CONFIG_TEMPLATE.replace("@MOCK@", mock_url)
}

type CheckFn = fn(&Target) -> Result<(), String>;

/// Every check, in the order they run.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("pass-through byte for byte", passthrough),
    (
        "GET body dropped, hop-by-hop headers removed",
        get_body_dropped,
    ),
    ("cache hit and TTL expiry", cache_and_ttl),
    (
        "an unsafe method invalidates its target URI (RFC 9111 4.4)",
        writes_invalidate,
    ),
    ("coalescing of identical reads", coalescing),
    ("Vary selects the variant (RFC 9111 4.1)", vary::vary),
    ("request freshness directives", freshness_directives),
    ("credential isolation", credential_isolation),
    (
        "identity is what upstream authenticates",
        identity_per_upstream,
    ),
    ("cache key is the forwarded target", key_is_forwarded_target),
    (
        "credential required on authenticated routes",
        credential_required,
    ),
    (
        "underscored header names not forwarded",
        underscored_headers_dropped,
    ),
    ("priority under overload", priority_under_overload),
    ("zero 429s at Coinbase's limits", zero_429s),
    ("stale-if-error", stale_if_error),
    ("unknown hosts refused", unknown_host_refused),
    ("origins: the real host reaches the mock", origins),
    (
        "malformed input refused, host keeps serving",
        malformed_input,
    ),
    ("body over max_body_bytes refused with 413", body_too_large),
    (
        "upstream answer over max_response_bytes: an order's outcome is unknown",
        response_too_large,
    ),
    ("stats, health and metrics endpoints", endpoints),
    ("dashboard page and its embedded assets", dashboard),
];

/// Runs every check against `target`; returns every failure at once.
pub fn run_all(target: &Target) -> Result<(), String> {
    let failures = run_checks(
        target,
        CHECKS
            .iter()
            .map(|(name, check)| (*name, move || check(target))),
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} checks failed against {}:\n  {}",
            failures.len(),
            CHECKS.len(),
            target.name,
            failures.join("\n  ")
        ))
    }
}

/// Runs each named check, printing how it went, and clears the mock's
/// faults after each (they are global: one check's faults must never leak
/// into the next). Returns the failures, `name: why`.
pub(crate) fn run_checks<F>(
    target: &Target,
    checks: impl IntoIterator<Item = (&'static str, F)>,
) -> Vec<String>
where
    F: FnOnce() -> Result<(), String>,
{
    let mut failures = Vec::new();
    for (name, check) in checks {
        let started = Instant::now();
        let result = check();
        let _ = post_json(&format!("{}/__faults", target.mock), "{}");
        match result {
            Ok(()) => eprintln!(
                "[{}] ok    {name} ({:.1} s)",
                target.name,
                started.elapsed().as_secs_f64()
            ),
            Err(why) => {
                eprintln!("[{}] FAIL  {name}: {why}", target.name);
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    failures
}

// --- HTTP helpers -------------------------------------------------------------

/// A response as the suite sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `X-Syncoord-Cache`: `hit`, `stale`, `coalesced` or `miss`.
    pub fn source(&self) -> &str {
        self.header("x-syncoord-cache").unwrap_or("(none)")
    }

    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_idle_connections_per_host(64)
        .build()
        .into()
}

thread_local! {
    static AGENT: ureq::Agent = agent();
}

/// Sends one request; `headers` are added as given.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, String> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .map_err(|e| format!("building {method} {url}: {e}"))?;
    let mut response = AGENT
        .with(|agent| agent.run(request))
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| format!("{method} {url}: reading body: {e}"))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    send("GET", url, headers, None)
}

fn post_json(url: &str, body: &str) -> Result<Reply, String> {
    send(
        "POST",
        url,
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
}

/// A path no other check (and no earlier run against the same mock) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}{nonce:x}-{n}")
}

fn expect(condition: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what())
    }
}

fn expect_status(reply: &Reply, status: u16, what: &str) -> Result<(), String> {
    expect(reply.status == status, || {
        format!(
            "{what}: expected status {status}, got {} ({})",
            reply.status,
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
        )
    })
}

/// What the mock upstream has seen.
#[derive(Debug, Clone, Copy)]
pub struct MockCounts {
    /// Requests that reached the mock.
    pub requests: u64,
    /// 429s the mock answered.
    pub rate_limited: u64,
}

pub fn mock_counts(target: &Target) -> Result<MockCounts, String> {
    let stats = get(&format!("{}/__stats", target.mock), &[])?.json()?;
    let field = |name: &str| {
        stats[name]
            .as_u64()
            .ok_or_else(|| format!("mock /__stats has no numeric `{name}`: {stats}"))
    };
    Ok(MockCounts {
        requests: field("requests_total")?,
        rate_limited: field("rate_limited")? + field("storm_429s")?,
    })
}

fn set_faults(target: &Target, faults: &str) -> Result<(), String> {
    let reply = post_json(&format!("{}/__faults", target.mock), faults)?;
    expect_status(&reply, 200, "setting mock faults")
}

/// Sends raw bytes on a fresh connection and returns the status of the
/// first response (None if the host closed without answering).
pub fn raw_status(base: &str, bytes: &[u8]) -> Result<Option<u16>, String> {
    let addr = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base} is not an http:// URL"))?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    // A host may answer and close before reading everything we send.
    let _ = stream.write_all(bytes);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok()))
}

// --- checks -------------------------------------------------------------------

fn echo_of(reply: &Reply) -> Result<Value, String> {
    expect_status(reply, 200, "echo")?;
    reply.json()
}

fn echoed_header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"].as_array()?.iter().find_map(|pair| {
        let pair = pair.as_array()?;
        let n = pair.first()?.as_str()?;
        n.eq_ignore_ascii_case(name)
            .then(|| pair.get(1).and_then(Value::as_str))
            .flatten()
    })
}

/// Method, path, query, body and signature headers reach upstream exactly
/// as the bot sent them.
fn passthrough(t: &Target) -> Result<(), String> {
    let path = unique("/__echo/pass/");
    let query = "b=2&a=%2F1&a=0&empty=&sig=AbC%3D%3D";
    let body = br#"{"client_order_id":"x-1","side":"BUY","size":"0.0010"}"#;
    let reply = send(
        "POST",
        &format!("{}{path}?{query}", t.base),
        &[
            ("CB-ACCESS-KEY", "conf-key-pass"),
            ("CB-ACCESS-SIGN", "c2lnbmF0dXJl+/="),
            ("CB-ACCESS-TIMESTAMP", "1700000000"),
            ("Content-Type", "application/json"),
            ("X-Syncoord-Client", "conformance"),
        ],
        Some(body),
    )?;
    let echo = echo_of(&reply)?;
    expect(echo["method"] == "POST", || {
        format!("method: {}", echo["method"])
    })?;
    let want_target = format!("{path}?{query}");
    expect(echo["target"] == want_target.as_str(), || {
        format!(
            "target: upstream saw {}, bot sent {want_target}",
            echo["target"]
        )
    })?;
    expect(
        echo["body"] == std::str::from_utf8(body).unwrap_or(""),
        || format!("body changed: {}", echo["body"]),
    )?;
    for (name, value) in [
        ("CB-ACCESS-KEY", "conf-key-pass"),
        ("CB-ACCESS-SIGN", "c2lnbmF0dXJl+/="),
        ("CB-ACCESS-TIMESTAMP", "1700000000"),
    ] {
        expect(echoed_header(&echo, name) == Some(value), || {
            format!(
                "header {name}: upstream saw {:?}",
                echoed_header(&echo, name)
            )
        })?;
    }
    expect(echoed_header(&echo, "x-syncoord-client").is_none(), || {
        "X-Syncoord-* headers must not reach upstream".into()
    })?;
    expect(reply.source() == "miss", || {
        format!("an uncached POST is a miss, got {}", reply.source())
    })
}

fn get_body_dropped(t: &Target) -> Result<(), String> {
    let path = unique("/__echo/getbody/");
    let reply = send(
        "GET",
        &format!("{}{path}", t.base),
        &[
            ("CB-ACCESS-KEY", "conf-key-getbody"),
            ("Keep-Alive", "timeout=5"),
        ],
        Some(b"should not be forwarded"),
    )?;
    let echo = echo_of(&reply)?;
    expect(echo["body"] == "", || {
        format!("a GET body reached upstream: {}", echo["body"])
    })?;
    expect(echoed_header(&echo, "keep-alive").is_none(), || {
        "hop-by-hop Keep-Alive reached upstream".into()
    })
}

fn cache_and_ttl(t: &Target) -> Result<(), String> {
    let url = format!("{}{}", t.base, unique("/__echo/ttl/"));
    let first = get(&url, &[])?;
    let second = get(&url, &[])?;
    expect_status(&first, 200, "first read")?;
    expect((first.source(), second.source()) == ("miss", "hit"), || {
        format!(
            "expected miss then hit, got {} then {}",
            first.source(),
            second.source()
        )
    })?;
    expect(first.body == second.body, || {
        "a cache hit must return the cached body".into()
    })?;
    // RFC 9211's Cache-Status says the same, as the last (closest) cache,
    // with what is left of the hit's lifetime in whole seconds (§2.3: the
    // route's TTL is 1 s, so less than one).
    let statuses = (first.header("cache-status"), second.header("cache-status"));
    expect(
        statuses == (Some("syncoord; fwd=miss"), Some("syncoord; hit; ttl=0")),
        || format!("Cache-Status: expected fwd=miss then hit with ttl=0, got {statuses:?}"),
    )?;
    // The route's TTL is 1 s.
    std::thread::sleep(Duration::from_millis(1600));
    let third = get(&url, &[])?;
    expect(third.source() == "miss", || {
        format!(
            "after the TTL the entry must be refreshed, got {}",
            third.source()
        )
    })?;
    expect(echo_of(&third)?["seq"] != echo_of(&first)?["seq"], || {
        "after the TTL upstream must be asked again".into()
    })
}

/// RFC 9111 §4.4: "A cache MUST invalidate the target URI when it
/// receives a non-error status code in response to an unsafe request
/// method (including methods whose safety is unknown)".
fn writes_invalidate(t: &Target) -> Result<(), String> {
    let url = format!("{}{}", t.base, unique("/__echo/written/"));
    let first = get(&url, &[])?;
    let second = get(&url, &[])?;
    expect((first.source(), second.source()) == ("miss", "hit"), || {
        format!(
            "expected miss then hit, got {} then {}",
            first.source(),
            second.source()
        )
    })?;
    let written = send(
        "PUT",
        &url,
        &[("content-type", "application/json")],
        Some(b"{}"),
    )?;
    expect_status(&written, 200, "PUT of the cached target")?;
    let after = get(&url, &[])?;
    expect(after.source() == "miss", || {
        format!(
            "a read after a successful PUT must go upstream, got {}",
            after.source()
        )
    })?;
    expect(echo_of(&after)?["seq"] != echo_of(&first)?["seq"], || {
        "the read after the write must not get the answer stored before it".into()
    })
}

/// `readers` identical GETs of `url` at once, one thread each; every
/// reader's reply (a panicked reader is an error, not a lost answer).
fn concurrent_gets(
    readers: usize,
    url: &str,
    headers: &[(&str, &str)],
) -> Vec<Result<Reply, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..readers)
            .map(|_| s.spawn(|| get(url, headers)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("reader panicked".into())))
            .collect()
    })
}

fn coalescing(t: &Target) -> Result<(), String> {
    const READERS: usize = 16;
    let url = format!("{}{}", t.base, unique("/__echo/coalesce/"));
    let before = mock_counts(t)?;
    set_faults(t, r#"{"latency_ms": 400}"#)?;
    let replies = concurrent_gets(READERS, &url, &[("CB-ACCESS-KEY", "conf-key-coalesce")]);
    set_faults(t, "{}")?;
    let after = mock_counts(t)?;
    let mut misses = 0;
    for reply in &replies {
        let reply = reply.as_ref().map_err(Clone::clone)?;
        expect_status(reply, 200, "coalesced read")?;
        misses += usize::from(reply.source() == "miss");
    }
    expect(misses == 1, || {
        format!("{READERS} identical reads must make one upstream call, {misses} were misses")
    })?;
    let calls = after.requests - before.requests;
    expect(calls == 1, || {
        format!("{READERS} identical reads reached upstream {calls} times")
    })
}

/// `Cache-Control` on a bot's request (RFC 9111 §5.2.1) and
/// `X-Syncoord-Max-Age`: `Age` on every cached answer, `no-cache` and a
/// zero max-age go upstream, a lenient max-age takes the cache,
/// `only-if-cached` never waits, and fresh reads still coalesce.
fn freshness_directives(t: &Target) -> Result<(), String> {
    let url = format!("{}{}", t.base, unique("/__echo/fresh/"));
    let first = get(&url, &[])?;
    expect_status(&first, 200, "first read")?;
    let hit = get(&url, &[])?;
    expect(hit.source() == "hit" && hit.header("age").is_some(), || {
        format!(
            "a cached answer carries Age, got {} with {:?}",
            hit.source(),
            hit.headers
        )
    })?;
    let seq = |r: &Reply| echo_of(r).map(|e| e["seq"].clone());
    let lenient = get(&url, &[("Cache-Control", "max-age=60")])?;
    expect(lenient.source() == "hit", || {
        format!("max-age=60 takes a young entry, got {}", lenient.source())
    })?;
    let fresh = get(&url, &[("Cache-Control", "no-cache")])?;
    expect(
        fresh.source() == "miss" && seq(&fresh)? != seq(&first)?,
        || format!("no-cache must ask upstream, got {}", fresh.source()),
    )?;
    // The fresh answer replaced the entry.
    let after = get(&url, &[])?;
    expect(
        after.source() == "hit" && seq(&after)? == seq(&fresh)?,
        || "the no-cache answer is what later reads get".into(),
    )?;
    std::thread::sleep(Duration::from_millis(50));
    let header = get(&url, &[("X-Syncoord-Max-Age", "0")])?;
    expect(header.source() == "miss", || {
        format!(
            "X-Syncoord-Max-Age: 0 must ask upstream, got {}",
            header.source()
        )
    })?;
    expect(
        echoed_header(&echo_of(&header)?, "x-syncoord-max-age").is_none(),
        || "X-Syncoord-Max-Age must not reach upstream".into(),
    )?;
    // only-if-cached: the cache, or 504 at once without a call.
    let cached = get(&url, &[("Cache-Control", "only-if-cached")])?;
    expect(cached.status == 200 && cached.source() == "hit", || {
        format!(
            "only-if-cached on a cached entry: {} {}",
            cached.status,
            cached.source()
        )
    })?;
    let before = mock_counts(t)?;
    let started = Instant::now();
    let missing = get(
        &format!("{}{}", t.base, unique("/__echo/fresh/none-")),
        &[("Cache-Control", "only-if-cached")],
    )?;
    expect_status(&missing, 504, "only-if-cached with nothing cached")?;
    expect(started.elapsed() < Duration::from_secs(2), || {
        "only-if-cached must not wait".into()
    })?;
    expect(mock_counts(t)?.requests == before.requests, || {
        "only-if-cached must not call upstream".into()
    })?;
    // Identical reads that need fresh data share one call.
    const READERS: usize = 8;
    let url = format!("{}{}", t.base, unique("/__echo/fresh/coalesce-"));
    let before = mock_counts(t)?;
    set_faults(t, r#"{"latency_ms": 400}"#)?;
    let replies = concurrent_gets(READERS, &url, &[("Cache-Control", "max-age=5")]);
    set_faults(t, "{}")?;
    for reply in &replies {
        expect_status(reply.as_ref().map_err(Clone::clone)?, 200, "max-age read")?;
    }
    let calls = mock_counts(t)?.requests - before.requests;
    expect(calls == 1, || {
        format!("{READERS} identical max-age=5 reads reached upstream {calls} times")
    })
}

fn credential_isolation(t: &Target) -> Result<(), String> {
    let url = format!("{}/api/v3/brokerage/accounts", t.base);
    let as_key = |key: &str| get(&url, &[("CB-ACCESS-KEY", key)]);
    let a1 = as_key("conf-iso-alice")?;
    let b1 = as_key("conf-iso-bob")?;
    let a2 = as_key("conf-iso-alice")?;
    let b2 = as_key("conf-iso-bob")?;
    for reply in [&a1, &b1, &a2, &b2] {
        expect_status(reply, 200, "accounts")?;
    }
    expect(a1.body != b1.body, || {
        "two credentials got the same private accounts body".into()
    })?;
    expect(a2.body == a1.body && b2.body == b1.body, || {
        "a credential was served another credential's accounts".into()
    })?;
    expect(
        a1.text().contains("conf-iso-alice") && b1.text().contains("conf-iso-bob"),
        || "the mock's accounts must name the credential they belong to".into(),
    )?;
    expect(a2.source() == "hit" && b2.source() == "hit", || {
        format!(
            "repeat reads should be per-credential hits, got {} and {}",
            a2.source(),
            b2.source()
        )
    })
}

/// A JWT shaped as Advanced Trade's for key `sub` (never verified).
fn bearer(sub: &str, nonce: &str) -> String {
    fn b64(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
    format!(
        "Bearer {}.{}.sig",
        b64(r#"{"alg":"ES256"}"#),
        b64(&format!(r#"{{"sub":"{sub}","nonce":"{nonce}"}}"#))
    )
}

/// Advanced Trade authenticates the Bearer JWT: its scheme in any case is
/// one identity, and a legacy key beside it is refused, never guessed.
fn identity_per_upstream(t: &Target) -> Result<(), String> {
    let url = format!("{}/api/v3/brokerage/accounts", t.base);
    let sub = unique("organizations/conf/apiKeys/");
    for (i, scheme) in ["Bearer ", "BEARER ", "bearer ", "BeArEr "]
        .iter()
        .enumerate()
    {
        let token = bearer(&sub, &i.to_string()).replacen("Bearer ", scheme, 1);
        let r = get(&url, &[("Authorization", &token)])?;
        expect_status(&r, 200, scheme)?;
        let want = if i == 0 { "miss" } else { "hit" };
        expect(r.source() == want, || {
            format!(
                "`{scheme}`: one key must be one identity, got {}",
                r.source()
            )
        })?;
        expect(r.text().contains(&sub), || {
            format!("upstream must answer for the JWT's key: {}", r.text())
        })?;
    }
    let mallory = bearer(&unique("organizations/conf/apiKeys/mallory-"), "1");
    let before = mock_counts(t)?;
    let r = get(
        &url,
        &[("CB-ACCESS-KEY", "conf-alice"), ("Authorization", &mallory)],
    )?;
    expect_status(&r, 400, "two credentials on a private route")?;
    expect(
        r.header("x-syncoord-error") == Some("ambiguous_credential"),
        || format!("error kind: {:?}", r.header("x-syncoord-error")),
    )?;
    let after = mock_counts(t)?;
    expect(after.requests == before.requests, || {
        "a refused request reached upstream".into()
    })
}

/// `//x`, `/x/` and a reordered query reach upstream as other targets
/// than `/x`: each its own entry.
fn key_is_forwarded_target(t: &Target) -> Result<(), String> {
    let path = unique("/__echo/target/");
    let first = get(&format!("{}{path}?a=1&b=2", t.base), &[])?;
    expect_status(&first, 200, "echo")?;
    let again = get(&format!("{}{path}?a=1&b=2", t.base), &[])?;
    expect(again.source() == "hit", || {
        format!("the same target twice must hit, got {}", again.source())
    })?;
    for other in [
        format!("/{path}?a=1&b=2"),
        format!("{path}/?a=1&b=2"),
        format!("{path}?b=2&a=1"),
    ] {
        let r = get(&format!("{}{other}", t.base), &[])?;
        expect_status(&r, 200, &other)?;
        expect(r.source() != "hit", || {
            format!("`{other}` shared the entry of `{path}?a=1&b=2`")
        })?;
        let echo = echo_of(&r)?;
        expect(echo["target"].as_str() == Some(other.as_str()), || {
            format!("forwarded {:?}, sent {other}", echo["target"])
        })?;
    }
    Ok(())
}

/// A route upstream authenticates answers an anonymous request 401 itself,
/// even after another bot's authenticated answer was cached there.
fn credential_required(t: &Target) -> Result<(), String> {
    let url = format!(
        "{}/api/v3/brokerage/products/BTC-USD?conf={}",
        t.base,
        unique("req")
    );
    let token = bearer(&unique("organizations/conf/apiKeys/req-"), "1");
    let r = get(&url, &[("Authorization", &token)])?;
    expect_status(&r, 200, "products with a JWT")?;
    let before = mock_counts(t)?;
    let r = get(&url, &[])?;
    expect_status(&r, 401, "products without a credential")?;
    expect(
        r.header("x-syncoord-error") == Some("credential_required"),
        || format!("error kind: {:?}", r.header("x-syncoord-error")),
    )?;
    expect(r.header("x-syncoord-cache").is_none(), || {
        "a 401 of ours is not a cached answer".into()
    })?;
    let after = mock_counts(t)?;
    expect(after.requests == before.requests, || {
        "the anonymous request reached upstream".into()
    })
}

/// Names with `_` are dropped (nginx's `underscores_in_headers off`).
fn underscored_headers_dropped(t: &Target) -> Result<(), String> {
    let r = get(
        &format!("{}{}", t.base, unique("/__echo/underscore/")),
        &[("X_Conf", "1"), ("X-Conf", "2")],
    )?;
    expect_status(&r, 200, "echo")?;
    let echo = echo_of(&r)?;
    expect(echoed_header(&echo, "x-conf") == Some("2"), || {
        format!("X-Conf must be forwarded: {echo}")
    })?;
    expect(echoed_header(&echo, "x_conf").is_none(), || {
        format!("X_Conf must not be forwarded: {echo}")
    })
}

/// With a scope paced at 2 calls/s, a trading call sent after a burst of
/// analysis calls overtakes them.
fn priority_under_overload(t: &Target) -> Result<(), String> {
    const LOW: usize = 8;
    let base = unique("/__echo/slow/");
    let order = std::sync::Mutex::new(Vec::new());
    let result: Result<(), String> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..LOW {
            let (url, order) = (format!("{}{base}/low-{i}", t.base), &order);
            handles.push(s.spawn(move || {
                let reply = get(&url, &[("X-Syncoord-Priority", "analysis")])?;
                expect_status(&reply, 200, "analysis call")?;
                order
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push(format!("low-{i}"));
                Ok::<(), String>(())
            }));
        }
        // Let the analysis calls queue up before the order arrives.
        std::thread::sleep(Duration::from_millis(700));
        let url = format!("{}{base}/high", t.base);
        let reply = get(&url, &[("X-Syncoord-Priority", "trading")])?;
        expect_status(&reply, 200, "trading call")?;
        order.lock().map_err(|e| e.to_string())?.push("high".into());
        for h in handles {
            h.join()
                .map_err(|_| "analysis thread panicked".to_string())??;
        }
        Ok(())
    });
    result?;
    let order = order.into_inner().map_err(|e| e.to_string())?;
    let position = order.iter().position(|n| n == "high").unwrap_or(usize::MAX);
    // At 2/s, ~2 analysis calls go out before the order arrives and one
    // more may be in flight; the order must not wait behind the rest.
    expect(position <= 4, || {
        format!(
            "the trading call finished at position {position} of {}: {order:?}",
            order.len()
        )
    })
}

/// Many bots hammering public and private endpoints at once: the mock
/// enforces Coinbase's documented limits, and no 429 reaches it or a bot.
fn zero_429s(t: &Target) -> Result<(), String> {
    const BOTS: usize = 25;
    let before = mock_counts(t)?;
    let deadline = Instant::now() + Duration::from_secs(4);
    let products = ["BTC-USD", "ETH-USD", "SOL-USD"];
    let results: Vec<Result<(u64, u64), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..BOTS)
            .map(|bot| {
                s.spawn(move || {
                    let (mut sent, mut limited) = (0u64, 0u64);
                    let key = format!("conf-bot-{}", bot % 5);
                    let client = format!("bot-{bot}");
                    let mut i = bot;
                    while Instant::now() < deadline {
                        let product = products[i % products.len()];
                        let path = match i % 4 {
                            0 => format!("/api/v3/brokerage/market/products/{product}/ticker"),
                            1 => format!("/api/v3/brokerage/best_bid_ask?product_ids={product}"),
                            2 => "/api/v3/brokerage/accounts".to_owned(),
                            _ => format!(
                                "/api/v3/brokerage/market/products/{product}/candles?granularity=ONE_MINUTE"
                            ),
                        };
                        let reply = get(
                            &format!("{}{path}", t.base),
                            &[("CB-ACCESS-KEY", &key), ("X-Syncoord-Client", &client)],
                        )?;
                        sent += 1;
                        limited += u64::from(reply.status == 429);
                        i += 1;
                    }
                    Ok((sent, limited))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("bot panicked".into())))
            .collect()
    });
    let (mut sent, mut limited) = (0, 0);
    for r in results {
        let (s, l) = r?;
        sent += s;
        limited += l;
    }
    let after = mock_counts(t)?;
    let upstream_429s = after.rate_limited - before.rate_limited;
    expect(sent > BOTS as u64, || {
        format!("only {sent} requests were sent")
    })?;
    expect(limited == 0 && upstream_429s == 0, || {
        format!(
            "{limited} of {sent} bot requests saw 429; upstream answered 429 {upstream_429s} times"
        )
    })
}

fn stale_if_error(t: &Target) -> Result<(), String> {
    let url = format!("{}{}", t.base, unique("/__echo/ttl/stale-"));
    let fresh = get(&url, &[])?;
    expect_status(&fresh, 200, "first read")?;
    std::thread::sleep(Duration::from_millis(1300));
    set_faults(t, r#"{"status": 503, "status_fraction": 1.0}"#)?;
    let stale = get(&url, &[]);
    set_faults(t, "{}")?;
    let stale = stale?;
    expect_status(&stale, 200, "read while upstream fails")?;
    expect(stale.source() == "stale", || {
        format!("expected a stale answer, got {}", stale.source())
    })?;
    expect(stale.body == fresh.body, || {
        "the stale body must be the cached one".into()
    })
}

fn unknown_host_refused(t: &Target) -> Result<(), String> {
    let before = mock_counts(t)?;
    for path in [
        "/https://evil.example.com/api/v3/brokerage/accounts",
        "/https%3A%2F%2Fevil.example.com%2Fapi%2Fv3%2Fbrokerage%2Faccounts",
    ] {
        let reply = get(&format!("{}{path}", t.base), &[])?;
        expect(reply.status == 403, || {
            format!(
                "{path}: expected 403, got {} ({})",
                reply.status,
                reply.text()
            )
        })?;
        expect(reply.text().contains("evil.example.com"), || {
            format!("{path}: the refusal should name the host: {}", reply.text())
        })?;
    }
    let after = mock_counts(t)?;
    expect(after.requests == before.requests, || {
        "a refused request reached upstream".into()
    })
}

/// `origins = ["https://api.coinbase.com"]` on an upstream whose `url` is
/// the mock: a bot that signs for the real host and names it (ccxt's
/// `proxyUrl`, raw or percent-encoded; an absolute-form target natively)
/// reaches the mock with the path and its signature untouched, cached
/// like any request; another port or scheme of that host is still 403.
fn origins(t: &Target) -> Result<(), String> {
    let path = unique("/__echo/origins/");
    let jwt = bearer("organizations/o/apiKeys/origins", "1");
    let forms = [
        format!("{}/https://api.coinbase.com{path}?q=1", t.base),
        format!(
            "{}/https%3A%2F%2Fapi.coinbase.com{}%3Fq%3D1",
            t.base,
            path.replace('/', "%2F")
        ),
    ];
    for (i, url) in forms.iter().enumerate() {
        let reply = get(url, &[("Authorization", &jwt)])?;
        let echo = echo_of(&reply)?;
        expect(echo["target"] == format!("{path}?q=1").as_str(), || {
            format!("{url}: upstream saw {}", echo["target"])
        })?;
        expect(
            echoed_header(&echo, "authorization") == Some(jwt.as_str()),
            || format!("{url}: the JWT must reach upstream unchanged"),
        )?;
        let want = if i == 0 { "miss" } else { "hit" };
        expect(reply.source() == want, || {
            format!(
                "{url}: expected {want} (one cache for both forms), got {}",
                reply.source()
            )
        })?;
    }
    if t.name == "native" {
        let addr = t.base.trim_start_matches("http://");
        let raw = format!(
            "GET https://api.coinbase.com{path}?q=1 HTTP/1.1\r\nHost: api.coinbase.com\r\nAuthorization: {jwt}\r\nConnection: close\r\n\r\n"
        );
        let status = raw_status(&format!("http://{addr}"), raw.as_bytes())?;
        expect(status == Some(200), || {
            format!("absolute-form target for an origin: expected 200, got {status:?}")
        })?;
    }
    let before = mock_counts(t)?;
    for refused in [
        format!("{}/https://api.coinbase.com:444{path}", t.base),
        format!("{}/http://api.coinbase.com{path}", t.base),
        format!("{}/https://api.exchange.coinbase.com{path}", t.base),
    ] {
        let reply = get(&refused, &[])?;
        expect_status(&reply, 403, &refused)?;
    }
    let after = mock_counts(t)?;
    expect(after.requests == before.requests, || {
        "a refused origin reached upstream".into()
    })
}

fn malformed_input(t: &Target) -> Result<(), String> {
    let garbage = raw_status(&t.base, b"THIS IS NOT HTTP\r\n\r\n")?;
    expect(garbage == Some(400), || {
        format!("garbage request line: expected 400, got {garbage:?}")
    })?;
    let huge = format!(
        "GET /api/v3/brokerage/market/products HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let oversized = raw_status(&t.base, huge.as_bytes())?;
    expect(matches!(oversized, Some(431) | Some(400)), || {
        format!("oversized headers: expected 431 (or 400), got {oversized:?}")
    })?;
    let bad_priority = get(
        &format!("{}/__echo/x", t.base),
        &[("X-Syncoord-Priority", "urgent-please")],
    )?;
    expect(
        bad_priority.status == 400 && bad_priority.text().contains("trading"),
        || {
            format!(
                "unknown priority: expected 400 naming the known classes, got {} {}",
                bad_priority.status,
                bad_priority.text()
            )
        },
    )?;
    let still = get(&format!("{}/__echo/after-garbage", t.base), &[])?;
    expect_status(&still, 200, "a normal request after malformed ones")
}

/// A body over `max_body_bytes` (1 MiB, the default) is refused with 413
/// and syncoord's JSON error, and never reaches upstream.
fn body_too_large(t: &Target) -> Result<(), String> {
    let before = mock_counts(t)?;
    let body = vec![b'x'; 1024 * 1024 + 1];
    let reply = send(
        "POST",
        &format!("{}{}", t.base, unique("/__echo/big/")),
        &[("content-type", "application/octet-stream")],
        Some(&body),
    )?;
    expect_status(&reply, 413, "oversized body")?;
    let json = reply.json()?;
    expect(json["error"] == "payload_too_large", || {
        format!("413 body: {json}")
    })?;
    let after = mock_counts(t)?;
    expect(after.requests == before.requests, || {
        "an oversized body reached upstream".into()
    })
}

/// An upstream answer over `max_response_bytes` (256 KiB in the suite's
/// config) is not passed on; the host keeps serving. The call was a POST
/// that upstream received, so its outcome is unknown: `422
/// outcome_unknown` with no retry hint, never a 502 a client retries.
fn response_too_large(t: &Target) -> Result<(), String> {
    // The mock echoes the body back inside a JSON answer.
    let body = vec![b'y'; 300 * 1024];
    let reply = send(
        "POST",
        &format!("{}{}", t.base, unique("/__echo/huge/")),
        &[("content-type", "application/octet-stream")],
        Some(&body),
    )?;
    expect_status(&reply, 422, "answer over max_response_bytes")?;
    expect(
        reply.header("x-syncoord-error") == Some("outcome_unknown")
            && reply.header("retry-after").is_none(),
        || {
            format!(
                "error kind {:?}, retry-after {:?}",
                reply.header("x-syncoord-error"),
                reply.header("retry-after")
            )
        },
    )?;
    let still = get(&format!("{}{}", t.base, unique("/__echo/after-huge/")), &[])?;
    expect_status(&still, 200, "a normal request after an oversized answer")
}

fn endpoints(t: &Target) -> Result<(), String> {
    let stats = get(&format!("{}/api/v1/sync-coordination/stats", t.base), &[])?;
    expect_status(&stats, 200, "stats")?;
    let stats = stats.json()?;
    let totals = &stats["totals"];
    for field in [
        "status",
        "requests",
        "cache_hit_rate",
        "upstream_calls",
        "upstream_429s",
    ] {
        expect(!totals[field].is_null(), || {
            format!("stats totals lack `{field}`: {totals}")
        })?;
    }
    expect(totals["requests"].as_u64().unwrap_or(0) > 0, || {
        format!("stats count no requests after the suite ran: {totals}")
    })?;
    let health = get(&format!("{}/api/v1/sync-coordination/health", t.base), &[])?;
    expect(matches!(health.status, 200 | 503), || {
        format!("health status {}", health.status)
    })?;
    let body = health.json()?;
    expect(body["status"].is_string(), || {
        format!("health body: {body}")
    })?;
    let metrics = get(&format!("{}/metrics", t.base), &[])?;
    expect_status(&metrics, 200, "metrics")?;
    let text = metrics.text();
    // Key names are never published (the credential isolation check ran
    // as `conf-iso-alice`): under the trust model a key name is all one
    // needs to read that key's cache.
    let json = stats.to_string();
    for shown in [&json, &text] {
        expect(
            !shown.contains("conf-iso-alice") && !shown.contains("apiKeys"),
            || {
                format!(
                    "stats or metrics show a key name: {}",
                    &shown[..shown.len().min(2000)]
                )
            },
        )?;
    }
    expect(
        text.contains("# TYPE") && text.contains("syncoord_"),
        || {
            format!(
                "metrics are not Prometheus text: {}",
                &text[..text.len().min(300)]
            )
        },
    )
}

/// `GET /dashboard` is the host's own page (never forwarded upstream),
/// with a strict Content-Security-Policy, and every asset it references
/// is served by the host with the right type.
fn dashboard(t: &Target) -> Result<(), String> {
    let before = mock_counts(t)?;
    let page = get(&format!("{}/dashboard", t.base), &[])?;
    expect_status(&page, 200, "dashboard")?;
    expect(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        || format!("dashboard content-type {:?}", page.header("content-type")),
    )?;
    expect(page.header("x-syncoord-cache").is_none(), || {
        "the dashboard went through the cache: it was forwarded".to_owned()
    })?;
    let csp = page.header("content-security-policy").unwrap_or("");
    expect(
        csp.contains("connect-src 'self'") && !csp.contains("unsafe"),
        || format!("dashboard CSP: {csp:?}"),
    )?;
    let html = page.text();
    let assets: Vec<&str> = html
        .split("\"/dashboard/assets/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    for kind in [".js", ".css"] {
        expect(assets.iter().any(|a| a.ends_with(kind)), || {
            format!("the page references no {kind} asset: {html}")
        })?;
    }
    for asset in &assets {
        let reply = get(&format!("{}/dashboard/assets/{asset}", t.base), &[])?;
        expect_status(&reply, 200, asset)?;
        let want = match asset.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            _ => "text/plain",
        };
        expect(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with(want)),
            || format!("{asset}: content-type {:?}", reply.header("content-type")),
        )?;
        expect(!reply.body.is_empty(), || format!("{asset} is empty"))?;
        if asset.starts_with("dashboard") && asset.ends_with(".js") {
            expect(
                reply.text().contains("/api/v1/sync-coordination/stats"),
                || format!("{asset} does not read the stats endpoint"),
            )?;
        }
    }
    // The asset prefix is the host's own: an unknown name is its 404,
    // never a request upstream.
    let missing = get(&format!("{}/dashboard/assets/nope.js", t.base), &[])?;
    expect_status(&missing, 404, "an unknown dashboard asset")?;
    expect(
        missing.header("x-syncoord-error") == Some("not_found"),
        || format!("unknown asset answered by upstream? {:?}", missing.headers),
    )?;
    let post = send("POST", &format!("{}/dashboard", t.base), &[], Some(b"x"))?;
    expect_status(&post, 405, "POST /dashboard")?;
    let after = mock_counts(t)?;
    expect(after.requests == before.requests, || {
        format!(
            "the dashboard and its assets reached upstream: {} requests",
            after.requests - before.requests
        )
    })
}
