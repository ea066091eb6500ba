//! Sharing a budget and answers through a store, in virtual time: the
//! store is modelled here with [`crate::shared::gcra`], the arithmetic the
//! host's Redis script computes.

use super::*;

use std::collections::HashMap;

use crate::quota::{gcra, Gcra};
use crate::shared::{micros_ceil, SharedOutput, SharedRefusal, StoreState};
use crate::Freshness;
use proptest::prelude::*;

fn sharing(config: Config) -> (C, Instant) {
    let (mut c, t0) = coordinator(config);
    c.enable_sharing();
    (c, t0)
}

/// The shared store: one GCRA state per bucket, in microseconds since `t0`,
/// spending in every bucket of a call or in none (as the script does).
#[derive(Default)]
struct Store {
    tat: HashMap<String, u64>,
    /// Instants (µs) at which calls were let through.
    spent: Vec<u64>,
}

impl Store {
    fn ask(&mut self, t0: Instant, now: Instant, d: &Dispatch<u32>) -> Option<Duration> {
        let now_us = micros_ceil(now - t0);
        let mut wait = 0;
        let mut next = Vec::new();
        for b in &d.shared.buckets {
            let name = format!("{}:{:?}", b.scope, b.credential);
            let t = gcra(
                self.tat.get(&name).copied(),
                now_us,
                micros_ceil(b.interval),
                b.burst,
                d.shared.cost,
                d.shared.reserve,
            );
            match t {
                Gcra::Spend { tat } => next.push((name, tat)),
                Gcra::Wait { wait: w } => wait = wait.max(w),
            }
        }
        if wait > 0 {
            return Some(Duration::from_micros(wait));
        }
        self.tat.extend(next);
        self.spent.push(now_us);
        None
    }
}

#[test]
fn a_dispatch_carries_its_buckets_cost_and_reserve_only_when_sharing() {
    let mut cfg = config(10.0, 4);
    cfg.queue.top_class_reserve = 1;
    let (mut plain, t0) = coordinator(cfg.clone());
    let _ = plain.submit(t0, post("/orders/1"), 1);
    let d = plain.poll_dispatch(t0).expect("dispatched");
    assert!(d.shared.buckets.is_empty());
    assert_eq!(d.shared_key, None);

    let (mut c, t0) = sharing(cfg);
    let _ = c.submit(t0, post("/orders/1"), 1);
    let _ = c.submit(t0, get("/market/btc"), 2);
    let sent = dispatch_all(&mut c, t0);
    let order = &sent[0];
    assert_eq!(order.shared.buckets.len(), 1);
    assert_eq!(order.shared.buckets[0].scope, "api");
    assert_eq!(order.shared.buckets[0].burst, 4);
    assert_eq!(order.shared.buckets[0].interval, Duration::from_millis(100));
    assert_eq!((order.shared.cost, order.shared.reserve), (1, 0));
    assert_eq!(order.shared_key, None, "an order is not cacheable");
    let read = &sent[1];
    assert_eq!(read.shared.reserve, 1, "a lower class leaves the reserve");
    assert_eq!(read.shared_key.as_deref(), Some("GET /market/btc"));
}

/// A shared answer may be older than a bot's `max-age` or `no-cache`
/// accepts: a read bounded so (or joined by one such) is not looked up in
/// the store, while a plain read is.
#[test]
fn a_read_that_bounds_its_age_is_not_answered_from_the_store() {
    let (mut c, t0) = sharing(config(10.0, 4));
    let mut fresh = get("/market/btc");
    fresh.freshness = Freshness::from_headers(&[("Cache-Control".into(), "no-cache".into())]);
    let _ = c.submit(t0, fresh, 1);
    let d = c.poll_dispatch(t0).expect("dispatched");
    assert_eq!(d.shared_key, None, "no-cache");
    assert!(
        !d.shared.buckets.is_empty(),
        "the shared budget still applies"
    );

    let _ = c.submit(t0, get("/market/eth"), 2);
    let mut bounded = get("/market/eth");
    bounded.freshness = Freshness::from_headers(&[("Cache-Control".into(), "max-age=5".into())]);
    assert!(matches!(
        c.submit(t0, bounded, 3),
        Admission::Waiting { joined: true, .. }
    ));
    let d = c.poll_dispatch(t0).expect("dispatched");
    assert_eq!(d.shared_key, None, "joined by a max-age read");

    let _ = c.submit(t0, get("/market/sol"), 4);
    let d = c.poll_dispatch(t0).expect("dispatched");
    assert_eq!(d.shared_key.as_deref(), Some("GET /market/sol"));
}

