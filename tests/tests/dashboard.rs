//! The dashboard in a real browser (headless chromium, see
//! [`syncoord_conformance::browser`]) against the native daemon under
//! load, and against a stand-in coordinator whose stats exercise every
//! panel the daemon's calm figures leave empty. The Worker's page is
//! checked the same way in `edge.rs`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use syncoord_conformance::browser::{
    assert_no_errors, attr, bots, check_live, chromium, inner, load, tag, text,
};
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::{Endpoint, ProxyConfig};

#[test]
fn the_dashboard_renders_live_figures_from_a_daemon_under_load() {
    let Some(chromium) = chromium() else { return };
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let config = ProxyConfig::from_toml_str(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    ))
    .expect("valid config");
    let daemon = Daemon::start(config).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    let (stop, bots) = bots(&base);
    let url = format!("{base}/dashboard");
    let wide = load(chromium, &url, 1400, 900, 12_000);
    let phone = load(chromium, &url, 390, 844, 6_000);
    stop.store(true, Ordering::Relaxed);
    for bot in bots {
        bot.join().expect("bot thread");
    }
    check_live(&wide, &base, "mock", "Per upstream");
    check_live(&phone, &base, "mock", "Per upstream");
    daemon.shutdown();
    mock.shutdown();
}

/// The admin token, as `server.admin_token_env` names it.
struct AdminToken;

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-dash";

impl syncoord_wire::SecretSource for AdminToken {
    fn env(&self, name: &str) -> Option<zeroize::Zeroizing<String>> {
        (name == "DASH_ADMIN").then(|| zeroize::Zeroizing::new(ADMIN_TOKEN.to_owned()))
    }
    fn file(
        &self,
        path: &str,
    ) -> Result<syncoord_wire::SecretFile, syncoord_wire::SecretFileError> {
        syncoord_wire::NoSecrets.file(path)
    }
}

#[test]
fn the_dashboard_sends_the_admin_token_from_its_url_fragment() {
    let Some(chromium) = chromium() else { return };
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let config = ProxyConfig::from_toml_str(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\nadmin_token_env = \"DASH_ADMIN\"\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    ))
    .expect("valid config");
    let daemon = Daemon::start_with_secrets(config, &AdminToken).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    // Without the token: the page loads (it holds no figures) and says
    // what it needs.
    let bare = load(chromium, &format!("{base}/dashboard"), 1400, 900, 3_000);
    assert_eq!(
        attr(&bare.dom, "conn", "data-state").as_deref(),
        Some("error")
    );
    assert!(
        text(&bare.dom, "conn").contains("#token="),
        "{}",
        text(&bare.dom, "conn")
    );
    // With it in the fragment: live.
    let page = load(
        chromium,
        &format!("{base}/dashboard#token={ADMIN_TOKEN}"),
        1400,
        900,
        5_000,
    );
    assert_no_errors(&page);
    assert_eq!(
        attr(&page.dom, "conn", "data-state").as_deref(),
        Some("live"),
        "{}",
        text(&page.dom, "conn")
    );
    let samples: usize = attr(&page.dom, "page", "data-samples")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(samples >= 2, "only {samples} refreshes ran");
    assert!(
        !page.dom.contains(ADMIN_TOKEN),
        "the token reached the page"
    );
    daemon.shutdown();
    mock.shutdown();
}

/// A stand-in coordinator that serves the real page and assets and
/// `stats` as its stats, with the Worker's shard headers: every panel the
/// daemon's calm figures leave empty gets drawn.
fn fake_coordinator(stats: String) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&stop);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if done.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (status, mut headers, body) = match syncoord_proxy::endpoint("GET", &target) {
                Some(Endpoint::Stats) => (
                    200,
                    vec![("Content-Type".to_owned(), "application/json".to_owned())],
                    stats.clone().into_bytes(),
                ),
                Some(ep) if !ep.reads_stats() => {
                    let r = ep.render::<&str>(&[]);
                    (r.status, r.headers, r.body)
                }
                _ => (404, Vec::new(), b"not here".to_vec()),
            };
            // As the Worker answers: one row per shard, one unreachable.
            headers.push(("x-syncoord-unreachable-shards".into(), "1".into()));
            headers.push(("x-syncoord-omitted-shards".into(), "0".into()));
            let mut out = format!("HTTP/1.1 {status} X\r\n");
            for (n, v) in &headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
            let _ = conn.write_all(out.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    (base, stop)
}

