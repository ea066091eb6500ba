use super::*;

use std::collections::BTreeMap;

use crate::config::{Keying, RetryConfig, RouteRule, ScopeConfig};
use crate::health::Status;
use crate::request::{Method, Response};

type C = Coordinator<u32>;

const TRADING: ClassId = ClassId(0);
const ACCOUNT: ClassId = ClassId(1);

/// One global scope `api` (`rate` per second, `burst`, no headroom) and a
/// route per priority class:
/// - `POST /orders/**`: trading, never cached;
/// - `GET /account/**`: account, private (keyed by credential), TTL 10 s;
/// - `GET /market/**`: market, shared, TTL 10 s;
/// - `GET /analysis/**`: analysis, shared, TTL 10 s.
fn config(rate: f64, burst: u32) -> Config {
    let scopes = BTreeMap::from([(
        "api".to_owned(),
        ScopeConfig {
            rate,
            period_secs: 1.0,
            burst,
            per: Keying::Global,
            headroom: 1.0,
        },
    )]);
    let mut c = Config {
        scopes,
        ..Config::default()
    };
    c.defaults.scopes = vec!["api".into()];
    c.defaults.priority = "market".into();
    let rule = |name: &str, method: &str, path: &str, class: &str| RouteRule {
        name: Some(name.into()),
        methods: vec![method.into()],
        path: path.into(),
        priority: Some(class.into()),
        ttl_secs: Some(10.0),
        ..Default::default()
    };
    c.routes = vec![
        RouteRule {
            cacheable: Some(false),
            coalesce: Some(false),
            ..rule("orders", "POST", "/orders/**", "trading")
        },
        rule("account", "GET", "/account/**", "account"),
        RouteRule {
            private: Some(false),
            ..rule("market", "GET", "/market/**", "market")
        },
        RouteRule {
            private: Some(false),
            ..rule("analysis", "GET", "/analysis/**", "analysis")
        },
    ];
    c.queue.top_class_reserve = 0;
    c.retry = RetryConfig {
        max_attempts: 3,
        base_delay_secs: 0.5,
        max_delay_secs: 4.0,
        max_total_secs: 20.0,
        call_timeout_secs: 30.0,
        ..RetryConfig::default()
    };
    c
}

fn coordinator(config: Config) -> (C, Instant) {
    let t0 = Instant::now();
    (
        Coordinator::new(config.compile().expect("valid config"), t0, 7),
        t0,
    )
}

fn at(t0: Instant, secs: f64) -> Instant {
    t0 + Duration::from_secs_f64(secs)
}

fn get(path: &str) -> Request {
    Request::get(path, "bot-1")
}

fn post(path: &str) -> Request {
    Request::new(Method::post(), path, "bot-1")
}

fn ticket(admission: Admission) -> Ticket {
    match admission {
        Admission::Waiting { ticket, .. } => ticket,
        other => panic!("expected Waiting, got {other:?}"),
    }
}

fn joined(admission: &Admission) -> bool {
    match admission {
        Admission::Waiting { joined, .. } => *joined,
        other => panic!("expected Waiting, got {other:?}"),
    }
}

fn answered(admission: Admission) -> Answer {
    match admission {
        Admission::Answered(a) => a,
        other => panic!("expected Answered, got {other:?}"),
    }
}

fn refused(admission: Admission) -> Failure {
    match admission {
        Admission::Refused(f) => f,
        other => panic!("expected Refused, got {other:?}"),
    }
}

fn dispatch_all(c: &mut C, now: Instant) -> Vec<Dispatch<u32>> {
    std::iter::from_fn(|| c.poll_dispatch(now)).collect()
}

fn finished(c: &mut C) -> Vec<Finished> {
    std::iter::from_fn(|| c.poll_finished()).collect()
}

fn ok(body: &str) -> Outcome {
    Outcome::response(Response::new(200, body))
}

fn status(code: u16) -> Outcome {
    Outcome::response(Response::new(code, format!("status {code}")))
}

fn too_many(retry_after: Option<&str>) -> Outcome {
    let r = Response::new(429, "slow down");
    Outcome::response(match retry_after {
        Some(v) => r.with_header("Retry-After", v),
        None => r,
    })
}

fn body(a: &Answer) -> &str {
    std::str::from_utf8(&a.response.body).unwrap()
}

fn answer_of(f: &Finished) -> &Answer {
    f.result
        .as_ref()
        .unwrap_or_else(|e| panic!("{:?} failed: {e}", f.ticket))
}

fn failure_of(f: &Finished) -> &Failure {
    match &f.result {
        Err(e) => e,
        Ok(a) => panic!("{:?} answered {:?}", f.ticket, a.source),
    }
}

/// A host loop from `from` up to `until`: wakes at every `poll_timeout`,
/// handles timers and collects dispatches with the instant they went out.
/// Completes nothing.
fn run(c: &mut C, from: Instant, until: Instant) -> Vec<(Instant, Dispatch<u32>)> {
    let mut out = Vec::new();
    let mut now = from;
    for _ in 0..10_000 {
        c.handle_timeout(now);
        while let Some(d) = c.poll_dispatch(now) {
            out.push((now, d));
        }
        match c.poll_timeout() {
            Some(t) if t <= until => {
                assert!(t >= now, "poll_timeout went back: {t:?} < {now:?}");
                now = t;
            }
            _ => return out,
        }
    }
    panic!("host loop does not settle");
}

/// Like [`run`], but stops at the first instant anything is dispatched
/// (before any call could time out) and returns what went then.
fn run_to_dispatch(c: &mut C, from: Instant, until: Instant) -> (Instant, Vec<Dispatch<u32>>) {
    let mut now = from;
    for _ in 0..10_000 {
        c.handle_timeout(now);
        let sent = dispatch_all(c, now);
        if !sent.is_empty() {
            return (now, sent);
        }
        match c.poll_timeout() {
            Some(t) if t <= until => {
                assert!(t >= now, "poll_timeout went back");
                now = t;
            }
            _ => panic!("nothing dispatched by {until:?}"),
        }
    }
    panic!("host loop does not settle");
}

