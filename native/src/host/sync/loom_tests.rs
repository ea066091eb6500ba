//! Loom models of the host protocol, with the real core inside.
//!
//! Under loom a timed condition wait never times out, so a model that
//! passes proves progress by notifications alone: a lost wake-up would
//! leave some thread asleep forever, which loom reports as a deadlock.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p syncoord --release --lib loom`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loom::thread;

use syncoord_core::{Config, Coordinator as Core, Instant, Outcome, Request, Response, Ticket};
use syncoord_wire::Outgoing;

use super::{lock, Shared, Slot, Submitted};

const PATH: &str = "/api/v3/brokerage/products/BTC-USD";

/// Runs `f` under loom and counts the interleavings explored (asserted to be more than one, so a model can never pass vacuously).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut builder = loom::model::Builder::new();
    // Three preemptions cover every ordering of the racing critical
    // sections here (submit, dispatch, complete, cancel, shutdown) while
    // keeping each model to a few seconds (750 to 53,000 interleavings).
    builder.preemption_bound = Some(3);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let runs = runs.load(Ordering::Relaxed);
    eprintln!("explored {runs} interleavings");
    assert!(runs > 1, "loom explored a single interleaving");
}

/// A host with one worker, its dispatcher and worker running as loom
/// threads; returns the shared state and the two thread handles.
fn host() -> (Arc<Shared>, Vec<thread::JoinHandle<()>>) {
    let core = Core::new(
        Config::default()
            .compile()
            .expect("default config is valid"),
        Instant::now(),
        1,
    );
    let shared = Arc::new(Shared::new(core, 1, 2));
    let d = shared.clone();
    let w = shared.clone();
    let threads = vec![
        thread::spawn(move || d.run_dispatcher()),
        thread::spawn(move || {
            let upstream = |_: &Outgoing| Outcome::response(Response::new(200, "ok"));
            w.run_worker(&upstream)
        }),
    ];
    (shared, threads)
}

fn get() -> (Request, Outgoing) {
    let out = Outgoing {
        method: "GET".into(),
        path_and_query: PATH.into(),
        headers: Default::default(),
        body: vec![],
        sign_as: None,
    };
    (Request::get(PATH, "bot"), out)
}

/// Stops with no drain and no grace, and proves every host thread leaves.
/// `wait_exited` may answer `false` here: when the host stops while the
/// worker is still inside an upstream call that nobody waits for any more
/// (its waiter cancelled), it does not wait for that call. The worker
/// leaves as soon as the call returns; the joins prove it (a lost wake-up
/// would hang them, which loom reports as a deadlock).
fn stop(shared: &Shared, threads: Vec<thread::JoinHandle<()>>) {
    shared.begin_shutdown(Duration::ZERO, Duration::ZERO);
    let _ = shared.wait_exited(Instant::now() + Duration::from_secs(3600));
    for t in threads {
        t.join().expect("host thread");
    }
    assert_eq!(lock(&shared.state).live, 0, "a host thread never left");
}

fn waiting(shared: &Shared) -> usize {
    shared.with_core(|core| core.waiting())
}

/// A submission racing the dispatcher going to sleep is always seen: the
/// waiter gets the upstream answer (a lost wake-up would hang here).
#[test]
fn loom_submit_wakes_a_sleeping_dispatcher() {
    model(|| {
        let (shared, threads) = host();
        let (r, o) = get();
        let Submitted::Waiting { slot, .. } = shared.submit(r, o) else {
            panic!("nothing cached yet: the request must wait");
        };
        let answer = slot.wait().expect("upstream answered");
        assert_eq!(answer.response.body, b"ok");
        stop(&shared, threads);
        assert_eq!(waiting(&shared), 0);
    });
}

/// A waiter giving up races the call's completion: either the cancel
/// wins (no answer is ever delivered) or the answer wins (the cancel
/// returns it) — exactly one, never both, never neither.
#[test]
fn loom_completion_races_cancel_exactly_one_wins() {
    model(|| {
        let (shared, threads) = host();
        let (r, o) = get();
        let Submitted::Waiting { ticket, slot } = shared.submit(r, o) else {
            panic!("nothing cached yet: the request must wait");
        };
        let outcome = shared.cancel(ticket, &slot);
        if let Some(ended) = &outcome {
            assert!(ended.is_ok(), "the only way to end here is the answer");
        }
        stop(&shared, threads);
        // Nothing arrives after a cancel, nor twice after an answer.
        assert!(slot.take().is_none());
        assert_eq!(waiting(&shared), 0);
    });
}

/// Shutdown racing a submission from another thread: the submitter gets
/// exactly one answer (refused, answered, or aborted) and every host
/// thread leaves.
#[test]
fn loom_shutdown_races_submit() {
    model(|| {
        let (shared, threads) = host();
        let submitter = {
            let shared = shared.clone();
            thread::spawn(move || {
                let (r, o) = get();
                match shared.submit(r, o) {
                    Submitted::ShuttingDown => None,
                    Submitted::Waiting { ticket, slot } => {
                        Some((ticket, slot.wait().is_ok(), slot))
                    }
                    Submitted::Answered(_) | Submitted::Refused(_) => {
                        panic!("an empty cache neither answers nor refuses a GET")
                    }
                }
            })
        };
        stop(&shared, threads);
        let result: Option<(Ticket, bool, Arc<Slot>)> = submitter.join().expect("submitter");
        if let Some((_, _, slot)) = result {
            assert!(slot.take().is_none(), "one answer per request");
        }
        assert_eq!(waiting(&shared), 0);
    });
}

/// Two readers share one coalesced call; one gives up while the call
/// completes. The other still gets the answer, the one that gave up gets
/// exactly one ending, and no ticket is left open.
#[test]
fn loom_cancel_of_one_coalesced_waiter_spares_the_other() {
    model(|| {
        let (shared, threads) = host();
        let (r, o) = get();
        let Submitted::Waiting { slot: kept, .. } = shared.submit(r, o) else {
            panic!("nothing cached yet: the request must wait");
        };
        let (r, o) = get();
        let (ticket, slot) = match shared.submit(r, o) {
            Submitted::Waiting { ticket, slot } => (ticket, slot),
            // The first call already answered: the second read is a hit.
            Submitted::Answered(_) => {
                assert!(kept.wait().is_ok());
                stop(&shared, threads);
                return;
            }
            _ => panic!("a second read either joins or hits the cache"),
        };
        let _ = shared.cancel(ticket, &slot);
        assert_eq!(kept.wait().expect("answered").response.body, b"ok");
        stop(&shared, threads);
        assert!(slot.take().is_none());
        assert_eq!(waiting(&shared), 0);
    });
}
