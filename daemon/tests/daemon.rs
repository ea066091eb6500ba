//! End-to-end tests of the native daemon on loopback: the real daemon in
//! front of the real mock upstream, driven over HTTP. What every host must
//! do is in the conformance suite (`tests/`); these cover what is the
//! native daemon's own: load with 100 bot threads, shedding and deadlines,
//! an upstream restart, graceful shutdown and exact refusals of malformed
//! input. The command line's own tests are in `cli/tests/`.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

mod common;
use common::{agent, daemon, get, raw};

/// A scope that lets one call through per second, for tests that need a
/// queue.
const SLOW: &str = r#"
[upstreams.coordination.scopes.slow]
rate = 1.0
burst = 1
per = "global"
headroom = 1.0

[upstreams.coordination.retry]
max_attempts = 2

[[upstreams.coordination.routes]]
name = "slow"
path = "/__echo/slow/**"
scopes = ["slow"]
cacheable = false
coalesce = false
priority = "analysis"
"#;

#[test]
fn hundred_bots_share_coinbase_limits_without_a_429() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (daemon, base) = daemon(&mock, "");
    let before = mock.stats();
    let deadline = Instant::now() + Duration::from_secs(3);
    let (sent, limited, failed) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for bot in 0..100 {
            let (base, sent, limited, failed) = (&base, &sent, &limited, &failed);
            s.spawn(move || {
                let agent = agent();
                let key = format!("load-key-{}", bot % 10);
                let client = format!("bot-{bot}");
                let product = ["BTC-USD", "ETH-USD", "SOL-USD"][bot % 3];
                let paths = [
                    format!("/api/v3/brokerage/market/products/{product}/ticker"),
                    format!("/api/v3/brokerage/best_bid_ask?product_ids={product}"),
                    "/api/v3/brokerage/accounts".to_owned(),
                ];
                let mut i = 0;
                while Instant::now() < deadline {
                    let reply = get(
                        &agent,
                        &format!("{base}{}", paths[i % paths.len()]),
                        &[("CB-ACCESS-KEY", &key), ("X-Syncoord-Client", &client)],
                    );
                    sent.fetch_add(1, Ordering::Relaxed);
                    match reply.status {
                        200 => {}
                        429 => {
                            limited.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
            });
        }
    });
    let after = mock.stats();
    daemon.shutdown();
    mock.shutdown();
    let sent = sent.into_inner();
    assert!(sent >= 100, "only {sent} requests were made");
    assert_eq!(limited.into_inner(), 0, "429s reached bots");
    assert_eq!(failed.into_inner(), 0, "requests failed");
    assert_eq!(
        (after.rate_limited + after.storm_429s) - (before.rate_limited + before.storm_429s),
        0,
        "upstream answered 429"
    );
    let upstream_calls = after.requests_total - before.requests_total;
    assert!(
        upstream_calls * 10 < sent,
        "{upstream_calls} upstream calls for {sent} requests: the cache is not working"
    );
}

#[test]
fn full_queue_sheds_with_retry_after_and_deadlines_answer_504() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let extra = format!(
        "{SLOW}\n[upstreams.coordination.queue]\nmax_len = 3\ndefault_deadline_secs = 1.5\n"
    );
    let (daemon, base) = daemon(&mock, &extra);
    let statuses: Vec<(u16, Option<String>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let url = format!("{base}/__echo/slow/req-{i}");
                s.spawn(move || {
                    let r = get(&agent(), &url, &[]);
                    (r.status, r.retry_after, r.body)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    daemon.shutdown();
    mock.shutdown();
    let count = |status| statuses.iter().filter(|(s, ..)| *s == status).count();
    assert_eq!(
        count(200) + count(503) + count(504),
        10,
        "every request gets one of 200/503/504: {statuses:?}"
    );
    assert!(count(200) >= 1, "the first call goes through: {statuses:?}");
    let shed = statuses
        .iter()
        .find(|(s, ..)| *s == 503)
        .expect("some are shed");
    assert!(
        shed.1
            .as_deref()
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n >= 1)),
        "a shed answer carries Retry-After in seconds: {shed:?}"
    );
    assert!(shed.2.contains("shed"), "the body says why: {}", shed.2);
    assert!(
        count(504) >= 1,
        "a request past its deadline answers 504: {statuses:?}"
    );
}