/// A host loop with an upstream that answers every call at once with
/// 200 `body`, up to `until`.
fn serve(c: &mut C, from: Instant, until: Instant, body: &str) {
    let mut now = from;
    for _ in 0..10_000 {
        c.handle_timeout(now);
        while let Some(d) = c.poll_dispatch(now) {
            c.complete(now, d.call, ok(body)).unwrap();
        }
        match c.poll_timeout() {
            Some(t) if t <= until => now = t.max(now),
            _ => return,
        }
    }
    panic!("host loop does not settle");
}

/// Sends one call to empty a 1-token bucket; returns its dispatch.
fn drain_bucket(c: &mut C, now: Instant) -> Dispatch<u32> {
    let _ = c.submit(now, get("/market/filler"), 0);
    let mut d = dispatch_all(c, now);
    assert_eq!(d.len(), 1);
    d.remove(0)
}

#[test]
fn fresh_cache_hit_then_ttl_expiry_misses() {
    let (mut c, t0) = coordinator(config(1.0, 2));
    let a = c.submit(t0, get("/market/ticker?x=1&y=2"), 1);
    assert!(!joined(&a));
    let a = ticket(a);
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].payload, d[0].attempt), (1, 1));
    assert_eq!(d[0].route, "market");
    c.complete(at(t0, 1.0), d[0].call, ok("v1")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, a);
    assert_eq!(answer_of(&f[0]).source, Source::Upstream);
    assert_eq!(body(answer_of(&f[0])), "v1");
    let timing = answer_of(&f[0]).timing;
    assert_eq!(timing.queue_wait, Some(Duration::ZERO));
    assert_eq!(timing.upstream_latency, Some(Duration::from_secs(1)));

    // Fresh (stored at t0+1 for 10 s).
    let hit = answered(c.submit(at(t0, 5.0), get("/market/ticker?x=1&y=2"), 2));
    assert_eq!(hit.source, Source::Cache);
    assert_eq!(body(&hit), "v1");
    assert_eq!(hit.age, Duration::from_secs(4));
    // RFC 9211 `ttl`: 10 s of lifetime, 4 s spent; whole seconds, down.
    assert_eq!(hit.ttl_secs, Some(6));
    assert_eq!(answer_of(&f[0]).ttl_secs, None, "fetched, not from a cache");
    assert_eq!(hit.timing, crate::Timing::default(), "no call answered it");
    let s = c.stats(at(t0, 5.0));
    assert_eq!((s.requests.hit, s.requests.upstream), (1, 1));
    // Sent at t0, answered at t0+1: one latency of 1 s, in the (0.5, 1]
    // bucket; the queue wait was nothing.
    assert_eq!(s.upstream_latency.count(), 1);
    assert!((s.upstream_latency.sum_secs - 1.0).abs() < 1e-9);
    assert!(s.upstream_latency.buckets().contains(&(1.0, 1)));
    let market = &s.queue.classes.iter().find(|k| k.wait.count == 1).unwrap();
    assert_eq!(market.wait_buckets.buckets()[0], (0.001, 1));
    assert!(dispatch_all(&mut c, at(t0, 5.0)).is_empty());
    // A different query is a different entry, and so is the same one in
    // another order: upstream receives the target byte for byte.
    let other = c.submit(at(t0, 5.0), get("/market/ticker?x=2&y=2"), 3);
    assert!(!joined(&other));
    let reordered = c.submit(at(t0, 5.0), get("/market/ticker?y=2&x=1"), 5);
    assert!(!joined(&reordered));

    // Expired at exactly t0+11: a miss, a new upstream call.
    let late = c.submit(at(t0, 11.0), get("/market/ticker?x=1&y=2"), 4);
    assert!(!joined(&late));
    let d = dispatch_all(&mut c, at(t0, 11.0));
    assert_eq!(d.iter().map(|d| d.payload).collect::<Vec<_>>(), [3, 5]);
    let d = dispatch_all(&mut c, at(t0, 12.0));
    assert_eq!(d.iter().map(|d| d.payload).collect::<Vec<_>>(), [4]);
    assert_eq!(c.stats(at(t0, 12.0)).requests.hit, 1);
    assert_eq!(c.stats(at(t0, 12.0)).upstream.calls, 4);
}

#[test]
fn identical_reads_coalesce_into_one_call() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let mut tickets = Vec::new();
    for i in 1..=4u32 {
        let mut r = Request::get("/market/book", &format!("bot-{i}"));
        if i == 3 {
            // Its signature lives longest: it is the one sent.
            r = r.with_deadline(at(t0, 40.0));
        }
        let a = c.submit(t0, r, i);
        assert_eq!(joined(&a), i > 1, "request {i}");
        tickets.push(ticket(a));
    }
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].payload, 3, "payload of the furthest deadline");
    // Joining while in flight.
    for i in 5..=6u32 {
        let a = c.submit(at(t0, 0.5), get("/market/book"), i);
        assert!(joined(&a));
        tickets.push(ticket(a));
    }
    assert!(dispatch_all(&mut c, at(t0, 5.0)).is_empty());
    c.complete(at(t0, 1.0), d[0].call, ok("book")).unwrap();
    let f = finished(&mut c);
    assert_eq!(
        f.iter().map(|f| f.ticket).collect::<Vec<_>>(),
        tickets,
        "every waiter answered once"
    );
    let first = answer_of(&f[0]);
    assert_eq!(first.source, Source::Upstream);
    for other in &f[1..] {
        let a = answer_of(other);
        assert_eq!(a.source, Source::Coalesced);
        assert!(Arc::ptr_eq(&a.response, &first.response));
        assert_eq!(body(a), "book");
    }
    let s = c.stats(at(t0, 1.0));
    assert_eq!((s.requests.upstream, s.requests.coalesced), (1, 5));
    assert_eq!(s.upstream.calls, 1);
}

