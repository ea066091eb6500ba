//! The live dashboard in a real browser: Debian's `chromium`, headless,
//! loads `/dashboard` from a real daemon under load, runs its script for
//! several refreshes (virtual time), and the test reads the resulting DOM:
//! rendered charts, live numbers, tables of clients and buckets, and no
//! console output at all (a script error, a refused asset or a
//! Content-Security-Policy violation would each log one).
//!
//! Chromium is installed by `scripts/install-chromium.sh` (CI's setup
//! step). Without it these tests fail, saying so, unless
//! `SYNCOORD_SKIP_BROWSER=1` skips them knowingly.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::{Endpoint, ProxyConfig};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the browser left: the DOM after its script ran, and every console
/// line it logged.
struct Loaded {
    dom: String,
    console: Vec<String>,
}

/// `None` when the browser test is skipped knowingly.
fn chromium() -> Option<&'static Path> {
    if std::env::var_os("SYNCOORD_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("SYNCOORD_SKIP_BROWSER=1: browser test skipped");
        return None;
    }
    let path = Path::new(CHROMIUM);
    assert!(
        path.exists(),
        "{CHROMIUM} is missing: run scripts/install-chromium.sh (or set SYNCOORD_SKIP_BROWSER=1 to skip this test knowingly)"
    );
    Some(path)
}

/// Loads `url` in headless chromium at `width`x`height`, lets `virtual_ms`
/// of virtual time pass (timers run, network waits are real), and dumps
/// the DOM.
fn load(chromium: &Path, url: &str, width: u32, height: u32, virtual_ms: u32) -> Loaded {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let profile: PathBuf = std::env::temp_dir().join(format!(
        "syncoord-chromium-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--virtual-time-budget={virtual_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("chromium runs") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 120 s");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let dom = out.join().expect("stdout reader");
    let log = err.join().expect("stderr reader");
    let _ = std::fs::remove_dir_all(&profile);
    let console = log
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    assert!(dom.contains("</html>"), "no DOM dumped; chromium said:\n{log}");
    Loaded { dom, console }
}

/// The start tag of the element with `id`.
fn tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let start = dom[..at].rfind('<').unwrap_or(0);
    let end = at + dom[at..].find('>').unwrap_or(0);
    &dom[start..=end]
}

/// The value of `attr` on the element with `id`.
fn attr(dom: &str, id: &str, attr: &str) -> Option<String> {
    let t = tag(dom, id);
    let at = t.find(&format!(" {attr}=\""))? + attr.len() + 3;
    Some(t[at..at + t[at..].find('"')?].to_owned())
}

/// The text directly inside the element with `id` (up to its first child).
fn text(dom: &str, id: &str) -> String {
    let t = tag(dom, id);
    let at = dom.find(t).unwrap_or(0) + t.len();
    dom[at..at + dom[at..].find('<').unwrap_or(0)].trim().to_owned()
}

/// The inner HTML of the element with `id`, up to the matching close of
/// its tag name (enough for the tables and chart containers here).
fn inner<'a>(dom: &'a str, id: &str, close: &str) -> &'a str {
    let t = tag(dom, id);
    let at = dom.find(t).unwrap_or(0) + t.len();
    &dom[at..at + dom[at..].find(close).unwrap_or(dom.len() - at)]
}

fn number(s: &str) -> f64 {
    s.trim_end_matches(['%', '/', 's', ' ', 'm'])
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("`{s}` is not a number"))
}

