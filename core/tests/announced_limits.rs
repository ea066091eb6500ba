//! Upstreams that announce their window (`x-ratelimit-remaining`,
//! `x-ratelimit-reset`) are paced by what they announce, before a 429.

use syncoord_core::{
    Admission, Config, Coordinator, Dispatch, Duration, Instant, Outcome, Output, Request, Response,
};

const MARKET: &str = "/api/v3/brokerage/market/products";

fn queue_get(c: &mut Coordinator, now: Instant, product: &str) {
    let request = Request::get(&format!("{MARKET}/{product}/ticker"), "bot");
    assert!(matches!(
        c.submit(now, request, ()),
        Admission::Waiting { .. }
    ));
}

/// The next output, if it is a call to send.
fn dispatch(c: &mut Coordinator, now: Instant) -> Option<Dispatch<()>> {
    match c.poll_output(now) {
        Output::Dispatch(d) => Some(d),
        _ => None,
    }
}

#[test]
fn an_exhausted_window_pauses_the_scope_until_its_reset() {
    let t0 = Instant::now();
    let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
    let mut c = Coordinator::new(Config::default().compile().unwrap(), t0, 1);
    queue_get(&mut c, t0, "BTC-USD");
    let d = dispatch(&mut c, t0).unwrap();
    let spent = Response::new(200, "{}")
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", "5");
    c.complete(t0, d.call, Outcome::response(spent)).unwrap();
    let Output::Finished(f) = c.poll_output(t0) else {
        panic!("the request ended");
    };
    assert!(f.result.is_ok());

    // The public scope has tokens, but upstream said the window is spent.
    queue_get(&mut c, t0, "ETH-USD");
    // Nothing to send at 4.999 s; wake at 5 s.
    match c.poll_output(at(4.999)) {
        Output::WakeAt(t) => assert_eq!(Some(t), Some(at(5.0))),
        other => panic!("expected to sleep until the reset, got {other:?}"),
    }
    assert!(dispatch(&mut c, at(5.0)).is_some());
    // Not a 429: no strike, no throttle.
    let stats = c.stats(at(5.0));
    assert_eq!(stats.upstream.rate_limited, 0);
    let public = stats.scopes.iter().find(|s| s.scope == "public").unwrap();
    assert!(
        (public.rate_per_sec - 9.0).abs() < 1e-6,
        "{}",
        public.rate_per_sec
    );
}

#[test]
fn remaining_calls_or_no_reset_mean_no_pause() {
    let t0 = Instant::now();
    let mut c = Coordinator::new(Config::default().compile().unwrap(), t0, 1);
    let answers = [
        Response::new(200, "{}")
            .with_header("X-RateLimit-Remaining", "4")
            .with_header("X-RateLimit-Reset", "5"),
        Response::new(200, "{}").with_header("X-RateLimit-Remaining", "0"),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        queue_get(&mut c, t0, &format!("P{i}"));
        let d = dispatch(&mut c, t0).unwrap();
        c.complete(t0, d.call, Outcome::response(answer)).unwrap();
    }
    // Nothing remains and no reset is known: the bucket holds no tokens
    // (the next call waits for them to refill, with the orders' reserve),
    // but it is not paused until some reset.
    queue_get(&mut c, t0, "NEXT");
    // The two answers come out first; then nothing is sent.
    for _ in 0..2 {
        assert!(matches!(c.poll_output(t0), Output::Finished(_)));
    }
    assert!(dispatch(&mut c, t0).is_none(), "no token left");
    let stats = c.stats(t0);
    let public = stats.scopes.iter().find(|s| s.scope == "public").unwrap();
    assert_eq!(public.paused_for_secs, None);
    let o = c.poll_output(t0 + Duration::from_secs(1));
    assert!(matches!(o, Output::Dispatch(_)), "{o:?}");
}