#[test]
fn private_route_never_answers_across_credentials() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let req = |cred: &str| get("/account/balances").with_credential(cred);
    let a1 = c.submit(t0, req("key:a"), 1);
    let b = c.submit(t0, req("key:b"), 2);
    let a2 = c.submit(t0, req("key:a"), 3);
    assert_eq!((joined(&a1), joined(&b), joined(&a2)), (false, false, true));
    let (a1, b, a2) = (ticket(a1), ticket(b), ticket(a2));
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 2, "one call per credential");
    for d in &d {
        let who = if d.payload == 2 { "key:b" } else { "key:a" };
        c.complete(t0, d.call, ok(who)).unwrap();
    }
    let f = finished(&mut c);
    assert_eq!(f.len(), 3);
    for f in &f {
        let want = if f.ticket == b { "key:b" } else { "key:a" };
        assert!([a1, a2, b].contains(&f.ticket));
        assert_eq!(body(answer_of(f)), want, "{:?}", f.ticket);
    }
    // The cache keeps them apart too.
    let hit = answered(c.submit(at(t0, 1.0), req("key:b"), 4));
    assert_eq!((hit.source, body(&hit)), (Source::Cache, "key:b"));
    let hit = answered(c.submit(at(t0, 1.0), req("key:a"), 5));
    assert_eq!((hit.source, body(&hit)), (Source::Cache, "key:a"));
    assert!(!joined(&c.submit(at(t0, 1.0), req("key:c"), 6)));
    assert!(!joined(&c.submit(at(t0, 1.0), get("/account/balances"), 7)));
    assert_eq!(dispatch_all(&mut c, at(t0, 1.0)).len(), 2);
}

#[test]
fn shared_route_is_shared_across_credentials() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let req = |cred: &str| get("/market/products").with_credential(cred);
    let a = ticket(c.submit(t0, req("key:a"), 1));
    let b = c.submit(t0, req("key:b"), 2);
    assert!(joined(&b));
    let b = ticket(b);
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 1);
    c.complete(t0, d[0].call, ok("products")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.iter().map(|f| f.ticket).collect::<Vec<_>>(), [a, b]);
    let hit = answered(c.submit(at(t0, 1.0), req("key:c"), 3));
    assert_eq!((hit.source, body(&hit)), (Source::Cache, "products"));
}

#[test]
fn posts_are_never_cached_nor_coalesced() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let order = || post("/orders/new").with_credential("key:a");
    assert!(!joined(&c.submit(t0, order(), 1)));
    assert!(!joined(&c.submit(t0, order(), 2)));
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 2);
    for d in &d {
        c.complete(t0, d.call, ok("filled")).unwrap();
    }
    let f = finished(&mut c);
    assert!(f.iter().all(|f| answer_of(f).source == Source::Upstream));
    assert!(!joined(&c.submit(at(t0, 1.0), order(), 3)));
    assert_eq!(dispatch_all(&mut c, at(t0, 1.0)).len(), 1);
    assert_eq!(c.stats(at(t0, 1.0)).cache.entries, 0);
}

/// Dispatch order of everything queued now, on a 1-per-second bucket.
fn order(c: &mut C, t0: Instant) -> Vec<(u32, Duration)> {
    run(c, t0, at(t0, 20.0))
        .into_iter()
        .map(|(t, d)| (d.payload, t - t0))
        .collect()
}

#[test]
fn a_one_token_bucket_serves_classes_in_order() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _ = c.submit(t0, get("/analysis/a"), 4);
    let _ = c.submit(t0, get("/market/m"), 3);
    let _ = c.submit(t0, get("/account/x").with_credential("key:a"), 2);
    let _ = c.submit(t0, post("/orders/o").with_credential("key:a"), 1);
    let s = Duration::from_secs;
    assert_eq!(
        order(&mut c, t0),
        [(1, s(0)), (2, s(1)), (3, s(2)), (4, s(3))]
    );
}

#[test]
fn request_priority_overrides_the_route_class() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _ = c.submit(t0, get("/market/m"), 1);
    let _ = c.submit(t0, get("/analysis/a").with_priority(TRADING), 2);
    // Out of range: clamped to the lowest class.
    let _ = c.submit(t0, get("/market/n").with_priority(ClassId(200)), 3);
    let _ = c.submit(t0, get("/analysis/b"), 4);
    let got: Vec<u32> = order(&mut c, t0).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, [2, 1, 3, 4]);
}

#[test]
fn a_higher_class_joiner_promotes_the_queued_call() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _ = drain_bucket(&mut c, t0);
    let _ = c.submit(t0, get("/analysis/x"), 1);
    let _ = c.submit(t0, get("/market/y"), 2);
    let j = c.submit(t0, get("/analysis/x").with_priority(ACCOUNT), 3);
    assert!(joined(&j));
    let call = c.waiters[&ticket(j)].call;
    assert_eq!(c.queue.class_of(call), Some(ACCOUNT));
    let got: Vec<u32> = order(&mut c, t0).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, [1, 2], "the promoted analysis call goes first");
}

#[test]
fn a_busy_client_cannot_starve_another_in_its_class() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    for i in 1..=4 {
        let _ = c.submit(t0, Request::get(&format!("/market/a{i}"), "bot-a"), i);
    }
    let _ = c.submit(t0, Request::get("/market/b", "bot-b"), 10);
    let got: Vec<u32> = order(&mut c, t0).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, [1, 10, 2, 3, 4]);
}

