//! Request directives, upstream's `Cache-Control`, refresh-ahead and served
//! ages, in virtual time.

use super::*;

use crate::freshness::Freshness;
use proptest::prelude::*;

/// The test config with `/market/**` refreshed ahead (at most once a
/// second), and an `/open/**` rule that leaves its TTL to `[defaults]`.
/// Every key read at all is refreshed (`min_reads = 1`): these tests are
/// about how refresh works; which keys are worth it is tested apart.
fn refreshing(rate: f64, burst: u32) -> Config {
    let mut c = config(rate, burst);
    c.refresh.min_reads = 1;
    c.routes[2].refresh_ahead = Some(true);
    c.routes[2].min_age_secs = Some(1.0);
    c.routes.push(RouteRule {
        name: Some("open".into()),
        methods: vec!["GET".into()],
        path: "/open/**".into(),
        private: Some(false),
        ..Default::default()
    });
    c
}

fn max_age(path: &str, secs: u64) -> Request {
    get(path).with_freshness(Freshness {
        max_age: Some(Duration::from_secs(secs)),
        ..Freshness::default()
    })
}

fn no_cache(path: &str) -> Request {
    get(path).with_freshness(Freshness {
        no_cache: true,
        ..Freshness::default()
    })
}

fn only_if_cached(req: Request) -> Request {
    let mut f = req.freshness;
    f.only_if_cached = true;
    req.with_freshness(f)
}

/// Fills the cache for `path` at `now` with `body` (one call, answered at once).
fn fill(c: &mut C, now: Instant, path: &str, body: &str) {
    let _ = ticket(c.submit(now, get(path), 1));
    let d = dispatch_all(c, now);
    assert_eq!(d.len(), 1, "one call fills {path}");
    c.complete(now, d[0].call, ok(body)).unwrap();
    let _ = finished(c);
}

#[test]
fn max_age_turns_an_older_hit_into_one_coalesced_call() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    fill(&mut c, t0, "/market/a", "old");
    let t3 = at(t0, 3.0);
    // A plain read, and one that accepts 5 s, take the 3 s old entry.
    assert_eq!(
        answered(c.submit(t3, get("/market/a"), 2)).age,
        at(t0, 3.0) - t0
    );
    assert_eq!(
        answered(c.submit(t3, max_age("/market/a", 5), 3)).source,
        Source::Cache
    );
    // Two that need at most 2 s: one call between them.
    let first = c.submit(t3, max_age("/market/a", 2), 4);
    let second = c.submit(t3, max_age("/market/a", 2), 5);
    assert!(!joined(&first) && joined(&second));
    let d = dispatch_all(&mut c, t3);
    assert_eq!(d.len(), 1);
    c.complete(at(t0, 3.1), d[0].call, ok("new")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|f| body(answer_of(f)) == "new"));
    // The fresh answer is in the cache for everyone.
    assert_eq!(
        body(&answered(c.submit(at(t0, 3.2), get("/market/a"), 6))),
        "new"
    );
}

#[test]
fn no_cache_joins_only_a_call_that_left_after_it_arrived() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    fill(&mut c, t0, "/market/a", "cached");
    // No fresh call underway: its own call, though a fresh entry exists.
    let t1 = at(t0, 1.0);
    let a = c.submit(t1, no_cache("/market/a"), 1);
    assert!(!joined(&a));
    let d = dispatch_all(&mut c, t1);
    assert_eq!(d.len(), 1);
    // That call is in flight since t1; a no-cache request arriving later
    // cannot take its answer, a plain one (or max-age=1) can.
    let t2 = at(t0, 1.5);
    assert!(joined(&c.submit(t2, max_age("/market/a", 1), 2)));
    let late = c.submit(t2, no_cache("/market/a"), 3);
    assert!(!joined(&late), "a call that left before it arrived");
    // Later reads join the newest call.
    let plain = ticket(c.submit(t2, get("/market/b"), 9));
    let _ = plain;
    let d2 = dispatch_all(&mut c, t2);
    assert_eq!(d2.len(), 2, "the late no-cache call and /market/b");
    c.complete(at(t0, 1.6), d[0].call, ok("from t1")).unwrap();
    c.complete(at(t0, 1.7), d2[0].call, ok("from t1.5"))
        .unwrap();
    c.complete(at(t0, 1.7), d2[1].call, ok("b")).unwrap();
    let f = finished(&mut c);
    let by_ticket = |t: Ticket| f.iter().find(|f| f.ticket == t).map(answer_of).map(body);
    assert_eq!(by_ticket(ticket(late)), Some("from t1.5"));
    // The cache holds the newest answer.
    assert_eq!(
        body(&answered(c.submit(at(t0, 1.8), get("/market/a"), 4))),
        "from t1.5"
    );
}