#[test]
fn a_private_answer_is_shared_under_its_credential() {
    let (mut c, t0) = sharing(config(10.0, 4));
    let req = get("/account/1").with_credential("id:abc");
    let _ = c.submit(t0, req, 1);
    let d = c.poll_dispatch(t0).expect("dispatched");
    assert_eq!(d.shared_key.as_deref(), Some("GET /account/1 id:abc"));
    c.complete(t0, d.call, ok("mine")).unwrap();
    match c.poll_shared() {
        Some(SharedOutput::Store { key, ttl, response }) => {
            assert_eq!(key, "GET /account/1 id:abc");
            assert_eq!(ttl, Duration::from_secs(10));
            assert_eq!(&response.body[..], b"mine");
        }
        other => panic!("expected a Store, got {other:?}"),
    }
    assert!(c.poll_shared().is_none());
}

#[test]
fn a_refusal_requeues_the_call_without_an_attempt_or_backoff() {
    let (mut c, t0) = sharing(config(10.0, 4));
    let t = ticket(c.submit(t0, post("/orders/1"), 1));
    let d = c.poll_dispatch(t0).expect("dispatched");
    c.handle_shared_refusal(t0, d.call, SharedRefusal::Until(Duration::from_millis(350)))
        .unwrap();
    assert_eq!(c.calls_in_flight(), 0);
    assert_eq!(c.queue_len(), 1);
    assert!(
        c.poll_dispatch(t0).is_none(),
        "held until the shared bucket refills"
    );
    assert_eq!(c.poll_timeout(), Some(at(t0, 0.35)));
    let again = c.poll_dispatch(at(t0, 0.35)).expect("sent at T");
    assert_eq!(again.attempt, 1, "the refusal cost no attempt");
    c.complete(at(t0, 0.36), again.call, ok("filled")).unwrap();
    let done = finished(&mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].ticket, t);
    assert_eq!(body(answer_of(&done[0])), "filled");
    let s = c.stats(at(t0, 0.4));
    assert_eq!(s.upstream.calls, 1);
    assert_eq!(s.upstream.retries, 0);
    assert_eq!(s.upstream.shared_refusals, 1);
    // Twice refused, the same call id is no longer in flight.
    assert!(c
        .handle_shared_refusal(
            at(t0, 0.4),
            again.call,
            SharedRefusal::Until(Duration::ZERO)
        )
        .is_err());
}