#[test]
fn a_full_queue_sheds_the_newest_lowest_class_call() {
    let mut cfg = config(1.0, 1);
    cfg.queue.max_len = 3;
    let (mut c, t0) = coordinator(cfg);
    let _ = drain_bucket(&mut c, t0);
    let _ = c.submit(t0, get("/market/m1"), 1);
    let a1 = ticket(c.submit(t0, get("/analysis/a1"), 2));
    let a2 = ticket(c.submit(t0, get("/analysis/a2"), 3));
    assert_eq!(c.queue_len(), 3);
    assert!(finished(&mut c).is_empty());

    // A market newcomer: the newest analysis call makes room.
    ticket(c.submit(t0, get("/market/m2"), 4));
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, a2);
    match failure_of(&f[0]) {
        Failure::Shed { class, depth, .. } => assert_eq!((class.as_str(), *depth), ("analysis", 3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.queue_len(), 3);

    // An analysis newcomer has nobody below it: refused.
    match refused(c.submit(t0, get("/analysis/a3"), 5)) {
        Failure::Shed { class, .. } => assert_eq!(class, "analysis"),
        other => panic!("{other:?}"),
    }
    // An order sheds the remaining analysis call.
    ticket(c.submit(t0, post("/orders/o"), 6));
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, a1);
    assert!(matches!(failure_of(&f[0]), Failure::Shed { .. }));
    assert_eq!(c.stats(t0).requests.shed, 3);
    let got: Vec<u32> = order(&mut c, t0).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, [6, 1, 4]);
}

#[test]
fn deadlines_expire_queued_requests_and_refuse_unreachable_ones() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _ = drain_bucket(&mut c, t0);
    let _ = c.submit(t0, post("/orders/1"), 1);
    let _ = c.submit(t0, post("/orders/2"), 2);
    let late = ticket(c.submit(t0, get("/market/late").with_deadline(at(t0, 1.5)), 3));
    assert_eq!(c.poll_timeout(), Some(at(t0, 1.0)));
    let sent = run(&mut c, t0, at(t0, 1.0));
    assert_eq!(sent.len(), 1);
    assert_eq!(c.poll_timeout(), Some(at(t0, 1.5)), "the deadline is next");
    c.handle_timeout(at(t0, 1.4));
    assert!(finished(&mut c).is_empty());
    c.handle_timeout(at(t0, 1.5));
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, late);
    match failure_of(&f[0]) {
        Failure::Deadline { waited } => assert_eq!(*waited, Duration::from_millis(1500)),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.stats(at(t0, 1.5)).requests.expired, 1);

    // The bucket's next token is at t0+2: a deadline before it is hopeless.
    let r = get("/market/z").with_deadline(at(t0, 1.6));
    match refused(c.submit(at(t0, 1.5), r, 4)) {
        Failure::DeadlineUnreachable { earliest, deadline } => {
            assert_eq!(earliest, Duration::from_millis(500));
            assert_eq!(deadline, Duration::from_millis(100));
        }
        other => panic!("{other:?}"),
    }
    // A deadline already past.
    let r = get("/market/z").with_deadline(t0);
    assert!(matches!(
        refused(c.submit(at(t0, 1.5), r, 5)),
        Failure::DeadlineUnreachable { .. }
    ));
    assert_eq!(c.stats(at(t0, 1.5)).requests.expired, 3);
}

/// A call signed when it is sent carries a `max_wait` longer than the
/// default deadline: one that waits 150 s behind a slow limiter is sent,
/// while the same wait with the default deadline (25 s) expires.
#[test]
fn max_wait_replaces_the_default_deadline_from_submission() {
    let (mut c, t0) = coordinator(config(1.0 / 160.0, 1));
    let _ = drain_bucket(&mut c, t0);
    let mut patient = post("/orders/patient");
    patient.max_wait = Some(Duration::from_secs(200));
    let patient = ticket(c.submit(t0, patient, 1));
    let hasty = post("/orders/hasty");
    match c.submit(t0, hasty, 2) {
        Admission::Refused(Failure::DeadlineUnreachable { deadline, .. }) => {
            assert_eq!(deadline, Duration::from_secs_f64(25.0))
        }
        other => panic!("the default deadline cannot wait 160 s: {other:?}"),
    }
    assert!(run(&mut c, t0, at(t0, 150.0)).is_empty());
    assert!(
        finished(&mut c).iter().all(|f| f.ticket != patient),
        "still waiting at 150 s"
    );
    let sent = run(&mut c, at(t0, 150.0), at(t0, 170.0));
    assert_eq!(sent.len(), 1, "sent when the token comes, within its 200 s");
    assert_eq!(sent[0].0, at(t0, 160.0));
    assert_eq!(sent[0].1.payload, 1);
    c.complete(sent[0].0, sent[0].1.call, ok("filled")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, patient);
    assert!(f[0].result.is_ok());
}

/// Caches `path` with body `old` at t0.
fn cached(c: &mut C, t0: Instant, path: &str) {
    ticket(c.submit(t0, get(path), 100));
    let d = dispatch_all(c, t0);
    c.complete(t0, d[0].call, ok("old")).unwrap();
    assert_eq!(finished(c).len(), 1);
}

#[test]
fn stale_data_is_served_when_upstream_keeps_failing() {
    let mut cfg = config(10.0, 10);
    cfg.retry.max_attempts = 2;
    let (mut c, t0) = coordinator(cfg);
    cached(&mut c, t0, "/market/s");
    let t = ticket(c.submit(at(t0, 11.0), get("/market/s"), 1));
    let mut now = at(t0, 11.0);
    for attempt in 1..=2 {
        assert!(finished(&mut c).is_empty(), "attempt {attempt}");
        let sent = run(&mut c, now, at(t0, 30.0));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.attempt, attempt);
        now = sent[0].0;
        c.complete(now, sent[0].1.call, status(503)).unwrap();
    }
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, t);
    let a = answer_of(&f[0]);
    assert_eq!((a.source, body(a)), (Source::Stale, "old"));
    assert!(a.age >= Duration::from_secs(11));
    let s = c.stats(now);
    assert_eq!((s.requests.stale, s.upstream.server_errors), (1, 2));
}

#[test]
fn stale_data_is_served_at_once_while_the_scope_is_paused() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    cached(&mut c, t0, "/market/s");
    let now = at(t0, 11.0);
    let _ = c.submit(now, get("/market/other"), 1);
    let d = dispatch_all(&mut c, now);
    c.complete(now, d[0].call, too_many(Some("5"))).unwrap();
    let a = answered(c.submit(at(t0, 12.0), get("/market/s"), 2));
    assert_eq!((a.source, body(&a)), (Source::Stale, "old"));
    // Nothing stale to give: it waits.
    ticket(c.submit(at(t0, 12.0), get("/market/new"), 3));
    assert_eq!(c.stats(at(t0, 12.0)).requests.stale, 1);
}

