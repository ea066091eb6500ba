//! Criterion benchmarks of the sans-IO core: what one decision costs on
//! one core, with virtual time (no waiting is ever measured).
//!
//! Run with `cargo bench -p syncoord-core`; results are summarised in
//! `BENCHMARKS.md` at the repository root. Every benchmark advances a
//! virtual `now` by a tiny step per iteration, so cache entries stay
//! fresh and "never blocking" limiters really never block. Building the
//! `Request` (a few small allocations the host makes anyway) is done in
//! untimed setup wherever the core takes it by value.

use std::hint::black_box;
use std::time::Duration as WallDuration;
use std::time::Instant as WallClock;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syncoord_core::config::{Keying, RouteRule, ScopeConfig};
use syncoord_core::LimiterBench;
use syncoord_core::{
    Admission, ClassId, Config, Coordinator, Dispatch, Duration, Finished, Freshness, Instant,
    Outcome, Output, Request, Response, Source,
};

const TICKER: &str = "/api/v3/brokerage/market/products/BTC-USD/ticker";
const ACCOUNTS: &str = "/api/v3/brokerage/accounts";
const ORDERS: &str = "/api/v3/brokerage/orders";

/// A small upstream body, about the size of a ticker answer.
fn body() -> Response {
    Response::new(200, vec![b'x'; 256]).with_header("content-type", "application/json")
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(WallDuration::from_secs(3))
        .warm_up_time(WallDuration::from_secs(1))
        .sample_size(50);
    g
}

/// A scope that never blocks: a billion calls a second, a million at once.
fn unlimited(per: Keying) -> ScopeConfig {
    ScopeConfig {
        rate: 1e9,
        period_secs: 1.0,
        burst: 1_000_000,
        per,
        headroom: 0.9,
    }
}

/// Coinbase Advanced Trade (routes, TTLs, classes) with every limiter
/// scope made unlimited.
fn unlimited_config() -> Config {
    let mut c = Config::default();
    for s in c.scopes.values_mut() {
        let per = s.per;
        *s = unlimited(per);
    }
    c
}

/// The next output, if it is a call to send.
fn dispatch(coord: &mut Coordinator, now: Instant) -> Option<Dispatch<()>> {
    match coord.poll_output(now) {
        Output::Dispatch(d) => Some(d),
        _ => None,
    }
}

/// The next request that ended, if any.
fn finished(coord: &mut Coordinator, now: Instant) -> Option<Finished> {
    match coord.poll_output(now) {
        Output::Finished(f) => Some(f),
        Output::Dispatch(d) => panic!("unexpected dispatch {d:?}"),
        _ => None,
    }
}

/// Submits, dispatches and completes `request` once (fills the cache).
fn warm(coord: &mut Coordinator, now: Instant, request: Request) {
    match coord.submit(now, request, ()) {
        Admission::Waiting { .. } => {}
        other => panic!("warm-up submit not queued: {other:?}"),
    }
    let d = dispatch(coord, now).expect("warm-up dispatch");
    coord
        .complete(now, d.call, Outcome::response(body()))
        .expect("warm-up complete");
    while finished(coord, now).is_some() {}
}

fn assert_hit(a: &Admission) {
    match a {
        Admission::Answered(answer) => assert_eq!(answer.source, Source::Cache),
        other => panic!("expected a cache hit, got {other:?}"),
    }
}