#[test]
fn an_older_calls_late_answer_never_replaces_a_newer_one() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let _ = ticket(c.submit(t0, get("/market/a"), 1));
    let old = dispatch_all(&mut c, t0);
    let t1 = at(t0, 1.0);
    let _ = ticket(c.submit(t1, no_cache("/market/a"), 2));
    let new = dispatch_all(&mut c, t1);
    c.complete(at(t0, 1.1), new[0].call, ok("new")).unwrap();
    c.complete(at(t0, 1.2), old[0].call, ok("old")).unwrap();
    assert_eq!(
        body(&answered(c.submit(at(t0, 1.3), get("/market/a"), 3))),
        "new"
    );
}

#[test]
fn fresh_requests_wait_for_the_limiter_and_never_exceed_it() {
    // One call per second, burst 1: a bot asking for no-cache every 100 ms
    // gets the budget's pace, not its own.
    let (mut c, t0) = coordinator(config(1.0, 1));
    let mut sent = Vec::new();
    let mut answered_fresh = 0;
    let mut tickets = 0;
    for i in 0..100u32 {
        let now = at(t0, f64::from(i) * 0.1);
        c.handle_timeout(now);
        match c.submit(now, no_cache("/market/a"), i) {
            Admission::Waiting { .. } => tickets += 1,
            other => panic!("a no-cache request waits for a call: {other:?}"),
        }
        for d in dispatch_all(&mut c, now) {
            sent.push(now);
            c.complete(now + Duration::from_millis(10), d.call, ok("x"))
                .unwrap();
        }
        for f in finished(&mut c) {
            let a = answer_of(&f);
            assert!(
                matches!(a.source, Source::Upstream | Source::Coalesced),
                "{:?}",
                a.source
            );
            answered_fresh += 1;
        }
    }
    // Within any window w: at most burst + rate * w calls.
    for (i, &start) in sent.iter().enumerate() {
        for (j, &end) in sent.iter().enumerate().skip(i) {
            let w = (end - start).as_secs_f64();
            assert!(
                (j - i + 1) as f64 <= 1.0 + w + 1e-9,
                "{} calls in {w} s",
                j - i + 1
            );
        }
    }
    assert!(
        sent.len() >= 9 && sent.len() <= 11,
        "{} calls in 10 s",
        sent.len()
    );
    assert!(answered_fresh > 0 && answered_fresh <= tickets);
}

#[test]
fn a_fresh_request_past_its_deadline_gets_the_youngest_answer_with_its_age() {
    let (mut c, t0) = coordinator(config(0.1, 1));
    fill(&mut c, t0, "/market/a", "cached");
    let t2 = at(t0, 2.0);
    // The bucket refills in 10 s; the request may wait only 1 s.
    let req = no_cache("/market/a").with_deadline(at(t0, 3.0));
    let a = answered(c.submit(t2, req, 2));
    assert_eq!(
        (a.source, body(&a), a.age),
        (Source::Cache, "cached", t2 - t0)
    );
    assert_eq!(c.waiting(), 0);
}

