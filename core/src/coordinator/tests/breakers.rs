//! Breakers with a blast radius of one route (issue 22), in virtual time:
//! what the client caused never counts, and a 5xx storm on one route
//! leaves the others answering.

use super::*;

#[test]
fn a_4xx_storm_never_opens_a_breaker() {
    let mut cfg = config(100.0, 100);
    cfg.breaker.failure_threshold = 2;
    let (mut c, t0) = coordinator(cfg);
    for i in 0..40u32 {
        let now = at(t0, f64::from(i) * 0.1);
        let _ = c.submit(now, get(&format!("/market/nope-{i}")), i);
        for d in dispatch_all(&mut c, now) {
            let code = [400, 401, 403, 404, 422][i as usize % 5];
            c.complete(now, d.call, status(code)).unwrap();
        }
    }
    let now = at(t0, 4.0);
    let s = c.stats(now);
    assert_eq!(s.upstream.breaker_opened, 0);
    assert!(s.breakers.is_empty(), "{:?}", s.breakers);
    assert_eq!(c.health(now).status, Status::Healthy);
    ticket(c.submit(now, get("/market/fine"), 99));
    assert_eq!(dispatch_all(&mut c, now).len(), 1, "the route still calls");
}

#[test]
fn a_5xx_storm_on_one_route_leaves_the_others_answering() {
    let mut cfg = config(100.0, 100);
    cfg.breaker.failure_threshold = 3;
    cfg.breaker.open_secs = 30.0;
    cfg.retry.max_attempts = 1;
    let (mut c, t0) = coordinator(cfg);
    // Market (a rule), an unmatched path, and analysis: all on the same
    // limiter bucket. Market fails, the others answer, for 10 s.
    let mut served = (0, 0);
    let mut refused_market = 0;
    for i in 0..100u32 {
        let now = at(t0, f64::from(i) * 0.1);
        for (n, path) in [
            (i * 3, format!("/market/p{i}")),
            (i * 3 + 1, format!("/other/p{i}")),
            (i * 3 + 2, format!("/analysis/p{i}")),
        ] {
            if let Admission::Refused(Failure::BreakerOpen { route, .. }) =
                c.submit(now, get(&path), n)
            {
                assert_eq!(route, "market");
                refused_market += 1;
            }
        }
        for d in dispatch_all(&mut c, now) {
            let outcome = if d.route == "market" {
                status(503)
            } else {
                ok("fine")
            };
            c.complete(now, d.call, outcome).unwrap();
        }
        for f in finished(&mut c) {
            if let Ok(a) = &f.result {
                assert_eq!(a.source, Source::Upstream);
                served.0 += 1;
            } else {
                served.1 += 1;
            }
        }
    }
    // Three market calls failed upstream; every later one was refused
    // without a call; the 200 others all answered.
    assert_eq!(served, (200, 3));
    assert_eq!(refused_market, 97);
    let s = c.stats(at(t0, 10.0));
    assert_eq!(s.upstream.breaker_opened, 1);
    assert_eq!(s.upstream.server_errors, 3);
    assert_eq!(s.upstream.calls, 203);
    assert_eq!(
        s.breakers
            .iter()
            .map(|b| (b.route.as_str(), b.state))
            .collect::<Vec<_>>(),
        [("market", crate::stats::BreakerState::Open)]
    );
    let events = c.breaker_events();
    assert_eq!(events.len(), 1, "one line for the whole storm");
    assert_eq!(events[0].reason, "upstream answered 503");
}

#[test]
fn unmatched_paths_are_routes_of_their_own_and_private_routes_per_credential() {
    let mut cfg = config(100.0, 100);
    cfg.breaker.failure_threshold = 1;
    cfg.retry.max_attempts = 1;
    let (mut c, t0) = coordinator(cfg);
    let _ = c.submit(t0, get("/x/broken"), 1);
    let mut acct_a = get("/account/balance");
    acct_a.credential = Some(crate::request::Credential("key:a".into()));
    let _ = c.submit(t0, acct_a.clone(), 2);
    for d in dispatch_all(&mut c, t0) {
        c.complete(t0, d.call, status(500)).unwrap();
    }
    let _ = finished(&mut c);
    let mut acct_b = acct_a.clone();
    acct_b.credential = Some(crate::request::Credential("key:b".into()));
    let t1 = at(t0, 1.0);
    assert!(matches!(
        c.submit(t1, get("/x/broken"), 3),
        Admission::Refused(Failure::BreakerOpen { .. })
    ));
    assert!(matches!(
        c.submit(t1, acct_a, 4),
        Admission::Refused(Failure::BreakerOpen { .. })
    ));
    ticket(c.submit(t1, get("/x/fine"), 5));
    ticket(c.submit(t1, acct_b, 6));
    assert_eq!(dispatch_all(&mut c, t1).len(), 2);
    let names: Vec<_> = c
        .stats(t1)
        .breakers
        .into_iter()
        .map(|b| (b.route, b.credential))
        .collect();
    assert_eq!(
        names,
        [
            ("account".to_owned(), Some("key:a".to_owned())),
            ("default /x/broken".to_owned(), None),
        ]
    );
}
