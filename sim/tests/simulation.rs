//! The reference workload, simulated for 24 hours in virtual time.
//!
//! Run with `cargo test -p syncoord-core --test simulation -- --nocapture`
//! to see the figures.

use std::sync::OnceLock;

use syncoord_core::Duration;
use syncoord_sim::{self as sim, Report, Scenario};

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

/// The reference runs, each simulated once for every test that reads it:
/// 25 and 100 bots, refresh-ahead on and off.
fn reference(bots: usize, refresh: bool) -> &'static Report {
    static RUNS: [OnceLock<Report>; 4] = [const { OnceLock::new() }; 4];
    let i = usize::from(bots == 100) * 2 + usize::from(!refresh);
    RUNS[i].get_or_init(|| {
        let s = Scenario::reference(bots);
        sim::run(&if refresh { s } else { s.without_refresh() })
    })
}

#[test]
fn reference_workload_25_bots_for_24_hours() {
    check_reference(reference(25, true));
}

#[test]
fn reference_workload_100_bots_for_24_hours() {
    let report = reference(100, true);
    check_reference(report);
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
    s.groups[0].credentials = sim::Credentials::Keys(4);
    let report = sim::run(&s);
    assert_eq!(report.cross_credential, 0);
    assert_eq!(report.upstream_429s, 0);
    // Four credentials' balances are four cache keys.
    assert!(report.stats.requests.upstream > 4);
}

#[test]
fn refresh_ahead_uses_only_the_budget_left_over() {
    // The reference workload with refresh-ahead off (the figures above are
    // with it on, as the presets ship).
    let mut on = Scenario::reference(25);
    on.duration = Duration::from_secs(6 * 3600);
    let off = on.clone().without_refresh();
    let (on, off) = (sim::run(&on), sim::run(&off));
    println!("refresh-ahead on:\n{on}\nrefresh-ahead off:\n{off}");
    for r in [&on, &off] {
        assert_eq!(r.upstream_429s, 0);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(r.cache_hit_rate() >= REFERENCE_HIT_RATE);
        // Never more than the paced budget: a burst of 7 (8 at 90%) plus
        // 7.2 calls a minute.
        let calls = r.stats.upstream.calls as f64;
        assert!(calls <= 7.0 + 7.2 * 6.0 * 60.0, "{calls} calls in 6 h");
    }
    assert!(on.stats.upstream.refreshes > 0 && off.stats.upstream.refreshes == 0);
    let (a_on, a_off) = (&on.stats.served_age.all, &off.stats.served_age.all);
    assert!(a_on.mean_secs < a_off.mean_secs, "{a_on:?} vs {a_off:?}");
    // The budget allows no better than K/(2B) on average.
    assert!(a_on.mean_secs >= 0.8 * on.age_bound_secs(), "{a_on:?}");
}

#[test]
fn coinbase_limits_keep_hot_answers_young() {
    let mut on = Scenario::coinbase(25);
    on.duration = Duration::from_secs(15 * 60);
    let off = on.clone().without_refresh();
    let (on, off) = (sim::run(&on), sim::run(&off));
    println!("refresh-ahead on:\n{on}\nrefresh-ahead off:\n{off}");
    for r in [&on, &off] {
        assert_eq!(r.upstream_429s, 0);
        assert_eq!(r.bot_429s, 0);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        // Refresh never costs more calls than the bots would make.
        assert!(r.stats.api_call_reduction > 0.0);
    }
    // Keys read often (tickers, balances) are refreshed; candles, read
    // about 3 times an interval (under the presets' `min_reads` of 8),
    // are fetched by their first reader past 2 s, and the reads that
    // follow join that call: those reads are not hits, but they made no
    // call of their own either.
    assert!(
        on.stats.served_without_upstream_rate >= REFERENCE_HIT_RATE,
        "{:?}",
        on.stats
    );
    // Every read key (min_age 2 s) stays about a second old on average,
    // and no answer is older than the interval plus a round trip: a
    // refreshed key is refreshed at 2 s, a key read seldom is fetched by
    // its first reader past 2 s.
    assert!(
        on.stats.served_age.all.p50_secs <= 1.2,
        "{:?}",
        on.stats.served_age
    );
    assert!(
        on.stats.served_age.all.p99_secs <= 2.5,
        "{:?}",
        on.stats.served_age
    );
    // Without refresh, answers are as old as the TTL lets them be, and
    // more reads miss.
    assert!(
        off.stats.served_age.all.p50_secs >= 2.0,
        "{:?}",
        off.stats.served_age
    );
    assert!(on.cache_hit_rate() > off.cache_hit_rate());
    assert!(on.stats.served_age.all.mean_secs < off.stats.served_age.all.mean_secs);
}