fn assert_no_errors(page: &Loaded) {
    assert!(
        page.console.is_empty(),
        "the page logged to the console:\n{}",
        page.console.join("\n")
    );
    assert_eq!(
        attr(&page.dom, "errors", "data-count").as_deref(),
        Some("0"),
        "errors shown in the page: {}",
        text(&page.dom, "errors")
    );
}

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
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    // Eight bots keep reading tickers and balances while the page runs.
    let bots: Vec<_> = (0..8)
        .map(|bot| {
            let (base, stop, sent) = (base.clone(), Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let product = ["BTC-USD", "ETH-USD"][bot % 2];
                let paths = [
                    format!("/api/v3/brokerage/market/products/{product}/ticker"),
                    "/api/v3/brokerage/accounts".to_owned(),
                ];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let _ = agent
                        .get(format!("{base}{}", paths[i % 2]))
                        .header("CB-ACCESS-KEY", format!("dash-key-{}", bot % 2))
                        .header("X-Syncoord-Client", format!("dash-bot-{bot}"))
                        .call()
                        .map(|mut r| r.body_mut().read_to_string());
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    while sent.load(Ordering::Relaxed) < 50 {
        std::thread::sleep(Duration::from_millis(20));
    }

    let url = format!("{base}/dashboard");
    let wide = load(chromium, &url, 1400, 900, 12_000);
    let phone = load(chromium, &url, 390, 844, 6_000);
    stop.store(true, Ordering::Relaxed);
    for bot in bots {
        bot.join().expect("bot thread");
    }
    daemon.shutdown();
    mock.shutdown();

    for page in [&wide, &phone] {
        assert_no_errors(page);
        let dom = &page.dom;
        let samples: usize = attr(dom, "page", "data-samples")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(samples >= 3, "only {samples} refreshes ran");
        assert_eq!(
            attr(dom, "conn", "data-state").as_deref(),
            Some("live"),
            "{}",
            text(dom, "conn")
        );
        assert!(
            dom.contains("data-overflow=\"no\""),
            "the page is wider than the window"
        );
        // The big numbers.
        let health = text(dom, "v-health");
        assert!(
            ["healthy", "degraded", "unhealthy"].contains(&health.as_str()),
            "health shows `{health}`"
        );
        assert_eq!(
            attr(dom, "tile-health", "data-status").as_deref(),
            Some(health.as_str())
        );
        let hit = text(dom, "v-hit");
        assert!(hit.ends_with('%') && number(&hit) > 50.0, "hit rate {hit}");
        assert_eq!(number(&text(dom, "v-429")), 0.0, "429s");
        assert_eq!(text(dom, "v-top-class"), "trading");
        let wait = text(dom, "v-wait");
        assert!(wait.ends_with(" ms") || wait.ends_with(" s"), "wait {wait}");
        // Every chart drew, with points from several refreshes.
        for chart in [
            "c-requests",
            "c-ratios",
            "c-upstream",
            "c-budget",
            "c-tokens",
            "c-depth",
            "c-wait",
        ] {
            let points: usize = attr(dom, chart, "data-points")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{chart} drew nothing"));
            assert!(points >= 3, "{chart}: {points} points");
            assert!(
                inner(dom, chart, "</table>").contains("<canvas"),
                "{chart} has no canvas"
            );
        }
        // Live rates: the legend shows the latest sample, and bots were
        // reading all along, so hits per second are not zero.
        let legend = inner(dom, "c-requests", "</table>");
        let hits = legend
            .split(">hit</div></th><td class=\"u-value\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_else(|| panic!("no hit rate in the legend: {legend}"));
        assert!(
            hits.ends_with("/s") && number(hits) > 0.0,
            "hits per second {hits}"
        );
        // Tables: the bots by name, the shared public bucket, the upstream.
        let clients = inner(dom, "t-clients", "</table>");
        assert!(clients.contains("dash-bot-"), "{clients}");
        let buckets = inner(dom, "t-buckets", "</table>");
        assert!(
            buckets.contains("public") && buckets.contains("dash-key-"),
            "{buckets}"
        );
        assert!(inner(dom, "t-upstreams", "</table>").contains(">mock<"));
        assert_eq!(text(dom, "h-per-upstream"), "Per upstream");
        // No served-age figures in these stats (yet): the panel stays hidden.
        assert!(tag(dom, "panel-age").contains("hidden"));
    }
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
            let mut response = match syncoord_proxy::endpoint("GET", &target) {
                Some(Endpoint::Stats) => syncoord_core::Response::json(200, stats.clone()),
                Some(ep) if !ep.reads_stats() => ep.render::<&str>(&[]),
                _ => syncoord_core::Response::new(404, "not here"),
            };
            response
                .headers
                .push(("x-syncoord-unreachable-shards".into(), "1".into()));
            response
                .headers
                .push(("x-syncoord-omitted-shards".into(), "0".into()));
            let mut out = format!("HTTP/1.1 {} X\r\n", response.status);
            for (n, v) in &response.headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                response.body.len()
            ));
            let _ = conn.write_all(out.as_bytes());
            let _ = conn.write_all(&response.body);
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
                     "budget_per_sec": 27.0, "paused_for_secs": 2.5, "breaker": "closed", "calls": 150, "rate_limited": 12},
                    {"scope": "public", "credential": null, "tokens": 3.0, "burst": 9, "rate_per_sec": 9.0,
                     "budget_per_sec": 9.0, "paused_for_secs": null, "breaker": "open", "calls": 30, "rate_limited": 0}
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
