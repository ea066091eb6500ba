//! The threaded host against an in-process fake upstream. Ordering is made
//! deterministic with a gate the test opens, never with sleeps; timeouts
//! here are hang guards or the behaviour under test (a waiter giving up).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use syncoord_core::config::{coinbase, Keying, ScopeConfig};
use syncoord_core::{Config, Failure, Method, Outcome, Request, Response, Source, TransportError};
use syncoord_wire::Outgoing;

use super::{CallError, Coordinator, HostOptions, Upstream};

const P: &str = "/api/v3/brokerage";
/// Hang guard for anything a test waits on.
const GUARD: Duration = Duration::from_secs(10);

/// Answers 200 with the path as body. While the gate is closed every call
/// (except paths containing `fast`) blocks in it; each call announces
/// itself on `entered` first. Paths containing `panic` panic.
struct Fake {
    calls: AtomicUsize,
    log: Mutex<Vec<String>>,
    open: Mutex<bool>,
    opened: Condvar,
    entered: Mutex<mpsc::Sender<String>>,
}

impl Fake {
    fn new(open: bool) -> (Arc<Fake>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel();
        let fake = Fake {
            calls: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            open: Mutex::new(open),
            opened: Condvar::new(),
            entered: Mutex::new(tx),
        };
        (Arc::new(fake), rx)
    }

    fn open_gate(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Upstream for Fake {
    fn send(&self, call: &Outgoing) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(call.path_and_query.clone());
        let _ = self
            .entered
            .lock()
            .unwrap()
            .send(call.path_and_query.clone());
        if call.path_and_query.contains("panic") {
            panic!("fake upstream panics on purpose");
        }
        if !call.path_and_query.contains("fast") {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
        Outcome::response(Response::new(200, call.path_and_query.as_bytes().to_vec()))
    }
}

/// Advanced Trade with one attempt per call (no retry timing in tests).
fn config() -> Config {
    let mut config = coinbase::advanced_trade();
    config.retry.max_attempts = 1;
    config
}

/// One global scope at `rate`/s, burst 1, no top-class reserve: calls
/// queue behind the limiter and leave strictly by priority.
fn tight(rate: f64) -> Config {
    let mut config = config();
    config.scopes = BTreeMap::from([(
        "private".to_owned(),
        ScopeConfig {
            rate,
            period_secs: 1.0,
            burst: 1,
            per: Keying::Global,
            headroom: 1.0,
        },
    )]);
    for rule in &mut config.routes {
        rule.scopes = None;
    }
    config.queue.top_class_reserve = 0;
    config
}

fn start(config: Config, fake: &Arc<Fake>, threads: usize) -> Coordinator {
    let upstream: Arc<dyn Upstream> = fake.clone();
    let options = HostOptions {
        upstream_threads: threads,
        seed: Some(7),
        in_flight_grace: Duration::from_millis(200),
        ..HostOptions::default()
    };
    Coordinator::start(config.compile().unwrap(), upstream, options).unwrap()
}

fn get(path: &str) -> (Request, Outgoing) {
    (Request::get(path, "test"), outgoing("GET", path))
}

fn post(path: &str) -> (Request, Outgoing) {
    (
        Request::new(Method::post(), path, "test"),
        outgoing("POST", path),
    )
}

fn outgoing(method: &str, path: &str) -> Outgoing {
    Outgoing {
        method: method.into(),
        path_and_query: path.into(),
        headers: Default::default(),
        body: vec![],
        sign_as: None,
    }
}

/// Waits until the fake announces a call (hang-guarded).
fn entered(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(GUARD).expect("an upstream call started")
}

#[test]
fn fifty_identical_gets_make_one_upstream_call() {
    let (fake, rx) = Fake::new(false);
    let host = start(config(), &fake, 4);
    let path = format!("{P}/products/BTC-USD");
    let barrier = Arc::new(Barrier::new(51));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (host, barrier, path) = (host.clone(), barrier.clone(), path.clone());
            thread::spawn(move || {
                let (request, out) = get(&path);
                let pending = host.submit(request, out);
                barrier.wait();
                pending.wait_timeout(GUARD)
            })
        })
        .collect();
    // Every request is in before upstream may answer.
    barrier.wait();
    assert_eq!(entered(&rx), path);
    fake.open_gate();
    let mut sources = BTreeMap::new();
    for t in threads {
        let answer = t.join().unwrap().expect("answered");
        assert_eq!(answer.response.body, path.as_bytes());
        *sources.entry(answer.source.as_str()).or_insert(0) += 1;
    }
    assert_eq!(fake.calls(), 1);
    assert_eq!(sources.get("miss"), Some(&1));
    assert_eq!(sources.get("coalesced"), Some(&49));
    assert_eq!(host.waiting(), 0);
    host.shutdown(Duration::ZERO);
}

