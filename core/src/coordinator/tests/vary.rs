//! `Vary`, from RFC 9111 §4.1 ("Calculating Cache Keys with the Vary
//! Header Field"), in virtual time: a stored response is reused only for
//! a request whose nominated header fields match the ones of the request
//! it answered; `Vary: *` always fails to match; and coalescing (reuse
//! before the answer is even stored) obeys the same rule.
//!
//! `/market/**` pins its TTL (10 s): variant selection applies anyway.

use super::*;

use crate::RequestHeaders;

fn with(path: &str, fields: &[(&str, &str)]) -> Request {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    get(path).with_headers(RequestHeaders::from(fields))
}

fn accept(path: &str, value: &str) -> Request {
    with(path, &[("Accept", value)])
}

fn varying(body: &str, vary: &str) -> Outcome {
    Outcome::response(Response::new(200, body).with_header("Vary", vary))
}

/// One call for `req`, answered at once with `outcome`; the answer's body.
fn call(c: &mut C, now: Instant, req: Request, outcome: Outcome) -> String {
    let t = ticket(c.submit(now, req, 1));
    let d = dispatch_all(c, now);
    assert_eq!(d.len(), 1, "one call");
    c.complete(now, d[0].call, outcome).unwrap();
    let f = finished(c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, t);
    body(answer_of(&f[0])).to_owned()
}

/// The body of a cache hit for `req`, or `None` when it waits for a call.
fn hit(c: &mut C, now: Instant, req: Request) -> Option<String> {
    match c.submit(now, req, 1) {
        Admission::Answered(a) => {
            assert_eq!(a.source, Source::Cache);
            Some(body(&a).to_owned())
        }
        Admission::Waiting { ticket, .. } => {
            c.cancel(ticket);
            let _ = finished(c);
            None
        }
        Admission::Refused(f) => panic!("refused: {f}"),
    }
}

#[test]
fn a_variant_answers_only_requests_whose_nominated_fields_match() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    let t1 = at(t0, 1.0);
    call(
        &mut c,
        t0,
        accept("/market/a", "text/csv"),
        varying("csv", "Accept"),
    );
    // Field lines combined and whitespace around commas do not matter.
    assert_eq!(
        hit(&mut c, t1, accept("/market/a", "text/csv")),
        Some("csv".into())
    );
    assert_eq!(
        hit(&mut c, t1, with("/market/a", &[("accept", " text/csv ")])),
        Some("csv".into())
    );
    // Another value, or a value in another case, is another variant.
    assert_eq!(
        hit(&mut c, t1, accept("/market/a", "application/json")),
        None
    );
    assert_eq!(hit(&mut c, t1, accept("/market/a", "TEXT/CSV")), None);
    // So is a request with no Accept at all.
    assert_eq!(hit(&mut c, t1, get("/market/a")), None);
    // A header Vary does not name does not matter.
    assert_eq!(
        hit(
            &mut c,
            t1,
            with("/market/a", &[("Accept", "text/csv"), ("X-Other", "1")])
        ),
        Some("csv".into())
    );
}

#[test]
fn several_variants_live_side_by_side_and_an_absent_field_matches_only_absent() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    call(&mut c, t0, get("/market/a"), varying("none", "Accept"));
    call(
        &mut c,
        t0,
        accept("/market/a", "text/csv"),
        varying("csv", "Accept"),
    );
    call(
        &mut c,
        t0,
        accept("/market/a", ""),
        varying("empty", "Accept"),
    );
    let t1 = at(t0, 1.0);
    assert_eq!(hit(&mut c, t1, get("/market/a")), Some("none".into()));
    assert_eq!(
        hit(&mut c, t1, accept("/market/a", "text/csv")),
        Some("csv".into())
    );
    assert_eq!(
        hit(&mut c, t1, accept("/market/a", "")),
        Some("empty".into())
    );
    assert_eq!(c.stats(t1).cache.entries, 3);
    // The pinned TTL still decides freshness: 10 s for every variant.
    assert_eq!(hit(&mut c, at(t0, 10.5), get("/market/a")), None);
}

#[test]
fn vary_star_is_never_stored_nor_reused() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    call(&mut c, t0, get("/market/a"), varying("one", "Accept, *"));
    assert_eq!(hit(&mut c, at(t0, 1.0), get("/market/a")), None);
    assert_eq!(c.stats(t0).cache.entries, 0);
}

