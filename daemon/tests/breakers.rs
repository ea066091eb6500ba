//! Breakers with a blast radius of one route, end to end: the daemon in
//! front of the mock. Requests the client got wrong (an extension method,
//! a storm of 4xx) never open a breaker; a 5xx storm on one route opens
//! that route's breaker alone, and a route drawing on the same limiter
//! bucket keeps answering.
use syncoord_mock::{Faults, MockOptions, MockUpstream};

mod common;
use common::{agent, daemon, get, raw, stats};

/// Three failures open a breaker, which stays open for the test; no
/// retries, so each request is one call.
const STRICT: &str = r#"
[upstreams.coordination.breaker]
failure_threshold = 3
open_secs = 60.0

[upstreams.coordination.retry]
max_attempts = 1
"#;

#[test]
fn client_errors_never_open_a_breaker_and_a_5xx_storm_stays_on_its_route() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (daemon, base) = daemon(&mock, STRICT);
    let a = agent();
    let market = "/api/v3/brokerage/market/products";

    // An extension method, ten times: whatever becomes of it, it is the
    // client's request, not upstream's failure.
    for _ in 0..10 {
        let answer = raw(
            daemon.local_addr(),
            format!("M-SEARCH {market} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("M-SEARCH"), "{answer}");
    }
    // A 4xx storm: unknown products, each its own path.
    for i in 0..10 {
        let r = get(&a, &format!("{base}{market}/NOPE-{i}/ticker"), &[]);
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    }
    let s = stats(&base);
    assert_eq!(s["upstream"]["breaker_opened"], 0, "{s}");
    assert_eq!(s["breakers"], serde_json::json!([]), "{s}");
    assert_eq!(get(&a, &format!("{base}{market}"), &[]).status, 200);

    // A 5xx storm on candles: three failures open candles' breaker...
    mock.set_faults(Faults {
        status_fraction: 1.0,
        ..Faults::default()
    });
    let candles = |i: u32| format!("{base}{market}/BTC-USD/candles?granularity=ONE_MINUTE&n={i}");
    for i in 0..3 {
        let r = get(&a, &candles(i), &[]);
        assert_eq!(
            (r.status, r.error.as_deref()),
            (502, Some("upstream")),
            "{}",
            r.body
        );
    }
    let r = get(&a, &candles(3), &[]);
    assert_eq!(
        (r.status, r.error.as_deref()),
        (503, Some("breaker_open")),
        "{}",
        r.body
    );
    assert!(r.retry_after.is_some());
    // ...and upstream recovers: the ticker, on the same public bucket,
    // answers, while candles stay refused without a call upstream.
    mock.set_faults(Faults::default());
    let calls_before = stats(&base)["upstream"]["calls"].as_u64();
    let r = get(&a, &format!("{base}{market}/BTC-USD/ticker"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&a, &candles(4), &[]);
    assert_eq!(r.error.as_deref(), Some("breaker_open"), "{}", r.body);
    let s = stats(&base);
    assert_eq!(
        s["upstream"]["calls"].as_u64(),
        calls_before.map(|c| c + 1),
        "only the ticker went upstream: {s}"
    );
    assert_eq!(s["upstream"]["breaker_opened"], 1, "{s}");
    assert_eq!(s["breakers"][0]["route"], "public-candles", "{s}");
    assert_eq!(s["breakers"][0]["state"], "open", "{s}");
    assert_eq!(s["health"]["status"], "degraded", "{s}");
    daemon.shutdown();
    mock.shutdown();
}
