use super::*;

use std::collections::BTreeMap;

use crate::config::ScopeConfig;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn scope(rate: f64, period_secs: f64, burst: u32, per: Keying, headroom: f64) -> ScopeConfig {
    ScopeConfig {
        rate,
        period_secs,
        burst,
        per,
        headroom,
    }
}

/// The reference workload: 8 calls per minute, burst 8, no headroom.
fn eight_per_minute() -> ScopeConfig {
    scope(8.0, 60.0, 8, Keying::Global, 1.0)
}

/// A config with exactly `scopes` (ids follow name order).
fn config(scopes: &[(&str, ScopeConfig)]) -> Config {
    Config {
        scopes: scopes
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..Config::default()
    }
}

fn key(config: &Config, scope: &str, credential: Option<&str>) -> BucketKey {
    BucketKey {
        scope: config.scope_id(scope).expect("scope exists"),
        credential: credential.map(Credential::new),
    }
}

/// 7.5 s: one call at 8 per minute.
const T: Duration = Duration::from_millis(7500);

fn snap<'a>(snaps: &'a [BucketSnapshot], scope: &str, cred: Option<&str>) -> &'a BucketSnapshot {
    snaps
        .iter()
        .find(|b| b.scope == scope && b.credential.as_deref() == cred)
        .expect("bucket in snapshot")
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn full_bucket_admits_exactly_burst_then_reports_refill_instant() {
    let t0 = Instant::now();
    let cfg = config(&[("a", eight_per_minute())]);
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "a", None)];
    for i in 0..8 {
        assert_eq!(l.check(t0, &k, 1), None, "call {i} of the burst");
        l.acquire(t0, &k, 1);
    }
    assert_eq!(l.check(t0, &k, 1), Some(Wait::Until(t0 + T)));
    // One nanosecond early is still too early; at the instant it conforms.
    let just_before = t0 + T - Duration::from_nanos(1);
    assert_eq!(l.check(just_before, &k, 1), Some(Wait::Until(t0 + T)));
    assert_eq!(l.check(t0 + T, &k, 1), None);
    l.acquire(t0 + T, &k, 1);
    assert_eq!(l.check(t0 + T, &k, 1), Some(Wait::Until(t0 + T * 2)));
    // After three intervals of silence, exactly three calls fit again.
    let later = t0 + T * 4;
    for _ in 0..3 {
        assert_eq!(l.check(later, &k, 1), None);
        l.acquire(later, &k, 1);
    }
    assert_eq!(l.check(later, &k, 1), Some(Wait::Until(later + T)));
}

#[test]
fn unknown_bucket_is_a_full_bucket() {
    let t0 = Instant::now();
    let cfg = config(&[("a", eight_per_minute())]);
    let l = Limiter::new(&cfg);
    let unseen = [key(&cfg, "a", Some("x"))];
    assert_eq!(l.check(t0, &unseen, 8), None);
    assert!(
        matches!(l.check(t0, &unseen, 9), Some(Wait::Until(_))),
        "more than the burst never fits, even in a bucket not seen before"
    );
    assert_eq!(l.bucket_count(), 0, "check never creates buckets");
}

#[test]
fn cost_weighted_calls_spend_their_cost() {
    let t0 = Instant::now();
    let cfg = config(&[("a", eight_per_minute())]);
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "a", None)];
    l.acquire(t0, &k, 3);
    l.acquire(t0, &k, 3);
    // Two units left: a cost-3 call waits one interval, cost 2 fits now.
    assert_eq!(l.check(t0, &k, 3), Some(Wait::Until(t0 + T)));
    assert_eq!(l.check(t0, &k, 2), None);
    l.acquire(t0, &k, 2);
    assert_eq!(l.check(t0, &k, 1), Some(Wait::Until(t0 + T)));
    // A cost-8 call needs the whole bucket back: eight intervals.
    assert_eq!(l.check(t0, &k, 8), Some(Wait::Until(t0 + T * 8)));
    assert_eq!(l.check(t0 + T * 8, &k, 8), None);
    let tokens = snap(&l.snapshot(t0 + T * 2), "a", None).tokens;
    assert!(approx(tokens, 2.0), "{tokens}");
}