#[test]
fn only_if_cached_answers_from_the_cache_or_refuses_at_once() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let miss = refused(c.submit(t0, only_if_cached(get("/market/a")), 1));
    assert!(matches!(miss, Failure::NotCached), "{miss:?}");
    assert_eq!((c.waiting(), c.queue_len()), (0, 0));
    assert!(c.poll_dispatch(t0).is_none(), "nothing is sent for it");
    fill(&mut c, t0, "/market/a", "cached");
    let t5 = at(t0, 5.0);
    assert_eq!(
        answered(c.submit(t5, only_if_cached(get("/market/a")), 2)).source,
        Source::Cache
    );
    // Too old for its max-age: still no wait.
    let strict = refused(c.submit(t5, only_if_cached(max_age("/market/a", 1)), 3));
    assert!(matches!(strict, Failure::NotCached));
    // Expired (TTL 10 s): only with max-stale.
    let t12 = at(t0, 12.0);
    assert!(matches!(
        refused(c.submit(t12, only_if_cached(get("/market/a")), 4)),
        Failure::NotCached
    ));
    let mut stale_ok = only_if_cached(get("/market/a"));
    stale_ok.freshness.max_stale = Some(Duration::from_secs(5));
    let a = answered(c.submit(t12, stale_ok, 5));
    assert_eq!((a.source, a.age), (Source::Stale, t12 - t0));
    assert_eq!(c.waiting(), 0);
    assert_eq!(c.stats(t12).requests.not_cached, 3);
}

#[test]
fn max_stale_takes_an_expired_entry_instead_of_waiting() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    fill(&mut c, t0, "/market/a", "cached");
    let t12 = at(t0, 12.0);
    // RFC 9211 §2.3: a negative ttl says stale; a fraction of a second
    // past expiry is -1, never 0 (which reads as fresh).
    let mut req = get("/market/a");
    req.freshness.max_stale = Some(Duration::from_secs(5));
    let barely = answered(c.submit(at(t0, 10.3), req, 4));
    assert_eq!((barely.source, barely.ttl_secs), (Source::Stale, Some(-1)));
    let mut req = get("/market/a");
    req.freshness.max_stale = Some(Duration::from_secs(5));
    let stale = answered(c.submit(t12, req, 2));
    assert_eq!((stale.source, stale.ttl_secs), (Source::Stale, Some(-2)));
    // Past its max-stale: a call.
    let mut req = get("/market/a");
    req.freshness.max_stale = Some(Duration::from_secs(1));
    let _ = ticket(c.submit(t12, req, 3));
}

#[test]
fn upstream_cache_control_decides_unless_the_route_pins_its_ttl() {
    let (mut c, t0) = coordinator(refreshing(10.0, 10));
    let answer =
        |cc: &str| Outcome::response(Response::new(200, cc).with_header("Cache-Control", cc));
    let load = |c: &mut C, path: &str, cc: &str| {
        let _ = ticket(c.submit(t0, get(path), 1));
        let d = dispatch_all(c, t0);
        c.complete(t0, d[0].call, answer(cc)).unwrap();
        let _ = finished(c);
    };
    // `/open/**` takes its TTL from [defaults] (90 s): upstream decides.
    load(&mut c, "/open/no-store", "no-store");
    load(&mut c, "/open/short", "max-age=2");
    load(&mut c, "/open/private", "private, max-age=60");
    load(&mut c, "/open/shared", "max-age=2, s-maxage=30");
    // `/market/**` pinned its TTL at 10 s: `no-store` does not change it.
    load(&mut c, "/market/pinned", "no-store");
    let t1 = at(t0, 1.0);
    let t5 = at(t0, 5.0);
    let hit = |c: &mut C, now: Instant, path: &str| {
        matches!(c.submit(now, get(path), 2), Admission::Answered(_))
    };
    // Read within its refresh interval (1 s), so that it is kept rather
    // than fetched on demand once older.
    assert!(hit(&mut c, at(t0, 0.5), "/market/pinned"));
    assert!(!hit(&mut c, t1, "/open/no-store"));
    assert!(hit(&mut c, t1, "/open/short"));
    assert!(!hit(&mut c, t5, "/open/short"), "max-age=2 expired");
    assert!(
        !hit(&mut c, t1, "/open/private"),
        "private never enters a shared entry"
    );
    assert!(
        hit(&mut c, t5, "/open/shared"),
        "s-maxage wins over max-age"
    );
    assert!(hit(&mut c, t5, "/market/pinned"));
}

