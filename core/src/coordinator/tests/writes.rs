//! Writes invalidate what they change (RFC 9111 §4.4 and a route's
//! `invalidates`), in virtual time.
//!
//! RFC 9111 §4.4: "A cache MUST invalidate the target URI when it receives
//! a non-error status code in response to an unsafe request method
//! (including methods whose safety is unknown)"; the URIs in `Location`
//! and `Content-Location` are candidates too, but "a cache MUST NOT
//! trigger an invalidation under these conditions if the origin of the URI
//! to be invalidated differs from that of the target URI". A non-error
//! status is 2xx or 3xx.

use super::*;

/// The test config, with `POST /orders/**` invalidating `account` (private,
/// keyed by credential).
fn orders_invalidate_account() -> Config {
    let mut c = config(100.0, 100);
    c.routes[0].invalidates = vec!["account".into()];
    c
}

fn as_key(req: Request, key: &str) -> Request {
    req.with_credential(key)
}

/// Submits `req` and answers its call at once with `outcome`.
fn call(c: &mut C, now: Instant, req: Request, outcome: Outcome) {
    let _ = ticket(c.submit(now, req, 0));
    let d = dispatch_all(c, now);
    assert_eq!(d.len(), 1);
    c.complete(now, d[0].call, outcome).unwrap();
    let _ = finished(c);
}

fn source_of(c: &mut C, now: Instant, req: Request) -> Source {
    match c.submit(now, req, 0) {
        Admission::Answered(a) => a.source,
        Admission::Waiting { .. } => {
            let d = dispatch_all(c, now);
            for d in d {
                c.complete(now, d.call, ok("after")).unwrap();
            }
            let f = finished(c);
            answer_of(&f[0]).source
        }
        Admission::Refused(f) => panic!("{f}"),
    }
}

#[test]
fn an_order_drops_the_named_routes_answers_for_its_credential_only() {
    let (mut c, t0) = coordinator(orders_invalidate_account());
    call(&mut c, t0, as_key(get("/account/open"), "a"), ok("before"));
    call(&mut c, t0, as_key(get("/account/open"), "b"), ok("before"));
    call(&mut c, t0, get("/market/x"), ok("before"));
    let t1 = at(t0, 1.0);
    call(&mut c, t1, as_key(post("/orders"), "a"), ok("placed"));
    let t2 = at(t0, 1.5);
    // Key a's open orders go upstream; b's and the market's stay cached.
    assert_eq!(
        source_of(&mut c, t2, as_key(get("/account/open"), "a")),
        Source::Upstream
    );
    assert_eq!(
        source_of(&mut c, t2, as_key(get("/account/open"), "b")),
        Source::Cache
    );
    assert_eq!(source_of(&mut c, t2, get("/market/x")), Source::Cache);
    assert_eq!(c.stats(t2).cache.invalidated, 1);
}

#[test]
fn a_failed_write_invalidates_nothing() {
    let (mut c, t0) = coordinator(orders_invalidate_account());
    call(&mut c, t0, as_key(get("/account/open"), "a"), ok("before"));
    // A 4xx is an error status (RFC 9111 §4.4 acts on 2xx and 3xx only);
    // a 5xx is not retried for a POST and fails.
    call(&mut c, t0, as_key(post("/orders"), "a"), status(400));
    assert_eq!(
        source_of(&mut c, at(t0, 1.0), as_key(get("/account/open"), "a")),
        Source::Cache
    );
}

#[test]
fn an_unsafe_method_invalidates_its_target_uri_and_same_origin_locations() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    for p in [
        "/market/a",
        "/market/b",
        "/market/c",
        "/market/d",
        "/market/a?x=1",
    ] {
        call(&mut c, t0, get(p), ok("before"));
    }
    // PUT (an unknown method would do the same) of /market/a, answered
    // 201 with a Location on this origin and a Content-Location on another.
    let put = Request::new(Method::new("PUT"), "/market/a", "bot-1");
    let answer = Response::new(201, "ok")
        .with_header("Location", "/market/b")
        .with_header("Content-Location", "https://elsewhere.example/market/c");
    call(&mut c, at(t0, 1.0), put, Outcome::response(answer));
    let t = at(t0, 2.0);
    assert_eq!(source_of(&mut c, t, get("/market/a")), Source::Upstream);
    assert_eq!(source_of(&mut c, t, get("/market/b")), Source::Upstream);
    // Another origin's URI, an untouched one and another target (the
    // query is part of the target URI) stay.
    assert_eq!(source_of(&mut c, t, get("/market/c")), Source::Cache);
    assert_eq!(source_of(&mut c, t, get("/market/d")), Source::Cache);
    assert_eq!(source_of(&mut c, t, get("/market/a?x=1")), Source::Cache);
}

