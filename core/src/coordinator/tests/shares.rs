//! Per-client shares of a bucket, in virtual time.

use super::*;

use crate::client_share::ClientShare;

fn share(holder: &str, fraction: f64, refuse: bool) -> ClientShare {
    ClientShare {
        holder: holder.into(),
        fraction,
        refuse,
    }
}

/// A market read from `client`, willing to wait a minute.
fn read(path: &str, client: &str) -> Request {
    let mut r = Request::get(path, client);
    r.max_wait = Some(Duration::from_secs(60));
    r
}

/// Twenty runaway reads at once under twenty client names (fair rounds
/// alone give them twenty turns to the good bot's one), then ten reads of
/// a good bot, on 10/s with a burst of 4; the runaway held to `fraction`
/// if given. Returns when each call left, runaway's and good's.
fn runaway_and_good(fraction: Option<f64>) -> (Vec<Duration>, Vec<Duration>) {
    let (mut c, t0) = coordinator(config(10.0, 4));
    for i in 0..20 {
        let mut r = read(&format!("/market/r{i}"), &format!("runaway-{i}"));
        if let Some(f) = fraction {
            r = r.with_share(share("runaway", f, false));
        }
        let _ = ticket(c.submit(t0, r, 100 + i));
    }
    for i in 0..10 {
        let _ = ticket(c.submit(t0, read(&format!("/market/g{i}"), "good"), 200 + i));
    }
    let sent = run(&mut c, t0, at(t0, 20.0));
    assert_eq!(sent.len(), 30, "every call goes in the end");
    let when = |good: bool| {
        sent.iter()
            .filter(|(_, d)| (d.payload >= 200) == good)
            .map(|(t, _)| *t - t0)
            .collect::<Vec<_>>()
    };
    (when(false), when(true))
}

#[test]
fn a_runaway_held_to_its_share_leaves_the_rest_of_the_bucket_to_others() {
    let (runaway, good) = runaway_and_good(Some(0.25));
    // A quarter of 10/s with a burst of 4 is 2.5/s with a burst of 1: in
    // any window of w seconds, at most 1 + 2.5 w runaway calls.
    for (i, start) in runaway.iter().enumerate() {
        for (j, end) in runaway.iter().enumerate().skip(i) {
            let w = (*end - *start).as_secs_f64();
            let n = (j - i + 1) as f64;
            assert!(n <= 1.0 + 2.5 * w + 1e-6, "{n} runaway calls in {w} s");
        }
    }
    // The good bot gets the rest: 3 of the burst, then 7.5/s.
    let good_last = *good.iter().max().unwrap();
    assert!(
        good_last <= secs(1.3),
        "good bot's last call at {good_last:?}"
    );
    // The runaway is held, not starved: twenty calls at 2.5/s.
    let last = *runaway.iter().max().unwrap();
    assert!(last <= secs(20.0 / 2.5 + 0.1), "{last:?}");
    // Without the share, the runaway's twenty names take the bucket first.
    let (_, unheld) = runaway_and_good(None);
    let unheld_last = *unheld.iter().max().unwrap();
    assert!(unheld_last >= secs(2.0), "{unheld_last:?}");
}

#[test]
fn a_share_that_refuses_says_when_to_come_back() {
    // 10/s, burst 10: a tenth is 1/s with a burst of 1.
    let (mut c, t0) = coordinator(config(10.0, 10));
    let mine = || share("bot7", 0.1, true);
    let _ = ticket(c.submit(t0, read("/market/a", "x").with_share(mine()), 1));
    assert_eq!(dispatch_all(&mut c, t0).len(), 1);
    // Another name, the same holder: the allowance is the holder's.
    let failure = refused(c.submit(t0, read("/market/b", "y").with_share(mine()), 2));
    assert_eq!(failure.kind(), "client_share_exceeded");
    let retry = failure.retry_after().unwrap();
    assert!(
        retry > Duration::from_millis(900) && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    // Another client is not held by it.
    let _ = ticket(c.submit(t0, read("/market/c", "z"), 3));
    // A read the cache answers spends no share.
    let call = dispatch_all(&mut c, t0)[0].call;
    c.complete(t0, call, ok("c")).unwrap();
    let _ = answered(c.submit(t0, read("/market/c", "y").with_share(mine()), 4));
    // Once the share refills, the holder is admitted again.
    let _ = ticket(c.submit(t0 + retry, read("/market/b", "y").with_share(mine()), 5));
}

#[test]
fn idle_allowances_are_forgotten() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    for i in 0..3 {
        let r = read(&format!("/market/{i}"), "a").with_share(share(&format!("h{i}"), 0.5, false));
        let _ = ticket(c.submit(t0, r, i));
    }
    assert_eq!(dispatch_all(&mut c, t0).len(), 3);
    assert_eq!(c.shares.holders(), 3);
    c.handle_timeout(at(t0, 61.0));
    assert_eq!(c.shares.holders(), 0);
}

#[test]
fn a_reload_keeps_what_each_client_spent() {
    let (mut c, t0) = coordinator(config(10.0, 10));
    let mine = || share("bot7", 0.1, true);
    let _ = ticket(c.submit(t0, read("/market/a", "x").with_share(mine()), 1));
    assert_eq!(dispatch_all(&mut c, t0).len(), 1);
    // New rules (a TTL changed): the allowance spent before still counts.
    let mut next = config(10.0, 10);
    next.routes[2].ttl_secs = Some(5.0);
    c.reconfigure(next.compile().unwrap()).unwrap();
    let failure = refused(c.submit(t0, read("/market/b", "x").with_share(mine()), 2));
    assert_eq!(failure.kind(), "client_share_exceeded");
    // A larger share the new file gives applies from the next request:
    // admitted after 0.2 s, where a tenth would have waited 1 s.
    let half = || share("bot7", 0.5, true);
    let at_200ms = at(t0, 0.2);
    let _ = refused(c.submit(at(t0, 0.19), read("/market/b", "x").with_share(half()), 3));
    let _ = ticket(c.submit(at_200ms, read("/market/b", "x").with_share(half()), 4));
}