#[test]
fn headroom_scales_rate_and_floors_burst() {
    let one = |rate, burst, headroom| scope(rate, 1.0, burst, Keying::Global, headroom);
    assert_eq!(usable_burst(&one(10.0, 15, 0.9)), 13, "13.5 floors to 13");
    assert_eq!(usable_burst(&one(10.0, 10, 0.9)), 9);
    assert_eq!(usable_burst(&one(10.0, 30, 1.0)), 30);
    assert_eq!(usable_burst(&one(10.0, 3, 0.5)), 1, "1.5 floors to 1");
    assert_eq!(usable_burst(&one(10.0, 1, 0.5)), 1, "never below one");
    assert_eq!(usable_burst(&one(10.0, 1, 0.01)), 1, "never below one");

    let t0 = Instant::now();
    let cfg = config(&[("p", one(10.0, 15, 0.9))]);
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "p", None)];
    let interval = l.scopes[0].quota.interval();
    // 9 calls per second: one every 1/9 s (to the nanosecond, never faster).
    let exact = 1e9 / 9.0;
    let nanos = interval.as_nanos() as f64;
    assert!(nanos >= exact && nanos - exact < 1.0, "{interval:?}");
    for _ in 0..13 {
        assert_eq!(l.check(t0, &k, 1), None);
        l.acquire(t0, &k, 1);
    }
    assert_eq!(l.check(t0, &k, 1), Some(Wait::Until(t0 + interval)));
    let snaps = l.snapshot(t0);
    let b = snap(&snaps, "p", None);
    assert_eq!(b.burst, 13);
    assert!((b.rate_per_sec - 9.0).abs() < 1e-6, "{}", b.rate_per_sec);
    assert!(b.tokens.abs() < 1e-9);
}

#[test]
fn keys_are_sorted_deduplicated_and_keyed_by_credential_only_where_configured() {
    let cfg = config(&[
        ("a", eight_per_minute()),
        ("b", scope(1.0, 1.0, 2, Keying::Credential, 1.0)),
        ("c", eight_per_minute()),
    ]);
    let l = Limiter::new(&cfg);
    let (a, b, c) = (ScopeId(0), ScopeId(1), ScopeId(2));
    assert_eq!(cfg.scope_id("b"), Some(b));
    let alice = Credential::new("alice");
    let keys = l.keys(&[c, b, a, c], Some(&alice));
    assert_eq!(
        keys,
        vec![
            BucketKey {
                scope: a,
                credential: None
            },
            BucketKey {
                scope: b,
                credential: Some(alice.clone())
            },
            BucketKey {
                scope: c,
                credential: None
            },
        ]
    );
    assert_eq!(
        l.keys(&[b], None),
        vec![BucketKey {
            scope: b,
            credential: None
        }]
    );
    assert_eq!(l.scope_name(b), "b");
    assert_eq!(l.scope_name(ScopeId(9)), "?");
}

#[test]
fn a_call_needs_every_bucket_and_spends_in_all() {
    let t0 = Instant::now();
    let cfg = config(&[
        ("a", eight_per_minute()),
        ("b", scope(8.0, 60.0, 2, Keying::Global, 1.0)),
    ]);
    let mut l = Limiter::new(&cfg);
    let both = l.keys(&[ScopeId(0), ScopeId(1)], None);
    let a = vec![key(&cfg, "a", None)];
    l.acquire(t0, &both, 1);
    l.acquire(t0, &both, 1);
    // `b` (burst 2) is empty; `a` still has six tokens.
    assert_eq!(l.check(t0, &both, 1), Some(Wait::Until(t0 + T)));
    assert_eq!(l.check(t0, &a, 1), None);
    let snaps = l.snapshot(t0);
    assert_eq!(snap(&snaps, "a", None).calls, 2);
    assert_eq!(snap(&snaps, "b", None).calls, 2);
    assert!(approx(snap(&snaps, "a", None).tokens, 6.0));
    // The worst (latest) pacing wait of several buckets is reported.
    for _ in 0..6 {
        l.acquire(t0, &a, 1);
    }
    l.acquire(t0, &a, 1); // overdraw `a` by one: due at t0 + 2T
    assert_eq!(l.check(t0, &both, 1), Some(Wait::Until(t0 + T * 2)));
}

