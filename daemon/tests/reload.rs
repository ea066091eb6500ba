//! Hot reload under load (issue 23): bots read and place orders while the
//! daemon goes from configuration A to a bad one, to B and back to A. No
//! request fails because of it, no order is sent twice or lost, the cache
//! keeps answering, upstream never says 429, a token added or removed by
//! a reload is accepted or refused at once, and a credential it adds signs
//! at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncoord_daemon::{Daemon, HostSecrets, ReloadError};
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;
use syncoord_wire::token_sha256_hex;

mod common;
use common::{agent, get};

const BOTS: &str = "0b7f3c9e2a4d6f8101b3c5d7e9f20416a8c0e2f4b6d8fa1c3e5a7c9e1b3d5f70";
const OLD: &str = "5e1d9c7b3a2f4e6d8c0b2a4f6e8d0c2b4a6f8e0d2c4b6a8f0e2d4c6b8a0f2e4d";
const NEW: &str = "a3c5e7f9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5";

/// `a`: the bots' token and OLD, market data kept 5 s. `b`: the bots'
/// token and NEW (OLD gone), market data kept 1 s, a shorter request
/// timeout, a smaller private budget and a smaller request body bound
/// (live), and an event-loop count that only a restart applies.
fn text(mock: &MockUpstream, variant: char) -> String {
    let (second, ttl, timeout, max_body, loops, desk, private) = match variant {
        'a' => (OLD, 5.0, 30.0, 1 << 20, 2, "desk", 30),
        _ => (NEW, 1.0, 20.0, 2048, 1, "desk2", 25),
    };
    format!(
        r#"[server]
listen = "127.0.0.1:0"
drain_secs = 1.0
request_timeout_secs = {timeout}
max_body_bytes = {max_body}
event_loops = {loops}

[[upstreams]]
name = "mock"
url = "{url}"
preset = "coinbase-advanced"

[upstreams.coordination.scopes.private]
rate = {private}
burst = {private}
per = "credential"
headroom = 0.9

[[upstreams.coordination.routes]]
name = "public-market"
ttl_secs = {ttl}

[[credentials]]
name = "desk"
upstream = "mock"
kind = "coinbase-cdp"
key_name = "organizations/o/apiKeys/desk"
private_key_file = "ed.key"

[[credentials]]
name = "desk2"
upstream = "mock"
kind = "coinbase-cdp"
key_name = "organizations/o/apiKeys/desk2"
private_key_file = "ed2.key"

[[clients]]
name = "bots"
token_sha256 = "{bots}"
credentials = ["desk"]

[[clients]]
name = "other"
token_sha256 = "{second}"
credentials = ["{desk}"]
"#,
        url = mock.base_url(),
        bots = token_sha256_hex(BOTS),
        second = token_sha256_hex(second),
    )
}

