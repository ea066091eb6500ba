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
        ttl_secs: Some(3),
        timing: Default::default(),
    };
    g.bench_function("answer_response", |b| {
        b.iter(|| black_box(answer_response(black_box(&answer))))
    });
    g.finish();
}

/// Signing mode: what signing one attempt costs the host just before it
/// sends it (JWT claims, ES256 or Ed25519, or the Exchange HMAC), on top of
/// routing. Keys are fixed test keys; time and nonce are passed in.
fn signing(c: &mut Criterion) {
    use base64::Engine;
    use syncoord_proxy::signing::{SecretFile, SecretFileError, SecretSource};
    struct Keys;
    impl SecretSource for Keys {
        fn env(&self, name: &str) -> Option<zeroize::Zeroizing<String>> {
            let value = match name {
                "ES256" => p256::SecretKey::from_slice(&[3; 32])
                    .ok()?
                    .to_sec1_pem(Default::default())
                    .ok()?
                    .to_string(),
                "ED25519" => base64::engine::general_purpose::STANDARD.encode([5u8; 32]),
                "SECRET" => base64::engine::general_purpose::STANDARD.encode([7u8; 64]),
                "PASS" => "passphrase".to_owned(),
                _ => return None,
            };
            Some(zeroize::Zeroizing::new(value))
        }
        fn file(&self, _: &str) -> Result<SecretFile, SecretFileError> {
            Err(SecretFileError::Unavailable("none".into()))
        }
    }
    let text = r#"
[[upstreams]]
name = "advanced"
url = "https://api.coinbase.com"
preset = "coinbase-advanced"
[[upstreams]]
name = "exchange"
url = "https://api.exchange.coinbase.com"
preset = "coinbase-exchange"
prefix = "/exchange"
[[credentials]]
name = "es256"
upstream = "advanced"
kind = "coinbase-cdp"
key_name = "organizations/o/apiKeys/es"
private_key_env = "ES256"
[[credentials]]
name = "ed25519"
upstream = "advanced"
kind = "coinbase-cdp"
key_name = "organizations/o/apiKeys/ed"
private_key_env = "ED25519"
[[credentials]]
name = "hmac"
upstream = "exchange"
kind = "coinbase-exchange"
key = "k"
secret_env = "SECRET"
passphrase_env = "PASS"
[[clients]]
name = "bot"
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
credentials = ["es256", "ed25519", "hmac"]
"#;
    let config = ProxyConfig::from_toml_str(text).expect("bench config");
    let proxy = Proxy::with_secrets(config, &Keys).expect("bench keys");
    let mut g = c.benchmark_group("signing");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("jwt_es256", "/api/v3/brokerage/accounts", "es256"),
        ("jwt_ed25519", "/api/v3/brokerage/accounts", "ed25519"),
        ("exchange_hmac", "/exchange/accounts", "hmac"),
    ];
    for (name, target, credential) in cases {
        let headers: Vec<(String, String)> = [
            ("X-Syncoord-Token", "test"),
            ("X-Syncoord-Credential", credential),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let forward = proxy
            .route(None, "GET", target, &headers, Vec::new())
            .expect("routes");
        let base = proxy.base_url(forward.upstream).clone();
        let keyring = proxy.keyring().clone();
        let mut now = 1_700_000_000u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 1;
                black_box(keyring.sign(black_box(&forward.outgoing), &base, now, [9; 16]))
            })
        });
    }
    // What a signed request's routing adds: the token's SHA-256 and the
    // constant-time comparison with every client.
    let headers: Vec<(String, String)> = [
        ("X-Syncoord-Token", "test"),
        ("X-Syncoord-Credential", "es256"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    g.bench_function("route_with_token", |b| {
        b.iter(|| {
            black_box(proxy.route(
                None,
                "GET",
                black_box("/api/v3/brokerage/accounts"),
                &headers,
                Vec::new(),
            ))
        })
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
    targets = proxy_route, signing
}
criterion_main!(benches);
