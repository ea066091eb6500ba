//! This host's own exhaustion (threads, descriptors) is not upstream's
//! failure (issue 24): no breaker, no transport-error count, and a call
//! that never left is retried like a refused connection.

use super::*;

#[test]
fn local_exhaustion_never_opens_the_breaker_nor_counts_against_upstream() {
    let mut cfg = config(10.0, 10);
    cfg.breaker.failure_threshold = 2;
    let (mut c, t0) = coordinator(cfg);
    let local = || Outcome::Transport(TransportError::Local("no thread".into()));
    let _ = c.submit(t0, get("/market/a"), 1);
    let _ = c.submit(t0, get("/market/b"), 2);
    let d = dispatch_all(&mut c, t0);
    assert_eq!(d.len(), 2);
    c.complete(t0, d[0].call, local()).unwrap();
    c.complete(t0, d[1].call, local()).unwrap();
    // Upstream's own failures at the same threshold would have opened it.
    let s = c.stats(t0);
    assert_eq!(s.upstream.breaker_opened, 0);
    assert_eq!(s.upstream.transport_errors, 0);
    assert_ne!(c.health(t0).status, Status::Unhealthy);
    assert!(finished(&mut c).is_empty(), "never sent: retried");
    // Retried, and answered once threads are back.
    let (_, sent) = run_to_dispatch(&mut c, t0, at(t0, 60.0));
    assert!(!sent.is_empty(), "the calls are sent again");
    assert!(TransportError::Local(String::new()).never_sent());
}
