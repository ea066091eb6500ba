//! Every order's fate on record: an order whose answer did not reach its
//! bot is counted in stats and metrics, and its bot (the same credential,
//! or the same client token) can ask for it by client order id.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

mod common;
use common::{agent, get, stats};

const ORDERS: &str = "/api/v1/sync-coordination/orders";

fn order_request(client_order_id: &str, key: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"client_order_id":"{client_order_id}","product_id":"BTC-USD","side":"BUY","order_configuration":{{"market_market_ioc":{{"quote_size":"10"}}}}}}"#
    );
    format!(
        "POST /api/v3/brokerage/orders HTTP/1.1\r\nHost: syncoord\r\nCB-ACCESS-KEY: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A daemon in front of `mock` whose upstream calls time out after
/// `upstream_timeout` seconds.
fn daemon(mock: &MockUpstream, upstream_timeout: f64) -> (Daemon, String) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\nupstream_timeout_secs = {upstream_timeout}\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    (daemon, base)
}

fn wait_for(base: &str, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
    let guard = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(base);
        if ready(&s) {
            return;
        }
        assert!(Instant::now() < guard, "never saw {what}: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lookup(base: &str, id: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let reply = get(&agent(), &format!("{base}{ORDERS}/{id}"), headers);
    let body = serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, body)
}

fn metrics(base: &str) -> String {
    get(&agent(), &format!("{base}/metrics"), &[]).body
}

#[test]
fn an_order_whose_bot_hung_up_is_counted_and_its_late_answer_kept_for_its_owner() {
    let mock = MockUpstream::start(MockOptions {
        latency: Duration::from_millis(1500),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let (daemon, base) = daemon(&mock, 20.0);
    let addr: SocketAddr = daemon.local_addr();
    let mut bot = TcpStream::connect(addr).expect("connect");
    bot.write_all(&order_request("gone-1", "key-a"))
        .expect("sent");
    wait_for(&base, "the order in flight", |s| s["calls_in_flight"] == 1);
    drop(bot);
    wait_for(&base, "the late answer", |s| {
        s["orders"]["late_answers"]["200"] == 1
    });
    let s = stats(&base);
    assert_eq!(s["orders"]["bot_gone"], 1, "{s}");
    assert_eq!(s["orders"]["outcome_unknown"], 0, "{s}");
    // Its owner reconnects and asks.
    let (status, found) = lookup(&base, "gone-1", &[("CB-ACCESS-KEY", "key-a")]);
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["fate"], "answered_late", "{found}");
    assert_eq!(found["status"], 200, "{found}");
    assert_eq!(found["body"]["success"], true, "{found}");
    assert_eq!(found["path"], "/api/v3/brokerage/orders", "{found}");
    // Nobody else.
    let (status, other) = lookup(&base, "gone-1", &[("CB-ACCESS-KEY", "key-b")]);
    assert_eq!(status, 404, "{other}");
    let (status, anonymous) = lookup(&base, "gone-1", &[]);
    assert_eq!(status, 403, "{anonymous}");
    // An id it never sent.
    let (status, _) = lookup(&base, "never-sent", &[("CB-ACCESS-KEY", "key-a")]);
    assert_eq!(status, 404);
    let text = metrics(&base);
    assert!(
        text.contains("syncoord_orders_undelivered_total{upstream=\"mock\",fate=\"bot_gone\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("syncoord_orders_late_answers_total{upstream=\"mock\",status=\"200\"} 1"),
        "{text}"
    );
    // Another method on our path is refused here, never forwarded.
    let mut refused = TcpStream::connect(addr).expect("connect");
    refused
        .write_all(b"DELETE /api/v1/sync-coordination/orders/gone-1 HTTP/1.1\r\nHost: localhost\r\nCB-ACCESS-KEY: key-a\r\nConnection: close\r\n\r\n")
        .expect("sent");
    let mut answer = String::new();
    let _ = refused.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    // One order upstream: the lookups are ours, never forwarded.
    assert_eq!(mock.stats().requests_total, 1);
    daemon.shutdown();
    mock.shutdown();
}

#[test]
fn an_order_answered_outcome_unknown_is_counted_and_on_record() {
    // Upstream takes 3 s; the call times out after 0.5 s, after it left.
    let mock = MockUpstream::start(MockOptions {
        latency: Duration::from_secs(3),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let (daemon, base) = daemon(&mock, 0.5);
    let mut bot = TcpStream::connect(daemon.local_addr()).expect("connect");
    bot.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    bot.write_all(&order_request("unknown-1", "key-a"))
        .expect("sent");
    let mut answer = String::new();
    let _ = bot.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    let s = stats(&base);
    assert_eq!(s["orders"]["outcome_unknown"], 1, "{s}");
    let (status, found) = lookup(&base, "unknown-1", &[("CB-ACCESS-KEY", "key-a")]);
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["fate"], "outcome_unknown", "{found}");
    assert!(metrics(&base).contains(
        "syncoord_orders_undelivered_total{upstream=\"mock\",fate=\"outcome_unknown\"} 1"
    ));
    daemon.shutdown();
    mock.shutdown();
}
