//! The learning limiter against upstreams whose real limits differ from
//! the configuration's, in virtual time (issue 25's figures). Run with
//! `-- --nocapture` to see them and the learning curves.

use syncoord_core::config::coinbase;
use syncoord_core::Duration;
use syncoord_proxy::ProxyConfig;
use syncoord_sim::workload::Workload;
use syncoord_sim::{self as sim, Ban, HeaderStyle, Report, Scenario};

const HOURS: u64 = 6;

/// The reference workload (25 bots on one key, upstream 8/min, burst 8)
/// for six hours, the coordinator's budget `generous` times too high.
fn too_generous(generous: f64) -> Scenario {
    let mut s = Scenario::reference(25);
    s.duration = Duration::from_secs(HOURS * 3600);
    for scope in s.config.scopes.values_mut() {
        scope.rate *= generous;
        scope.burst = (f64::from(scope.burst) * generous) as u32;
    }
    s
}

/// The same, configured with the Coinbase Advanced Trade preset as shipped
/// (30/s per key at 90%: some 200 times the real 8/min).
fn preset() -> Scenario {
    let mut s = Scenario::reference(25);
    s.duration = Duration::from_secs(HOURS * 3600);
    s.config = coinbase::advanced_trade();
    s
}

/// With a ban rule: ten 429s within a minute earn ten minutes of 418s.
fn banning(mut s: Scenario) -> Scenario {
    s.upstream.ban = Some(Ban {
        after: 10,
        within: Duration::from_secs(60),
        ban_for: Duration::from_secs(600),
    });
    s
}

/// Upstream states its limit in `style`; the configuration says the
/// `x-ratelimit-limit` window is its period (60 s).
fn stating(mut s: Scenario, style: HeaderStyle) -> Scenario {
    s.upstream.headers = style;
    s.config.limiter.signals.limit_window_secs = Some(60.0);
    s
}

fn accepted(r: &Report) -> u64 {
    r.limits.iter().map(|l| l.accepted).sum()
}

fn per_thousand(r: &Report) -> f64 {
    r.upstream_429s as f64 * 1000.0 / accepted(r).max(1) as f64
}

fn summary(name: &str, r: &Report) {
    let acc = accepted(r);
    let per_min = acc as f64 / r.span.as_secs_f64() * 60.0;
    println!(
        "{name}: accepted {acc} ({per_min:.2}/min), upstream 429s {} ({:.2} per 1000), \
         bot 429s {}, bans {}, failures {:?}",
        r.upstream_429s,
        per_thousand(r),
        r.bot_429s,
        r.bans,
        r.failures
    );
    let curve: Vec<u32> = r
        .learning_curve
        .chunks(15)
        .map(|c| c.iter().sum())
        .collect();
    println!("  429s per 15 min: {curve:?}");
    for b in &r.stats.scopes {
        println!(
            "  {} {:?}: configured {:.3}/s, learned {:?} from {:?}",
            b.scope, b.credential, b.budget_per_sec, b.learned_per_sec, b.learned_from
        );
    }
}

/// Demand exceeds the real limit throughout: at least 90% of it is used.
fn assert_uses_the_limit(name: &str, r: &Report) {
    let per_min = accepted(r) as f64 / r.span.as_secs_f64() * 60.0;
    assert!(per_min >= 0.9 * 8.0, "{name}: {per_min:.2}/min accepted");
    assert_eq!(r.bot_429s, 0, "{name}: a rate-limit error reached a bot");
    assert!(
        !r.failures.contains_key("rate_limited"),
        "{name}: {:?}",
        r.failures
    );
}

#[test]
fn a_configuration_3x_or_200x_too_generous_is_learned_from_429s() {
    for (name, s) in [("3x", too_generous(3.0)), ("preset", preset())] {
        let r = sim::run(&banning(s));
        summary(name, &r);
        assert!(per_thousand(&r) <= 5.0, "{name}: {:.2}", per_thousand(&r));
        assert_uses_the_limit(name, &r);
        assert_eq!(r.bans, 0, "{name}: banned");
        // The learned rate ends near the real 8/min (0.133/s).
        let learned = r.stats.scopes.iter().find_map(|b| b.learned_per_sec);
        let learned = learned.expect("a learned rate");
        assert!((0.09..0.16).contains(&learned), "{name}: {learned}");
        // Most of the 429s are spent in the first quarter hour.
        let first: u32 = r.learning_curve.iter().take(15).sum();
        assert!(u64::from(first) * 2 >= r.upstream_429s.min(4), "{name}");
    }
}

