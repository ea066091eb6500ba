//! Refresh-ahead stops when the bots do, end to end: the daemon in front
//! of the mock, read through HTTP, judged by the stats endpoint and by
//! the mock's own count of the calls it received.
use std::time::{Duration, Instant};

use syncoord_mock::{MockOptions, MockUpstream};

mod common;
use common::{agent, daemon, get, stats};

/// The refresh interval of the market routes here: short, so the test
/// takes a few seconds.
const INTERVAL: Duration = Duration::from_millis(500);

/// The presets' market routes refreshed every 0.5 s, for keys whose
/// answer served 2 reads (so a loaded machine still reads enough).
const FAST_REFRESH: &str = r#"
[upstreams.coordination.refresh]
min_reads = 2

[[upstreams.coordination.routes]]
name = "public-market"
min_age_secs = 0.5
"#;

#[test]
fn refresh_calls_fall_to_zero_within_one_interval_after_the_bots_stop() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (daemon, base) = daemon(&mock, FAST_REFRESH);
    let a = agent();
    let keys = [
        "/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1",
        "/api/v3/brokerage/market/products/ETH-USD/ticker?limit=1",
    ];

    // A bot reads both keys every 20 ms for three intervals.
    let start = Instant::now();
    while start.elapsed() < 3 * INTERVAL {
        for k in keys {
            let r = get(&a, &format!("{base}{k}"), &[]);
            assert_eq!(r.status, 200, "{}", r.body);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = Instant::now();
    let s = stats(&base);
    let while_read = s["upstream"]["refreshes"]
        .as_u64()
        .expect("stats count refreshes");
    assert!(while_read >= 2, "the keys were refreshed while read: {s}");

    // Within one interval of the last read, each key may be refreshed
    // once more (the answer the last read saw was read); then no more.
    std::thread::sleep((stopped + INTERVAL + Duration::from_millis(200)) - Instant::now());
    let s = stats(&base);
    let after_one = s["upstream"]["refreshes"].as_u64().expect("refreshes");
    let calls = s["upstream"]["calls"].as_u64().expect("calls");
    let mock_calls = mock.stats().requests_total;
    assert!(
        after_one - while_read <= keys.len() as u64,
        "{while_read} refreshes when the bot stopped, {after_one} one interval later"
    );

    // Two more intervals: nothing went upstream, by the daemon's stats
    // and by the mock's own count.
    std::thread::sleep(2 * INTERVAL);
    let s = stats(&base);
    assert_eq!(s["upstream"]["refreshes"].as_u64(), Some(after_one), "{s}");
    assert_eq!(s["upstream"]["calls"].as_u64(), Some(calls), "{s}");
    assert_eq!(mock.stats().requests_total, mock_calls);
    daemon.shutdown();
    mock.shutdown();
}
