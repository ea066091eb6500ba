//! A runaway client held to its share of a bucket, in virtual time: the
//! other bots' queue waits stay as they were without it.
//!
//! Run with `cargo test -p syncoord-sim --test shares -- --nocapture` to
//! see the figures.

use std::collections::BTreeMap;

use syncoord_core::config::coinbase;
use syncoord_core::{ClientShare, Duration, Method};
use syncoord_sim::{self as sim, BotGroup, Call, Credentials, Report, Scenario};

/// Simulated seconds per run.
const DURATION: u64 = 300;

/// The runaway's share of the public bucket.
const SHARE: f64 = 0.1;

const MARKET: &str = "/api/v3/brokerage/market/products";

/// Thirty bots reading an order book together every 10 s (on the clock,
/// within half a second of each other), each wanting it fresh (`no-cache`:
/// a call each), against Advanced Trade's preset and documented limits
/// (public: 10/s, burst 10, run at 90%): each stampede is three seconds
/// of the budget, and waits in the queue for up to two of them.
fn fleet() -> Scenario {
    let config = coinbase::advanced_trade();
    let mut upstream = sim::reference_upstream();
    upstream.limits = sim::documented_limits(&config);
    upstream.rules = Some(config.clone());
    // A product each: no bot's call answers another's.
    let products: Vec<String> = (0..30).map(|i| format!("P{i}-USD")).collect();
    let good = BotGroup {
        name: "bot".into(),
        count: 30,
        every: Duration::from_secs(10),
        jitter: 0.05,
        aligned: true,
        active: None,
        credentials: Credentials::OneEach,
        vars: BTreeMap::from([("product".to_owned(), products)]),
        calls: vec![Call::new(
            Method::get(),
            &format!("{MARKET}/{{product}}/book"),
        )],
        share: None,
    };
    let mut good = good;
    good.calls[0].cache_control = Some("no-cache".into());
    Scenario {
        groups: vec![good],
        upstream,
        duration: Duration::from_secs(DURATION),
        config,
        seed: 23,
    }
}

/// One client run amok: six connections asking for candles nobody
/// else reads (a fresh `start` each time, so never cached), as fast as
/// answers come, at the fleet's own priority.
fn runaway(share: Option<f64>) -> BotGroup {
    let mut call = Call::new(
        Method::get(),
        &format!("{MARKET}/BTC-USD/candles?start={{start}}"),
    );
    call.vars = BTreeMap::from([(
        "start".to_owned(),
        (0..100_000)
            .map(|s| (1_700_000_000 + s * 60).to_string())
            .collect(),
    )]);
    call.priority = Some("market".into());
    BotGroup {
        name: "runaway".into(),
        count: 6,
        every: Duration::from_millis(100),
        jitter: 0.2,
        aligned: false,
        active: None,
        credentials: Credentials::Shared,
        vars: BTreeMap::new(),
        calls: vec![call],
        share: share.map(|fraction| ClientShare {
            holder: "runaway".into(),
            fraction,
            refuse: false,
        }),
    }
}

/// The fleet's p99 queue wait (its ticker and book routes), in ms, and
/// how many of its requests waited for a call.
fn fleet_p99(report: &Report) -> (f64, u64) {
    let market = report
        .routes
        .iter()
        .find(|r| r.name == "public-market")
        .expect("the fleet's route");
    (market.queue_wait.p99_ms, market.queue_wait.count)
}

fn run(runaway_share: Option<Option<f64>>) -> Report {
    let mut s = fleet();
    if let Some(share) = runaway_share {
        s.groups.push(runaway(share));
    }
    let report = sim::run(&s);
    assert_eq!(report.upstream_429s, 0, "no 429 upstream");
    report
}

#[test]
fn a_runaway_held_to_its_share_leaves_the_others_p99_wait_within_20_percent() {
    let alone = run(None);
    let held = run(Some(Some(SHARE)));
    let unheld = run(Some(None));
    let (base, n) = fleet_p99(&alone);
    let (with_held, _) = fleet_p99(&held);
    let (with_unheld, _) = fleet_p99(&unheld);
    let candles = |r: &Report| {
        r.routes
            .iter()
            .find(|b| b.name == "public-candles")
            .map_or(0, |b| b.upstream_calls)
    };
    println!(
        "fleet p99 queue wait: alone {base:.1} ms ({n} waits), runaway held to {SHARE} {with_held:.1} ms, runaway unheld {with_unheld:.1} ms; runaway calls: held {}, unheld {} (of {} s)",
        candles(&held),
        candles(&unheld),
        alone.simulated.as_secs()
    );
    assert!(
        n > 800 && base > 0.0,
        "the fleet made calls of its own: {n}"
    );
    assert!(
        with_held <= base * 1.2,
        "held: {with_held:.1} ms against {base:.1} ms alone"
    );
    // The runaway got its share of 9/s, not nothing...
    let secs = held.span.as_secs_f64();
    let rate = candles(&held) as f64 / secs;
    let due = SHARE * 9.0;
    assert!(
        rate >= 0.9 * due && rate <= due + 1.0 / secs,
        "held runaway at {rate:.2}/s, its share {due:.2}/s"
    );
    // ...and without the share it is what hurts the fleet.
    assert!(
        with_unheld > base * 1.2,
        "unheld: {with_unheld:.1} ms against {base:.1} ms alone"
    );
}