#[test]
fn the_dashboard_draws_served_age_reasons_paused_buckets_and_shards_and_escapes_names() {
    let Some(chromium) = chromium() else { return };
    let hostile = "<img src=x onerror=alert(1)>";
    let stats = serde_json::json!({
        "totals": {
            "status": "unhealthy", "requests": 1000, "ended": 990, "in_progress": 10,
            "outcomes": {"submitted": 1000, "hit": 700, "stale": 50, "coalesced": 40, "upstream": 150,
                         "shed": 20, "expired": 10, "failed": 20, "cancelled": 0, "aborted": 0},
            "cache_hit_rate": 0.757, "served_without_upstream_rate": 0.8, "upstream_calls": 180,
            "upstream_retries": 30, "upstream_429s": 12, "upstream_server_errors": 5,
            "upstream_transport_errors": 0, "api_call_reduction": 0.82, "recent_rate_limited": 3,
            "queue_depth": 7, "calls_in_flight": 2,
            "served_age": {
                "fresh": {"p50_ms": 800.0, "p99_ms": 1900.0, "max_ms": 2500.0},
                "stale": {"p50_ms": 95000.0, "p99_ms": 120000.0, "max_ms": 150000.0},
                "upstream": {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
            }
        },
        "upstreams": [{
            "name": "advanced/cred/ab12cd", "status": "unhealthy",
            "stats": {
                "uptime_secs": 100.0,
                "requests": {"submitted": 1000, "hit": 700, "stale": 50, "coalesced": 40, "upstream": 150,
                             "shed": 20, "expired": 10, "failed": 20, "cancelled": 0, "aborted": 0},
                "in_progress": 10, "cache_hit_rate": 0.757, "served_without_upstream_rate": 0.8,
                "api_call_reduction": 0.82,
                "upstream": {"calls": 180, "retries": 30, "rate_limited": 12, "server_errors": 5,
                             "transport_errors": 0, "timeouts": 0, "breaker_opened": 1},
                "recent_rate_limited": 3, "calls_in_flight": 2,
                "queue": {"depth": 7, "max_len": 500, "oldest_wait_secs": 4.0, "classes": [
                    {"class": "trading", "depth": 1, "wait": {"count": 10, "mean_ms": 20.0, "p50_ms": 10.0, "p90_ms": 40.0, "p99_ms": 120.0, "max_ms": 130.0}},
                    {"class": "market", "depth": 6, "wait": {"count": 100, "mean_ms": 900.0, "p50_ms": 500.0, "p90_ms": 2000.0, "p99_ms": 4000.0, "max_ms": 5000.0}}
                ]},
                "cache": {"entries": 10, "bytes": 1000, "inserts": 20, "evictions": 0},
                "scopes": [
                    {"scope": "private", "credential": "ab12cd", "tokens": 0.0, "burst": 27, "rate_per_sec": 13.5,
                     "budget_per_sec": 27.0, "paused_for_secs": 2.5, "calls": 150, "rate_limited": 12},
                    {"scope": "public", "credential": null, "tokens": 3.0, "burst": 9, "rate_per_sec": 9.0,
                     "budget_per_sec": 9.0, "paused_for_secs": null, "calls": 30, "rate_limited": 0}
                ],
                "breakers": [
                    {"route": "candles", "credential": null, "state": "open", "failures": 5, "retry_after_secs": 3.0}
                ],
                "clients": [{"client": hostile, "requests": 600, "hit": 500, "stale": 0, "coalesced": 0, "upstream": 100, "failed": 0},
                            {"client": "bot-2", "requests": 400, "hit": 250, "stale": 50, "coalesced": 40, "upstream": 50, "failed": 10}],
                "health": {"status": "unhealthy", "reasons": [
                    {"severity": "unhealthy", "code": "breaker_open", "message": "breaker open on public"},
                    {"severity": "degraded", "code": "upstream_rate_limited", "message": "3 upstream 429s in the last 60 s"}
                ]}
            }
        }]
    })
    .to_string();
    let (base, stop) = fake_coordinator(stats);
    let page = load(chromium, &format!("{base}/dashboard"), 1400, 900, 6_000);
    stop.store(true, Ordering::Relaxed);
    let _ = std::net::TcpStream::connect(base.trim_start_matches("http://"));
    assert_no_errors(&page);
    let dom = &page.dom;
    assert_eq!(text(dom, "v-health"), "unhealthy");
    assert_eq!(text(dom, "v-429"), "3");
    assert_eq!(attr(dom, "tile-429", "data-alert").as_deref(), Some("yes"));
    assert_eq!(text(dom, "v-wait"), "120 ms");
    let reasons = inner(dom, "reason-list", "</ul>");
    assert!(
        reasons.contains("breaker open on public") && reasons.contains("upstream_rate_limited"),
        "{reasons}"
    );
    assert!(!tag(dom, "reasons").contains("hidden"));
    // Served age, present in these stats: drawn and tabled.
    assert!(
        !tag(dom, "panel-age").contains("hidden"),
        "served-age panel hidden"
    );
    let ages = inner(dom, "t-age", "</table>");
    assert!(
        ages.contains(">fresh<") && ages.contains("1.90 s") && ages.contains("2.0 min"),
        "{ages}"
    );
    assert!(inner(dom, "c-age", "</table>").contains("<canvas"));
    // Bucket states, by shard.
    let buckets = inner(dom, "t-buckets", "</table>");
    assert!(
        buckets.contains("paused 2.50 s") && buckets.contains("breaker open"),
        "{buckets}"
    );
    assert_eq!(text(dom, "h-bucket-upstream"), "shard");
    assert_eq!(text(dom, "h-per-upstream"), "Per shard");
    assert!(text(dom, "shard-note").starts_with("1 shard(s) did not report"));
    // A client name is text, never markup.
    let clients = inner(dom, "t-clients", "</table>");
    assert!(
        clients.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{clients}"
    );
    assert!(!dom.contains("<img src=\"x\""));
}
