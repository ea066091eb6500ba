//! Property tests of the learning limiter: whatever upstream says and
//! whenever, the effective rate stays within [floor, ceiling] (unless
//! upstream's word is trusted), and GCRA's promise (never more than the
//! effective burst plus the effective rate times any window) holds while
//! the rate moves.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::config::ScopeConfig;
use crate::signals::Stated;

/// 10/s, burst 10, no headroom; learning as `trust` says.
fn limiter(trust: bool) -> (Limiter, Vec<BucketKey>, Config) {
    let mut cfg = Config {
        scopes: BTreeMap::from([(
            "a".to_owned(),
            ScopeConfig {
                rate: 10.0,
                period_secs: 1.0,
                burst: 10,
                per: Keying::Global,
                headroom: 1.0,
            },
        )]),
        ..Config::default()
    };
    cfg.limiter.learn.trust_upstream_limits = trust;
    let l = Limiter::new(&cfg);
    let keys = l.keys(&[cfg.scope_id("a").expect("scope")], None);
    (l, keys, cfg)
}

#[derive(Debug, Clone)]
enum Op {
    /// Time passes (milliseconds).
    Wait(u32),
    /// A call of this cost goes if the limiter lets it.
    Call(u32),
    /// Upstream answers 429 to a call sent this many ms ago.
    TooMany(Option<u32>),
    /// Upstream answers with these signals.
    Says(Option<(u32, u32)>, Option<u32>),
    /// An answer that is not a 429.
    Fine,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..5_000).prop_map(Op::Wait),
        6 => (1u32..4).prop_map(Op::Call),
        1 => proptest::option::of(0u32..3_000).prop_map(Op::TooMany),
        1 => (
            proptest::option::of((1u32..2_000, 1u32..120)),
            proptest::option::of(0u32..30)
        )
            .prop_map(|(s, r)| Op::Says(s, r)),
        2 => Just(Op::Fine),
    ]
}

/// Drives `ops`; returns every dispatch as (instant, cost, the quota it
/// was judged by), checking the rate's bounds after each step.
fn drive(trust: bool, ops: &[Op]) -> Vec<(Instant, u32, Quota)> {
    let (mut l, keys, cfg) = limiter(trust);
    let ceiling = 10.0;
    let floor = ceiling * cfg.limiter.learn.floor;
    let mut rng = fastrand::Rng::with_seed(7);
    let t0 = Instant::now();
    let mut now = t0;
    let mut sent = Vec::new();
    let mut stated_above = false;
    for op in ops {
        match *op {
            Op::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            Op::Call(cost) => {
                let cost = l.fit_cost(&keys, cost);
                if l.check(now, &keys, cost).is_none() {
                    let q = l.quota_of(&keys[0]).expect("scope");
                    l.acquire(now, &keys, cost);
                    sent.push((now, cost, q));
                }
            }
            Op::TooMany(ago) => {
                let at = ago.map(|ms| {
                    now.checked_sub(Duration::from_millis(u64::from(ms)))
                        .unwrap_or(t0)
                });
                l.on_rate_limited(now, &keys, None, &mut rng, at, true);
            }
            Op::Says(stated, remaining) => {
                let signals = Signals {
                    stated: stated.map(|(q, w)| Stated {
                        quota: f64::from(q),
                        window: Duration::from_secs(u64::from(w)),
                    }),
                    remaining: remaining.map(f64::from),
                    reset: Some(Duration::from_secs(1)),
                    used: None,
                };
                stated_above |= signals.stated.is_some_and(|s| s.rate() > ceiling);
                l.on_signals(now, &keys, &signals);
            }
            Op::Fine => l.on_success(&keys),
        }
        let rate = l.quota_of(&keys[0]).expect("scope").rate();
        assert!(
            rate >= floor * (1.0 - 1e-9),
            "{rate} below the floor {floor}"
        );
        if !trust || !stated_above {
            assert!(rate <= ceiling * (1.0 + 1e-9), "{rate} above the ceiling");
        }
    }
    sent
}