#[test]
fn upstream_restart_fails_cleanly_then_recovers() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let addr = mock.addr();
    let (daemon, base) = daemon(&mock, "[upstreams.coordination.retry]\nmax_attempts = 2\n");
    let agent = agent();
    let url = |p: &str| format!("{base}/__echo/restart/{p}");
    assert_eq!(get(&agent, &url("before"), &[]).status, 200);
    mock.shutdown();
    let down = get(&agent, &url("while-down"), &[]);
    assert_eq!(
        down.status, 502,
        "upstream down and nothing cached: {}",
        down.body
    );
    assert!(
        down.body.contains("transport"),
        "502 names the cause: {}",
        down.body
    );
    let options = MockOptions {
        listen: addr.to_string(),
        ..MockOptions::default()
    };
    let mock = MockUpstream::start(options).expect("mock restarts on the same port");
    let back = get(&agent, &url("after"), &[]);
    assert_eq!(
        back.status, 200,
        "recovers once upstream is back: {}",
        back.body
    );
    daemon.shutdown();
    mock.shutdown();
}

#[test]
fn graceful_shutdown_answers_every_queued_request() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (daemon, base) = daemon(&mock, SLOW);
    let answered = AtomicU64::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (url, answered) = (format!("{base}/__echo/slow/drain-{i}"), &answered);
                s.spawn(move || {
                    let reply = get(&agent(), &url, &[]);
                    assert!(
                        matches!(reply.status, 200 | 503),
                        "queued request answered {}: {}",
                        reply.status,
                        reply.body
                    );
                    answered.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        // Let the requests queue behind the 1/s scope, then stop.
        std::thread::sleep(Duration::from_millis(500));
        daemon.shutdown();
        for h in handles {
            h.join().expect("no panic");
        }
    });
    mock.shutdown();
    assert_eq!(
        answered.into_inner(),
        8,
        "every queued request got an answer"
    );
}

#[test]
fn malformed_requests_are_refused_and_the_daemon_keeps_serving() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (daemon, base) = daemon(&mock, "");
    let addr = daemon.local_addr();
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let huge_body = format!(
        "POST /__echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    for (what, bytes, status) in [
        ("garbage", "NOT HTTP AT ALL\r\n\r\n".to_owned(), "400"),
        (
            "bad header",
            "GET / HTTP/1.1\r\nNo colon here\r\n\r\n".to_owned(),
            "400",
        ),
        ("oversized headers", huge_header, "431"),
        ("oversized body", huge_body, "413"),
        (
            "bad content-length",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n".to_owned(),
            "400",
        ),
    ] {
        let reply = raw(addr, bytes.as_bytes());
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: expected {status}, got {:?}",
            reply.lines().next()
        );
    }
    let ok = get(&agent(), &format!("{base}/__echo/after"), &[]);
    assert_eq!(ok.status, 200, "still serving");
    daemon.shutdown();
    mock.shutdown();
}

