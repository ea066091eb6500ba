//! The learning limiter against upstreams whose real limits differ from
//! the configuration's, in virtual time (issue 25's figures).

use syncoord_core::config::coinbase;
use syncoord_core::Duration;
use syncoord_sim::{self as sim, Ban, HeaderStyle, Report, Scenario};

const HOURS: u64 = 6;

/// The reference workload (25 bots on one key, upstream 8/min, burst 8)
/// for six hours, the coordinator configured `generous` times too high.
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
/// (30/s per key, 10/s public: some 200 times the real 8/min).
fn preset() -> Scenario {
    let mut s = Scenario::reference(25);
    s.duration = Duration::from_secs(HOURS * 3600);
    s.config = coinbase::advanced_trade();
    s
}

fn accepted(r: &Report) -> u64 {
    r.limits.iter().map(|l| l.accepted).sum()
}

fn summary(name: &str, r: &Report) {
    let acc = accepted(r);
    let per_min = acc as f64 / r.span.as_secs_f64() * 60.0;
    println!(
        "{name}: accepted {acc} ({per_min:.2}/min), 429s {} ({:.2} per 1000), bot 429s {}, bans {}, failures {:?}",
        r.upstream_429s,
        r.upstream_429s as f64 * 1000.0 / acc.max(1) as f64,
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
            "  {} {:?}: configured {:.3}/s learned {:?} from {:?}",
            b.scope, b.credential, b.budget_per_sec, b.learned_per_sec, b.learned_from
        );
    }
}

#[test]
fn figures() {
    for (name, s) in [("3x", too_generous(3.0)), ("preset", preset())] {
        let r = sim::run(&s);
        summary(name, &r);
    }
    let mut s = preset();
    s.upstream.ban = Some(Ban {
        after: 10,
        within: Duration::from_secs(60),
        ban_for: Duration::from_secs(600),
    });
    summary("preset+ban", &sim::run(&s));
    for style in [HeaderStyle::XRateLimit, HeaderStyle::RateLimit] {
        let mut s = preset();
        s.upstream.headers = style;
        s.config.limiter.signals.limit_window_secs = Some(60.0);
        summary(&format!("preset+{style:?}"), &sim::run(&s));
    }
}