#[test]
fn per_credential_buckets_are_distinct_global_is_shared() {
    let t0 = Instant::now();
    let cfg = config(&[
        ("global", scope(8.0, 60.0, 2, Keying::Global, 1.0)),
        ("private", scope(8.0, 60.0, 2, Keying::Credential, 1.0)),
    ]);
    let mut l = Limiter::new(&cfg);
    let (alice, bob) = (Credential::new("alice"), Credential::new("bob"));
    let private = cfg.scope_id("private").unwrap();
    let global = cfg.scope_id("global").unwrap();
    let pa = l.keys(&[private], Some(&alice));
    let pb = l.keys(&[private], Some(&bob));
    assert_ne!(pa, pb);
    l.acquire(t0, &pa, 2);
    assert!(l.check(t0, &pa, 1).is_some(), "alice spent her bucket");
    assert_eq!(l.check(t0, &pb, 1), None, "bob's bucket is his own");

    let ga = l.keys(&[global], Some(&alice));
    let gb = l.keys(&[global], Some(&bob));
    assert_eq!(ga, gb, "global keying ignores the credential");
    l.acquire(t0, &ga, 2);
    assert_eq!(l.check(t0, &gb, 1), Some(Wait::Until(t0 + T)));
    assert_eq!(l.bucket_count(), 2);
    let snaps = l.snapshot(t0);
    assert_eq!(
        snaps
            .iter()
            .map(|b| (b.scope.as_str(), b.credential.as_deref()))
            .collect::<Vec<_>>(),
        vec![("global", None), ("private", Some("alice"))]
    );
}