/// RFC 9111 §4.2.3: "current_age = corrected_initial_age +
/// resident_time", where the initial age is at least upstream's `Age`
/// ("the time since the response was generated ... at the origin", §5.1).
/// An answer that spent 30 s in caches upstream is 30 s old on arrival:
/// reads see that age (and a reader's `max-age` judges it), and its
/// lifetime has 10 s of `max-age=40` left. A pinned TTL starts its own
/// clock: upstream's `Age` is one of the directives the pin overrides.
#[test]
fn upstream_age_is_part_of_every_reads_age_unless_the_ttl_is_pinned() {
    let (mut c, t0) = coordinator(refreshing(10.0, 10));
    let aged = Outcome::response(
        Response::new(200, "aged")
            .with_header("Cache-Control", "max-age=40")
            .with_header("Age", "30"),
    );
    for path in ["/open/aged", "/market/aged"] {
        let _ = ticket(c.submit(t0, get(path), 1));
        let d = dispatch_all(&mut c, t0);
        c.complete(t0, d[0].call, aged.clone()).unwrap();
        let fetched = finished(&mut c);
        assert_eq!(
            answer_of(&fetched[0]).age,
            Duration::ZERO,
            "fetched: upstream's Age is in its headers"
        );
    }
    // Read once inside its refresh interval, so that past it the refreshed
    // route still answers from the cache (a key no one read is fetched on
    // demand instead: `[refresh] min_reads`).
    let _ = answered(c.submit(at(t0, 0.5), get("/market/aged"), 6));
    let t2 = at(t0, 2.0);
    let hit = answered(c.submit(t2, get("/open/aged"), 2));
    assert_eq!(hit.age, Duration::from_secs(32));
    assert_eq!(hit.ttl_secs, Some(8), "40 s of max-age, 32 s spent");
    assert!(
        !matches!(
            c.submit(t2, max_age("/open/aged", 20), 3),
            Admission::Answered(_)
        ),
        "a reader asking max-age=20 does not get a 32 s old answer"
    );
    let pinned = answered(c.submit(t2, get("/market/aged"), 5));
    assert_eq!(
        (pinned.age, pinned.ttl_secs),
        (Duration::from_secs(2), Some(8))
    );
    assert!(
        !matches!(
            c.submit(at(t0, 10.5), get("/open/aged"), 4),
            Admission::Answered(_)
        ),
        "expired 10 s after arrival"
    );
}

/// Runs `c` from `from` to `to` in 50 ms steps: bots read `paths` every
/// `read_every` (if any), every dispatch is answered 20 ms later. Returns
/// (refresh dispatches, real dispatches, the answers bots got).
fn drive(
    c: &mut C,
    from: Instant,
    to: Instant,
    paths: &[&str],
    read_every: Option<Duration>,
) -> (Vec<Instant>, Vec<Instant>, Vec<Answer>) {
    let step = Duration::from_millis(50);
    let (mut refreshes, mut real, mut answers) = (Vec::new(), Vec::new(), Vec::new());
    let mut pending: Vec<(Instant, CallId)> = Vec::new();
    let mut next_read = from;
    let mut now = from;
    while now < to {
        c.handle_timeout(now);
        pending.retain(|&(due, call)| {
            if due <= now {
                c.complete(now, call, ok("fresh")).unwrap();
                false
            } else {
                true
            }
        });
        if let Some(every) = read_every {
            if now >= next_read {
                for p in paths {
                    match c.submit(now, get(p), 0) {
                        Admission::Answered(a) => answers.push(a),
                        Admission::Waiting { .. } => {}
                        Admission::Refused(f) => panic!("{f}"),
                    }
                }
                next_read = now + every;
            }
        }
        for d in dispatch_all(c, now) {
            if d.refresh {
                refreshes.push(now);
            } else {
                real.push(now);
            }
            pending.push((now + Duration::from_millis(20), d.call));
        }
        for f in finished(c) {
            answers.push(answer_of(&f).clone());
        }
        now += step;
    }
    (refreshes, real, answers)
}

