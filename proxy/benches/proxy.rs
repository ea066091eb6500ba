//! Criterion benchmarks of the proxy layer: what it adds per request on
//! top of the core's decision.
//!
//! Run with `cargo bench -p syncoord-proxy`; results are summarised in
//! `BENCHMARKS.md` at the repository root.

use std::hint::black_box;
use std::time::Duration as WallDuration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncoord_core::{Duration, Response, Source};
use syncoord_proxy::{answer_response, Proxy, ProxyConfig};

const TICKER: &str = "/api/v3/brokerage/market/products/BTC-USD/ticker";

/// A small upstream body, about the size of a ticker answer.
fn body() -> Response {
    Response::new(200, vec![b'x'; 256]).with_header("content-type", "application/json")
}

/// What the proxy layer adds per request: routing a bot's request (target
/// parsing, upstream selection, header filtering, the core `Request`) and
/// shaping a cached answer into the response.
fn proxy_route(c: &mut Criterion) {
    let proxy = Proxy::new(ProxyConfig::default()).expect("default config");
    let headers: Vec<(String, String)> = [
        ("Host", "127.0.0.1:8787"),
        ("User-Agent", "ccxt/4"),
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip"),
        ("Connection", "keep-alive"),
        ("X-Syncoord-Client", "bot-7"),
        ("X-Syncoord-Priority", "market"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    let mut g = c.benchmark_group("proxy");
    g.throughput(Throughput::Elements(1));
    for (name, target) in [
        ("route_origin_form", TICKER.to_owned()),
        (
            "route_proxy_url",
            format!("/https://api.coinbase.com{TICKER}"),
        ),
        (
            "route_encoded_proxy_url",
            format!(
                "/https%3A%2F%2Fapi.coinbase.com{}",
                TICKER.replace('/', "%2F")
            ),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    proxy
                        .route(None, "GET", black_box(&target), &headers, Vec::new())
                        .expect("routable"),
                )
            })
        });
    }
    // The same origin-form request with request directives to parse.
    let mut directed = headers.clone();
    directed.push(("Cache-Control".into(), "max-age=5, max-stale=30".into()));
    g.bench_function("route_origin_form_with_directives", |b| {
        b.iter(|| {
            black_box(
                proxy
                    .route(None, "GET", black_box(TICKER), &directed, Vec::new())
                    .expect("routable"),
            )
        })
    });
    let answer = syncoord_core::Answer {
        response: std::sync::Arc::new(body()),
        source: Source::Cache,
        age: Duration::from_secs(2),
    };
    g.bench_function("answer_response", |b| {
        b.iter(|| black_box(answer_response(black_box(&answer))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // As in the core's benchmarks: 1 s warm-up, 3 s measurement, 50 samples.
    config = Criterion::default()
        .warm_up_time(WallDuration::from_secs(1))
        .measurement_time(WallDuration::from_secs(3))
        .sample_size(50);
    targets = proxy_route
}
criterion_main!(benches);