#[test]
fn retry_after_pauses_the_scope_and_the_call_is_retried() {
    let (mut c, t0) = coordinator(config(1.0, 2));
    let t = ticket(c.submit(t0, get("/market/r"), 1));
    let d = dispatch_all(&mut c, t0);
    c.complete(t0, d[0].call, too_many(Some("5"))).unwrap();
    assert!(finished(&mut c).is_empty(), "a 429 is retried");
    ticket(c.submit(at(t0, 1.0), get("/market/q"), 2));
    let s = c.stats(at(t0, 1.0));
    assert_eq!(s.upstream.rate_limited, 1);
    assert_eq!(s.scopes[0].paused_for_secs, Some(4.0));
    assert!(c.poll_dispatch(at(t0, 4.999)).is_none());
    assert!(c.poll_timeout().unwrap() >= at(t0, 5.0));
    let sent = run(&mut c, at(t0, 4.999), at(t0, 30.0));
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(when, _)| *when >= at(t0, 5.0)));
    let retry = sent.iter().find(|(_, d)| d.payload == 1);
    let (when, retry) = retry.unwrap();
    assert_eq!(retry.attempt, 2);
    assert_ne!(retry.call, d[0].call, "each attempt has its own id");
    c.complete(*when, retry.call, ok("r")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f[0].ticket, t);
    assert_eq!(body(answer_of(&f[0])), "r");
    assert_eq!(c.stats(*when).upstream.retries, 1);
}

#[test]
fn a_429_without_retry_after_backs_off_exponentially_then_gives_up() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let t = ticket(c.submit(t0, get("/market/r"), 1));
    let mut now = t0;
    let mut last_pause = 0.0;
    for attempt in 1..=3u32 {
        let (when, sent) = run_to_dispatch(&mut c, now, at(t0, 60.0));
        assert_eq!(sent.len(), 1);
        let (when, d) = (&when, &sent[0]);
        assert_eq!(d.attempt, attempt);
        if attempt > 1 {
            let waited = (*when - now).as_secs_f64();
            assert!(waited >= last_pause - 1e-9, "{waited} < pause {last_pause}");
        }
        now = *when;
        c.complete(now, d.call, too_many(None)).unwrap();
        if attempt < 3 {
            let pause = c.stats(now).scopes[0].paused_for_secs.unwrap();
            // Ceiling 1 s, then 2 s; jitter in the upper half.
            let ceiling = f64::from(1u32 << (attempt - 1));
            assert!(
                pause >= ceiling / 2.0 && pause <= ceiling,
                "attempt {attempt}: {pause}"
            );
            last_pause = pause;
        }
    }
    let f = finished(&mut c);
    assert_eq!(f[0].ticket, t);
    match failure_of(&f[0]) {
        Failure::RateLimited {
            scope, attempts, ..
        } => assert_eq!((scope.as_str(), *attempts), ("api", 3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.stats(now).upstream.rate_limited, 3);
}

/// A POST's first attempt ends with `outcome`; returns what followed:
/// whether it was sent again, and its end if it ended.
fn post_after(outcome: Outcome) -> (bool, Option<Finished>) {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let _ = c.submit(t0, post("/orders/x"), 1);
    let d = dispatch_all(&mut c, t0);
    c.complete(t0, d[0].call, outcome).unwrap();
    let again = run(&mut c, t0, at(t0, 20.0));
    (!again.is_empty(), finished(&mut c).pop())
}

#[test]
fn posts_are_retried_only_when_upstream_cannot_have_acted() {
    let (again, f) = post_after(status(503));
    assert!(!again, "a 5xx POST may have placed the order");
    match failure_of(&f.unwrap()) {
        Failure::Upstream { attempts, response } => {
            assert_eq!((*attempts, response.status), (1, 503))
        }
        other => panic!("{other:?}"),
    }
    let broken = Outcome::Transport(TransportError::Broken("reset".into()));
    let (again, f) = post_after(broken);
    assert!(!again);
    // Sent, no answer: its outcome is unknown, never a plain failure.
    let f = f.unwrap();
    assert!(matches!(
        failure_of(&f),
        Failure::OutcomeUnknown {
            attempts: 1,
            error: TransportError::Broken(_)
        }
    ));
    assert_eq!(failure_of(&f).retry_after(), None);
    let (again, f) = post_after(too_many(Some("1")));
    assert!(again && f.is_none(), "a 429 was not processed: retry");
    let refused = Outcome::Transport(TransportError::Connect("refused".into()));
    let (again, f) = post_after(refused);
    assert!(again && f.is_none(), "never reached upstream: retry");
}

#[test]
fn idempotent_reads_retry_5xx_with_backoff_then_fail() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let t = ticket(c.submit(t0, get("/market/x"), 1));
    let mut now = t0;
    for attempt in 1..=3u32 {
        let (when, sent) = run_to_dispatch(&mut c, now, at(t0, 60.0));
        assert_eq!(sent.len(), 1, "attempt {attempt}");
        let (when, d) = (&when, &sent[0]);
        assert_eq!(d.attempt, attempt);
        // Full jitter under 0.5 s * 2^(n-1).
        let ceiling = Duration::from_millis(500) * (1 << attempt.saturating_sub(2));
        if attempt > 1 {
            assert!(*when - now <= ceiling, "attempt {attempt}");
        }
        now = *when + Duration::from_millis(10);
        c.complete(now, d.call, status(503)).unwrap();
    }
    assert!(run(&mut c, now, at(t0, 60.0)).is_empty());
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, t);
    match failure_of(&f[0]) {
        Failure::Upstream { attempts, response } => {
            assert_eq!((*attempts, response.status), (3, 503))
        }
        other => panic!("{other:?}"),
    }
    let s = c.stats(now);
    assert_eq!((s.upstream.retries, s.upstream.server_errors), (2, 3));
    assert_eq!(s.requests.failed, 1);
}