#[test]
fn refresh_ahead_keeps_read_keys_young_from_spare_budget() {
    let (mut c, t0) = coordinator(refreshing(10.0, 10));
    let paths = ["/market/a", "/market/b", "/market/c"];
    let (refreshes, real, answers) = drive(
        &mut c,
        t0,
        at(t0, 30.0),
        &paths,
        Some(Duration::from_millis(500)),
    );
    // One real call per key; after that, reads are hits kept young by
    // about one refresh per key per second (min_age 1 s).
    assert_eq!(real.len(), 3, "{real:?}");
    assert!(
        refreshes.len() >= 80 && refreshes.len() <= 90,
        "{}",
        refreshes.len()
    );
    let hits: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.source == Source::Cache)
        .collect();
    assert!(hits.len() >= 170, "{}", hits.len());
    let oldest = answers.iter().map(|a| a.age).max().unwrap();
    assert!(
        oldest <= Duration::from_millis(1150),
        "oldest answer {oldest:?}"
    );
    let s = c.stats(at(t0, 30.0));
    assert_eq!(s.upstream.refreshes, refreshes.len() as u64);
    assert_eq!(s.upstream.calls, (refreshes.len() + real.len()) as u64);
    assert!(s.served_age.hit.p99_secs <= 1.15, "{:?}", s.served_age);
    assert_eq!(s.served_age.all.count, answers.len() as u64);
    // Without refresh-ahead the same reads age up to the TTL (10 s).
    let (mut off, t0) = coordinator(config(10.0, 10));
    let (refreshes, _, answers) = drive(
        &mut off,
        t0,
        at(t0, 30.0),
        &paths,
        Some(Duration::from_millis(500)),
    );
    assert!(refreshes.is_empty());
    assert!(answers.iter().map(|a| a.age).max().unwrap() >= Duration::from_secs(9));
}

#[test]
fn refresh_stops_for_keys_nobody_reads() {
    let mut config = refreshing(10.0, 10);
    // Only the idle window stops it here (not the age of the stored request).
    config.refresh.resend_max_age_secs = 1000.0;
    let (mut c, t0) = coordinator(config);
    let stop = at(t0, 5.0);
    let (before, _, _) = drive(
        &mut c,
        t0,
        stop,
        &["/market/a"],
        Some(Duration::from_millis(500)),
    );
    assert!(!before.is_empty());
    assert!(c.refreshing());
    // Nobody reads any more: at most one more refresh (the answer the
    // last read saw was read, so its successor may be), within one
    // interval (min_age, 1 s) of the last read; then none, and the entry
    // ages (TTL 10 s).
    let quiet = stop + Duration::from_secs(38);
    let (after, real, _) = drive(&mut c, stop, quiet, &[], None);
    assert!(real.is_empty());
    assert!(
        after.len() <= 1 && after.iter().all(|&t| t <= stop + Duration::from_secs(1)),
        "{after:?}"
    );
    assert!(!c.refreshing());
    // The entry expired meanwhile: the next read makes one real call,
    // and the reads its answer serves start refreshing again.
    let (woken, real, answers) = drive(
        &mut c,
        quiet,
        quiet + Duration::from_secs(5),
        &["/market/a"],
        Some(Duration::from_millis(500)),
    );
    assert_eq!(real.len(), 1, "{real:?}");
    assert_eq!(answers[0].source, Source::Upstream);
    assert!(
        answers[1..].iter().all(|a| a.source == Source::Cache),
        "{answers:?}"
    );
    assert!(!woken.is_empty());
    assert!(
        woken[0] - real[0] <= Duration::from_millis(1100),
        "{woken:?}"
    );
}