#[test]
fn stated_limits_are_learned_without_429s() {
    for style in [HeaderStyle::XRateLimit, HeaderStyle::RateLimit] {
        let name = format!("preset+{style:?}");
        let r = sim::run(&stating(preset(), style));
        summary(&name, &r);
        assert!(per_thousand(&r) <= 1.0, "{name}: {:.2}", per_thousand(&r));
        assert_uses_the_limit(&name, &r);
    }
}

#[test]
fn a_correct_configuration_loses_nothing_to_learning() {
    // 80 bots on one key against the preset's own limits, for an hour.
    let on = Scenario::coinbase(80);
    let mut off = on.clone();
    off.config.limiter.learn.enabled = false;
    let (on, off) = (sim::run(&on), sim::run(&off));
    summary("coinbase learning", &on);
    summary("coinbase fixed", &off);
    let (a, b) = (accepted(&on) as f64, accepted(&off) as f64);
    assert!(a >= 0.98 * b, "{a} < 98% of {b}");
    assert_eq!(on.upstream_429s, off.upstream_429s);
}

#[test]
fn a_private_limit_far_below_the_presets_is_learned() {
    // 80 bots on one key: some 5.35 calls/s of demand once the cache and
    // refresh-that-pays have done their part (an hour against the preset's
    // own limits); upstream allows 4/s, burst 4, where the preset says
    // 30/s. Demand exceeds the real limit throughout.
    let mut s = Scenario::coinbase(80);
    s.duration = Duration::from_secs(HOURS * 3600);
    s.upstream.limits[0].rate = 4.0;
    s.upstream.limits[0].burst = 4;
    let r = sim::run(&s);
    summary("a seventh", &r);
    let per_sec = accepted(&r) as f64 / r.span.as_secs_f64();
    assert!(per_thousand(&r) <= 5.0, "{:.2}", per_thousand(&r));
    assert!(per_sec >= 0.9 * 4.0, "{per_sec:.2}/s");
    assert_eq!(r.bot_429s, 0);
}

/// Requests that got an answer.
fn answered(r: &Report) -> u64 {
    r.requests - r.failures.values().sum::<u64>()
}

#[test]
fn the_example_workload_loses_no_throughput_to_learning() {
    // examples/workload.toml against the Coinbase defaults (what `syncoord
    // simulate --workload examples/workload.toml` runs), through its
    // 429 storm six hours in: a correct configuration, learning on and
    // off, within 2% of each other.
    let text = include_str!("../../examples/workload.toml");
    let workload = Workload::from_toml_str(text).expect("the example parses");
    let mut config = ProxyConfig::default();
    let on = workload
        .scenario(&config, Duration::from_secs(7 * 3600), None)
        .expect("a scenario");
    for u in &mut config.upstreams {
        u.coordination.limiter.learn.enabled = false;
    }
    let off = workload
        .scenario(&config, Duration::from_secs(7 * 3600), None)
        .expect("a scenario");
    assert!(on.config.limiter.learn.enabled && !off.config.limiter.learn.enabled);
    let (on, off) = (sim::run(&on), sim::run(&off));
    summary("example, learning", &on);
    summary("example, fixed", &off);
    for (what, a, b) in [
        ("accepted calls", accepted(&on), accepted(&off)),
        ("answered requests", answered(&on), answered(&off)),
    ] {
        let (a, b) = (a as f64, b as f64);
        println!(
            "{what}: learning {a}, fixed {b} ({:+.3}%)",
            (a / b - 1.0) * 100.0
        );
        assert!(a >= 0.98 * b, "{what}: {a} < 98% of {b}");
    }
    assert!(on.upstream_429s <= off.upstream_429s);
}