/// `submit` of a GET answered from a fresh cache entry.
fn cache_hit(c: &mut Criterion) {
    let mut g = group(c, "cache_hit");
    g.throughput(Throughput::Elements(1));
    let variants = [
        ("public_ticker", Request::get(TICKER, "bot-1")),
        (
            "private_accounts",
            Request::get(ACCOUNTS, "bot-1").with_credential("key:a"),
        ),
        (
            "public_candles_query",
            Request::get(
                "/api/v3/brokerage/market/products/BTC-USD/candles\
                 ?start=1700000000&end=1700086400&granularity=ONE_HOUR&limit=24",
                "bot-1",
            ),
        ),
    ];
    for (name, request) in variants {
        let t0 = Instant::now();
        let mut coord: Coordinator = Coordinator::new(Config::default().compile().unwrap(), t0, 1);
        warm(&mut coord, t0, request.clone());
        let mut now = t0;
        assert_hit(&coord.submit(now, request.clone(), ()));
        g.bench_function(name, |b| {
            b.iter_batched(
                || request.clone(),
                |r| {
                    // 1 ns a hit: even 100 M hits stay far inside the TTL.
                    now += Duration::from_nanos(1);
                    coord.submit(now, r, ())
                },
                BatchSize::SmallInput,
            )
        });
        assert_hit(&coord.submit(now, request.clone(), ()));
    }
    // The ticker hit again, with the bot's request directives parsed in the
    // timed section: `Cache-Control: max-age=5` among a ccxt-like header set.
    let headers: Vec<(String, String)> = [
        ("Host", "127.0.0.1:8787"),
        ("User-Agent", "ccxt/4"),
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip"),
        ("Cache-Control", "max-age=5"),
        ("X-Syncoord-Client", "bot-7"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    let request = Request::get(TICKER, "bot-1");
    let t0 = Instant::now();
    let mut coord: Coordinator = Coordinator::new(Config::default().compile().unwrap(), t0, 1);
    warm(&mut coord, t0, request.clone());
    let mut now = t0;
    g.bench_function("public_ticker_with_directives", |b| {
        b.iter_batched(
            || request.clone(),
            |mut r| {
                now += Duration::from_nanos(1);
                r.freshness = Freshness::from_headers(black_box(&headers));
                coord.submit(now, r, ())
            },
            BatchSize::SmallInput,
        )
    });
    let mut r = request.clone();
    r.freshness = Freshness::from_headers(&headers);
    assert_hit(&coord.submit(now, r, ()));
    g.finish();
}

/// One request's whole life on a cache miss: submit, poll_output
/// (dispatch), complete, poll_output (finished), on limiters that never
/// block.
/// One request's whole life: submit, dispatch, complete, finished.
fn full_cycle(
    coord: &mut Coordinator,
    now: Instant,
    request: Request,
    response: Response,
) -> syncoord_core::Finished {
    let Admission::Waiting { .. } = coord.submit(now, request, ()) else {
        panic!("not queued");
    };
    let d = dispatch(coord, now).expect("dispatch");
    coord
        .complete(now, d.call, Outcome::response(response))
        .expect("complete");
    finished(coord, now).expect("finished")
}

fn cycle(c: &mut Criterion) {
    let mut g = group(c, "cycle");
    g.throughput(Throughput::Elements(1));

    // A write: no cache, no coalescing (the `orders-write` route).
    {
        let t0 = Instant::now();
        let mut coord: Coordinator = Coordinator::new(unlimited_config().compile().unwrap(), t0, 1);
        let request =
            Request::new(syncoord_core::Method::post(), ORDERS, "bot-1").with_credential("key:a");
        let mut now = t0;
        g.bench_function("uncached_post", |b| {
            b.iter_batched(
                || (request.clone(), body()),
                |(r, response)| {
                    now += Duration::from_micros(1);
                    full_cycle(&mut coord, now, r, response)
                },
                BatchSize::SmallInput,
            )
        });
        assert_eq!(coord.waiting(), 0);
    }

    // A shared read of a path never seen before: coalescing index, cache
    // insert and, once 10 000 entries are held, one LRU eviction per call.
    {
        let t0 = Instant::now();
        let mut coord: Coordinator = Coordinator::new(unlimited_config().compile().unwrap(), t0, 1);
        let mut now = t0;
        let mut i = 0u64;
        g.bench_function("get_miss_unique_path", |b| {
            b.iter_batched(
                || {
                    i += 1;
                    let path = format!("/api/v3/brokerage/market/products/P-{i}/ticker");
                    (Request::get(&path, "bot-1"), body())
                },
                |(r, response)| {
                    now += Duration::from_micros(1);
                    full_cycle(&mut coord, now, r, response)
                },
                BatchSize::SmallInput,
            )
        });
        assert_eq!(coord.waiting(), 0);
    }
    g.finish();
}

/// The limiter alone: a pacing decision and its spend.
fn limiter_decision(c: &mut Criterion) {
    let mut g = group(c, "limiter_decision");
    g.throughput(Throughput::Elements(1));

    // Three scopes: the two Advanced Trade ones and a per-endpoint one.
    let mut config = unlimited_config();
    config
        .scopes
        .insert("endpoint".to_owned(), unlimited(Keying::Global));
    let id = |name: &str| config.scope_id(name).unwrap();
    let (public, private, endpoint) = (id("public"), id("private"), id("endpoint"));
    let credential = syncoord_core::Credential::new("key:a");

    for (name, scopes) in [
        ("check_acquire_1_bucket", vec![public]),
        ("check_acquire_3_buckets", vec![private, public, endpoint]),
    ] {
        let mut limiter = LimiterBench::new(&config, &scopes, Some(&credential));
        assert_eq!(limiter.buckets(), scopes.len());
        let t0 = Instant::now();
        let mut now = t0;
        g.bench_function(name, |b| {
            b.iter(|| {
                now += Duration::from_micros(1);
                let blocked = limiter.blocked(now, black_box(1));
                assert!(!blocked, "an unlimited bucket blocked");
                limiter.acquire(now, 1);
            })
        });
    }

    // The real Advanced Trade public scope (10/s, burst 10 at 90%),
    // emptied: `check` says how long to wait.
    {
        let config = Config::default();
        let mut limiter = LimiterBench::new(&config, &[config.scope_id("public").unwrap()], None);
        let t0 = Instant::now();
        while !limiter.blocked(t0, 1) {
            limiter.acquire(t0, 1);
        }
        g.bench_function("check_blocked_1_bucket", |b| {
            b.iter(|| {
                let blocked = limiter.blocked(black_box(t0), 1);
                assert!(blocked);
                blocked
            })
        });
    }
    g.finish();
}

/// `submit` of a GET identical to one already waiting, which joins it;
/// then `cancel`, so every iteration starts from the same state.
fn coalesced_join(c: &mut Criterion) {
    let mut g = group(c, "coalesced_join");
    g.throughput(Throughput::Elements(1));
    for in_flight in [true, false] {
        let name = if in_flight {
            "submit_cancel_in_flight"
        } else {
            "submit_cancel_queued"
        };
        let t0 = Instant::now();
        let mut coord: Coordinator = Coordinator::new(Config::default().compile().unwrap(), t0, 1);
        let request = Request::get(TICKER, "bot-1");
        let Admission::Waiting { .. } = coord.submit(t0, request.clone(), ()) else {
            panic!("first submit not queued");
        };
        if in_flight {
            let _ = dispatch(&mut coord, t0).expect("dispatch");
        }
        let mut now = t0;
        g.bench_function(name, |b| {
            b.iter_batched(
                || request.clone(),
                |r| {
                    now += Duration::from_nanos(1);
                    let Admission::Waiting {
                        ticket,
                        joined: true,
                    } = coord.submit(now, r, ())
                    else {
                        panic!("did not join");
                    };
                    assert!(coord.cancel(ticket));
                },
                BatchSize::SmallInput,
            )
        });
        assert_eq!(coord.waiting(), 1);
    }
    g.finish();
}

/// Coinbase Advanced Trade where each credential's `private` bucket holds
/// one call an hour (so a spent bucket stays blocked for the whole run),
/// plus an unlimited per-credential scope `fast` used by the lowest class
/// under `GET /bench/fast/**`.
fn lanes_config() -> Config {
    let mut c = Config::default();
    c.scopes.insert(
        "private".to_owned(),
        ScopeConfig {
            rate: 1.0,
            period_secs: 3600.0,
            burst: 1,
            per: Keying::Credential,
            headroom: 0.9,
        },
    );
    c.scopes
        .insert("fast".to_owned(), unlimited(Keying::Credential));
    c.routes.insert(
        0,
        RouteRule {
            name: Some("bench-fast".into()),
            methods: vec!["GET".into()],
            path: "/bench/fast/**".into(),
            priority: Some("analysis".into()),
            scopes: Some(vec!["fast".into()]),
            cacheable: Some(false),
            coalesce: Some(false),
            ..Default::default()
        },
    );
    c
}

/// `poll_output` (a dispatch) when `blocked` per-credential lanes wait on spent
/// buckets, spread over the four classes, and one lane (lowest class,
/// newest, so scanned last) can go. Only `poll_output` is timed. The
/// `N_lanes` variants hold N-1 blocked lanes plus the ready one, so
/// comparing them shows how the scan grows with the number of lanes.
fn dispatch_select(c: &mut Criterion) {
    let mut g = group(c, "dispatch_select");
    g.throughput(Throughput::Elements(1));
    for (name, blocked) in [("100_lanes", 99usize), ("50_lanes", 49), ("1_lane", 0)] {
        let t0 = Instant::now();
        let mut coord: Coordinator = Coordinator::new(lanes_config().compile().unwrap(), t0, 1);
        let far = t0 + Duration::from_secs(100_000);
        for i in 0..blocked {
            let key = format!("key:{i:03}");
            let client = format!("bot-{i}");
            // Spend the credential's only token.
            warm(
                &mut coord,
                t0,
                Request::get(&format!("{ACCOUNTS}/warm"), &client).with_credential(&key),
            );
            // Then queue a call that must wait an hour for it.
            let request = Request::get(&format!("{ACCOUNTS}/{i}"), &client)
                .with_credential(&key)
                .with_priority(ClassId((i % 4) as u8))
                .with_deadline(far);
            let Admission::Waiting { .. } = coord.submit(t0, request, ()) else {
                panic!("blocked call not queued");
            };
        }
        assert!(dispatch(&mut coord, t0).is_none(), "a blocked lane went");
        assert_eq!(coord.queue_len(), blocked);

        let ready = Request::get("/bench/fast/x", "bot-ready").with_credential("key:ready");
        let mut now = t0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = WallDuration::ZERO;
                for _ in 0..iters {
                    now += Duration::from_micros(1);
                    let Admission::Waiting { .. } = coord.submit(now, ready.clone(), ()) else {
                        panic!("ready call not queued");
                    };
                    let start = WallClock::now();
                    let d = black_box(dispatch(&mut coord, now));
                    total += start.elapsed();
                    let d = d.expect("the ready lane did not go");
                    coord
                        .complete(now, d.call, Outcome::response(body()))
                        .expect("complete");
                    while finished(&mut coord, now).is_some() {}
                }
                total
            })
        });
        assert_eq!(coord.queue_len(), blocked);
    }
    g.finish();
}

criterion_group!(
    benches,
    cache_hit,
    cycle,
    limiter_decision,
    coalesced_join,
    dispatch_select
);
criterion_main!(benches);