#[test]
fn an_answer_without_vary_replaces_the_variants_and_serves_everyone() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    call(&mut c, t0, accept("/market/a", "x"), varying("x", "Accept"));
    call(&mut c, t0, accept("/market/a", "y"), ok("plain"));
    let t1 = at(t0, 1.0);
    assert_eq!(
        hit(&mut c, t1, accept("/market/a", "x")),
        Some("plain".into())
    );
    assert_eq!(hit(&mut c, t1, get("/market/a")), Some("plain".into()));
    assert_eq!(c.stats(t1).cache.entries, 1);
}

#[test]
fn variants_per_target_are_bounded_oldest_out() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    for i in 0..=crate::cache::MAX_VARIANTS {
        let v = format!("v{i}");
        call(&mut c, t0, accept("/market/a", &v), varying(&v, "Accept"));
    }
    let t1 = at(t0, 1.0);
    assert_eq!(c.stats(t1).cache.entries, crate::cache::MAX_VARIANTS);
    assert_eq!(
        hit(&mut c, t1, accept("/market/a", "v0")),
        None,
        "oldest out"
    );
    for i in 1..=crate::cache::MAX_VARIANTS {
        let v = format!("v{i}");
        assert_eq!(hit(&mut c, t1, accept("/market/a", &v)), Some(v));
    }
}

/// Upstream's `Cache-Control` (an unpinned route) with `Vary`: both apply.
#[test]
fn upstream_freshness_and_vary_apply_together() {
    let mut config = config(100.0, 100);
    config.routes.push(RouteRule {
        name: Some("open".into()),
        methods: vec!["GET".into()],
        path: "/open/**".into(),
        private: Some(false),
        ..Default::default()
    });
    let (mut c, t0) = coordinator(config);
    let answer = Response::new(200, "en")
        .with_header("Cache-Control", "max-age=60")
        .with_header("Vary", "accept-language");
    let req = |lang: &str| with("/open/a", &[("Accept-Language", lang)]);
    call(&mut c, t0, req("en"), Outcome::response(answer));
    assert_eq!(hit(&mut c, at(t0, 30.0), req("en")), Some("en".into()));
    assert_eq!(hit(&mut c, at(t0, 30.0), req("de")), None);
}

/// The waiters answered since the last look: each one's source and body.
fn answered_now(c: &mut C) -> BTreeMap<Ticket, (Source, String)> {
    finished(c)
        .iter()
        .map(|f| {
            (
                f.ticket,
                (answer_of(f).source, body(answer_of(f)).to_owned()),
            )
        })
        .collect()
}

/// What the coalescing rule costs: four reads join one call; its answer
/// varies on `Accept`; the two that sent what the leader sent take it, the
/// other two (one variant) share one more call. Three requests' worth of
/// variants, two calls, never more calls than requests.
#[test]
fn coalesced_waiters_of_another_variant_get_their_own_call() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    let a1 = ticket(c.submit(t0, accept("/market/a", "a"), 1));
    let a2 = c.submit(t0, accept("/market/a", "a"), 2);
    let b1 = c.submit(t0, accept("/market/a", "b"), 3);
    let b2 = c.submit(t0, accept("/market/a", "b"), 4);
    assert!(joined(&a2) && joined(&b1) && joined(&b2));
    let (a2, b1, b2) = (ticket(a2), ticket(b1), ticket(b2));
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].payload, 1, "the first request's is sent");
    c.complete(t0, d[0].call, varying("A", "Accept")).unwrap();
    let got = answered_now(&mut c);
    assert_eq!(
        got.len(),
        2,
        "only the matching waiters are answered: {got:?}"
    );
    assert_eq!(got[&a1], (Source::Upstream, "A".into()));
    assert_eq!(got[&a2], (Source::Coalesced, "A".into()));
    // The others' call goes out with one of their own payloads.
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 1, "one more call for the other variant");
    assert_eq!(d[0].payload, 3);
    c.complete(t0, d[0].call, varying("B", "Accept")).unwrap();
    let got = answered_now(&mut c);
    assert_eq!(got[&b1], (Source::Upstream, "B".into()));
    assert_eq!(got[&b2], (Source::Coalesced, "B".into()));
    let s = c.stats(t0);
    assert_eq!(s.upstream.calls, 2, "4 requests, 2 variants, 2 calls");
    assert_eq!(s.upstream.vary_redispatched, 2);
    // Both variants are stored.
    assert_eq!(
        hit(&mut c, at(t0, 1.0), accept("/market/a", "a")),
        Some("A".into())
    );
    assert_eq!(
        hit(&mut c, at(t0, 1.0), accept("/market/a", "b")),
        Some("B".into())
    );
}