/// In every run of dispatches judged by one quota, no window holds more
/// than its burst plus its rate times the window (exact integers).
fn assert_promise(sent: &[(Instant, u32, Quota)]) {
    let mut start = 0;
    while start < sent.len() {
        let q = sent[start].2;
        let end = (start..sent.len())
            .find(|&j| sent[j].2 != q)
            .unwrap_or(sent.len());
        let run = &sent[start..end];
        for i in 0..run.len() {
            let mut units = 0u64;
            for j in i..run.len() {
                units += u64::from(run[j].1);
                let w = (run[j].0 - run[i].0).as_nanos();
                let over = u128::from(units.saturating_sub(u64::from(q.burst())));
                assert!(
                    over * q.interval().as_nanos() <= w,
                    "{units} units in {w} ns at {q:?}"
                );
            }
        }
        start = end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_effective_rate_stays_within_floor_and_ceiling_and_keeps_its_promise(
        ops in proptest::collection::vec(op(), 1..300),
        trust in any::<bool>(),
    ) {
        let sent = drive(trust, &ops);
        assert_promise(&sent);
    }
}

#[test]
fn a_stated_limit_sets_the_rate_and_a_trusted_one_may_exceed_the_ceiling() {
    for (trust, expect) in [(false, 10.0), (true, 20.0)] {
        let (mut l, keys, _) = limiter(trust);
        let now = Instant::now();
        let says = |q: f64, w: u64| Signals {
            stated: Some(Stated {
                quota: q,
                window: Duration::from_secs(w),
            }),
            ..Signals::default()
        };
        l.on_signals(now, &keys, &says(60.0, 60));
        assert!((l.quota_of(&keys[0]).unwrap().rate() - 1.0).abs() < 1e-6);
        l.on_signals(now, &keys, &says(1200.0, 60));
        let rate = l.quota_of(&keys[0]).unwrap().rate();
        assert!((rate - expect).abs() < 1e-6, "trust {trust}: {rate}");
        let snap = l.snapshot(now);
        assert_eq!(snap[0].learned_from, Some(LearnedFrom::Stated));
    }
}

#[test]
fn old_news_and_storms_cut_once() {
    let (mut l, keys, _) = limiter(false);
    let mut rng = fastrand::Rng::with_seed(1);
    let t0 = Instant::now();
    l.acquire(t0, &keys, 1);
    l.on_rate_limited(t0, &keys, None, &mut rng, Some(t0), true);
    let once = l.quota_of(&keys[0]).unwrap().rate();
    assert!((once - 7.0).abs() < 1e-6, "{once}");
    // A 429 for a call sent before the cut, then one after it with nothing
    // accepted in between (a storm): neither cuts again.
    let later = t0 + Duration::from_secs(5);
    l.on_rate_limited(later, &keys, None, &mut rng, Some(t0), true);
    l.on_rate_limited(later, &keys, None, &mut rng, Some(later), true);
    assert_eq!(l.quota_of(&keys[0]).unwrap().rate(), once);
    // An accepted call, then a 429 on a call sent after the cut: news.
    l.on_success(&keys);
    let again = t0 + Duration::from_secs(10);
    l.on_rate_limited(again, &keys, None, &mut rng, Some(again), true);
    assert!(l.quota_of(&keys[0]).unwrap().rate() < once);
}

#[test]
fn a_learned_rate_expires_back_to_the_ceiling() {
    let (mut l, keys, cfg) = limiter(false);
    let mut rng = fastrand::Rng::with_seed(1);
    let t0 = Instant::now();
    l.on_rate_limited(t0, &keys, None, &mut rng, Some(t0), true);
    assert!(l.quota_of(&keys[0]).unwrap().rate() < 10.0);
    let expired = t0 + secs(cfg.limiter.learn.expire_secs) + Duration::from_secs(120);
    l.forget_idle(expired);
    assert!((l.quota_of(&keys[0]).unwrap().rate() - 10.0).abs() < 1e-6);
}

#[test]
fn learned_rates_survive_a_restart_within_todays_bounds() {
    let (mut l, keys, _) = limiter(false);
    let mut rng = fastrand::Rng::with_seed(1);
    let t0 = Instant::now();
    l.on_rate_limited(t0, &keys, None, &mut rng, Some(t0), true);
    let later = t0 + Duration::from_secs(30);
    let saved = l.learned(later);
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].from, LearnedFrom::RateLimited);
    assert!((saved[0].age_secs - 30.0).abs() < 1e-6);
    // Through JSON, as a state file keeps it.
    let text = serde_json::to_string(&saved).unwrap();
    let back: Vec<LearnedRate> = serde_json::from_str(&text).unwrap();

    let (mut fresh, keys, _) = limiter(false);
    let restart = Instant::now() + Duration::from_secs(100);
    assert_eq!(fresh.restore(restart, &back), 1);
    let rate = fresh.quota_of(&keys[0]).unwrap().rate();
    assert!((rate - 7.0).abs() < 1e-6, "{rate}");
    assert!((fresh.learned(restart)[0].age_secs - 30.0).abs() < 1e-6);

    // Out of bounds, unknown, mis-keyed or expired: clamped or dropped.
    let odd = |scope: &str, credential: Option<&str>, rate: f64, age: f64| LearnedRate {
        scope: scope.into(),
        credential: credential.map(str::to_owned),
        rate_per_sec: rate,
        burst: 5,
        from: LearnedFrom::RateLimited,
        age_secs: age,
    };
    let (mut other, keys, _) = limiter(false);
    let taken = other.restore(
        restart,
        &[
            odd("gone", None, 1.0, 0.0),
            odd("a", Some("id:x"), 1.0, 0.0),
            odd("a", None, f64::NAN, 0.0),
            odd("a", None, 1.0, 1e9),
        ],
    );
    assert_eq!(taken, 0);
    assert_eq!(
        other.restore(restart, &[odd("a", None, 500.0, f64::INFINITY)]),
        0
    );
    assert_eq!(other.restore(restart, &[odd("a", None, 500.0, 0.0)]), 1);
    assert!((other.quota_of(&keys[0]).unwrap().rate() - 10.0).abs() < 1e-6);
}