/// `1234567` as `1,234,567`, as the README writes counts.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn wait(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// The README's table of the reference workload is this run's output,
/// figure for figure (the seed is fixed, so the figures are exact).
#[test]
fn readme_states_the_reference_figures() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let (a, b) = (reference(25, true), reference(100, true));
    let (a_off, b_off) = (reference(25, false), reference(100, false));
    let col = |f: &dyn Fn(&Report) -> String| [f(a), f(b)];
    let age = |r: &Report, off: &Report| {
        let (x, y) = (&r.stats.served_age.all, &off.stats.served_age.all);
        format!(
            "{:.1} / {:.1} s ({:.1} / {:.1} s)",
            x.p50_secs, x.p99_secs, y.p50_secs, y.p99_secs
        )
    };
    let trading = |r: &Report| {
        wait(
            r.stats
                .queue
                .classes
                .iter()
                .find(|c| c.class == "trading")
                .map_or(0.0, |c| c.wait.p99_ms),
        )
    };
    let rows: Vec<(&str, &str, [String; 2])> = vec![
        (
            "cache hit rate (fresh + stale)",
            "93.8%",
            col(&|r| format!("**{:.2}%**", r.cache_hit_rate() * 100.0)),
        ),
        (
            "upstream 429s",
            "0",
            col(&|r| format!("**{}**", r.upstream_429s)),
        ),
        (
            "failed requests",
            "",
            col(&|r| r.failures.values().sum::<u64>().to_string()),
        ),
        (
            "bots served",
            "",
            col(&|r| format!("{} / {}", r.bots_served, r.bots)),
        ),
        ("requests", "", col(&|r| thousands(r.requests))),
        (
            "upstream calls (per min), of which refresh-ahead",
            "",
            col(&|r| {
                format!(
                    "{} ({:.2}), {}",
                    thousands(r.stats.upstream.calls),
                    r.stats.upstream.calls as f64 / (24.0 * 60.0),
                    thousands(r.stats.upstream.refreshes)
                )
            }),
        ),
        (
            "API call reduction",
            "",
            col(&|r| format!("{:.2}%", r.stats.api_call_reduction * 100.0)),
        ),
        (
            "served age p50 / p99 (refresh-ahead off)",
            "up to the TTL",
            [age(a, a_off), age(b, b_off)],
        ),
        ("trading queue wait p99", "", col(&trading)),
    ];
    let missing: Vec<String> = rows
        .into_iter()
        .map(|(label, reference, [x, y])| {
            let sep = if reference.is_empty() { "" } else { " " };
            format!("| {label} |{sep}{reference} | {x} | {y} |")
        })
        .filter(|row| !readme.lines().any(|l| l.trim() == row))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md lacks the rows\n{}",
        missing.join("\n")
    );
}

/// A small Coinbase-limits scenario for the workload features below: 10
/// bots on one key reading a ticker and balances every 2 s.
fn small() -> Scenario {
    let mut s = Scenario::coinbase(10);
    s.duration = Duration::from_secs(1800);
    s.groups[0].every = Duration::from_secs(2);
    s
}

#[test]
fn a_429_storm_is_answered_by_upstream_not_by_a_misjudged_budget() {
    let mut s = small();
    s.upstream.faults = vec![sim::Fault {
        kind: sim::FaultKind::RateLimited {
            retry_after: Some(Duration::from_secs(5)),
        },
        start: Duration::from_secs(600),
        duration: Duration::from_secs(60),
    }];
    let storm = sim::run(&s);
    assert!(storm.fault_429s > 0, "the storm answered 429s");
    assert_eq!(storm.upstream_429s, 0, "none past the documented limits");
    // The coordinator backs off: far fewer calls reach a storming upstream
    // than a minute of refreshes and reads would make.
    assert!(storm.fault_429s < 60 * 27, "{}", storm.fault_429s);
    let calm = sim::run(&small());
    assert_eq!(calm.fault_429s, 0);
    assert!(storm.stats.upstream.rate_limited > calm.stats.upstream.rate_limited);
}

