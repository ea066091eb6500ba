//! Refreshes upstream stopped are reported once each, with their route and
//! reason, and counted; a bot's failing call is not one of them.

use super::*;

use crate::{RefreshStop, RefreshStopReason as Reason};

/// The test config with `/market/**` refreshed ahead (at most once a second),
/// every key read at all refreshed (`min_reads = 1`: these tests are about
/// what upstream does to a refresh, not about which keys earn one).
fn refreshing() -> Config {
    let mut c = config(10.0, 10);
    c.refresh.min_reads = 1;
    c.routes[2].refresh_ahead = Some(true);
    c.routes[2].min_age_secs = Some(1.0);
    c
}

/// `/market/a` fetched at `t0` and read once inside its refresh interval,
/// so it earns a refresh (`min_reads = 1`) once it is past that interval.
fn filled(c: &mut C, t0: Instant) {
    let _ = ticket(c.submit(t0, get("/market/a"), 1));
    let d = dispatch_all(c, t0);
    c.complete(t0, d[0].call, ok("a")).unwrap();
    let _ = finished(c);
    let _ = answered(c.submit(at(t0, 0.5), get("/market/a"), 1));
}

/// `/market/a` cached at `t0` and read at `t0 + read`: a refresh is due.
fn due_refresh(c: &mut C, t0: Instant, read: f64) -> Dispatch<u32> {
    let now = at(t0, read);
    let _ = answered(c.submit(now, get("/market/a"), 1));
    let d = c.poll_dispatch(now).expect("a refresh is due");
    assert!(d.refresh);
    d
}

fn stop(reason: Reason, status: Option<u16>) -> RefreshStop {
    RefreshStop {
        route: "market".into(),
        credential: None,
        reason,
        status,
    }
}

#[test]
fn each_refresh_upstream_stops_is_reported_once_and_counted() {
    let (mut c, t0) = coordinator(refreshing());
    filled(&mut c, t0);
    assert!(
        c.refresh_stop_events().is_empty(),
        "a bot's answer is no stop"
    );

    // A 5xx, a 429 and no answer: the entry stays and ages; each is one stop.
    let r = due_refresh(&mut c, t0, 1.1);
    c.complete(at(t0, 1.1), r.call, status(503)).unwrap();
    let r = due_refresh(&mut c, t0, 1.2);
    c.complete(at(t0, 1.2), r.call, too_many(Some("1")))
        .unwrap();
    assert_eq!(
        c.refresh_stop_events(),
        [
            stop(Reason::ServerError, Some(503)),
            stop(Reason::RateLimited, Some(429))
        ]
    );
    let r = due_refresh(&mut c, t0, 6.0);
    c.handle_timeout(at(t0, 40.0));
    assert!(c.complete(at(t0, 40.0), r.call, ok("late")).is_err());
    assert_eq!(c.refresh_stop_events(), [stop(Reason::Transport, None)]);

    // A bot's call that fails for good is not a refresh stop.
    let (mut c, t0) = coordinator(refreshing());
    let _ = ticket(c.submit(t0, get("/market/b"), 1));
    let d = dispatch_all(&mut c, t0);
    c.complete(t0, d[0].call, status(401)).unwrap();
    assert_eq!(finished(&mut c).len(), 1);
    assert!(c.refresh_stop_events().is_empty());

    // An answer upstream says not to keep (`private` on a shared route;
    // the route pins its TTL, so `no-store` would not stop it), then a
    // status the cache does not keep: the key is no longer refreshed
    // after either.
    let no_store =
        Outcome::response(Response::new(200, "b").with_header("Cache-Control", "private"));
    for (outcome, reason, code) in [
        (no_store, Reason::NotStorable, 200),
        (status(404), Reason::Status, 404),
    ] {
        let (mut c, t0) = coordinator(refreshing());
        filled(&mut c, t0);
        let r = due_refresh(&mut c, t0, 1.1);
        c.complete(at(t0, 1.1), r.call, outcome).unwrap();
        assert_eq!(c.refresh_stop_events(), [stop(reason, Some(code))]);
        let s = c.stats(at(t0, 1.1));
        assert_eq!(s.refresh_stops.get(reason), 1);
        assert_eq!(s.refresh_stops.total(), 1);
        let _ = answered(c.submit(at(t0, 1.5), get("/market/a"), 1));
        assert!(
            dispatch_all(&mut c, at(t0, 3.0)).iter().all(|d| !d.refresh),
            "not refreshed again after {reason:?}"
        );
    }
}

#[test]
fn the_stats_count_stops_by_reason_and_carry_them_in_json() {
    let (mut c, t0) = coordinator(refreshing());
    filled(&mut c, t0);
    let r = due_refresh(&mut c, t0, 1.1);
    c.complete(at(t0, 1.1), r.call, status(503)).unwrap();
    // Undrained events do not change the counts, nor does draining.
    let s = c.stats(at(t0, 1.1));
    assert_eq!(s.refresh_stops.server_error, 1);
    let _ = c.refresh_stop_events();
    let json = serde_json::to_value(c.stats(at(t0, 1.2))).unwrap();
    assert_eq!(json["refresh_stops"]["server_error"], 1);
    assert_eq!(json["refresh_stops"]["rate_limited"], 0);
}

/// A refresh upstream failed spent the reads that earned it: without new
/// reads no other refresh follows (one read used to buy one after every
/// failure, back to back, until the breaker opened); a new read earns one.
#[test]
fn a_failed_refresh_is_not_sent_again_without_a_new_read() {
    let (mut c, t0) = coordinator(refreshing());
    filled(&mut c, t0);
    let r = due_refresh(&mut c, t0, 1.1);
    c.complete(at(t0, 1.1), r.call, status(503)).unwrap();
    let mut again = 0;
    for ms in 1_101..3_000 {
        let now = t0 + Duration::from_millis(ms);
        c.handle_timeout(now);
        for d in dispatch_all(&mut c, now) {
            again += 1;
            c.complete(now, d.call, status(503)).unwrap();
        }
    }
    assert_eq!(again, 0, "refresh calls with no read after a failed one");
}
