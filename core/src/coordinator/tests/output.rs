//! The output loop: one round hands out calls, then what ended, then when
//! to wake, whatever the host does in between.

use super::*;

#[test]
fn a_round_hands_out_calls_then_ends_then_the_wake_up() {
    // Burst 1: one call goes, the second waits a second for its token.
    let (mut c, t0) = coordinator(config(1.0, 1));
    let first = ticket(c.submit(t0, get("/market/a"), 1));
    let _second = ticket(c.submit(t0, get("/market/b"), 2));
    let Output::Dispatch(call) = c.poll_output(t0) else {
        panic!("the first call is due");
    };
    c.complete(t0, call.call, ok("a")).unwrap();
    // The round is past nothing yet: the second call is tried (not due),
    // then what ended comes out, then the wake-up for the second call.
    match c.poll_output(t0) {
        Output::Finished(f) => assert_eq!(f.ticket, first),
        other => panic!("expected the first request to end, got {other:?}"),
    }
    match c.poll_output(t0) {
        Output::WakeAt(t) => assert_eq!(t, at(t0, 1.0)),
        other => panic!("expected to sleep until the next token, got {other:?}"),
    }
    assert!(matches!(c.poll_output(at(t0, 1.0)), Output::Dispatch(_)));
}

#[test]
fn once_its_calls_are_out_a_round_hands_out_no_more() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let a = ticket(c.submit(t0, get("/market/a"), 1));
    let Output::Dispatch(call) = c.poll_output(t0) else {
        panic!("due");
    };
    c.complete(t0, call.call, ok("a")).unwrap();
    let Output::Finished(f) = c.poll_output(t0) else {
        panic!("ended");
    };
    assert_eq!(f.ticket, a);
    // A request arriving while the round hands out what ended waits for
    // the next round, as a host's loop would have it.
    let _b = ticket(c.submit(t0, get("/market/b"), 2));
    assert!(matches!(c.poll_output(t0), Output::WakeAt(t) if t == t0));
    assert!(matches!(c.poll_output(t0), Output::Dispatch(_)));
}

#[test]
fn a_host_that_cannot_send_gets_no_calls() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let _a = ticket(c.submit(t0, get("/market/a"), 1));
    assert!(matches!(c.poll_output_unsent(), Output::WakeAt(t) if t == t0));
    assert!(matches!(c.poll_output(t0), Output::Dispatch(_)));
}

/// When the host's round without calls (`poll_output_unsent`, after a
/// submission) asks it to wake next.
fn unsent_wake(c: &mut C) -> Option<Instant> {
    loop {
        match c.poll_output_unsent() {
            Output::WakeAt(t) => return Some(t),
            Output::Idle => return None,
            _ => {}
        }
    }
}

/// A hit that makes a key worth refreshing asks for a wake at once, so
/// that a host asleep until its last planned instant looks again; a poll
/// takes it in and plans the refresh.
#[test]
fn a_hit_that_wakes_refresh_asks_for_a_poll() {
    let mut config = config(10.0, 10);
    config.routes[2].refresh_ahead = Some(true);
    config.routes[2].min_age_secs = Some(1.0);
    let (mut c, t0) = coordinator(config);
    let _ = ticket(c.submit(t0, get("/market/a"), 1));
    let d = dispatch_all(&mut c, t0);
    c.complete(t0, d[0].call, ok("a")).unwrap();
    let _ = finished(&mut c);
    // The host's round after the answer: nothing to refresh yet (unread).
    while !matches!(c.poll_output(t0), Output::WakeAt(_) | Output::Idle) {}
    assert!(unsent_wake(&mut c).is_none_or(|t| t > t0));
    let read = at(t0, 0.1);
    let _ = answered(c.submit(read, get("/market/a"), 1));
    assert_eq!(
        unsent_wake(&mut c),
        Some(read),
        "the first read of the answer"
    );
    let wake = loop {
        match c.poll_output(read) {
            Output::WakeAt(t) => break Some(t),
            Output::Idle => break None,
            _ => {}
        }
    };
    assert_eq!(wake, Some(at(t0, 1.0)), "woken when the refresh is due");
    let _ = answered(c.submit(at(t0, 0.2), get("/market/a"), 1));
    assert_eq!(
        unsent_wake(&mut c),
        Some(at(t0, 1.0)),
        "a second read changes nothing"
    );
}