#[test]
fn another_daemons_lower_rate_is_taken_up_without_emptying_the_bucket() {
    let rate = |rate_per_sec: f64| LearnedRate {
        scope: "a".into(),
        credential: None,
        rate_per_sec,
        burst: 10,
        from: LearnedFrom::RateLimited,
        age_secs: 1.0,
    };
    let (mut l, keys, _) = limiter(false);
    let t0 = Instant::now() + Duration::from_secs(10);
    // Half the burst spent at 10/s: 0.5 s owed.
    for _ in 0..5 {
        assert!(l.check(t0, &keys, 1).is_none());
        l.acquire(t0, &keys, 1);
    }
    assert_eq!(l.adopt(t0, &[rate(5.0)]), 1);
    let q = l.quota_of(&keys[0]).unwrap();
    assert!((q.rate() - 5.0).abs() < 1e-6, "{}", q.rate());
    // Still 5 units owed, now at 5/s: five more go at once, a sixth not.
    for _ in 0..5 {
        assert!(l.check(t0, &keys, 1).is_none(), "the bucket was emptied");
        l.acquire(t0, &keys, 1);
    }
    assert!(l.check(t0, &keys, 1).is_some());
    // A higher rate, or one garbled, changes nothing; a lower one does.
    assert_eq!(l.adopt(t0, &[rate(8.0), rate(f64::NAN)]), 0);
    assert_eq!(l.adopt(t0, &[rate(2.0)]), 1);
    assert!((l.quota_of(&keys[0]).unwrap().rate() - 2.0).abs() < 1e-6);
    // The shared store's bucket runs at the learned rate too.
    let shared = l.shared_buckets(&keys);
    assert!((shared[0].interval.as_secs_f64() - 0.5).abs() < 1e-6);
}

/// A reload that lowers the ceiling under a learned rate cuts the learned
/// rate to it (the effective rate never exceeds the configured one); one
/// that raises it keeps the learned rate, which probes up from there.
#[test]
fn a_reload_clamps_a_learned_rate_to_the_new_ceiling() {
    let (mut l, keys, mut cfg) = limiter(false);
    let t0 = Instant::now();
    let learned = LearnedRate {
        scope: "a".into(),
        credential: None,
        rate_per_sec: 8.0,
        burst: 10,
        from: LearnedFrom::RateLimited,
        age_secs: 0.0,
    };
    assert_eq!(l.restore(t0, &[learned]), 1);
    let scope = cfg.scopes.get_mut("a").expect("scope");
    scope.rate = 4.0;
    let quotas = [Quota::for_scope(scope).expect("valid")];
    l.reconfigure(t0, &cfg, &quotas);
    assert_eq!(l.learned(t0)[0].rate_per_sec, 4.0);
    assert!(l.quota_of(&keys[0]).expect("bucket").rate() <= 4.0);

    let scope = cfg.scopes.get_mut("a").expect("scope");
    scope.rate = 20.0;
    let quotas = [Quota::for_scope(scope).expect("valid")];
    l.reconfigure(t0, &cfg, &quotas);
    assert_eq!(l.learned(t0)[0].rate_per_sec, 4.0, "still what was learned");
}