#[test]
fn refresh_stops_when_real_requests_need_the_budget() {
    // Two calls per second, burst 2: the reserve (half the burst) leaves
    // room for one refresh only when the bucket is full.
    let (mut c, t0) = coordinator(refreshing(2.0, 2));
    fill(&mut c, t0, "/market/a", "a");
    let _ = answered(c.submit(at(t0, 0.5), get("/market/a"), 1));
    // Real calls take the whole bucket and queue behind it.
    let t1 = at(t0, 1.5);
    for i in 0..4 {
        let _ = ticket(c.submit(t1, get(&format!("/analysis/{i}")), 10 + i));
    }
    let mut now = t1;
    let mut refreshes_while_waiting = 0;
    while c.queue_len() > 0 {
        c.handle_timeout(now);
        for d in dispatch_all(&mut c, now) {
            if d.refresh && c.queue_len() > 0 {
                refreshes_while_waiting += 1;
            }
            c.complete(now, d.call, ok("x")).unwrap();
        }
        let _ = finished(&mut c);
        let _ = c.submit(now, get("/market/a"), 1);
        now += Duration::from_millis(50);
    }
    assert_eq!(refreshes_while_waiting, 0);
    // Queue empty, bucket refilled above the reserve: refreshing resumes.
    let (after, _, _) = drive(
        &mut c,
        now,
        now + Duration::from_secs(5),
        &["/market/a"],
        Some(Duration::from_millis(500)),
    );
    assert!(!after.is_empty());
    // A bucket never goes below its reserve for a refresh: with a burst of
    // one and reserve 0.5, there is no room, ever.
    let (mut tight, t0) = coordinator(refreshing(1.0, 1));
    let (refreshes, _, _) = drive(
        &mut tight,
        t0,
        at(t0, 20.0),
        &["/market/a"],
        Some(Duration::from_millis(500)),
    );
    assert!(refreshes.is_empty());
}

#[test]
fn a_refresh_answer_reaches_no_request_and_a_refused_refresh_stops() {
    let (mut c, t0) = coordinator(refreshing(10.0, 10));
    fill(&mut c, t0, "/market/a", "a");
    // Read before its interval ends: worth a refresh.
    let _ = answered(c.submit(at(t0, 0.5), get("/market/a"), 1));
    let t1 = at(t0, 1.1);
    let _ = answered(c.submit(t1, get("/market/a"), 1));
    let refresh = c.poll_dispatch(t1).expect("a refresh is due");
    assert!(refresh.refresh);
    assert_eq!(
        refresh.payload, 1,
        "the request of the last real call, as sent"
    );
    // A request that needs a fresh answer does not join the refresh.
    let t2 = at(t0, 1.2);
    let own = c.submit(t2, no_cache("/market/a"), 2);
    assert!(!joined(&own));
    // Upstream refuses the stale request: nothing is cached, nobody is
    // answered, and the key is no longer refreshed.
    c.complete(t2, refresh.call, status(401)).unwrap();
    assert!(finished(&mut c).is_empty());
    let d = dispatch_all(&mut c, t2);
    assert_eq!(d.len(), 1);
    assert!(!d[0].refresh);
    c.complete(t2, d[0].call, status(401)).unwrap();
    let f = finished(&mut c);
    assert_eq!(
        answer_of(&f[0]).response.status,
        401,
        "its own call's answer"
    );
    assert_eq!(
        body(&answered(c.submit(at(t0, 2.5), get("/market/a"), 3))),
        "a"
    );
    assert!(dispatch_all(&mut c, at(t0, 3.0)).iter().all(|d| !d.refresh));
}