/// Drives calls greedily for `horizon` and returns (instant, cost) pairs.
fn greedy(cfg: &Config, scope: &str, horizon: Duration, costs: &[u32]) -> Vec<(Instant, u32)> {
    let t0 = Instant::now();
    let mut l = Limiter::new(cfg);
    let k = vec![key(cfg, scope, None)];
    let mut now = t0;
    let mut sent = Vec::new();
    let mut i = 0;
    while now <= t0 + horizon {
        let cost = costs[i % costs.len()];
        match l.check(now, &k, cost) {
            None => {
                l.acquire(now, &k, cost);
                sent.push((now, cost));
                i += 1;
            }
            Some(Wait::Until(t)) => {
                assert!(t > now, "a wait lies in the future");
                now = t;
                assert_eq!(l.check(now, &k, cost), None, "admitted at the instant");
            }
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    sent
}

/// Every window `[sent[i], sent[j]]` holds at most
/// `burst + rate_num / period_nanos * w` units (integer arithmetic).
fn assert_window_bound(sent: &[(Instant, u32)], burst: u64, rate_num: u128, per_nanos: u128) {
    for i in 0..sent.len() {
        let mut units = 0u64;
        for j in i..sent.len() {
            units += sent[j].1 as u64;
            let w = (sent[j].0 - sent[i].0).as_nanos();
            let over = units.saturating_sub(burst) as u128;
            assert!(
                over * per_nanos <= rate_num * w,
                "{units} units in {w} ns (calls {i}..={j})"
            );
        }
    }
}

#[test]
fn greedy_driving_never_exceeds_burst_plus_rate_in_any_window() {
    // 8 per minute, burst 8: an hour and a half is 8 + 720 calls.
    let cfg = config(&[("a", eight_per_minute())]);
    let sent = greedy(&cfg, "a", s(5400), &[1]);
    assert_eq!(sent.len(), 8 + 720, "the bound is also reached");
    assert_window_bound(&sent, 8, 8, 60_000_000_000);
    // The first eight go at once.
    assert!(sent[..8].iter().all(|(t, _)| *t == sent[0].0));
    assert_eq!(sent[8].0 - sent[0].0, T);

    // Mixed costs.
    let sent = greedy(&cfg, "a", s(3600), &[1, 3, 2, 1, 1]);
    assert_window_bound(&sent, 8, 8, 60_000_000_000);
}

#[test]
fn window_bound_is_exact_even_when_the_interval_is_not_whole_nanoseconds() {
    // 3 per second: 333_333_333.3 ns per call. Rounding the interval down
    // would let one call too many into some window.
    let cfg = config(&[("a", scope(3.0, 1.0, 2, Keying::Global, 1.0))]);
    let sent = greedy(&cfg, "a", s(400), &[1]);
    assert!(sent.len() > 1000);
    assert_window_bound(&sent, 2, 3, 1_000_000_000);
    // 10/s at headroom 0.9: 9 per second, usable burst 13.
    let cfg = config(&[("a", scope(10.0, 1.0, 15, Keying::Global, 0.9))]);
    let sent = greedy(&cfg, "a", s(100), &[1, 2]);
    assert!(sent.len() > 500);
    assert_window_bound(&sent, 13, 9, 1_000_000_000);
}

#[test]
fn upstream_wait_pauses_exactly_that_long_and_empties_the_bucket() {
    let t0 = Instant::now();
    let cfg = config(&[("a", eight_per_minute())]);
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "a", None)];
    let mut rng = fastrand::Rng::with_seed(1);
    l.acquire(t0, &k, 1);
    let now = t0 + s(1);
    assert_eq!(
        l.on_rate_limited(now, &k, Some(s(10)), &mut rng, None, false),
        s(10)
    );
    let until = now + s(10);
    assert_eq!(l.check(now, &k, 1), Some(Wait::Paused(until)));
    assert!(Wait::Paused(until).is_degraded());
    assert!(!Wait::Until(until).is_degraded());
    assert_eq!(
        l.check(until - Duration::from_nanos(1), &k, 1),
        Some(Wait::Paused(until))
    );
    let snaps = l.snapshot(now);
    let b = snap(&snaps, "a", None);
    assert_eq!(b.paused_for_secs, Some(10.0));
    assert_eq!(b.rate_limited, 1);
    assert_eq!(b.calls, 1);
    assert_eq!(b.tokens, 0.0);
    // At the end of the pause the bucket is empty, and at half rate one
    // unit takes two intervals.
    match l.check(until, &k, 1) {
        Some(Wait::Until(t)) => assert_eq!(t, until + T * 2),
        other => panic!("expected pacing after the pause, got {other:?}"),
    }
    let b = l.snapshot(until);
    assert_eq!(b[0].paused_for_secs, None);
    assert_eq!(b[0].tokens, 0.0);
}