#[test]
fn listener_prefix_and_absolute_url_pick_the_upstream() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let url = mock.base_url();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [[upstreams]]\nname = \"advanced\"\nurl = \"{url}\"\npreset = \"coinbase-advanced\"\n\n\
         [[upstreams]]\nname = \"exchange\"\nurl = \"{url}/ex\"\npreset = \"coinbase-exchange\"\nprefix = \"/exchange\"\nlisten = \"127.0.0.1:0\"\n"
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let addrs = daemon.local_addrs();
    assert_eq!(addrs.len(), 2, "main listener plus the exchange's own");
    let agent = agent();
    let echo = |base: String, path: &str| -> serde_json::Value {
        let reply = get(&agent, &format!("{base}{path}"), &[]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        serde_json::from_str(&reply.body).expect("echo JSON")
    };
    let main = format!("http://{}", addrs[0]);
    let dedicated = format!("http://{}", addrs[1]);
    // No prefix: the first upstream, path as sent.
    assert_eq!(
        echo(main.clone(), "/__echo/a?x=1")["target"],
        "/__echo/a?x=1"
    );
    // The prefix is stripped and the exchange's base path put in front.
    assert_eq!(
        echo(main.clone(), "/exchange/__echo/b")["target"],
        "/ex/__echo/b"
    );
    // The exchange's own listener: no prefix needed.
    assert_eq!(echo(dedicated, "/__echo/c")["target"], "/ex/__echo/c");
    // An absolute URL naming the exchange's base URL.
    let absolute = format!("/{url}/ex/__echo/d");
    assert_eq!(echo(main.clone(), &absolute)["target"], "/ex/__echo/d");
    let stats: serde_json::Value = serde_json::from_str(
        &get(
            &agent,
            &format!("{main}/api/v1/sync-coordination/stats"),
            &[],
        )
        .body,
    )
    .expect("stats JSON");
    let submitted = |i: usize| stats["upstreams"][i]["stats"]["requests"]["submitted"].as_u64();
    assert_eq!((submitted(0), submitted(1)), (Some(1), Some(3)), "{stats}");
    daemon.shutdown();
    mock.shutdown();
}

/// The first upstream's stats from the daemon's endpoint.
fn upstream_stats(base: &str) -> serde_json::Value {
    let reply = get(
        &agent(),
        &format!("{base}/api/v1/sync-coordination/stats"),
        &[],
    );
    let mut all: serde_json::Value = serde_json::from_str(&reply.body).expect("stats are JSON");
    all["upstreams"][0]["stats"].take()
}