#[test]
fn unbounded_durations_mean_no_limit() {
    let (fake, _rx) = Fake::new(true);
    let host = start(config(), &fake, 1);
    let (r, o) = get(&format!("{P}/products/MAX"));
    let answer = host.submit(r, o).wait_timeout(Duration::MAX).unwrap();
    assert_eq!(answer.source, Source::Upstream);
    // Nothing is open, so even an unbounded drain returns at once.
    host.shutdown(Duration::MAX);
    assert_eq!(Arc::strong_count(&fake), 1);
}

#[test]
fn a_repeated_get_is_answered_from_the_cache() {
    let (fake, _rx) = Fake::new(true);
    let host = start(config(), &fake, 2);
    let path = format!("{P}/products/ETH-USD");
    let (r, o) = get(&path);
    let first = host.call(r, o).unwrap();
    let (r, o) = get(&path);
    let second = host.call(r, o).unwrap();
    assert_eq!(first.source, Source::Upstream);
    assert_eq!(second.source, Source::Cache);
    assert_eq!(second.response.body, path.as_bytes());
    assert_eq!(fake.calls(), 1);
    assert_eq!(host.stats().requests.hit, 1);
}

#[test]
fn trading_leaves_before_analysis_when_the_limiter_is_tight() {
    let (fake, rx) = Fake::new(false);
    // One worker, one token every 100 ms.
    let host = start(tight(10.0), &fake, 1);
    let blocker = format!("{P}/products/BTC-USD");
    let (r, o) = get(&blocker);
    let first = host.submit(r, o);
    assert_eq!(entered(&rx), blocker);
    // Queued behind the busy worker and the empty bucket, lowest first.
    let (r, o) = get(&format!("{P}/products/BTC-USD/candles"));
    let analysis = host.submit(r, o);
    let (r, o) = get(&format!("{P}/products/ETH-USD"));
    let market = host.submit(r, o);
    let (r, o) = post(&format!("{P}/orders"));
    let trading = host.submit(r, o);
    fake.open_gate();
    for pending in [first, analysis, market, trading] {
        pending.wait_timeout(GUARD).unwrap();
    }
    assert_eq!(
        fake.log(),
        vec![
            blocker,
            format!("{P}/orders"),
            format!("{P}/products/ETH-USD"),
            format!("{P}/products/BTC-USD/candles"),
        ]
    );
}