#[test]
fn rate_is_throttled_after_a_pause_then_recovers_linearly() {
    let t0 = Instant::now();
    let mut cfg = config(&[("a", eight_per_minute())]);
    cfg.limiter.throttle_factor = 0.5;
    cfg.limiter.recovery_secs = 60.0;
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "a", None)];
    let mut rng = fastrand::Rng::with_seed(2);
    l.acquire(t0, &k, 1);
    l.on_rate_limited(t0, &k, Some(s(5)), &mut rng, None, false);
    let end = t0 + s(5);
    let full = 8.0 / 60.0;
    let rate = |l: &Limiter, at: Instant| l.snapshot(at)[0].rate_per_sec;
    assert!(
        approx(rate(&l, t0), full * 0.5),
        "throttled during the pause"
    );
    let budget = l.snapshot(t0)[0].budget_per_sec;
    assert!(
        approx(budget, full),
        "the budget stays the full rate: {budget}"
    );
    assert!(approx(rate(&l, end), full * 0.5));
    assert!(approx(rate(&l, end + s(15)), full * 0.625));
    assert!(approx(rate(&l, end + s(30)), full * 0.75));
    assert!(approx(rate(&l, end + s(60)), full));
    assert!(approx(rate(&l, end + s(600)), full), "never above full");
    // The throttle lengthens each call: just after the pause one unit
    // costs 2T, by the time that is paid it is cheaper.
    let first = match l.check(end, &k, 1) {
        Some(Wait::Until(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(first, end + T * 2);
    // Greedy: calls during recovery are spaced at least T apart and the
    // spacing shrinks towards T.
    let mut now = first;
    let mut times = vec![];
    while now < end + s(180) {
        match l.check(now, &k, 1) {
            None => {
                l.acquire(now, &k, 1);
                times.push(now);
            }
            Some(Wait::Until(t)) => now = t,
            Some(w) => panic!("{w:?}"),
        }
    }
    // Emptied at `end`, the bucket never lets more than w/T calls into
    // `[end, end + w]`, and fewer while throttled.
    for (j, t) in times.iter().enumerate() {
        assert!(T * (j as u32 + 1) <= *t - end, "call {j} at {:?}", *t - end);
    }
    let in_first_minute = times.iter().filter(|t| **t <= end + s(60)).count();
    assert!(
        (4..8).contains(&in_first_minute),
        "between half and full rate: {in_first_minute}"
    );
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] > T + s(1), "slow at first: {:?}", gaps[0]);
    assert!(
        gaps.iter().rev().take(5).all(|g| *g == T),
        "full rate after recovery: {gaps:?}"
    );
}

#[test]
fn exponential_backoff_without_upstream_wait() {
    let t0 = Instant::now();
    let mut cfg = config(&[("a", eight_per_minute())]);
    cfg.limiter.base_pause_secs = 1.0;
    cfg.limiter.max_pause_secs = 20.0;
    let (base, max) = (s(1), s(20));
    for seed in 0..20 {
        let mut l = Limiter::new(&cfg);
        let k = vec![key(&cfg, "a", None)];
        let mut rng = fastrand::Rng::with_seed(seed);
        l.acquire(t0, &k, 1);
        let mut now = t0;
        let mut last = Duration::ZERO;
        for strike in 1..=8 {
            let pause = l.on_rate_limited(now, &k, None, &mut rng, None, false);
            let ceiling = exponential(base, max, strike);
            assert!(
                pause >= ceiling / 2 && pause <= ceiling,
                "strike {strike}: {pause:?} vs {ceiling:?}"
            );
            if ceiling < max {
                assert!(pause >= last, "grows with strikes");
            }
            assert_eq!(l.check(now, &k, 1), Some(Wait::Paused(now + pause)));
            last = pause;
            now += pause;
        }
        assert_eq!(l.snapshot(now)[0].rate_limited, 8);
        // A success resets the exponent.
        l.on_success(&k);
        let pause = l.on_rate_limited(now, &k, None, &mut rng, None, false);
        assert!(pause >= ms(500) && pause <= s(1), "{pause:?}");
    }
}

#[test]
fn another_429_never_shortens_a_pause() {
    let t0 = Instant::now();
    let cfg = config(&[("a", eight_per_minute())]);
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "a", None)];
    let mut rng = fastrand::Rng::with_seed(3);
    l.acquire(t0, &k, 1);
    assert_eq!(
        l.on_rate_limited(t0, &k, Some(s(30)), &mut rng, None, false),
        s(30)
    );
    // A late 429 with a short wait keeps the long pause.
    assert_eq!(
        l.on_rate_limited(t0 + s(1), &k, Some(s(2)), &mut rng, None, false),
        s(29)
    );
    assert_eq!(l.check(t0 + s(10), &k, 1), Some(Wait::Paused(t0 + s(30))));
    // One that asks for longer extends it.
    assert_eq!(
        l.on_rate_limited(t0 + s(10), &k, Some(s(40)), &mut rng, None, false),
        s(40)
    );
    assert_eq!(l.check(t0 + s(30), &k, 1), Some(Wait::Paused(t0 + s(50))));
    assert_eq!(l.snapshot(t0)[0].rate_limited, 3);
}

