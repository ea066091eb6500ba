//! A waiting bot costs no thread (issue 24, defect 1): many bots queued
//! for their turn upstream at once, a thread count that does not grow with
//! them, every one answered, and another bot's cache hits fast meanwhile.
//!
//! `SYNCOORD_WAITERS` (default 1,000) sets how many bots wait; the
//! 10,000-waiter figure of BENCHMARKS.md runs the daemon as its own
//! process (`daemon/examples/waiters.rs`), since 10,000 client sockets
//! and 10,000 server sockets do not fit one process's descriptor limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

mod common;
use common::{agent, get};

/// Threads of this process (the daemon runs in it), from /proc.
fn threads() -> usize {
    status_field("Threads:")
}

fn status_field(name: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("the field is there")
}

/// A daemon in front of `mock` whose `held` scope lets `rate` calls a
/// second through, so that the bots queue, with room for `waiters`.
fn held_daemon(mock: &MockUpstream, rate: f64, waiters: usize) -> Daemon {
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
drain_secs = 1.0
max_connections = {room}

[[upstreams]]
name = "mock"
url = "{url}"
preset = "coinbase-advanced"

[upstreams.coordination.scopes.held]
rate = {rate}
burst = 1
per = "global"
headroom = 1.0

[upstreams.coordination.queue]
max_len = {room}
default_deadline_secs = 60.0

[[upstreams.coordination.routes]]
name = "held"
path = "/__echo/held/**"
scopes = ["held"]
cacheable = false
coalesce = false
priority = "analysis"
"#,
        url = mock.base_url(),
        room = waiters + 100,
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Daemon::start(config).expect("daemon starts")
}

#[test]
fn many_waiting_bots_cost_no_thread_and_hits_stay_fast() {
    let waiters: usize = std::env::var("SYNCOORD_WAITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    // They all wait, and are all answered within about 2.5 s.
    let daemon = held_daemon(&mock, waiters as f64 / 2.5, waiters);
    let base = format!("http://{}", daemon.local_addr());
    let addr = daemon.local_addr();
    let hit_url = format!("{base}/api/v3/brokerage/market/products/BTC-USD/ticker");
    let good = agent();
    assert_eq!(get(&good, &hit_url, &[]).status, 200, "warm-up");
    let baseline = threads();

    let mut bots = Vec::with_capacity(waiters);
    for i in 0..waiters {
        let mut stream = TcpStream::connect(addr).expect("connect");
        write!(
            stream,
            "GET /__echo/held/{i} HTTP/1.1\r\nHost: {addr}\r\nX-Syncoord-Client: bot-{i}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        bots.push(stream);
    }
    // While they wait: a good bot's hits, and the thread count.
    let mut most = threads();
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let reply = get(&good, &hit_url, &[]);
        latencies.push(started.elapsed());
        assert_eq!(reply.status, 200);
        assert_eq!(reply.cache.as_deref(), Some("hit"), "the ticker is cached");
        most = most.max(threads());
        std::thread::sleep(Duration::from_millis(2));
    }
    let rss_kib = status_field("VmRSS:");
    let mut answered = 0;
    for mut stream in bots {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("an answer");
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "a waiting bot got {}",
            reply.lines().next().unwrap_or("nothing")
        );
        answered += 1;
        most = most.max(threads());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    eprintln!(
        "waiters={waiters} answered={answered} threads: baseline={baseline} most={most} rss={rss_kib} KiB hit p99={p99:?}"
    );
    daemon.shutdown();
    mock.shutdown();
    assert_eq!(answered, waiters);
    assert!(
        most <= baseline + 16,
        "the thread count grew with the waiting bots: {baseline} -> {most} for {waiters} waiters"
    );
    assert!(
        p99 < Duration::from_millis(50),
        "a good bot's cache hits p99 {p99:?} while {waiters} bots waited"
    );
}
