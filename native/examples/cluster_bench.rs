//! What sharing through Redis costs (scripts/bench-cluster.sh runs it
//! against a redis-server of its own on loopback):
//!
//! 1. the shared-budget round trip every upstream call adds (the GCRA
//!    script), p50 / p99;
//! 2. cache-hit throughput with `threads` bot threads, each read a local
//!    miss answered from Redis (another host fetched it), against the same
//!    reads as local hits, through the whole host (`Coordinator::call`).
//!
//! `cargo run --release -p syncoord --example cluster_bench -- redis://127.0.0.1:PORT [threads]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use syncoord::{Cluster, Coordinator, HostOptions, Upstream};
use syncoord_core::config::{Keying, ScopeConfig};
use syncoord_core::{Config, Outcome, Request, Response, SharedBucket, SharedSpend, Source};
use syncoord_wire::{ClusterSettings, Outgoing};

const KEYS: usize = 20_000;

fn settings(url: &str, name: &str) -> ClusterSettings {
    ClusterSettings {
        redis_url: url.into(),
        name: name.into(),
        call_timeout_secs: 1.0,
        ..ClusterSettings::default()
    }
}

fn quantiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn config() -> Config {
    let mut c = Config::default();
    // A budget that never holds the benchmark back: it measures Redis.
    c.scopes.insert(
        "wide".into(),
        ScopeConfig {
            rate: 1e6,
            period_secs: 1.0,
            burst: 1_000_000,
            per: Keying::Global,
            headroom: 1.0,
        },
    );
    c.defaults.scopes = vec!["wide".into()];
    c.defaults.ttl_secs = 300.0;
    c.cache.max_entries = KEYS * 2;
    c.cache.max_bytes = 256 << 20;
    c
}

fn host(cluster: Option<Arc<Cluster>>) -> Coordinator {
    let upstream: Arc<dyn Upstream> = Arc::new(|o: &Outgoing| {
        Outcome::response(Response::json(
            200,
            format!(r#"{{"path":"{}","price":"1234.56"}}"#, o.path_and_query),
        ))
    });
    let options = HostOptions {
        upstream_threads: 8,
        ..HostOptions::default()
    };
    Coordinator::start_in_cluster(
        config().compile().expect("valid"),
        upstream,
        options,
        cluster,
    )
    .expect("host starts")
}

fn read(host: &Coordinator, i: usize, bot: usize) -> Source {
    let path = format!("/market/products/P-{i}/ticker");
    let out = Outgoing {
        method: "GET".into(),
        path_and_query: path.clone(),
        headers: Default::default(),
        body: vec![],
        sign_as: None,
    };
    host.call(Request::get(&path, &format!("bot-{bot}")), out)
        .expect("answered")
        .source
}

/// Every key read once, split over `threads`; reads per second.
fn read_all(host: &Coordinator, threads: usize, want: Source) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in (t..KEYS).step_by(threads) {
                    let got = read(host, i, t);
                    assert_eq!(got, want, "key {i}");
                }
            });
        }
    });
    KEYS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: cluster_bench REDIS_URL [threads]");
    let threads: usize = args.next().map_or(4, |t| t.parse().expect("threads"));
    let run = format!("bench{}", std::process::id());

    // 1. The shared budget's round trip.
    let cluster = Cluster::new(settings(&url, &format!("{run}-gcra")), 1).expect("cluster");
    assert!(cluster.is_up(), "redis not reached at {url}");
    let spend = SharedSpend {
        buckets: vec![SharedBucket {
            scope: "private".into(),
            credential: Some(syncoord_core::Credential::new("id:bench")),
            interval: Duration::from_micros(1),
            burst: 1_000_000,
        }],
        cost: 1,
        reserve: 1,
    };
    let mut rtts = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        assert!(cluster.spend(&spend, None).is_none());
        rtts.push(t.elapsed());
    }
    let (p50, p99) = quantiles(rtts);
    println!("shared budget (GCRA script) round trip: p50 {p50:.0} µs, p99 {p99:.0} µs");

    // 2. Hits from Redis against local hits.
    let name = format!("{run}-answers");
    let a = host(Some(
        Cluster::new(settings(&url, &name), 9).expect("cluster"),
    ));
    let fill = read_all(&a, threads, Source::Upstream);
    let b = host(Some(
        Cluster::new(settings(&url, &name), 9).expect("cluster"),
    ));
    let from_redis = read_all(&b, threads, Source::Cache);
    let local = read_all(&b, threads, Source::Cache);
    let alone = host(None);
    let _ = read_all(&alone, threads, Source::Upstream);
    let local_alone = read_all(&alone, threads, Source::Cache);
    let stats = b.stats();
    let c = stats.cluster.expect("cluster stats");
    println!(
        "{KEYS} keys, {threads} threads: first fetch (upstream + store in Redis) {fill:.0}/s; \
         local miss answered from Redis {from_redis:.0}/s; local hit in a cluster {local:.0}/s; \
         local hit alone {local_alone:.0}/s"
    );
    println!(
        "host B: {} round trips, p50 {:.0} µs, p99 {:.0} µs, {} answers found, {} upstream calls",
        c.round_trips,
        c.round_trip_p50_ms * 1000.0,
        c.round_trip_p99_ms * 1000.0,
        c.answers_found,
        stats.upstream.calls
    );
    for h in [a, b, alone] {
        h.shutdown(Duration::from_secs(1));
    }
}