#[test]
fn a_safe_method_invalidates_nothing() {
    let mut config = config(100.0, 100);
    config.routes.push(RouteRule {
        name: Some("options".into()),
        methods: vec!["OPTIONS".into()],
        path: "/market/**".into(),
        cacheable: Some(false),
        ..Default::default()
    });
    let (mut c, t0) = coordinator(config);
    call(&mut c, t0, get("/market/a"), ok("before"));
    let options = Request::new(Method::new("OPTIONS"), "/market/a", "bot-1");
    call(&mut c, t0, options, ok("allowed"));
    assert_eq!(
        source_of(&mut c, at(t0, 1.0), get("/market/a")),
        Source::Cache
    );
}

#[test]
fn a_read_that_left_before_the_write_neither_stores_nor_answers_later_reads() {
    let (mut c, t0) = coordinator(orders_invalidate_account());
    // A read leaves, and is still in flight when the order is answered.
    let early = ticket(c.submit(t0, as_key(get("/account/open"), "a"), 0));
    let read = dispatch_all(&mut c, t0);
    assert_eq!(read.len(), 1);
    let t1 = at(t0, 0.1);
    call(&mut c, t1, as_key(post("/orders"), "a"), ok("placed"));
    // A read after the write does not join the early call: its own call.
    let t2 = at(t0, 0.2);
    let late = c.submit(t2, as_key(get("/account/open"), "a"), 0);
    assert!(!joined(&late));
    let late = ticket(late);
    let second = dispatch_all(&mut c, t2);
    assert_eq!(second.len(), 1);
    // The early read answers (with what upstream held before the order)
    // its own waiter only, and is not kept.
    c.complete(at(t0, 0.3), read[0].call, ok("before")).unwrap();
    let f = finished(&mut c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].ticket, early);
    c.complete(at(t0, 0.4), second[0].call, ok("after"))
        .unwrap();
    let f = finished(&mut c);
    assert_eq!((f[0].ticket, body(answer_of(&f[0]))), (late, "after"));
    let hit = answered(c.submit(at(t0, 0.5), as_key(get("/account/open"), "a"), 0));
    assert_eq!(body(&hit), "after");
}

/// `/account/open` refreshed ahead, fetched at `t0` ("v1") and read at
/// 0.5 s (one read is enough to make a refresh worth it here), its refresh
/// sent at 1 s, and an order placed at 1.1 s while that refresh is out.
/// Returns the coordinator, `t0` and the refresh still out.
fn order_placed_while_a_refresh_is_out() -> (C, Instant, Dispatch<u32>) {
    let mut config = orders_invalidate_account();
    config.routes[1].refresh_ahead = Some(true);
    config.routes[1].min_age_secs = Some(1.0);
    config.refresh.min_reads = 1;
    let (mut c, t0) = coordinator(config);
    call(&mut c, t0, as_key(get("/account/open"), "a"), ok("v1"));
    let _ = answered(c.submit(at(t0, 0.5), as_key(get("/account/open"), "a"), 0));
    let t1 = at(t0, 1.0);
    c.handle_timeout(t1);
    let mut refresh = dispatch_all(&mut c, t1);
    assert!(refresh.len() == 1 && refresh[0].refresh, "{refresh:?}");
    call(
        &mut c,
        at(t0, 1.1),
        as_key(post("/orders"), "a"),
        ok("placed"),
    );
    (c, t0, refresh.remove(0))
}

#[test]
fn a_refresh_that_left_before_the_write_does_not_overwrite_it() {
    // The order is answered while the refresh is out, and the refresh
    // comes back after it with the state before the order.
    let (mut c, t0, refresh) = order_placed_while_a_refresh_is_out();
    c.complete(at(t0, 1.15), refresh.call, ok("v1-stale"))
        .unwrap();
    // A read after the order fetches the new state.
    let t2 = at(t0, 1.2);
    let _ = ticket(c.submit(t2, as_key(get("/account/open"), "a"), 0));
    let fresh = dispatch_all(&mut c, t2);
    assert!(fresh.len() == 1 && !fresh[0].refresh, "{fresh:?}");
    c.complete(at(t0, 1.3), fresh[0].call, ok("v2")).unwrap();
    let _ = finished(&mut c);
    let hit = answered(c.submit(at(t0, 1.5), as_key(get("/account/open"), "a"), 0));
    assert_eq!(body(&hit), "v2");
}

