//! Shared (non-private) routes on per-credential limiter scopes: a call is
//! sent with the payload of a waiter whose credential's bucket it was
//! charged to, even when the waiters hold different credentials.

use syncoord_core::{
    Admission, Config, Coordinator, Dispatch, Duration, Finished, Instant, Outcome, Output,
    Request, Response, Source, Ticket,
};

const TICKER: &str = "/api/v3/brokerage/products/BTC-USD/ticker";

fn waiting(a: Admission) -> Ticket {
    match a {
        Admission::Waiting { ticket, .. } => ticket,
        other => panic!("expected to wait, got {other:?}"),
    }
}

fn private_calls(c: &mut Coordinator<&'static str>, now: Instant, credential: &str) -> u64 {
    c.stats(now)
        .scopes
        .iter()
        .filter(|s| s.scope == "private" && s.credential.as_deref() == Some(credential))
        .map(|s| s.calls)
        .sum()
}

/// The next output, if it is a call to send.
fn dispatch(c: &mut Coordinator<&'static str>, now: Instant) -> Option<Dispatch<&'static str>> {
    match c.poll_output(now) {
        Output::Dispatch(d) => Some(d),
        _ => None,
    }
}

/// The next request that ended, if any (no call may be due).
fn finished(c: &mut Coordinator<&'static str>, now: Instant) -> Option<Finished> {
    match c.poll_output(now) {
        Output::Finished(f) => Some(f),
        Output::Dispatch(d) => panic!("unexpected dispatch {d:?}"),
        _ => None,
    }
}

/// A coordinator in which bot A (credential `key:a`) waits for the ticker.
fn creator_waiting() -> (Coordinator<&'static str>, Instant, Ticket) {
    let t0 = Instant::now();
    let mut c = Coordinator::new(Config::default().compile().unwrap(), t0, 1);
    let a = waiting(c.submit(
        t0,
        Request::get(TICKER, "bot-a").with_credential("key:a"),
        "a",
    ));
    (c, t0, a)
}

#[test]
fn the_creators_payload_is_sent_and_its_bucket_charged() {
    let (mut c, t0, a) = creator_waiting();
    // B's deadline is later, but B's credential is not the one the call
    // was paced on.
    let late = Request::get(TICKER, "bot-b")
        .with_credential("key:b")
        .with_deadline(t0 + Duration::from_secs(29));
    let b = waiting(c.submit(t0, late, "b"));
    let d = dispatch(&mut c, t0).expect("dispatch");
    assert_eq!(d.payload, "a");
    c.complete(t0, d.call, Outcome::response(Response::new(200, "{}")))
        .unwrap();
    let mut ended: Vec<(Ticket, Source)> = std::iter::from_fn(|| finished(&mut c, t0))
        .map(|f| (f.ticket, f.result.unwrap().source))
        .collect();
    ended.sort_by_key(|(t, _)| *t);
    assert_eq!(ended, vec![(a, Source::Upstream), (b, Source::Coalesced)]);
    assert_eq!(private_calls(&mut c, t0, "key:a"), 1);
    assert_eq!(private_calls(&mut c, t0, "key:b"), 0);
}

#[test]
fn when_the_creator_leaves_the_call_moves_to_a_remaining_credential() {
    let (mut c, t0, a) = creator_waiting();
    let b = waiting(c.submit(
        t0,
        Request::get(TICKER, "bot-b").with_credential("key:b"),
        "b",
    ));
    assert!(c.cancel(a));
    let d = dispatch(&mut c, t0).expect("dispatch");
    assert_eq!(
        d.payload, "b",
        "sent with a payload of the credential it is charged to"
    );
    c.complete(t0, d.call, Outcome::response(Response::new(200, "{}")))
        .unwrap();
    let f = finished(&mut c, t0).expect("b answered");
    assert_eq!(f.ticket, b);
    assert!(
        finished(&mut c, t0).is_none(),
        "the cancelled ticket gets no answer"
    );
    assert_eq!(private_calls(&mut c, t0, "key:a"), 0);
    assert_eq!(private_calls(&mut c, t0, "key:b"), 1);
}