#[test]
fn an_open_breaker_fails_fast_then_a_probe_closes_it() {
    let mut cfg = config(10.0, 10);
    cfg.breaker.failure_threshold = 2;
    cfg.breaker.open_secs = 5.0;
    let (mut c, t0) = coordinator(cfg);
    let _ = c.submit(t0, get("/market/a"), 1);
    let _ = c.submit(t0, get("/market/b"), 2);
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 2);
    let _ = c.submit(t0, get("/market/c"), 3); // queued, not yet polled
    let _ = c.submit(t0, get("/analysis/x"), 30); // another route, queued
    c.complete(t0, d[0].call, status(503)).unwrap();
    assert!(finished(&mut c).is_empty(), "first failure: retried later");
    c.complete(t0, d[1].call, status(500)).unwrap();
    let f = finished(&mut c);
    assert_eq!(
        f.len(),
        3,
        "queued and backing-off calls of the route fail fast"
    );
    for f in &f {
        match failure_of(f) {
            Failure::BreakerOpen { route, retry_after } => {
                assert_eq!(
                    (route.as_str(), *retry_after),
                    ("market", Duration::from_secs(5))
                )
            }
            other => panic!("{other:?}"),
        }
    }
    let s = c.stats(t0);
    assert_eq!(s.upstream.breaker_opened, 1);
    assert_eq!(s.breakers.len(), 1);
    assert_eq!(s.breakers[0].route, "market");
    assert_eq!(c.health(t0).status, Status::Degraded, "one route is down");
    // The other route's call still goes.
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.iter().map(|d| d.payload).collect::<Vec<_>>(), [30]);
    c.complete(t0, d[0].call, ok("x")).unwrap();
    assert_eq!(answer_of(&finished(&mut c)[0]).source, Source::Upstream);
    match refused(c.submit(at(t0, 1.0), get("/market/d"), 4)) {
        Failure::BreakerOpen { retry_after, .. } => {
            assert_eq!(retry_after, Duration::from_secs(4))
        }
        other => panic!("{other:?}"),
    }
    assert!(dispatch_all(&mut c, at(t0, 4.9)).is_empty());

    // Half-open: one probe.
    ticket(c.submit(at(t0, 5.0), get("/market/e"), 5));
    let d = dispatch_all(&mut c, at(t0, 5.0));
    assert_eq!(d.len(), 1);
    assert_eq!(c.stats(at(t0, 5.0)).upstream.breaker_half_opened, 1);
    // While the probe is out, others on the route are told to come back
    // in a moment (stale data where there is some).
    match refused(c.submit(at(t0, 5.0), get("/market/f"), 6)) {
        Failure::BreakerOpen { retry_after, .. } => {
            assert_eq!(retry_after, Duration::from_secs(1))
        }
        other => panic!("{other:?}"),
    }
    c.complete(at(t0, 5.5), d[0].call, ok("e")).unwrap();
    assert!(answer_of(&finished(&mut c)[0]).source == Source::Upstream);
    ticket(c.submit(at(t0, 5.5), get("/market/f"), 6));
    ticket(c.submit(at(t0, 5.5), get("/market/g"), 7));
    let d = dispatch_all(&mut c, at(t0, 5.5));
    assert_eq!(d.iter().map(|d| d.payload).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(c.health(at(t0, 5.5)).status, Status::Healthy);
    let s = c.stats(at(t0, 5.5));
    assert_eq!(s.upstream.breaker_closed, 1);
    assert!(s.breakers.is_empty());
    let events: Vec<_> = c
        .breaker_events()
        .into_iter()
        .map(|e| (e.route, e.transition))
        .collect();
    use crate::BreakerTransition as T;
    assert_eq!(
        events,
        [
            ("market".to_owned(), T::Opened),
            ("market".to_owned(), T::HalfOpen),
            ("market".to_owned(), T::Closed)
        ]
    );
}

#[test]
fn a_call_never_completed_times_out_and_is_retried() {
    let mut cfg = config(10.0, 10);
    cfg.retry.call_timeout_secs = 3.0;
    let (mut c, t0) = coordinator(cfg);
    let t = ticket(c.submit(t0, get("/market/x"), 1));
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d[0].timeout, Duration::from_secs(3));
    assert_eq!(c.poll_timeout(), Some(at(t0, 3.0)));
    c.handle_timeout(at(t0, 2.999));
    assert_eq!(c.stats(at(t0, 2.999)).upstream.timeouts, 0);
    c.handle_timeout(at(t0, 3.0));
    assert_eq!(c.stats(at(t0, 3.0)).upstream.timeouts, 1);
    assert!(finished(&mut c).is_empty());
    // The late outcome of the timed-out attempt is refused.
    assert_eq!(
        c.complete(at(t0, 3.0), d[0].call, ok("late")),
        Err(UnknownCall(d[0].call))
    );
    let (when, sent) = run_to_dispatch(&mut c, at(t0, 3.0), at(t0, 10.0));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].attempt, 2);
    assert!(when <= at(t0, 3.5), "backoff under 0.5 s");
    // Even once the retry is out, the first attempt's late answer is not
    // taken for the retry's.
    assert_eq!(
        c.complete(when, d[0].call, ok("late")),
        Err(UnknownCall(d[0].call))
    );
    c.complete(when, sent[0].call, ok("x")).unwrap();
    let f = finished(&mut c);
    assert_eq!((f[0].ticket, body(answer_of(&f[0]))), (t, "x"));

    // A POST that times out may have been placed: not retried, and its
    // outcome is unknown.
    let _ = c.submit(at(t0, 10.0), post("/orders/o"), 2);
    let d = dispatch_all(&mut c, at(t0, 10.0));
    c.handle_timeout(at(t0, 13.0));
    let f = finished(&mut c);
    assert!(matches!(
        failure_of(&f[0]),
        Failure::OutcomeUnknown {
            attempts: 1,
            error: TransportError::Timeout(_)
        }
    ));
    assert!(c.complete(at(t0, 13.0), d[0].call, ok("")).is_err());
}

