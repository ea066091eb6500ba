//! Hot reload: a new configuration swapped in keeps the cache, the queue
//! and the calls in flight; new budgets take over each bucket's level;
//! one that changes the scope set or the classes is refused whole.

use super::*;

use proptest::prelude::*;

#[test]
fn a_reload_keeps_the_cache_and_queue_and_applies_new_ttls() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    // A market read cached (TTL 10 s), then an order and a read queued
    // behind the one-call-per-second budget.
    let t = ticket(c.submit(t0, get("/market/a"), 1));
    let sent = dispatch_all(&mut c, t0);
    assert_eq!(sent.len(), 1);
    c.complete(t0, sent[0].call, ok("a")).unwrap();
    assert_eq!(finished(&mut c)[0].ticket, t);
    let order = ticket(c.submit(t0, post("/orders/1"), 2));
    let read = ticket(c.submit(t0, get("/account/x"), 3));
    assert!(dispatch_all(&mut c, t0).is_empty(), "the budget is spent");

    // TTLs become 2 s; budgets unchanged.
    let mut shorter = config(1.0, 1);
    for r in &mut shorter.routes {
        r.ttl_secs = Some(2.0);
    }
    c.reconfigure(shorter.compile().unwrap()).unwrap();
    assert_eq!(c.queue_len(), 2, "nothing queued is dropped");
    // The entry cached before the reload is still there...
    assert_eq!(
        body(&answered(c.submit(at(t0, 0.5), get("/market/a"), 4))),
        "a"
    );

    // ...the queued calls go out in priority order, each once...
    let (_, first) = run_to_dispatch(&mut c, t0, at(t0, 5.0));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].payload, 2, "the order first");
    c.complete(at(t0, 1.0), first[0].call, ok("done")).unwrap();
    let (_, second) = run_to_dispatch(&mut c, at(t0, 1.0), at(t0, 5.0));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].payload, 3);
    c.complete(at(t0, 2.0), second[0].call, ok("acct")).unwrap();
    let ended: Vec<Ticket> = finished(&mut c).iter().map(|f| f.ticket).collect();
    assert_eq!(ended, [order, read]);
    // ...and what they store lives by the new TTL: fresh at 3.5 s, gone
    // at 4.5 s (it was 10 s).
    let fresh = Request::get("/account/x", "bot-1");
    assert_eq!(body(&answered(c.submit(at(t0, 3.5), fresh, 5))), "acct");
    let stale = c.submit(at(t0, 4.5), get("/account/x"), 6);
    assert!(matches!(stale, Admission::Waiting { .. }), "{stale:?}");
}

#[test]
fn a_reload_that_changes_scope_keying_or_classes_is_refused_whole() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _ = ticket(c.submit(t0, post("/orders/1"), 1));
    let mut other = config(5.0, 1);
    other.scopes.get_mut("api").unwrap().per = Keying::Credential;
    other.priorities.push("extra".into());
    other.routes[0].ttl_secs = Some(1.0);
    let err = c.reconfigure(other.compile().unwrap()).unwrap_err();
    assert_eq!(err.0, ["priorities", "scopes"]);
    // Nothing changed: the old rules and budget still apply.
    assert_eq!(c.config().priorities.len(), 4);
    assert_eq!(c.config().scopes["api"].rate, 1.0);
    assert_eq!(c.queue_len(), 1, "the order still waits");
}

#[test]
fn a_reload_that_adds_a_scope_is_refused() {
    let (mut c, _) = coordinator(config(1.0, 1));
    let mut other = config(1.0, 1);
    other
        .scopes
        .insert("more".into(), other.scopes["api"].clone());
    let err = c.reconfigure(other.compile().unwrap()).unwrap_err();
    assert_eq!(err.0, ["scopes"]);
}

/// Orders (never cached nor coalesced, one unit each) on one `api` scope,
/// a queue and deadlines long enough that nothing is shed or expires.
fn budget(rate: f64, burst: u32) -> Config {
    let mut c = config(rate, burst);
    c.queue.max_len = 100_000;
    c.queue.default_deadline_secs = 100_000.0;
    c
}

/// A host loop: submits an order at each of `arrivals`, swaps `reload` in
/// at `reload_at`, and answers every dispatch at once. Returns each
/// dispatch's instant and whether it came after the reload, in order.
fn drive(
    c: &mut C,
    t0: Instant,
    arrivals: &[Duration],
    reload_at: Duration,
    mut reload: Option<Config>,
) -> Vec<(Instant, bool)> {
    let mut sent = Vec::new();
    let mut next = 0;
    let mut now = t0;
    let reload_at = t0 + reload_at;
    for _ in 0..1_000_000 {
        c.handle_timeout(now);
        while next < arrivals.len() && t0 + arrivals[next] <= now {
            let _ = ticket(c.submit(now, post(&format!("/orders/{next}")), next as u32));
            next += 1;
        }
        let mut answer = |c: &mut C, after: bool| {
            while let Some(d) = c.poll_dispatch(now) {
                sent.push((now, after));
                c.complete(now, d.call, ok("done")).unwrap();
            }
        };
        answer(c, reload.is_none());
        if now >= reload_at {
            if let Some(new) = reload.take() {
                c.reconfigure(new.compile().unwrap()).unwrap();
                answer(c, true);
            }
        }
        let wake = [
            arrivals.get(next).map(|a| t0 + *a),
            reload.as_ref().map(|_| reload_at),
            c.poll_timeout(),
        ];
        match wake.into_iter().flatten().min() {
            Some(t) if next < arrivals.len() || reload.is_some() || c.queue_len() > 0 => {
                now = t.max(now);
            }
            _ => return sent,
        }
    }
    panic!("the host loop does not settle");
}