#[test]
fn a_waiter_that_times_out_cancels_its_ticket() {
    let (fake, rx) = Fake::new(false);
    let host = start(config(), &fake, 1);
    let (r, o) = get(&format!("{P}/products/A"));
    let in_flight = host.submit(r, o);
    entered(&rx);
    let (r, o) = get(&format!("{P}/products/B"));
    let queued = host.submit(r, o);
    assert_eq!(host.waiting(), 2);

    let waited = Duration::from_millis(30);
    match queued.wait_timeout(waited) {
        Err(CallError::TimedOut { waited: w }) => assert!(w >= waited),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(host.waiting(), 1);
    assert!(matches!(
        in_flight.wait_timeout(waited),
        Err(CallError::TimedOut { .. })
    ));
    assert_eq!(host.waiting(), 0);

    // Dropping a Pending cancels as well.
    let (r, o) = get(&format!("{P}/products/C"));
    drop(host.submit(r, o));
    assert_eq!(host.waiting(), 0);
    assert_eq!(host.stats().requests.cancelled, 3);
    fake.open_gate();
    // B and C never reached upstream: nobody waited for them any more.
    let (r, o) = get(&format!("{P}/products/fast"));
    host.call(r, o).unwrap();
    assert!(!fake.log().iter().any(|p| p.ends_with("/B")));
}

#[test]
fn shutdown_drains_queued_work_then_refuses_and_joins() {
    let (fake, _rx) = Fake::new(true);
    // Five calls at 20/s: the last leaves about 200 ms after the first.
    let host = start(tight(20.0), &fake, 2);
    let pending: Vec<_> = (0..5)
        .map(|i| {
            let (r, o) = get(&format!("{P}/products/P{i}"));
            host.submit(r, o)
        })
        .collect();
    host.shutdown(GUARD);
    for p in pending {
        assert_eq!(p.wait().unwrap().source, Source::Upstream);
    }
    assert_eq!(fake.calls(), 5);
    // The workers are joined: nothing holds the upstream any more.
    assert_eq!(Arc::strong_count(&fake), 1);
    let (r, o) = get(&format!("{P}/products/late"));
    assert!(matches!(host.call(r, o), Err(CallError::ShuttingDown)));
}

#[test]
fn shutdown_answers_every_open_request_exactly_once() {
    let (fake, rx) = Fake::new(false);
    let host = start(tight(1000.0), &fake, 1);
    let (r, o) = get(&format!("{P}/products/stuck"));
    let in_flight = host.submit(r, o);
    entered(&rx);
    let queued: Vec<_> = (0..5)
        .map(|i| {
            let (r, o) = get(&format!("{P}/products/Q{i}"));
            host.submit(r, o)
        })
        .collect();
    assert_eq!(host.waiting(), 6);
    let stopper = {
        let host = host.clone();
        thread::spawn(move || host.shutdown(Duration::from_millis(20)))
    };
    // Never sent: aborted at the drain deadline (a bot may retry those).
    for p in queued {
        match p.wait() {
            Err(CallError::Failed(Failure::Aborted(_))) => {}
            other => panic!("expected an abort, got {other:?}"),
        }
    }
    // Sent, and upstream never answered within the in-flight grace: the
    // outcome is unknown, never an abort a bot would retry.
    match in_flight.wait() {
        Err(CallError::OutcomeUnknown(_)) => {}
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    stopper.join().unwrap();
    assert_eq!(host.waiting(), 0);
    let stats = host.stats();
    assert_eq!(stats.requests.submitted, 6);
    assert_eq!(stats.in_progress, 0);
    // The worker was left inside the call; it leaves once the call returns.
    fake.open_gate();
}

/// A host whose calls in flight may take `grace` past the drain deadline.
fn start_with_grace(config: Config, fake: &Arc<Fake>, grace: Duration) -> Coordinator {
    let upstream: Arc<dyn Upstream> = fake.clone();
    let options = HostOptions {
        upstream_threads: 1,
        seed: Some(7),
        in_flight_grace: grace,
        ..HostOptions::default()
    };
    Coordinator::start(config.compile().unwrap(), upstream, options).unwrap()
}

#[test]
fn an_order_in_flight_at_the_drain_deadline_gets_its_real_answer() {
    let (fake, rx) = Fake::new(false);
    let host = start_with_grace(tight(1000.0), &fake, GUARD);
    let (r, o) = post(&format!("{P}/orders/slow"));
    let order = host.submit(r, o);
    entered(&rx);
    let (r, o) = get(&format!("{P}/products/queued"));
    let queued = host.submit(r, o);
    let stopper = {
        let host = host.clone();
        thread::spawn(move || host.shutdown(Duration::from_millis(20)))
    };
    // The queued read is aborted at the drain deadline, while the order
    // is still inside upstream...
    match queued.wait() {
        Err(CallError::Failed(Failure::Aborted(_))) => {}
        other => panic!("expected an abort, got {other:?}"),
    }
    assert!(!stopper.is_finished(), "shutdown waits for the order");
    // ...which, once upstream answers, gets that answer.
    fake.open_gate();
    let answer = order.wait().expect("the order's real answer");
    assert_eq!(answer.response.status, 200);
    assert_eq!(answer.response.body, format!("{P}/orders/slow").as_bytes());
    stopper.join().unwrap();
    assert_eq!(fake.calls(), 1);
}

#[test]
fn stop_now_tells_an_order_in_flight_its_outcome_is_unknown() {
    let (fake, rx) = Fake::new(false);
    let host = start_with_grace(tight(1000.0), &fake, GUARD);
    let (r, o) = post(&format!("{P}/orders/stuck"));
    let order = host.submit(r, o);
    entered(&rx);
    let (r, o) = get(&format!("{P}/products/queued"));
    let queued = host.submit(r, o);
    let stopper = {
        let host = host.clone();
        thread::spawn(move || host.shutdown(GUARD))
    };
    host.stop_now();
    match queued.wait() {
        Err(CallError::Failed(Failure::Aborted(_))) => {}
        other => panic!("expected an abort, got {other:?}"),
    }
    match order.wait() {
        Err(CallError::OutcomeUnknown(why)) => assert!(why.contains("may have"), "{why}"),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    // The shutdown under way returns without waiting for upstream.
    stopper.join().unwrap();
    fake.open_gate();
}

#[test]
fn an_abandoned_order_in_flight_reports_its_late_answer_and_a_queued_one_is_cancelled() {
    let (fake, rx) = Fake::new(false);
    let host = start(tight(1000.0), &fake, 1);
    let (r, o) = post(&format!("{P}/orders/left"));
    let sent = host.submit(r, o);
    entered(&rx);
    // The only worker is busy: this one waits in the queue.
    let (r, o) = post(&format!("{P}/orders/queued"));
    let queued = host.submit(r, o);
    let (tx, late) = mpsc::channel();
    assert!(sent.abandon(move |ended| {
        let _ = tx.send(ended.map(|a| a.response.status));
    }));
    assert!(!queued.abandon(|_| panic!("a cancelled request has no answer")));
    fake.open_gate();
    match late.recv_timeout(GUARD) {
        Ok(Ok(200)) => {}
        other => panic!("expected the late 200, got {other:?}"),
    }
    host.shutdown(GUARD);
    assert_eq!(
        fake.log(),
        vec![format!("{P}/orders/left")],
        "the queued order never left"
    );
}

#[test]
fn a_panicking_upstream_fails_its_call_and_the_worker_lives_on() {
    let (fake, _rx) = Fake::new(true);
    let host = start(config(), &fake, 1);
    let (r, o) = post(&format!("{P}/orders/panic"));
    // An order whose send broke off: upstream may have it, so its
    // outcome is unknown.
    match host.call(r, o) {
        Err(CallError::Failed(Failure::OutcomeUnknown {
            error: TransportError::Broken(msg),
            ..
        })) => assert!(msg.contains("panicked"), "{msg}"),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    let (r, o) = get(&format!("{P}/products/after"));
    assert_eq!(host.call(r, o).unwrap().source, Source::Upstream);
}

#[test]
fn a_stuck_upstream_call_times_out_without_wedging_the_others() {
    let (fake, rx) = Fake::new(false);
    let mut config = config();
    config.retry.call_timeout_secs = 0.2;
    let host = start(config, &fake, 2);
    let (r, o) = get(&format!("{P}/products/stuck"));
    let stuck = host.submit(r, o);
    entered(&rx);
    // The other worker still serves.
    let (r, o) = get(&format!("{P}/products/fast"));
    assert_eq!(host.call(r, o).unwrap().response.status, 200);
    match stuck.wait_timeout(GUARD) {
        Err(CallError::Failed(Failure::Transport {
            error: TransportError::Timeout(_),
            ..
        })) => {}
        other => panic!("expected the core's call timeout, got {other:?}"),
    }
    assert_eq!(host.waiting(), 0);
    fake.open_gate();
}

#[test]
fn a_refused_request_fails_at_once() {
    let (fake, _rx) = Fake::new(true);
    let host = start(config(), &fake, 1);
    let (r, o) = get(&format!("{P}/products/X"));
    // A deadline already past can never be met.
    let r = r.with_deadline(syncoord_core::Instant::now());
    match host.call(r, o) {
        Err(CallError::Failed(Failure::DeadlineUnreachable { .. })) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(fake.calls(), 0);
}

#[test]
fn dropping_the_last_handle_stops_the_threads() {
    let (fake, _rx) = Fake::new(true);
    let host = start(tight(0.5), &fake, 3);
    let (r, o) = get(&format!("{P}/products/D"));
    host.call(r, o).unwrap();
    // The bucket is empty for two seconds: this one waits in the queue.
    let (r, o) = get(&format!("{P}/products/E"));
    let queued = host.submit(r, o);
    let clone = host.clone();
    drop(host);
    assert!(Arc::strong_count(&fake) > 1, "a clone keeps the host alive");
    drop(clone);
    assert_eq!(Arc::strong_count(&fake), 1);
    // A Pending does not keep the host alive; it gets its one answer.
    assert!(matches!(
        queued.wait(),
        Err(CallError::Failed(Failure::Aborted(_)))
    ));
}

#[test]
fn handles_and_pendings_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Coordinator>();
    send::<super::Pending>();
}

/// Not a test: how much the host costs per request. Run with
/// `cargo test -p syncoord --release --lib host::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_host_overhead() {
    use std::time::Instant;
    let (fake, _rx) = Fake::new(true);
    let mut config = config();
    for scope in config.scopes.values_mut() {
        scope.rate = 1e9;
        scope.burst = 1_000_000;
    }
    let host = start(config, &fake, 8);
    let threads = 8;
    let per_thread = 20_000;

    let (r, o) = get(&format!("{P}/products/HOT"));
    host.call(r, o).unwrap();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let host = host.clone();
            thread::spawn(move || {
                for _ in 0..per_thread {
                    let (r, o) = get(&format!("{P}/products/HOT"));
                    host.call(r, o).unwrap();
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    let hits = t0.elapsed();
    let n = (threads * per_thread) as f64;
    println!(
        "cache hits: {n} from {threads} threads in {hits:?} = {:.0}/s",
        n / hits.as_secs_f64()
    );

    let per_thread = 2_000;
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let host = host.clone();
            thread::spawn(move || {
                for i in 0..per_thread {
                    let (r, o) = post(&format!("{P}/orders/fast-{t}-{i}"));
                    host.call(r, o).unwrap();
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    let calls = t0.elapsed();
    let n = (threads * per_thread) as f64;
    println!(
        "upstream round trips (instant fake, 8 workers): {n} in {calls:?} = {:.0}/s, {:.1} us each",
        n / calls.as_secs_f64(),
        calls.as_secs_f64() * 1e6 / n * threads as f64
    );
}

#[test]
fn start_rejects_bad_options_and_config() {
    let (fake, _rx) = Fake::new(true);
    let upstream: Arc<dyn Upstream> = fake.clone();
    let options = HostOptions {
        upstream_threads: 0,
        ..HostOptions::default()
    };
    assert!(matches!(
        Coordinator::start(config().compile().unwrap(), upstream.clone(), options),
        Err(super::StartError::NoWorkers)
    ));
    // A bad config never reaches `start`: it does not compile.
    let mut bad = config();
    bad.priorities.clear();
    assert!(bad.compile().is_err());
}