#[test]
fn completing_an_unknown_call_is_an_error() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    assert_eq!(
        c.complete(t0, CallId(999), ok("?")),
        Err(UnknownCall(CallId(999)))
    );
    // A queued call not yet dispatched is not in flight either.
    let _ = c.submit(t0, get("/market/x"), 1);
    let queued = *c.calls.keys().next().unwrap();
    assert!(c.complete(t0, queued, ok("?")).is_err());
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d[0].call, queued);
    assert!(c.complete(t0, queued, ok("x")).is_ok());
    assert!(c.complete(t0, queued, ok("x")).is_err(), "only once");
    assert_eq!(finished(&mut c).len(), 1);
}

#[test]
fn cancel_ends_a_ticket_once_and_drops_unneeded_calls() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _ = drain_bucket(&mut c, t0);
    let q = ticket(c.submit(t0, get("/market/q"), 1));
    assert!(c.cancel(q));
    assert!(!c.cancel(q), "only once");
    assert_eq!((c.queue_len(), c.calls.len()), (0, 1), "only the filler");
    assert!(run(&mut c, t0, at(t0, 20.0)).is_empty(), "never sent");
    assert!(finished(&mut c).is_empty());
    assert_eq!(c.stats(at(t0, 30.0)).requests.cancelled, 1);
}

#[test]
fn a_cancelled_waiter_of_an_in_flight_call_still_fills_the_cache() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let a = ticket(c.submit(t0, get("/market/f"), 1));
    let b = ticket(c.submit(t0, get("/market/f"), 2));
    let d = dispatch_all(&mut c, t0);
    assert!(c.cancel(a));
    c.complete(t0, d[0].call, ok("f")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].ticket, answer_of(&f[0]).source),
        (b, Source::Coalesced)
    );

    let s = ticket(c.submit(t0, get("/market/solo"), 3));
    let d = dispatch_all(&mut c, t0);
    assert!(c.cancel(s));
    assert_eq!(c.calls_in_flight(), 1, "the call stays in flight");
    c.complete(at(t0, 1.0), d[0].call, ok("solo")).unwrap();
    assert!(finished(&mut c).is_empty());
    let hit = answered(c.submit(at(t0, 2.0), get("/market/solo"), 4));
    assert_eq!((hit.source, body(&hit)), (Source::Cache, "solo"));
}

#[test]
fn abort_waiting_ends_queued_requests_but_not_calls_in_flight() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let flying = ticket(c.submit(t0, get("/market/a"), 1));
    let d = dispatch_all(&mut c, t0);
    let b = ticket(c.submit(t0, get("/market/b"), 2));
    let joiner = ticket(c.submit(t0, get("/market/b"), 3));
    let e = ticket(c.submit(t0, post("/orders/e"), 4));
    c.abort_waiting(t0, "shutting down");
    let f = finished(&mut c);
    let mut ended: Vec<Ticket> = f.iter().map(|f| f.ticket).collect();
    ended.sort();
    assert_eq!(ended, [b, joiner, e]);
    for f in &f {
        assert!(matches!(failure_of(f), Failure::Aborted(r) if r == "shutting down"));
    }
    assert_eq!(c.queue_len(), 0);
    c.complete(t0, d[0].call, ok("a")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f[0].ticket, flying);
    assert!(f[0].result.is_ok());
    let s = c.stats(t0);
    assert_eq!((s.requests.aborted, s.in_progress), (3, 0));
}

#[test]
fn time_going_backwards_is_clamped() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let t10 = at(t0, 10.0);
    let _ = c.submit(t10, get("/market/a"), 1);
    let d = dispatch_all(&mut c, t10);
    assert_eq!(d.len(), 1);
    // The host's clock jumps back ten seconds.
    let b = ticket(c.submit(t0, get("/market/b"), 2));
    assert!(c.poll_dispatch(at(t0, 5.0)).is_none());
    assert_eq!(c.poll_timeout(), Some(at(t0, 11.0)), "not earlier");
    c.handle_timeout(t0);
    c.complete(t0, d[0].call, ok("a")).unwrap();
    // Stored at t0+10 (not t0): still fresh at t0+19.
    let hit = answered(c.submit(at(t0, 19.0), get("/market/a"), 3));
    assert_eq!(hit.age, Duration::from_secs(9));
    assert!(c.stats(t0).uptime_secs >= 19.0);
    // b's wait is counted from t0+10: it is sent, not expired.
    // The host still says t0; the core acts at t0+19, when the bucket has
    // long refilled (at t0+11): b goes at the first poll.
    let (when, sent) = run_to_dispatch(&mut c, t0, at(t0, 60.0));
    assert_eq!((when, sent.len(), sent[0].payload), (t0, 1, 2));
    c.complete(t0, sent[0].call, ok("b")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 2, "a, then b");
    assert_eq!(f[1].ticket, b);
}

#[test]
fn stats_add_up_and_serialise() {
    let mut cfg = config(1.0, 1);
    cfg.queue.max_len = 2;
    let (mut c, t0) = coordinator(cfg);
    cached(&mut c, t0, "/market/hit"); // upstream
    answered(c.submit(t0, get("/market/hit"), 1)); // hit
    let _ = c.submit(t0, Request::get("/market/x", "bot-2"), 2); // queued
    let _ = c.submit(t0, Request::get("/market/x", "bot-3"), 3); // coalesced
    let cancel = ticket(c.submit(t0, get("/analysis/y"), 4));
    assert!(c.cancel(cancel));
    let _ = c.submit(t0, get("/analysis/z"), 5); // queued
    refused(c.submit(t0, get("/analysis/w"), 6)); // shed
    let s = c.stats(t0);
    let r = &s.requests;
    assert_eq!(r.submitted, 7);
    assert_eq!(r.ended() + s.in_progress, r.submitted);
    assert_eq!(s.in_progress, c.waiting() as u64);
    assert_eq!((r.upstream, r.hit, r.cancelled, r.shed), (1, 1, 1, 1));
    assert_eq!(s.in_progress, 3);
    let per_client: u64 = s.clients.iter().map(|c| c.counts.requests).sum();
    assert_eq!(per_client, r.submitted);

    serve(&mut c, t0, at(t0, 60.0), "x");
    let s = c.stats(at(t0, 60.0));
    assert_eq!(s.in_progress, 0);
    assert_eq!(s.requests.ended(), s.requests.submitted);
    assert_eq!(s.requests.coalesced, 1);
    assert_eq!(s.upstream.calls, 3);
    let json = serde_json::to_value(&s).unwrap();
    for field in [
        "requests", "upstream", "queue", "cache", "scopes", "clients", "health",
    ] {
        assert!(json.get(field).is_some(), "{field}");
    }
    assert_eq!(json["requests"]["submitted"], 7);
    assert_eq!(json["health"]["status"], "healthy");
    // The edge host carries snapshots as JSON from its Durable Objects to
    // the Worker: nothing is lost on the way.
    let back: crate::StatsSnapshot = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
}