#[test]
fn reads_lend_a_young_request_before_the_stored_one_expires() {
    let mut config = refreshing(10.0, 10);
    config.refresh.resend_max_age_secs = 4.0;
    let (mut c, t0) = coordinator(config);
    fill(&mut c, t0, "/market/a", "a");
    let mut payloads = Vec::new();
    let mut now = t0;
    for i in 1..200u32 {
        now = at(t0, f64::from(i) * 0.05);
        c.handle_timeout(now);
        if i % 10 == 0 {
            let _ = c.submit(now, get("/market/a"), i);
        }
        for d in dispatch_all(&mut c, now) {
            assert!(d.refresh);
            payloads.push((now, d.payload));
            c.complete(now, d.call, ok("x")).unwrap();
        }
    }
    assert!(payloads.len() >= 7, "{payloads:?}");
    // Every refresh re-sent a request made at most 4 s before.
    for (sent, payload) in &payloads {
        let made = at(t0, f64::from(*payload) * 0.05);
        assert!(
            *sent - made <= Duration::from_secs(4),
            "{payload} re-sent at {:?}",
            *sent - t0
        );
    }
    let _ = now;
}

/// One step of a random schedule: a bot reads one of four keys (some
/// asking for no-cache) or places an order; time moves on.
#[derive(Debug, Clone)]
enum Step {
    Read { key: u8, no_cache: bool },
    Order,
    Wait { millis: u16 },
    Answer { latency_millis: u16 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..4, proptest::bool::weighted(0.2)).prop_map(|(key, no_cache)| Step::Read { key, no_cache }),
        1 => Just(Step::Order),
        3 => (1u16..1500).prop_map(|millis| Step::Wait { millis }),
        2 => (0u16..400).prop_map(|latency_millis| Step::Answer { latency_millis }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Refresh-ahead never goes out while a real call waits for the
    /// (single, shared) bucket, never leaves the bucket below its reserve,
    /// and the upstream never sees more than the limit allows.
    #[test]
    fn refresh_ahead_never_delays_a_waiting_real_request(
        steps in proptest::collection::vec(step(), 1..300),
        rate in 1.0f64..6.0,
        burst in 2u32..8,
    ) {
        let mut config = refreshing(rate, burst);
        config.queue.top_class_reserve = 0;
        config.routes[3].refresh_ahead = Some(true);
        config.routes[3].min_age_secs = Some(0.5);
        // Analysis reads also draw on a slow second scope: they can wait on
        // it while the shared `api` bucket has tokens a refresh could take.
        config.scopes.insert("slow".into(), ScopeConfig {
            rate: 0.2,
            period_secs: 1.0,
            burst: 1,
            per: Keying::Global,
            headroom: 1.0,
        });
        config.routes[3].scopes = Some(vec!["api".into(), "slow".into()]);
        let reserve = (f64::from(burst) * config.refresh.reserve).ceil();
        let (mut c, t0) = coordinator(config);
        let mut now = t0;
        let mut in_flight: Vec<(Instant, CallId)> = Vec::new();
        let mut sent: Vec<Instant> = Vec::new();
        for s in steps {
            match s {
                Step::Read { key, no_cache: nc } => {
                    let path = if key % 2 == 0 { format!("/market/{key}") } else { format!("/analysis/{key}") };
                    let req = if nc { no_cache(&path) } else { get(&path) };
                    let _ = c.submit(now, req, u32::from(key));
                }
                Step::Order => { let _ = c.submit(now, post("/orders"), 99); }
                Step::Wait { millis } => now += Duration::from_millis(u64::from(millis)),
                Step::Answer { latency_millis } => {
                    let due = now + Duration::from_millis(u64::from(latency_millis));
                    in_flight.retain(|&(at, call)| {
                        if at <= due { let _ = c.complete(due.max(now), call, ok("x")); false } else { true }
                    });
                    now = due.max(now);
                }
            }
            c.handle_timeout(now);
            while let Some(d) = c.poll_dispatch(now) {
                if d.refresh {
                    prop_assert_eq!(c.queue_len(), 0, "a refresh went out while a real call waited");
                    // The bucket keeps at least its reserve after the refresh.
                    let tokens = c
                        .stats(now)
                        .scopes
                        .iter()
                        .filter(|b| b.scope == "api")
                        .map(|b| b.tokens)
                        .fold(f64::MAX, f64::min);
                    prop_assert!(tokens >= reserve - 1e-6, "{tokens} tokens left, reserve {reserve}");
                }
                sent.push(now);
                in_flight.push((now + Duration::from_millis(100), d.call));
            }
            let _ = finished(&mut c);
        }
        for (i, &start) in sent.iter().enumerate() {
            let mut n = 0usize;
            for &end in &sent[i..] {
                n += 1;
                let w = (end - start).as_secs_f64();
                prop_assert!(n as f64 <= f64::from(burst) + rate * w + 1e-6, "{n} calls in {w} s");
            }
        }
    }
}

/// The presets refresh a key read often (here 20 times an interval) and
/// fetch one read seldom (4 times an interval, under `min_reads`) when
/// its answer reaches the interval: either way no answer is older than
/// the interval (2 s) plus a step, and the key read seldom costs fewer
/// calls than refreshing it would.
#[test]
fn the_presets_refresh_keys_read_often_and_fetch_the_others_on_demand() {
    let paths = [
        "/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1",
        "/api/v3/brokerage/best_bid_ask?product_ids=BTC-USD",
        "/api/v3/brokerage/accounts",
        "/api/v3/brokerage/market/products/BTC-USD/candles?granularity=ONE_MINUTE",
    ];
    // Read often: every 2 s (the presets' `min_age`) for each of the 4
    // keys over 10 s, after the first real calls.
    let (mut c, t0) = coordinator(Config::default());
    let (refreshes, real, answers) = drive(
        &mut c,
        t0,
        at(t0, 10.0),
        &paths,
        Some(Duration::from_millis(100)),
    );
    assert_eq!(real.len(), 4);
    assert!((16..=20).contains(&refreshes.len()), "{}", refreshes.len());
    let oldest = answers.iter().map(|a| a.age).max().unwrap();
    assert!(oldest <= Duration::from_millis(2100), "{oldest:?}");

    // Read seldom: no refresh; the first read past 2 s goes upstream, so
    // each key makes a call every 2.5 s (the next read after 2 s), not
    // every 2 s.
    let (mut c, t0) = coordinator(Config::default());
    let (refreshes, real, answers) = drive(
        &mut c,
        t0,
        at(t0, 10.0),
        &paths,
        Some(Duration::from_millis(500)),
    );
    assert!(refreshes.is_empty(), "{refreshes:?}");
    assert_eq!(real.len(), 4 * 4, "{real:?}");
    let oldest = answers.iter().map(|a| a.age).max().unwrap();
    assert!(oldest <= Duration::from_millis(2000), "{oldest:?}");
    let s = c.stats(at(t0, 10.0));
    assert_eq!((s.upstream.refreshes, s.upstream.bot_calls), (0, 16));
}

/// A key read seldom is fetched by its first reader past the interval
/// only with budget a refresh could have spent; with none spare, that
/// reader gets the answer held, as it would without refresh-ahead.
#[test]
fn a_key_read_seldom_is_fetched_on_demand_only_with_spare_budget() {
    // Burst 4, half of it kept back from refreshes (and on-demand reads).
    let mut config = refreshing(1.0, 4);
    config.refresh.min_reads = 8;
    let (mut c, t0) = coordinator(config);
    fill(&mut c, t0, "/market/a", "a");
    // Three other calls take the bucket down to 0 tokens.
    for (i, p) in ["/open/x", "/open/y", "/open/z"].iter().enumerate() {
        fill(&mut c, at(t0, 0.1 * (i as f64 + 1.0)), p, "other");
    }
    // Past the 1 s interval, read once (under `min_reads`): about 1.2
    // tokens, under the reserve of 2 plus 1, so the answer held serves.
    let held = answered(c.submit(at(t0, 1.5), get("/market/a"), 2));
    assert_eq!((body(&held), held.source), ("a", Source::Cache));
    // With the bucket refilled above the reserve, the next reader fetches.
    let later = c.submit(at(t0, 4.0), get("/market/a"), 3);
    assert!(matches!(later, Admission::Waiting { .. }), "{later:?}");
    let d = dispatch_all(&mut c, at(t0, 4.0));
    assert_eq!((d.len(), d[0].refresh), (1, false));
}