fn config(text: &str) -> ProxyConfig {
    ProxyConfig::from_toml_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn status_with(base: &str, token: &str) -> u16 {
    get(
        &agent(),
        &format!("{base}/api/v3/brokerage/accounts"),
        &[("X-Syncoord-Token", token)],
    )
    .status
}

/// The status of a POST with a `len`-byte body and no token, on a raw
/// connection: the front door answers 413 before any handler sees it;
/// within the bound the handler refuses it (401), nothing goes upstream.
fn post_status(daemon: &Daemon, len: usize) -> u16 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(daemon.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /api/v3/brokerage/orders HTTP/1.1\r\nHost: x\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    // The front door may answer and close before reading the body.
    let _ = c.write_all(&vec![b' '; len]);
    let mut seen = [0u8; 12];
    c.read_exact(&mut seen).unwrap();
    String::from_utf8_lossy(&seen[9..12]).parse().unwrap()
}

/// A folder holding the signing key (an Ed25519 seed, mode 0600).
fn key_dir() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("syncoord-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("ed.key");
    std::fs::write(&key, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = dir.join("ed2.key");
    std::fs::write(&key, "IB8eHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

#[test]
fn reloads_under_load_fail_nothing_and_tokens_change_at_once() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let dir = key_dir();
    let secrets = HostSecrets::relative_to(&dir);
    let daemon =
        Daemon::start_with_secrets(config(&text(&mock, 'a')), &secrets).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    assert_eq!(status_with(&base, OLD), 200);
    assert_eq!(status_with(&base, NEW), 401, "not a client's yet");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (reads, hits, orders) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut bots = Vec::new();
    for i in 0..6 {
        let (stop, failures, reads, hits) =
            (stop.clone(), failures.clone(), reads.clone(), hits.clone());
        let base = base.clone();
        bots.push(std::thread::spawn(move || {
            let agent = agent();
            let paths = [
                "/api/v3/brokerage/market/products/BTC-USD",
                "/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1",
                "/api/v3/brokerage/accounts",
            ];
            let key = format!("reader-{}", i % 2);
            while !stop.load(Ordering::Relaxed) {
                for path in paths {
                    let r = get(
                        &agent,
                        &format!("{base}{path}"),
                        &[("X-Syncoord-Token", BOTS), ("X-Syncoord-Client", &key)],
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                    if r.cache.as_deref().is_some_and(|c| {
                        c.eq_ignore_ascii_case("hit") || c.eq_ignore_ascii_case("stale")
                    }) {
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                    if r.status != 200 {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("GET {path}: {} {}", r.status, r.body));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }
    for i in 0..2 {
        let (stop, failures, orders) = (stop.clone(), failures.clone(), orders.clone());
        let base = base.clone();
        bots.push(std::thread::spawn(move || {
            let agent = agent();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!(
                    r#"{{"client_order_id":"reload-{i}-{n}","product_id":"BTC-USD","side":"BUY","order_configuration":{{"market_market_ioc":{{"quote_size":"10"}}}}}}"#
                );
                let answer = agent
                    .post(format!("{base}/api/v3/brokerage/orders"))
                    .header("X-Syncoord-Token", BOTS)
                    .header("X-Syncoord-Client", format!("trader-{i}"))
                    .header("Content-Type", "application/json")
                    .send(body.as_str());
                match answer {
                    Ok(r) if r.status().as_u16() == 200 => {
                        orders.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("order {i}-{n}: {}", r.status())),
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("order {i}-{n}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        }));
    }

    std::thread::sleep(Duration::from_millis(500));
    // A bad file in between: refused whole, A keeps running.
    let bad = text(&mock, 'b').replace(
        &format!("token_sha256 = \"{}\"", token_sha256_hex(NEW)),
        "token_env = \"SYNCOORD_TEST_RELOAD_UNSET\"",
    );
    let err = daemon
        .reload(config(&bad), &secrets)
        .expect_err("a token that cannot be read");
    assert!(matches!(err, ReloadError::Config(_)), "{err}");
    assert!(
        err.to_string().contains("SYNCOORD_TEST_RELOAD_UNSET"),
        "{err}"
    );
    assert_eq!(status_with(&base, OLD), 200, "A still runs");
    std::thread::sleep(Duration::from_millis(300));

    // A -> B: NEW works and OLD is refused at once; the body bound holds
    // at once; the event-loop count is reported, not applied.
    let started = std::time::Instant::now();
    let done = daemon.reload(config(&text(&mock, 'b')), &secrets).unwrap();
    eprintln!(
        "reload A -> B took {:?} (keys read, rules compiled, swapped)",
        started.elapsed()
    );
    assert_eq!(done.needs_restart, ["server.event_loops"]);
    assert_eq!(post_status(&daemon, 4096), 413, "B's body bound, at once");
    let signed_as_desk2 = || {
        mock.stats()
            .by_credential
            .keys()
            .any(|k| k.contains("desk2"))
    };
    assert!(!signed_as_desk2());
    assert_eq!(status_with(&base, NEW), 200);
    assert!(
        signed_as_desk2(),
        "the credential the reload added signs at once: {:?}",
        mock.stats().by_credential
    );
    assert_eq!(status_with(&base, OLD), 401);
    std::thread::sleep(Duration::from_millis(700));

    // B -> A.
    let done = daemon.reload(config(&text(&mock, 'a')), &secrets).unwrap();
    assert!(done.needs_restart.is_empty(), "{:?}", done.needs_restart);
    assert_eq!(status_with(&base, OLD), 200);
    assert_eq!(status_with(&base, NEW), 401);
    assert_eq!(post_status(&daemon, 4096), 401, "A's body bound again");
    std::thread::sleep(Duration::from_millis(500));

    stop.store(true, Ordering::Relaxed);
    for bot in bots {
        bot.join().expect("bot thread");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");
    let (reads, hits, orders) = (
        reads.load(Ordering::Relaxed),
        hits.load(Ordering::Relaxed),
        orders.load(Ordering::Relaxed),
    );
    eprintln!("reload under load: {reads} reads, {hits} from the cache, {orders} orders");
    let stats = mock.stats();
    let placed = stats
        .by_route
        .get("POST /api/v3/brokerage/orders")
        .copied()
        .unwrap_or(0);
    assert!(orders > 5, "{orders} orders");
    assert_eq!(placed, orders, "every order sent upstream exactly once");
    assert_eq!(stats.rate_limited, 0, "no upstream 429: {stats:?}");
    assert!(
        hits * 2 > reads,
        "the cache kept answering across reloads: {hits} hits of {reads} reads"
    );
    daemon.shutdown();
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