#[test]
fn health_degrades_after_a_429_and_fails_on_long_queue_waits() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    assert_eq!(c.health(t0).status, Status::Healthy);
    let _ = c.submit(t0, get("/market/x"), 1);
    let d = dispatch_all(&mut c, t0);
    c.complete(t0, d[0].call, too_many(Some("1"))).unwrap();
    let h = c.health(t0);
    assert_eq!(h.status, Status::Degraded);
    assert!(h.reasons.iter().any(|r| r.code == "upstream_rate_limited"));

    // One call per 100 s: the second waits.
    let (mut c, t0) = coordinator(config(0.01, 1));
    let _ = drain_bucket(&mut c, t0);
    let _ = c.submit(t0, get("/market/w").with_deadline(at(t0, 1000.0)), 1);
    assert_eq!(c.health(at(t0, 4.0)).status, Status::Healthy);
    let h = c.health(at(t0, 6.0));
    assert_eq!(h.status, Status::Degraded);
    assert_eq!(h.reasons[0].code, "queue_wait");
    assert_eq!(c.health(at(t0, 21.0)).status, Status::Unhealthy);
}

/// Coinbase's `products` route is shared but paced per credential: a
/// retried call must still go out with a payload of a remaining waiter
/// (and on that waiter's bucket) after its creator cancelled mid-flight.
fn shared_retry_after_creator_left(first: Outcome) {
    const TICKER: &str = "/api/v3/brokerage/products/BTC-USD/ticker";
    let t0 = Instant::now();
    let mut c = Coordinator::<u32>::new(Config::default().compile().unwrap(), t0, 1);
    let a = ticket(c.submit(t0, get(TICKER).with_credential("key:a"), 1));
    let b = ticket(c.submit(t0, get(TICKER).with_credential("key:b"), 2));
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d[0].payload, 1);
    assert!(c.cancel(a));
    c.complete(t0, d[0].call, first).unwrap();
    assert!(finished(&mut c).is_empty(), "b is still waiting");
    let (when, sent) = run_to_dispatch(&mut c, t0, at(t0, 20.0));
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].payload, sent[0].attempt), (2, 2));
    c.complete(when, sent[0].call, ok("ticker")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].ticket, body(answer_of(&f[0]))), (b, "ticker"));
}

#[test]
fn a_shared_retry_goes_with_a_remaining_credential_after_a_5xx() {
    shared_retry_after_creator_left(status(503));
}

#[test]
fn a_shared_retry_goes_with_a_remaining_credential_after_a_429() {
    shared_retry_after_creator_left(too_many(Some("1")));
}

/// A half-open probe answered 429 proves nothing either way; the scope
/// must not stay blocked behind a probe that has ended.
#[test]
fn a_probe_answered_with_429_does_not_wedge_the_scope() {
    let mut cfg = config(10.0, 10);
    cfg.breaker.failure_threshold = 1;
    cfg.breaker.open_secs = 2.0;
    let (mut c, t0) = coordinator(cfg);
    let _ = c.submit(t0, get("/market/a"), 1);
    let d = dispatch_all(&mut c, t0);
    c.complete(t0, d[0].call, status(503)).unwrap();
    assert!(matches!(
        failure_of(&finished(&mut c)[0]),
        Failure::BreakerOpen { .. }
    ));
    let probe = ticket(c.submit(at(t0, 2.0), get("/market/probe"), 2));
    let d = dispatch_all(&mut c, at(t0, 2.0));
    assert_eq!(d.len(), 1);
    c.complete(at(t0, 2.0), d[0].call, too_many(Some("1")))
        .unwrap();
    // The probe's call is retried after the pause, and others follow.
    let other = ticket(c.submit(at(t0, 2.5), get("/market/other"), 3));
    serve(&mut c, at(t0, 2.5), at(t0, 20.0), "ok");
    let mut ended: Vec<Ticket> = finished(&mut c)
        .iter()
        .map(|f| {
            assert!(f.result.is_ok(), "{f:?}");
            f.ticket
        })
        .collect();
    ended.sort();
    assert_eq!(ended, [probe, other]);
}

#[test]
fn a_joiner_whose_deadline_has_passed_is_refused_not_queued() {
    let t0 = Instant::now();
    let mut c = Coordinator::<u32>::new(Config::default().compile().unwrap(), t0, 1);
    let path = "/api/v3/brokerage/market/products/BTC-USD/ticker";
    let first = c.submit(t0, Request::get(path, "a"), 1);
    assert!(matches!(first, Admission::Waiting { joined: false, .. }));
    let late = Request::get(path, "b").with_deadline(t0);
    match c.submit(t0 + Duration::from_millis(1), late, 2) {
        Admission::Refused(Failure::DeadlineUnreachable { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(c.waiting(), 1, "only the first request waits");
}

mod breakers;
mod freshness;
mod local;
mod output;
mod paying;
mod read_after_write;
mod reconfigure;
mod shared;
mod shares;
mod vary;
mod writes;