/// Polls the stats until `ready` holds, within a generous hang guard.
fn wait_for_stats(base: &str, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
    let guard = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = upstream_stats(base);
        if ready(&stats) {
            return;
        }
        assert!(Instant::now() < guard, "never saw {what}: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_hangs_up_while_queued_has_its_request_cancelled() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    // One call per 20 s (within the 25 s send-by deadline): the second
    // order waits in the queue.
    let extra = r#"
[upstreams.coordination.scopes.slow]
rate = 1.0
period_secs = 20.0
burst = 1
per = "global"
headroom = 1.0

[[upstreams.coordination.routes]]
name = "slow-orders"
methods = ["POST"]
path = "/__echo/slow/**"
scopes = ["slow"]
cacheable = false
coalesce = false
priority = "trading"
"#;
    let (daemon, base) = daemon(&mock, extra);
    let addr = daemon.local_addr();
    let first = raw(
        addr,
        b"POST /__echo/slow/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // A bot sends its order, then gives up (its own timeout) and hangs up.
    let mut bot = TcpStream::connect(addr).expect("connect");
    bot.write_all(b"POST /__echo/slow/b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .expect("send");
    wait_for_stats(&base, "the order queued", |s| s["queue"]["depth"] == 1);
    drop(bot);

    // The order must not go upstream later, after the bot may have retried
    // it: it is cancelled, and nothing stays queued.
    wait_for_stats(&base, "the order cancelled", |s| {
        s["requests"]["cancelled"] == 1 && s["queue"]["depth"] == 0
    });
    let stats = upstream_stats(&base);
    assert_eq!(stats["requests"]["upstream"], 1, "{stats}");
    daemon.shutdown();
    mock.shutdown();
}

#[test]
fn a_request_that_cannot_be_sent_is_refused_without_touching_the_breaker() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    // Header sections up to 128 KiB are allowed here, so a target can be
    // longer than the HTTP client will ever write (64 KiB).
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\nmax_header_bytes = 131072\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    let long = format!(
        "GET /api/v3/brokerage/market/products?pad={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    for _ in 0..3 {
        let answer = raw(daemon.local_addr(), long.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{}",
            &answer[..answer.len().min(400)]
        );
        assert!(answer.contains("uri too long"), "{answer}");
    }
    let stats = upstream_stats(&base);
    assert_eq!(stats["upstream"]["calls"], 0, "{stats}");
    let market = get(
        &agent(),
        &format!("{base}/api/v3/brokerage/market/products"),
        &[],
    );
    assert_eq!(
        market.status, 200,
        "the scope's breaker stays closed: {}",
        market.body
    );
    daemon.shutdown();
    mock.shutdown();
}

/// An Advanced Trade order, as a raw request that closes its connection.
fn order_request(client_order_id: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"client_order_id":"{client_order_id}","product_id":"BTC-USD","side":"BUY","order_configuration":{{"market_market_ioc":{{"quote_size":"10"}}}}}}"#
    );
    format!(
        "POST /api/v3/brokerage/orders HTTP/1.1\r\nHost: syncoord\r\nCB-ACCESS-KEY: order-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn orders_placed(mock: &MockUpstream) -> u64 {
    mock.stats()
        .by_route
        .get("POST /api/v3/brokerage/orders")
        .copied()
        .unwrap_or(0)
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn an_order_in_flight_at_shutdown_gets_upstreams_answer_not_a_retry_hint() {
    // Upstream takes 2 s; the drain is 1 s. The order left for upstream
    // before the drain ran out, so its bot must get upstream's answer.
    let mock = MockUpstream::start(MockOptions {
        latency: Duration::from_secs(2),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let (daemon, base) = daemon(&mock, "");
    let addr = daemon.local_addr();
    std::thread::scope(|s| {
        let bot = s.spawn(move || raw(addr, &order_request("in-flight-1")));
        wait_for_stats(&base, "the order in flight", |s| s["calls_in_flight"] == 1);
        let started = Instant::now();
        daemon.shutdown();
        let took = started.elapsed();
        let answer = bot.join().expect("bot thread");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(header_of(&answer, "retry-after"), None, "{answer}");
        assert!(answer.contains("\"success\":true"), "{answer}");
        // Upstream's 2 s, not the 20 s upstream timeout.
        assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    });
    assert_eq!(orders_placed(&mock), 1);
    mock.shutdown();
}

#[test]
fn a_forced_stop_says_the_orders_outcome_is_unknown_and_never_to_retry() {
    let mock = MockUpstream::start(MockOptions {
        latency: Duration::from_secs(4),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let (daemon, base) = daemon(&mock, "");
    let addr = daemon.local_addr();
    let stopper = daemon.stopper();
    std::thread::scope(|s| {
        let bot = s.spawn(move || raw(addr, &order_request("forced-1")));
        wait_for_stats(&base, "the order in flight", |s| s["calls_in_flight"] == 1);
        let stopping = s.spawn(move || daemon.shutdown());
        // The second signal.
        std::thread::sleep(Duration::from_millis(100));
        stopper.force();
        let answer = bot.join().expect("bot thread");
        assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
        assert_eq!(header_of(&answer, "retry-after"), None, "{answer}");
        assert_eq!(
            header_of(&answer, "x-syncoord-error"),
            Some("outcome_unknown"),
            "{answer}"
        );
        assert!(answer.contains("client order id"), "{answer}");
        stopping.join().expect("shutdown");
    });
    mock.shutdown();
}

#[test]
fn silent_and_slowloris_clients_never_lock_out_health_or_cached_answers() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    // A bound of 100 connections and a 1 s header timeout; 300 silent
    // connections and 100 slowloris ones (a header byte every 200 ms).
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\nmax_connections = 100\nheader_timeout_secs = 1.0\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let addr = daemon.local_addr();
    let base = format!("http://{addr}");
    let ticker = format!("{base}/api/v3/brokerage/market/products/BTC-USD/ticker");
    assert_eq!(get(&agent(), &ticker, &[]).status, 200);
    let silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            let _ = s.write_all(b"GET /api/v1/sync-coordination/health HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(3);
    let mut answered = 0;
    while Instant::now() < until {
        for s in &mut slow {
            let _ = s.write_all(b"X");
        }
        // A fresh connection each time: a new client must get in.
        let health = raw(
            addr,
            b"GET /api/v1/sync-coordination/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let hit = get(&agent(), &ticker, &[]);
        assert_eq!(hit.status, 200, "{}", hit.body);
        answered += 2;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered >= 10, "{answered}");
    drop((silent, slow));
    daemon.shutdown();
    mock.shutdown();
}