#[test]
fn a_rate_drop_drains_a_full_queue_at_the_new_rate_at_once() {
    let (mut c, t0) = coordinator(budget(10.0, 10));
    let arrivals = vec![Duration::ZERO; 60];
    let sent = drive(&mut c, t0, &arrivals, secs(2.0), Some(budget(2.0, 10)));
    assert_eq!(sent.len(), 60, "every queued order goes, once");
    let before: Vec<f64> = sent
        .iter()
        .filter(|(_, after)| !after)
        .map(|(t, _)| (*t - t0).as_secs_f64())
        .collect();
    // The burst of 10 at once, then 10 a second up to the reload.
    assert_eq!(before.len(), 30, "{before:?}");
    let after: Vec<f64> = sent
        .iter()
        .filter(|(_, after)| *after)
        .map(|(t, _)| (*t - t0).as_secs_f64())
        .collect();
    // The bucket was empty at the reload: no burst, one every 0.5 s from
    // the first.
    assert!(after[0] >= 2.5 - 1e-6, "{after:?}");
    for pair in after.windows(2) {
        assert!(pair[1] - pair[0] >= 0.5 - 1e-6, "{after:?}");
    }
    assert!(
        *after.last().unwrap() <= 2.5 + 0.5 * 29.0 + 1e-3,
        "{after:?}"
    );
}

/// Checks GCRA's promise across a budget switch at `r` from (`b0`
/// units at once, `rate0` a second) to (`b1`, `rate1`): in every window
/// `[t_i, t_j]` of dispatches (cost 1 each), the count is at most the
/// burst plus what the rates allow over the window's parts before and
/// after `r`; a window spanning `r` gets the larger burst, never two.
/// Computed from the dispatch instants alone, not the limiter's state.
fn promise_kept(sent: &[(Instant, bool)], r: Instant, before: (u32, f64), after: (u32, f64)) {
    let ((b0, rate0), (b1, rate1)) = (before, after);
    for i in 0..sent.len() {
        for j in i..sent.len() {
            let ((a, a_after), (b, b_after)) = (sent[i], sent[j]);
            let count = (j - i + 1) as f64;
            let allowed = match (a_after, b_after) {
                (false, false) => f64::from(b0) + (b - a).as_secs_f64() * rate0,
                (true, true) => f64::from(b1) + (b - a).as_secs_f64() * rate1,
                _ => {
                    f64::from(b0.max(b1))
                        + r.saturating_duration_since(a).as_secs_f64() * rate0
                        + b.saturating_duration_since(r).as_secs_f64() * rate1
                }
            };
            assert!(
                count <= allowed + 1e-6,
                "{count} dispatches in [{:?}, {:?}] (reload at {:?}), at most {allowed}",
                a - sent[0].0,
                b - sent[0].0,
                r.saturating_duration_since(sent[0].0)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bursts of orders, a budget reload (rate and burst up or
    /// down) at a random instant: no window ever gets more than the old
    /// budget before the reload plus the new one after it, and every
    /// queued order is sent, once.
    #[test]
    fn a_budget_reload_keeps_the_window_promise_and_every_queued_call(
        old in (1u32..20, 1u32..12),
        new in (1u32..20, 1u32..12),
        clusters in proptest::collection::vec((0u64..3_000, 1usize..14), 1..8),
        reload_ms in 0u64..12_000,
    ) {
        let mut arrivals = Vec::new();
        let mut t = 0;
        for (gap, n) in clusters {
            t += gap;
            arrivals.extend(std::iter::repeat_n(Duration::from_millis(t), n));
        }
        let (mut c, t0) = coordinator(budget(f64::from(old.0), old.1));
        let reload_at = Duration::from_millis(reload_ms);
        let new_config = budget(f64::from(new.0), new.1);
        let sent = drive(&mut c, t0, &arrivals, reload_at, Some(new_config));
        prop_assert_eq!(sent.len(), arrivals.len(), "every order is sent once");
        prop_assert_eq!(c.queue_len(), 0);
        promise_kept(
            &sent,
            t0 + reload_at,
            (old.1, f64::from(old.0)),
            (new.1, f64::from(new.0)),
        );
    }
}