#[test]
fn a_pause_outranks_pacing() {
    let t0 = Instant::now();
    let cfg = config(&[("a", eight_per_minute()), ("b", eight_per_minute())]);
    let mut l = Limiter::new(&cfg);
    let (a, b) = (key(&cfg, "a", None), key(&cfg, "b", None));
    let both = vec![a.clone(), b.clone()];
    let mut rng = fastrand::Rng::with_seed(4);
    for _ in 0..8 {
        l.acquire(t0, &both, 1);
    }
    l.acquire(t0, std::slice::from_ref(&b), 8); // b waits until t0 + 9T
    l.on_rate_limited(
        t0,
        std::slice::from_ref(&a),
        Some(s(2)),
        &mut rng,
        None,
        false,
    );
    assert_eq!(l.check(t0, &both, 1), Some(Wait::Paused(t0 + s(2))));
}

#[test]
fn a_429_for_a_forgotten_bucket_still_pauses() {
    // The bucket refills while the call is in flight and housekeeping
    // forgets it; the 429 that then arrives must still pause the scope.
    let t0 = Instant::now();
    let cfg = config(&[("a", eight_per_minute())]);
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "a", None)];
    let mut rng = fastrand::Rng::with_seed(5);
    l.acquire(t0, &k, 1);
    l.forget_idle(t0 + s(10));
    assert_eq!(l.bucket_count(), 0);
    let now = t0 + s(11);
    assert_eq!(
        l.on_rate_limited(now, &k, Some(s(7)), &mut rng, None, false),
        s(7)
    );
    assert_eq!(l.check(now, &k, 1), Some(Wait::Paused(now + s(7))));
}

#[test]
fn forget_idle_drops_only_full_calm_buckets() {
    let t0 = Instant::now();
    let mut cfg = config(&[
        ("full", eight_per_minute()),
        ("busy", eight_per_minute()),
        ("paused", eight_per_minute()),
    ]);
    cfg.limiter.recovery_secs = 60.0;
    let mut l = Limiter::new(&cfg);
    let full = vec![key(&cfg, "full", None)];
    let busy = vec![key(&cfg, "busy", None)];
    let paused = vec![key(&cfg, "paused", None)];
    let mut rng = fastrand::Rng::with_seed(6);
    l.acquire(t0, &full, 1);
    l.acquire(t0, &paused, 1);
    l.on_rate_limited(t0, &paused, Some(s(1)), &mut rng, None, false);
    let now = t0 + s(100);
    l.acquire(now, &busy, 1);
    l.forget_idle(now);
    assert_eq!(l.bucket_count(), 2, "busy and paused hold state");
    // The forgotten one is still listed, full, with its counters: a
    // bucket's series do not vanish while it is quiet.
    let snaps = l.snapshot(now);
    let left: Vec<&str> = snaps.iter().map(|b| b.scope.as_str()).collect();
    assert_eq!(left, vec!["busy", "full", "paused"]);
    let full = snap(&snaps, "full", None);
    assert_eq!((full.calls, full.tokens), (1, 8.0));
    // The busy bucket is forgotten once it has refilled; the paused one
    // only after success clears its strikes (recovery is long over).
    l.on_success(&paused);
    l.forget_idle(now + T);
    assert_eq!(l.bucket_count(), 0);
}

#[test]
fn forget_idle_keeps_a_bucket_still_recovering() {
    let t0 = Instant::now();
    let mut cfg = config(&[("a", eight_per_minute())]);
    cfg.limiter.recovery_secs = 120.0;
    let mut l = Limiter::new(&cfg);
    let k = vec![key(&cfg, "a", None)];
    let mut rng = fastrand::Rng::with_seed(7);
    l.acquire(t0, &k, 1);
    l.on_rate_limited(t0, &k, Some(s(1)), &mut rng, None, false);
    l.on_success(&k);
    // Full again at 1 s + 8T = 61 s, but the rate only recovers at 121 s.
    l.forget_idle(t0 + s(61));
    assert_eq!(l.bucket_count(), 1);
    l.forget_idle(t0 + s(121) - Duration::from_nanos(1));
    assert_eq!(l.bucket_count(), 1);
    l.forget_idle(t0 + s(121));
    assert_eq!(l.bucket_count(), 0);
}

