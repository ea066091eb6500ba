//! Hot reload: a new configuration swapped in keeps the cache, the queue
//! and the calls in flight; one that changes budgets is refused whole.

use super::*;

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
fn a_reload_that_changes_budgets_or_classes_is_refused_whole() {
    let (mut c, t0) = coordinator(config(1.0, 1));
    let _ = ticket(c.submit(t0, post("/orders/1"), 1));
    let mut other = config(5.0, 1);
    other.priorities.push("extra".into());
    other.routes[0].ttl_secs = Some(1.0);
    let err = c.reconfigure(other.compile().unwrap()).unwrap_err();
    assert_eq!(err.0, ["priorities", "scopes"]);
    // Nothing changed: the old rules and budget still apply.
    assert_eq!(c.config().priorities.len(), 4);
    assert_eq!(c.config().scopes["api"].rate, 1.0);
    assert_eq!(c.queue_len(), 1, "the order still waits");
}
