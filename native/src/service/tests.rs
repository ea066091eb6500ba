//! CoinbaseClient over a real host and an in-process fake upstream that
//! answers by path and records what it was sent.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use syncoord_core::config::coinbase;
use syncoord_core::{Config, Outcome, Response};
use syncoord_wire::Outgoing;

use super::{CoinbaseClient, ServiceError, StaticHeaders, BROKERAGE};
use crate::host::{Coordinator, HostOptions, Upstream};

const GUARD: Duration = Duration::from_secs(10);

/// Answers with `answer(call)`; while the gate is closed, calls whose path
/// contains `/ticker` block in it. Every call is recorded and announced.
struct Fake {
    answer: fn(&Outgoing) -> Response,
    sent: Mutex<Vec<Outgoing>>,
    open: Mutex<bool>,
    opened: Condvar,
    entered: Mutex<mpsc::Sender<String>>,
}

impl Upstream for Fake {
    fn send(&self, call: &Outgoing) -> Outcome {
        self.sent.lock().unwrap().push(call.clone());
        let _ = self
            .entered
            .lock()
            .unwrap()
            .send(call.path_and_query.clone());
        if call.path_and_query.contains("/ticker") {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
        Outcome::response((self.answer)(call))
    }
}

fn echo(call: &Outgoing) -> Response {
    let body = json!({
        "method": call.method,
        "path": call.path_and_query,
        "body": String::from_utf8_lossy(&call.body),
    });
    Response::new(200, body.to_string())
}

struct Setup {
    client: CoinbaseClient,
    fake: Arc<Fake>,
    entered: mpsc::Receiver<String>,
    host: Coordinator,
}

fn setup(config: Config, answer: fn(&Outgoing) -> Response, gate_open: bool) -> Setup {
    let (tx, rx) = mpsc::channel();
    let fake = Arc::new(Fake {
        answer,
        sent: Mutex::new(Vec::new()),
        open: Mutex::new(gate_open),
        opened: Condvar::new(),
        entered: Mutex::new(tx),
    });
    let upstream: Arc<dyn Upstream> = fake.clone();
    let options = HostOptions {
        upstream_threads: 1,
        seed: Some(3),
        ..HostOptions::default()
    };
    let host = Coordinator::start(config.compile().unwrap(), upstream, options).unwrap();
    let signer = Arc::new(StaticHeaders::new(&[("CB-ACCESS-KEY", "key-1")]));
    let client = CoinbaseClient::new(host.clone(), signer, "bot-a").with_wait_limit(GUARD);
    Setup {
        client,
        fake,
        entered: rx,
        host,
    }
}

fn config() -> Config {
    let mut config = coinbase::advanced_trade();
    config.retry.max_attempts = 1;
    config
}

#[test]
fn typed_calls_hit_the_advanced_trade_paths_signed() {
    let s = setup(config(), echo, true);
    let c = &s.client;
    let cases: Vec<(Value, &str)> = vec![
        (c.product("BTC-USD").unwrap(), "/products/BTC-USD"),
        (
            c.best_bid_ask(&["BTC-USD", "ETH-USD"]).unwrap(),
            "/best_bid_ask?product_ids=BTC-USD&product_ids=ETH-USD",
        ),
        (
            c.candles("BTC-USD", 1, 61, "ONE_MINUTE").unwrap(),
            "/products/BTC-USD/candles?start=1&end=61&granularity=ONE_MINUTE",
        ),
        (
            c.product_book("BTC-USD", Some(5)).unwrap(),
            "/product_book?product_id=BTC-USD&limit=5",
        ),
        (
            c.accounts(Some(2), Some("a b&c")).unwrap(),
            "/accounts?limit=2&cursor=a%20b%26c",
        ),
        (c.account("uuid-1").unwrap(), "/accounts/uuid-1"),
        (
            c.list_orders(&[("order_status", "OPEN"), ("order_status", "PENDING")])
                .unwrap(),
            "/orders/historical/batch?order_status=OPEN&order_status=PENDING",
        ),
        (
            c.fills(&[("product_id", "BTC-USD")]).unwrap(),
            "/orders/historical/fills?product_id=BTC-USD",
        ),
    ];
    for (value, path) in cases {
        assert_eq!(value["method"], "GET");
        assert_eq!(value["path"], format!("{BROKERAGE}{path}"));
    }
    let order = json!({"client_order_id": "c1", "product_id": "BTC-USD", "side": "BUY"});
    let created = c.create_order(&order).unwrap();
    assert_eq!(created["method"], "POST");
    assert_eq!(created["path"], format!("{BROKERAGE}/orders"));
    assert_eq!(created["body"], order.to_string());
    let cancelled = c.cancel_orders(&["o1", "o2"]).unwrap();
    assert_eq!(
        cancelled["path"],
        format!("{BROKERAGE}/orders/batch_cancel")
    );
    assert_eq!(cancelled["body"], r#"{"order_ids":["o1","o2"]}"#);

    let sent = s.fake.sent.lock().unwrap();
    for call in sent.iter() {
        assert!(call
            .headers
            .contains(&("CB-ACCESS-KEY".into(), "key-1".into())));
    }
    let post = sent.iter().find(|c| c.method == "POST").unwrap();
    assert!(post
        .headers
        .contains(&("Content-Type".into(), "application/json".into())));
}

#[test]
fn orders_go_before_balances_before_candles() {
    let s = setup(config(), echo, false);
    // The only worker is held by a ticker call; the rest queue.
    let blocker = {
        let c = s.client.clone();
        thread::spawn(move || c.ticker("BTC-USD", 1))
    };
    let first = s.entered.recv_timeout(GUARD).unwrap();
    assert!(first.contains("/ticker"));
    let spawn = |f: fn(&CoinbaseClient) -> Result<Value, ServiceError>| {
        let c = s.client.clone();
        thread::spawn(move || f(&c))
    };
    let candles = spawn(|c| c.candles("BTC-USD", 1, 61, "ONE_MINUTE"));
    wait_queued(&s.host, 2);
    let accounts = spawn(|c| c.accounts(None, None));
    wait_queued(&s.host, 3);
    let order = spawn(|c| c.create_order(&json!({"client_order_id": "c2"})));
    wait_queued(&s.host, 4);
    *s.fake.open.lock().unwrap() = true;
    s.fake.opened.notify_all();
    for t in [blocker, candles, accounts, order] {
        t.join().unwrap().unwrap();
    }
    let order: Vec<String> = s
        .fake
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.path_and_query.clone())
        .collect();
    assert!(order[1].ends_with("/orders"), "{order:?}");
    assert!(order[2].ends_with("/accounts"), "{order:?}");
    assert!(order[3].contains("/candles"), "{order:?}");
}

/// Waits (hang-guarded) until `n` requests are open in the coordinator.
fn wait_queued(host: &Coordinator, n: usize) {
    let start = std::time::Instant::now();
    while host.waiting() < n {
        assert!(start.elapsed() < GUARD, "requests never queued");
        thread::yield_now();
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_client_error_is_upstream_status_and_not_retryable() {
    let s = setup(
        config(),
        |_| Response::new(400, r#"{"error":"INVALID"}"#),
        true,
    );
    match s.client.product("NOPE") {
        Err(e @ ServiceError::UpstreamStatus { status: 400, .. }) => {
            assert!(!e.is_retryable());
            assert_eq!(e.retry_after(), None);
            assert!(e.to_string().contains("INVALID"));
        }
        other => panic!("expected UpstreamStatus, got {other:?}"),
    }
}

#[test]
fn a_rate_limit_is_retryable_with_a_hint() {
    let s = setup(
        config(),
        |_| Response::new(429, "slow down").with_header("Retry-After", "7"),
        true,
    );
    match s.client.account("a1") {
        Err(e @ ServiceError::RateLimited { .. }) => {
            assert!(e.is_retryable());
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[test]
fn bad_json_is_decode() {
    let s = setup(config(), |_| Response::new(200, "<html>"), true);
    match s.client.product("BTC-USD") {
        Err(e @ ServiceError::Decode { .. }) => assert!(!e.is_retryable()),
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn passthrough_and_shutdown() {
    let s = setup(config(), echo, true);
    let got = s
        .client
        .passthrough("post", "/api/v3/brokerage/orders/preview", Some(b"{}"))
        .unwrap();
    assert_eq!(got["method"], "POST");
    assert_eq!(got["path"], "/api/v3/brokerage/orders/preview");
    s.host.shutdown(Duration::ZERO);
    match s.client.product("BTC-USD") {
        Err(e @ ServiceError::ShuttingDown) => assert!(!e.is_retryable()),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
}

#[test]
fn a_client_wait_limit_cancels() {
    let s = setup(config(), echo, false);
    let client = s.client.clone().with_wait_limit(Duration::from_millis(30));
    match client.ticker("BTC-USD", 1) {
        Err(e @ ServiceError::TimedOut { .. }) => assert!(e.is_retryable()),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert_eq!(s.host.waiting(), 0);
    *s.fake.open.lock().unwrap() = true;
    s.fake.opened.notify_all();
}