/// The refresh a write outdated is dropped, but the key stays refreshed:
/// its request was sound, and the read after the write renewed it while
/// the refresh was out. (The key used to stop being refreshed, and its
/// readers got answers up to the TTL old.)
#[test]
fn a_refresh_outdated_by_a_write_leaves_the_key_refreshed() {
    let (mut c, t0, refresh) = order_placed_while_a_refresh_is_out();
    // The read after the order leaves before the refresh comes back.
    let t2 = at(t0, 1.2);
    let _ = ticket(c.submit(t2, as_key(get("/account/open"), "a"), 0));
    let fresh = dispatch_all(&mut c, t2);
    assert!(fresh.len() == 1 && !fresh[0].refresh, "{fresh:?}");
    c.complete(at(t0, 1.25), refresh.call, ok("v1-stale"))
        .unwrap();
    c.complete(at(t0, 1.3), fresh[0].call, ok("v2")).unwrap();
    let _ = finished(&mut c);
    let hit = answered(c.submit(at(t0, 1.5), as_key(get("/account/open"), "a"), 0));
    assert_eq!(body(&hit), "v2");
    // One interval after v2 was stored, it is refreshed.
    let t3 = at(t0, 2.35);
    c.handle_timeout(t3);
    let again = dispatch_all(&mut c, t3);
    assert!(again.len() == 1 && again[0].refresh, "{again:?}");
}

#[test]
fn invalidates_must_name_a_route() {
    let mut config = config(100.0, 100);
    config.routes[0].invalidates = vec!["acount".into()];
    let err = config
        .compile()
        .expect_err("a typo is an error")
        .to_string();
    assert!(
        err.contains("routes[0].invalidates[0]") && err.contains("acount"),
        "{err}"
    );
}

#[test]
fn the_presets_orders_invalidate_open_orders_and_balances() {
    let (mut c, t0) = coordinator(Config::default());
    let p = "/api/v3/brokerage";
    let reads = [
        format!("{p}/orders/historical/batch?order_status=OPEN"),
        format!("{p}/accounts"),
    ];
    for r in &reads {
        call(&mut c, t0, as_key(get(r), "a"), ok("before"));
        assert_eq!(
            source_of(&mut c, at(t0, 0.5), as_key(get(r), "a")),
            Source::Cache
        );
    }
    call(
        &mut c,
        at(t0, 1.0),
        as_key(post(&format!("{p}/orders")), "a"),
        ok("placed"),
    );
    for r in &reads {
        assert_eq!(
            source_of(&mut c, at(t0, 1.5), as_key(get(r), "a")),
            Source::Upstream,
            "{r}"
        );
    }
    let exchange = crate::config::coinbase::exchange();
    let (mut c, t0) = coordinator(exchange);
    for r in [
        "/orders?status=open",
        "/fills?product_id=BTC-USD",
        "/accounts",
    ] {
        call(&mut c, t0, as_key(get(r), "a"), ok("before"));
        assert_eq!(
            source_of(&mut c, at(t0, 0.5), as_key(get(r), "a")),
            Source::Cache
        );
    }
    let cancel = Request::new(Method::new("DELETE"), "/orders/1", "bot-1").with_credential("a");
    call(&mut c, at(t0, 1.0), cancel, ok("cancelled"));
    for r in [
        "/orders?status=open",
        "/fills?product_id=BTC-USD",
        "/accounts",
    ] {
        assert_eq!(
            source_of(&mut c, at(t0, 1.5), as_key(get(r), "a")),
            Source::Upstream,
            "{r}"
        );
    }
}

/// RFC 9111 §5.2.2.7: a `private` answer is for one user. A request with
/// no credential identity on a per-credential route has no user to keep
/// it for: it is not stored, and the next anonymous caller asks upstream.
#[test]
fn a_private_answer_to_an_anonymous_request_is_not_stored() {
    let (mut c, t0) = coordinator(config(100.0, 100));
    let private =
        Outcome::response(Response::new(200, "mine").with_header("Cache-Control", "private"));
    call(&mut c, t0, get("/account/me"), private.clone());
    assert_eq!(
        source_of(&mut c, at(t0, 1.0), get("/account/me")),
        Source::Upstream
    );
    // With a credential it is kept, for that credential.
    call(&mut c, t0, as_key(get("/account/me"), "a"), private);
    assert_eq!(
        source_of(&mut c, at(t0, 1.0), as_key(get("/account/me"), "a")),
        Source::Cache
    );
}