#[test]
fn an_outage_is_bridged_with_stale_answers() {
    let mut s = small();
    // Long enough for every entry to expire (Coinbase routes: TTL up to 30 s).
    s.upstream.faults = vec![sim::Fault {
        kind: sim::FaultKind::Outage,
        start: Duration::from_secs(600),
        duration: Duration::from_secs(120),
    }];
    let r = sim::run(&s);
    assert!(
        r.stats.upstream.transport_errors > 0,
        "{:?}",
        r.stats.upstream
    );
    assert!(
        r.stats.requests.stale > 0,
        "stale-if-error bridged the outage"
    );
    assert_eq!(r.upstream_429s, 0);
}

#[test]
fn priority_overrides_and_request_directives_reach_the_core() {
    let mut s = small();
    let g = &mut s.groups[0];
    // Balances asked for as trading, and never older than 100 ms.
    g.calls[1].priority = Some("trading".into());
    g.calls[1].cache_control = Some("max-age=0".into());
    let r = sim::run(&s);
    let class = |name: &str| r.classes.iter().find(|c| c.name == name).cloned();
    let trading = class("trading").expect("trading class");
    let route = r
        .routes
        .iter()
        .find(|b| b.name == "accounts")
        .expect("accounts");
    // Every balances read is a trading request (plus the orders).
    assert!(trading.requests >= route.requests, "{trading:?}");
    assert!(class("account").is_none(), "nothing left in `account`");
    // max-age=0: no balances answer comes from a fresh cache entry older
    // than the request allows.
    assert!(route.served_age.max_secs <= 0.001, "{:?}", route.served_age);
    assert!(route.hit_rate() < 0.5, "{route:?}");
    let plain = sim::run(&small());
    let before = plain
        .routes
        .iter()
        .find(|b| b.name == "accounts")
        .expect("accounts");
    assert!(before.hit_rate() > 0.9, "{before:?}");
}

#[test]
fn bots_on_the_clock_arrive_together() {
    let spread = small();
    let mut aligned = small();
    aligned.groups[0].aligned = true;
    aligned.groups[0].jitter = 0.01;
    aligned.groups[0].every = Duration::from_secs(60);
    let mut spread_60 = spread.clone();
    spread_60.groups[0].every = Duration::from_secs(60);
    let (a, b) = (sim::run(&aligned), sim::run(&spread_60));
    // Same demand, but at the top of the minute every bot asks at once:
    // answers fold into one call (coalesced) instead of hitting the cache.
    assert!(
        a.stats.requests.coalesced > 3 * b.stats.requests.coalesced.max(1),
        "aligned {} vs spread {}",
        a.stats.requests.coalesced,
        b.stats.requests.coalesced
    );
}

#[test]
fn a_bad_scenario_names_its_fields() {
    let mut s = small();
    s.groups[0].calls[0].priority = Some("urgent".into());
    s.groups[0].calls[1].path = "/api/v3/brokerage/{nope}".into();
    s.upstream.limits[0].scope = Some("missing".into());
    let errors = s.check().expect_err("refused").to_string();
    for want in [
        "groups[0].calls[0].priority: no priority class `urgent`",
        "groups[0].calls[1].path: `{nope}` is not a variable",
        "upstream.limits[0].scope: no scope `missing`",
    ] {
        assert!(errors.contains(want), "{errors}");
    }
}

#[test]
fn market_hours_keep_bots_quiet_outside_them() {
    let mut s = small();
    s.duration = Duration::from_secs(2 * 3600);
    let all_day = sim::run(&s);
    // Active 00:30 to 01:00 of the day: a quarter of the two hours.
    s.groups[0].active = Some((Duration::from_secs(1800), Duration::from_secs(3600)));
    let r = sim::run(&s);
    let share = r.evaluations as f64 / all_day.evaluations as f64;
    assert!((0.2..0.3).contains(&share), "{share}");
}