#[test]
fn snapshot_reports_tokens_pause_and_counters() {
    let t0 = Instant::now();
    let cfg = config(&[
        ("a", eight_per_minute()),
        ("p", scope(8.0, 60.0, 8, Keying::Credential, 1.0)),
    ]);
    let mut l = Limiter::new(&cfg);
    let a = vec![key(&cfg, "a", None)];
    let p = l.keys(&[ScopeId(1)], Some(&Credential::new("k1")));
    for _ in 0..3 {
        l.acquire(t0, &a, 1);
    }
    l.acquire(t0, &p, 2);
    let snaps = l.snapshot(t0);
    assert_eq!(snaps.len(), 2);
    let b = snap(&snaps, "a", None);
    assert!(approx(b.tokens, 5.0), "{}", b.tokens);
    assert_eq!((b.calls, b.rate_limited, b.burst), (3, 0, 8));
    assert_eq!(b.paused_for_secs, None);
    assert!(approx(b.rate_per_sec, 8.0 / 60.0));
    let b = snap(&snaps, "p", Some("k1"));
    assert!(approx(b.tokens, 6.0));
    assert_eq!(b.calls, 1, "calls count calls, not cost");
    // Refill is linear and stops at the burst.
    let b = l.snapshot(t0 + T + T / 2);
    assert!(approx(snap(&b, "a", None).tokens, 6.5));
    let b = l.snapshot(t0 + s(3600));
    assert!(approx(snap(&b, "a", None).tokens, 8.0));
    // A pause shows its remaining time and empties the bucket.
    let mut rng = fastrand::Rng::with_seed(8);
    l.on_rate_limited(t0 + s(1), &a, Some(ms(2500)), &mut rng, None, false);
    let b = l.snapshot(t0 + s(2));
    let b = snap(&b, "a", None);
    assert_eq!(b.paused_for_secs, Some(1.5));
    assert_eq!(b.tokens, 0.0);
    assert_eq!(b.rate_limited, 1);
}

#[test]
fn bucket_counters_outlive_forgotten_buckets() {
    let t0 = Instant::now();
    let cfg = config(&[
        ("a", eight_per_minute()),
        ("p", scope(8.0, 60.0, 8, Keying::Credential, 1.0)),
    ]);
    let mut l = Limiter::new(&cfg);
    // A global scope is listed before its first call; a per-credential
    // one has no bucket before a credential uses it.
    let snaps = l.snapshot(t0);
    assert_eq!(snaps.len(), 1);
    assert_eq!((snaps[0].scope.as_str(), snaps[0].calls), ("a", 0));
    let a = vec![key(&cfg, "a", None)];
    let p = l.keys(&[ScopeId(1)], Some(&Credential::new("k1")));
    l.acquire(t0, &a, 1);
    l.acquire(t0, &p, 1);
    // Both refill and are forgotten; their counts stay, and go on from
    // there when they are used again (no counter reset).
    l.forget_idle(t0 + s(60));
    assert_eq!(l.bucket_count(), 0);
    l.acquire(t0 + s(61), &a, 1);
    let snaps = l.snapshot(t0 + s(61));
    assert_eq!(snap(&snaps, "a", None).calls, 2);
    assert_eq!(snap(&snaps, "p", Some("k1")).calls, 1);
    // The credential's counters go an hour after its last call; the
    // global scope's never do.
    l.forget_idle(t0 + s(3599));
    assert_eq!(l.snapshot(t0 + s(3599)).len(), 2);
    l.forget_idle(t0 + s(3600) + s(61));
    let left: Vec<String> = l
        .snapshot(t0 + s(3600) + s(61))
        .into_iter()
        .map(|b| b.scope)
        .collect();
    assert_eq!(left, vec!["a"]);
}