#[test]
fn a_lower_class_refused_goes_when_the_store_said_not_a_reserve_later() {
    let mut cfg = config(10.0, 4);
    cfg.queue.top_class_reserve = 1;
    let (mut c, t0) = sharing(cfg);
    let _ = c.submit(t0, get("/analysis/x"), 1);
    let d = c.poll_dispatch(t0).expect("dispatched");
    assert_eq!(d.shared.reserve, 1);
    c.handle_shared_refusal(t0, d.call, SharedRefusal::Until(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(c.poll_timeout(), Some(at(t0, 0.3)));
    assert!(c.poll_dispatch(at(t0, 0.299)).is_none());
    assert!(c.poll_dispatch(at(t0, 0.3)).is_some());
}

#[test]
fn a_refused_call_nobody_waits_for_any_more_is_dropped() {
    let (mut c, t0) = sharing(config(10.0, 4));
    let t = ticket(c.submit(t0, post("/orders/1"), 1));
    let d = c.poll_dispatch(t0).expect("dispatched");
    assert!(c.cancel(t));
    c.handle_shared_refusal(t0, d.call, SharedRefusal::Until(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(c.queue_len(), 0);
    assert!(run(&mut c, t0, at(t0, 1.0)).is_empty(), "sent for nobody");
    assert!(finished(&mut c).is_empty());
}

#[test]
fn after_a_refusal_priority_order_holds() {
    let (mut c, t0) = sharing(config(10.0, 4));
    let _ = c.submit(t0, get("/analysis/x"), 1);
    let d = c.poll_dispatch(t0).expect("dispatched");
    c.handle_shared_refusal(t0, d.call, SharedRefusal::Until(Duration::from_secs(1)))
        .unwrap();
    let order = ticket(c.submit(at(t0, 0.5), post("/orders/1"), 2));
    let first = c.poll_dispatch(at(t0, 1.0)).expect("a call at T");
    assert_eq!(
        first.payload, 2,
        "the order goes before the earlier analysis call"
    );
    c.complete(at(t0, 1.0), first.call, ok("o")).unwrap();
    assert_eq!(finished(&mut c)[0].ticket, order);
}

#[test]
fn a_shared_pause_holds_the_bucket_and_shows_in_health() {
    let (mut c, t0) = sharing(config(10.0, 4));
    let _ = c.submit(t0, post("/orders/1"), 1);
    let d = c.poll_dispatch(t0).expect("dispatched");
    c.handle_shared_refusal(t0, d.call, SharedRefusal::Paused(Duration::from_secs(2)))
        .unwrap();
    let h = c.health(at(t0, 0.1));
    assert!(h.reasons.iter().any(|r| r.code == "scope_paused"), "{h:?}");
    assert!(c.poll_dispatch(at(t0, 1.9)).is_none());
    assert!(c.poll_dispatch(at(t0, 2.0)).is_some());
}

#[test]
fn a_429_is_announced_for_the_other_coordinators() {
    let (mut c, t0) = sharing(config(10.0, 4));
    let _ = c.submit(t0, post("/orders/1"), 1);
    let d = c.poll_dispatch(t0).expect("dispatched");
    c.complete(t0, d.call, too_many(Some("3"))).unwrap();
    match c.poll_shared() {
        Some(SharedOutput::Pause { buckets, pause }) => {
            assert_eq!(buckets.len(), 1);
            assert_eq!(buckets[0].scope, "api");
            assert_eq!(pause, Duration::from_secs(3));
        }
        other => panic!("expected a Pause, got {other:?}"),
    }
    // Without sharing nothing is queued for a store.
    let (mut plain, t0) = coordinator(config(10.0, 4));
    let _ = plain.submit(t0, post("/orders/1"), 1);
    let d = plain.poll_dispatch(t0).expect("dispatched");
    plain.complete(t0, d.call, too_many(Some("3"))).unwrap();
    assert!(plain.poll_shared().is_none());
}

#[test]
fn a_shared_answer_ends_every_waiter_without_an_upstream_call() {
    let (mut c, t0) = sharing(config(10.0, 1));
    let a = ticket(c.submit(t0, get("/market/btc"), 1));
    let b = ticket(c.submit(t0, get("/market/btc"), 2));
    let d = c.poll_dispatch(t0).expect("dispatched");
    let age = Duration::from_secs(2);
    c.handle_shared_answer(
        t0,
        d.call,
        Response::new(200, "p"),
        age,
        Duration::from_secs(8),
    )
    .unwrap();
    let done = finished(&mut c);
    assert_eq!(done.len(), 2);
    for f in &done {
        assert!(f.ticket == a || f.ticket == b);
        let answer = answer_of(f);
        assert_eq!(answer.source, Source::Cache);
        assert_eq!(answer.age, age);
    }
    assert!(
        c.poll_shared().is_none(),
        "an answer from the store is not stored back"
    );
    let s = c.stats(t0);
    assert_eq!(s.upstream.calls, 0);
    assert_eq!(s.upstream.shared_answers, 1);
    // Its token was given back: the burst of one is still there.
    let _ = c.submit(t0, post("/orders/1"), 3);
    assert!(c.poll_dispatch(t0).is_some());
    // The local cache holds it for what was left of its TTL.
    let hit = answered(c.submit(at(t0, 7.9), get("/market/btc"), 4));
    assert_eq!(hit.source, Source::Cache);
    assert!(matches!(
        c.submit(at(t0, 8.1), get("/market/btc"), 5),
        Admission::Waiting { .. }
    ));
}

#[test]
fn without_the_store_the_budget_is_shared_locally_and_health_says_so() {
    let (mut c, t0) = sharing(config(10.0, 4));
    c.set_store_state(
        t0,
        StoreState::Fallback {
            store: "redis://127.0.0.1:6379".into(),
            share: 0.5,
        },
    );
    let h = c.health(t0);
    assert_eq!(h.status, Status::Degraded);
    let reason = h
        .reasons
        .iter()
        .find(|r| r.code == "shared_store_unreachable")
        .expect("reason");
    assert!(
        reason.message.contains("redis://127.0.0.1:6379"),
        "{reason:?}"
    );
    for i in 0..40 {
        let _ = c.submit(t0, post(&format!("/orders/{i}")), i);
    }
    let sent = run(&mut c, t0, at(t0, 1.0));
    // Half the burst (2) and half the rate (5/s) over one second.
    assert_eq!(
        sent.len(),
        2 + 5,
        "{:?}",
        sent.iter().map(|s| s.0 - t0).collect::<Vec<_>>()
    );
    c.set_store_state(at(t0, 1.0), StoreState::Shared);
    assert_eq!(
        c.health(at(t0, 1.0))
            .reasons
            .iter()
            .filter(|r| r.code == "shared_store_unreachable")
            .count(),
        0
    );
}

/// Two coordinators on one shared bucket: one floods a low class, the
/// other sends an order now and then. With the top-class reserve the
/// order finds a token within one interval; without it, the flood takes
/// every token as it refills and the order waits behind it.
fn cross_coordinator_order_wait(reserve: u32) -> (Duration, usize) {
    let mut cfg = config(20.0, 5);
    cfg.queue.top_class_reserve = reserve;
    let (mut flood, t0) = sharing(cfg.clone());
    let mut orders = Coordinator::<u32>::new(cfg.compile().expect("valid"), t0, 9);
    orders.enable_sharing();
    let mut store = Store::default();
    for i in 0..400 {
        let _ = flood.submit(t0, get(&format!("/analysis/{i}")), i);
    }
    let mut submitted: HashMap<Ticket, Instant> = HashMap::new();
    let mut orders_sent = 0;
    let mut worst = Duration::ZERO;
    let step = Duration::from_millis(1);
    let mut now = t0;
    while now < at(t0, 6.0) {
        // An order every 700 ms, from 1 s on.
        let ms = (now - t0).as_millis() as u64;
        if ms >= 1000 && ms.is_multiple_of(700) {
            let t = ticket(orders.submit(now, post(&format!("/orders/{ms}")), 0));
            submitted.insert(t, now);
            orders_sent += 1;
        }
        // The flood asks first at every instant: the worst case for orders.
        for c in [&mut flood, &mut orders] {
            c.handle_timeout(now);
            while let Some(d) = c.poll_dispatch(now) {
                match store.ask(t0, now, &d) {
                    None => c.complete(now, d.call, ok("x")).unwrap(),
                    Some(w) => c
                        .handle_shared_refusal(now, d.call, SharedRefusal::Until(w))
                        .unwrap(),
                }
            }
        }
        while let Some(f) = orders.poll_finished() {
            assert!(f.result.is_ok(), "{f:?}");
            let waited = now - submitted.remove(&f.ticket).expect("an order");
            worst = worst.max(waited);
        }
        while flood.poll_finished().is_some() {}
        now += step;
    }
    // Orders still waiting at the end waited at least this long.
    for (_, t) in submitted {
        worst = worst.max(now - t);
    }
    // The shared bucket's bound: never more than burst + rate * w.
    for (i, &t) in store.spent.iter().enumerate() {
        let within = store.spent[i..]
            .iter()
            .take_while(|&&u| u - t < 1_000_000)
            .count();
        assert!(within <= 5 + 20, "{within} calls in one second from {t} µs");
    }
    assert!(orders_sent >= 6);
    (worst, store.spent.len())
}

#[test]
fn an_order_is_not_starved_by_another_coordinators_lower_class() {
    let (with_reserve, sent) = cross_coordinator_order_wait(1);
    // One interval (50 ms) plus the 1 ms step at most.
    assert!(
        with_reserve <= Duration::from_millis(51),
        "order waited {with_reserve:?}"
    );
    assert!(sent > 100, "the flood still used the budget: {sent}");
    let (without, _) = cross_coordinator_order_wait(0);
    assert!(
        without > Duration::from_millis(51),
        "without the reserve the order waits: {without:?}"
    );
}

proptest! {
    /// The shared arithmetic (what the Redis script computes) decides as
    /// the core's own limiter does, call by call, with or without the
    /// reserve a lower class must leave.
    #[test]
    fn shared_gcra_matches_the_core_limiter(
        rate in prop::sample::select(vec![1.0f64, 4.0, 10.0, 20.0, 50.0, 100.0]),
        burst in 1u32..12,
        steps in prop::collection::vec((0u64..400_000, 1u32..4, 0u32..3), 1..80),
    ) {
        let cfg = config(rate, burst);
        let limiter = crate::limiter::Limiter::new(&cfg);
        let mut limiter = limiter;
        let keys = limiter.keys(&[crate::config::ScopeId(0)], None);
        let t0 = Instant::now();
        let interval = micros_ceil(Duration::from_secs_f64(1.0 / rate));
        let mut tat: Option<u64> = None;
        let mut now_us = 0u64;
        for (dt, cost, reserve) in steps {
            now_us += dt;
            let now = t0 + Duration::from_micros(now_us);
            let cost = cost.min(burst);
            let need = limiter.fit_cost(&keys, cost + reserve);
            let local = limiter.check(now, &keys, need).is_none();
            let shared = gcra(tat, now_us, interval, burst, cost, reserve);
            prop_assert_eq!(local, matches!(shared, Gcra::Spend { .. }),
                "at {} µs cost {} reserve {}: local {} shared {:?}", now_us, cost, reserve, local, shared);
            if let Gcra::Spend { tat: t } = shared {
                limiter.acquire(now, &keys, cost);
                tat = Some(t);
            }
        }
    }
}
