//! Which lock guards the coordinator on the hit path: the standard
//! library's `Mutex`, parking_lot's, or a spin lock (the `spin` crate).
//!
//! Every event loop of the daemon answers a cache hit by taking the
//! coordinator's lock, asking the core, and letting go; this measures
//! exactly that critical section (a real `Coordinator`, a real cached
//! answer) with 1, 2 and 16 threads hitting it at once, on however many
//! cores the machine has. Run with
//! `cargo bench -p syncoord --bench hit_lock`; figures in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration as WallDuration, Instant as WallClock};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use syncoord_core::{Admission, Config, Coordinator, Instant, Outcome, Output, Request, Response};

const TICKER: &str = "/api/v3/brokerage/market/products/BTC-USD/ticker";

/// A coordinator on the Coinbase defaults with the ticker cached.
fn warm_core() -> Coordinator<()> {
    let now = Instant::now();
    let config = Config::default().compile().expect("the defaults compile");
    let mut core = Coordinator::new(config, now, 7);
    let Admission::Waiting { .. } = core.submit(now, Request::get(TICKER, "warm"), ()) else {
        panic!("an empty cache cannot answer");
    };
    let Output::Dispatch(call) = core.poll_output(now) else {
        panic!("the defaults have budget for one call");
    };
    let answer =
        Response::new(200, vec![b'x'; 256]).with_header("content-type", "application/json");
    core.complete(now, call.call, Outcome::response(answer))
        .expect("the call is in flight");
    while !matches!(core.poll_output(now), Output::WakeAt(_) | Output::Idle) {}
    core
}

/// One of the locks under comparison: run `f` on the guarded value.
trait HitLock: Send + Sync + 'static {
    fn new(core: Coordinator<()>) -> Self;
    fn with<R>(&self, f: impl FnOnce(&mut Coordinator<()>) -> R) -> R;
}

impl HitLock for std::sync::Mutex<Coordinator<()>> {
    fn new(core: Coordinator<()>) -> Self {
        std::sync::Mutex::new(core)
    }
    fn with<R>(&self, f: impl FnOnce(&mut Coordinator<()>) -> R) -> R {
        f(&mut self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl HitLock for parking_lot::Mutex<Coordinator<()>> {
    fn new(core: Coordinator<()>) -> Self {
        parking_lot::Mutex::new(core)
    }
    fn with<R>(&self, f: impl FnOnce(&mut Coordinator<()>) -> R) -> R {
        f(&mut self.lock())
    }
}

impl HitLock for spin::Mutex<Coordinator<()>> {
    fn new(core: Coordinator<()>) -> Self {
        spin::Mutex::new(core)
    }
    fn with<R>(&self, f: impl FnOnce(&mut Coordinator<()>) -> R) -> R {
        f(&mut self.lock())
    }
}

/// `iters` cache hits split over `threads` threads; the wall time of all.
fn hits<L: HitLock>(lock: &Arc<L>, threads: u64, iters: u64) -> WallDuration {
    let start = WallClock::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let lock = lock.clone();
            let share = iters / threads + u64::from(t < iters % threads);
            s.spawn(move || {
                for _ in 0..share {
                    // Built outside the lock, as the hosts do.
                    let request = Request::get(TICKER, "bot");
                    let now = Instant::now();
                    let admission = lock.with(|core| core.submit(now, request, ()));
                    let Admission::Answered(answer) = admission else {
                        panic!("a cache hit");
                    };
                    black_box(answer);
                }
            });
        }
    });
    start.elapsed()
}

fn compare(c: &mut Criterion) {
    let mut g = c.benchmark_group("hit_lock");
    g.measurement_time(WallDuration::from_secs(3))
        .warm_up_time(WallDuration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(1));
    for threads in [1u64, 2, 16] {
        let std_lock = Arc::new(<std::sync::Mutex<_> as HitLock>::new(warm_core()));
        g.bench_with_input(BenchmarkId::new("std", threads), &threads, |b, &t| {
            b.iter_custom(|iters| hits(&std_lock, t, iters))
        });
        let pl_lock = Arc::new(<parking_lot::Mutex<_> as HitLock>::new(warm_core()));
        g.bench_with_input(
            BenchmarkId::new("parking_lot", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| hits(&pl_lock, t, iters)),
        );
        let spin_lock = Arc::new(<spin::Mutex<_> as HitLock>::new(warm_core()));
        g.bench_with_input(BenchmarkId::new("spin", threads), &threads, |b, &t| {
            b.iter_custom(|iters| hits(&spin_lock, t, iters))
        });
    }
    g.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
