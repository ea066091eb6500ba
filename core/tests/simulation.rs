//! The reference workload, simulated for 24 hours in virtual time.
//!
//! Run with `cargo test -p syncoord-core --test simulation -- --nocapture`
//! to see the figures.

use syncoord_core::sim::{self, Report, Scenario};
use syncoord_core::Duration;

/// The bar the reference system set.
const REFERENCE_HIT_RATE: f64 = 0.938;

fn check_reference(report: &Report) {
    println!("{report}");
    assert_eq!(report.simulated, Duration::from_secs(24 * 3600));
    assert_eq!(report.upstream_429s, 0, "upstream answered 429");
    assert_eq!(report.bot_429s, 0, "a 429 reached a bot");
    assert_eq!(report.cross_credential, 0);
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    assert_eq!(report.bots_served, report.bots, "every bot served");
    assert!(
        report.cache_hit_rate() >= REFERENCE_HIT_RATE,
        "cache hit rate {:.4} below the reference {REFERENCE_HIT_RATE}",
        report.cache_hit_rate()
    );
    let r = &report.stats.requests;
    assert_eq!(r.submitted, report.requests);
    assert_eq!(r.ended(), r.submitted, "every request ended");
    // A day of 30 s evaluations per bot (less the ones skipped while busy).
    assert!(report.evaluations as usize > report.bots * 2800);
}

#[test]
fn reference_workload_25_bots_for_24_hours() {
    check_reference(&sim::run(&Scenario::reference(25)));
}

#[test]
fn reference_workload_100_bots_for_24_hours() {
    let report = sim::run(&Scenario::reference(100));
    check_reference(&report);
    // Four times the bots, nearly the same upstream traffic: the budget
    // (8/min at 90%) is the ceiling, and it is never exceeded.
    let per_minute = report.stats.upstream.calls as f64 / (24.0 * 60.0);
    assert!(per_minute <= 8.0 * 0.9 + 0.01, "{per_minute} calls/min");
}

#[test]
fn same_seed_same_run() {
    let mut s = Scenario::reference(10);
    s.duration = Duration::from_secs(3600);
    let (a, b) = (sim::run(&s), sim::run(&s));
    assert_eq!(a.stats.requests, b.stats.requests);
    assert_eq!(a.stats.upstream, b.stats.upstream);
    s.seed += 1;
    assert_ne!(sim::run(&s).stats.requests, a.stats.requests);
}

#[test]
fn failing_upstream_degrades_to_stale_without_429s() {
    let mut s = Scenario::reference(25);
    s.duration = Duration::from_secs(6 * 3600);
    s.upstream.error_rate = 0.05;
    s.upstream.timeout_rate = 0.01;
    let report = sim::run(&s);
    println!("{report}");
    let r = &report.stats.requests;
    let u = &report.stats.upstream;
    assert_eq!(report.upstream_429s, 0);
    assert_eq!(report.bot_429s, 0);
    assert_eq!(r.ended(), r.submitted, "every request ended exactly once");
    assert!(
        u.server_errors > 0 && u.transport_errors > 0 && u.retries > 0,
        "{u:?}"
    );
    assert!(r.stale > 0, "stale-if-error served expired entries");
    // Reads are retried or served stale; what fails is mostly orders,
    // which are never retried after a 5xx (they may have gone through).
    let failed: u64 = report.failures.values().sum();
    assert!(
        (failed as f64) < 0.01 * r.submitted as f64,
        "{:?}",
        report.failures
    );
}

#[test]
fn several_credentials_never_see_each_others_balances() {
    let mut s = Scenario::reference(12);
    s.duration = Duration::from_secs(2 * 3600);
    s.credentials = 4;
    let report = sim::run(&s);
    assert_eq!(report.cross_credential, 0);
    assert_eq!(report.upstream_429s, 0);
    // Four credentials' balances are four cache keys.
    assert!(report.stats.requests.upstream > 4);
}