/// Once the target is known to vary, a read joins only a call for its own
/// variant: no call, no split.
#[test]
fn known_variance_keys_coalescing_by_variant() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    call(&mut c, t0, accept("/market/a", "a"), varying("A", "Accept"));
    let t11 = at(t0, 11.0); // both expired
    let a = c.submit(t11, accept("/market/a", "a"), 1);
    let b = c.submit(t11, accept("/market/a", "b"), 2);
    let a2 = c.submit(t11, accept("/market/a", "a"), 3);
    assert!(!joined(&a) && !joined(&b) && joined(&a2));
    let d = dispatch_all(&mut c, t11);
    assert_eq!(d.len(), 2);
    for x in &d {
        let body = if x.payload == 1 { "A2" } else { "B2" };
        c.complete(t11, x.call, varying(body, "Accept")).unwrap();
    }
    assert_eq!(finished(&mut c).len(), 3);
    assert_eq!(c.stats(t11).upstream.vary_redispatched, 0);
}

/// `Vary: *`: only the request upstream saw may have its answer; each
/// other waiter gets a call of its own (calls never exceed requests).
#[test]
fn coalesced_waiters_of_a_vary_star_answer_each_get_their_own_call() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    let first = ticket(c.submit(t0, get("/market/a"), 1));
    let others: Vec<Ticket> = (2..=3)
        .map(|p| ticket(c.submit(t0, get("/market/a"), p)))
        .collect();
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 1);
    c.complete(t0, d[0].call, varying("1", "*")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, first);
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 2, "one call each");
    for x in &d {
        c.complete(t0, x.call, varying("n", "*")).unwrap();
    }
    let mut ended: Vec<Ticket> = finished(&mut c).iter().map(|f| f.ticket).collect();
    ended.sort();
    assert_eq!(ended, others);
    assert_eq!(c.stats(t0).upstream.calls, 3);
}

/// A waiter sent off for its own call still ends exactly once: here its
/// deadline passes while it waits for the limiter.
#[test]
fn a_redispatched_waiter_still_ends_once_when_its_deadline_passes() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _a = ticket(c.submit(t0, accept("/market/a", "a"), 1));
    let b = ticket(c.submit(t0, accept("/market/a", "b").with_deadline(at(t0, 0.5)), 2));
    let d = dispatch_all(&mut c, t0);
    c.complete(t0, d[0].call, varying("A", "Accept")).unwrap();
    assert_eq!(finished(&mut c).len(), 1);
    let _ = run(&mut c, t0, at(t0, 2.0));
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, b);
    assert!(
        matches!(failure_of(&f[0]), Failure::Deadline { .. }),
        "{:?}",
        f[0].result
    );
}

/// A header the host's client replaces (the native host's
/// `Accept-Encoding`) reached upstream with one value for everyone: it
/// cannot tell variants apart.
#[test]
fn a_header_the_host_replaces_never_selects() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    c.set_replaced_request_headers(&["accept-encoding"]);
    let ae = |v: &str| with("/market/a", &[("Accept-Encoding", v)]);
    call(&mut c, t0, ae("br"), varying("plain", "Accept-Encoding"));
    assert_eq!(hit(&mut c, at(t0, 1.0), ae("gzip")), Some("plain".into()));
    assert_eq!(
        hit(&mut c, at(t0, 1.0), get("/market/a")),
        Some("plain".into())
    );
}

#[test]
fn a_requests_debug_shows_header_names_never_values() {
    let r = with(
        "/market/a",
        &[
            ("Cookie", "session=s3cr3t"),
            ("Authorization", "Bearer t0k3n"),
        ],
    );
    let shown = format!("{r:?}");
    assert!(
        shown.contains("Cookie") && shown.contains("Authorization"),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
        "{shown}"
    );
}
