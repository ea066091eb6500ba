//! `syncoord demo`: the mock upstream, the daemon and simulated bots in one
//! process, ending with the reference system's table.
//!
//! Everything is real except the exchange: bots are threads making HTTP
//! calls to the daemon on a loopback port, the daemon paces and caches
//! them with the default Coinbase Advanced Trade rules, and the mock
//! upstream enforces Coinbase's documented limits, answering 429 past them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use syncoord_proxy::dashboard::DASHBOARD_PATH;
use syncoord_proxy::ProxyConfig;

use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};

/// Flags of `syncoord demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Simulated bots (threads).
    #[arg(long, default_value_t = 25)]
    pub bots: usize,
    /// How long the bots run, in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds between one bot's evaluations (each one reads a ticker,
    /// best bid/ask and balances, candles every fourth time, and places
    /// an order 1% of the time); jittered by ±20%.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// API keys the bots share (bot N uses key N mod keys).
    #[arg(long, default_value_t = 1)]
    pub keys: usize,
    /// Afterwards, run the same bots straight at a fresh mock upstream,
    /// without syncoord, and show both side by side.
    #[arg(long)]
    pub compare: bool,
    /// Where the daemon listens (a free loopback port by default); its
    /// live dashboard is at `http://ADDR/dashboard` while the demo runs.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

/// What the demo measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub bots: usize,
    pub bots_served: usize,
    pub requests: u64,
    /// Responses with status 429 that reached a bot.
    pub bot_429s: u64,
    /// Other failed requests (non-2xx, transport errors) seen by bots.
    pub bot_failures: u64,
    /// Those failures by cause.
    pub failure_causes: std::collections::BTreeMap<String, u64>,
    /// What the daemon's stats endpoint reported at the end.
    pub stats: Value,
    /// Requests and 429s the mock upstream counted.
    pub upstream_requests: u64,
    pub upstream_429s: u64,
    pub elapsed: Duration,
    /// The same bots without syncoord (`--compare`).
    pub direct: Option<DirectReport>,
}

/// What the bots saw without a coordinator in front of upstream.
#[derive(Debug, Clone)]
pub struct DirectReport {
    pub requests: u64,
    pub bot_429s: u64,
    pub bots_served: usize,
    pub upstream_requests: u64,
}

impl DemoReport {
    /// The demo's verdict: no bot and no upstream call hit a rate limit,
    /// and every bot was served.
    pub fn passed(&self) -> bool {
        self.bot_429s == 0 && self.upstream_429s == 0 && self.bots_served == self.bots
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("invalid demo flags: {0}")]
    Args(String),
    #[error("cannot start the mock upstream: {0}")]
    Mock(std::io::Error),
    #[error("cannot start a bot thread: {0}")]
    Spawn(std::io::Error),
    #[error(transparent)]
    Daemon(#[from] syncoord_daemon::DaemonError),
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    rate_limited: AtomicU64,
    failures: AtomicU64,
    /// Failed requests by cause (`status 502`, `transport: ...`).
    causes: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Counters {
    fn failed(&self, cause: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut causes) = self.causes.lock() {
            *causes.entry(cause).or_default() += 1;
        }
    }
}

/// Products the mock upstream lists.
const PRODUCTS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];

/// Runs the demo and prints its table to stdout (progress to stderr).
pub fn run(args: DemoArgs) -> Result<DemoReport, DemoError> {
    if args.bots == 0 || args.keys == 0 {
        return Err(DemoError::Args(
            "--bots and --keys must be at least 1".into(),
        ));
    }
    if !(args.duration > 0.0 && args.interval > 0.0) {
        return Err(DemoError::Args(
            "--duration and --interval must be positive".into(),
        ));
    }
    let mock = MockUpstream::start(MockOptions::default()).map_err(DemoError::Mock)?;
    let mut config = ProxyConfig::single_upstream(&mock.base_url());
    config.server.listen = args.listen.clone();
    let daemon = Daemon::start(config)?;
    let base = format!("http://{}", daemon.local_addr());
    eprintln!(
        "demo: {} bots for {:.0} s against {base} (mock upstream {} enforcing Coinbase's limits)",
        args.bots,
        args.duration,
        mock.base_url()
    );
    eprintln!("demo: live dashboard at {base}{DASHBOARD_PATH} (while the demo runs)");

    let agent = client();
    let stats_url = format!("{base}/api/v1/sync-coordination/stats");
    let phase = drive_bots(&args, &base, |t, counters| {
        let stats = fetch_json(&agent, &stats_url);
        eprintln!(
            "  t={t:>4.0}s  requests {:>7}  cache hit rate {:>6}  upstream calls {:>5}  429s to bots {}",
            counters.requests.load(Ordering::Relaxed),
            percent(stats["totals"]["cache_hit_rate"].as_f64()),
            stats["totals"]["upstream_calls"],
            counters.rate_limited.load(Ordering::Relaxed),
        );
    })?;
    let stats = fetch_json(&agent, &stats_url);
    let upstream = mock.stats();
    daemon.shutdown();
    mock.shutdown();

    let direct = if args.compare {
        Some(run_direct(&args)?)
    } else {
        None
    };
    let counters = &phase.counters;
    let report = DemoReport {
        bots: args.bots,
        bots_served: phase.served(),
        requests: counters.requests.load(Ordering::Relaxed),
        bot_429s: counters.rate_limited.load(Ordering::Relaxed),
        bot_failures: counters.failures.load(Ordering::Relaxed),
        failure_causes: counters
            .causes
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default(),
        stats,
        upstream_requests: upstream.requests_total,
        upstream_429s: upstream.rate_limited + upstream.storm_429s,
        elapsed: phase.elapsed,
        direct,
    };
    print_report(&report);
    Ok(report)
}

/// What the bots of one phase did.
struct Phase {
    counters: Arc<Counters>,
    served: Vec<Arc<AtomicBool>>,
    elapsed: Duration,
}

impl Phase {
    fn served(&self) -> usize {
        self.served
            .iter()
            .filter(|s| s.load(Ordering::Relaxed))
            .count()
    }
}

/// Runs `args.bots` bot threads against `base` for `args.duration`
/// seconds, calling `progress` about once a second.
fn drive_bots(
    args: &DemoArgs,
    base: &str,
    mut progress: impl FnMut(f64, &Counters),
) -> Result<Phase, DemoError> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let counters = Arc::new(Counters::default());
    let served: Vec<Arc<AtomicBool>> = (0..args.bots)
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let bots: Vec<_> = (0..args.bots)
        .map(|bot| {
            let (base, counters) = (base.to_owned(), Arc::clone(&counters));
            let served = Arc::clone(&served[bot]);
            let key = format!("demo-key-{}", bot % args.keys);
            let interval = args.interval;
            std::thread::Builder::new()
                .name(format!("bot-{bot}"))
                .spawn(move || run_bot(bot, &base, &key, interval, deadline, &counters, &served))
        })
        .collect::<Result<_, _>>()
        .map_err(DemoError::Spawn)?;
    while Instant::now() < deadline {
        std::thread::sleep(
            Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
        );
        progress(started.elapsed().as_secs_f64(), &counters);
    }
    for bot in bots {
        let _ = bot.join();
    }
    Ok(Phase {
        counters,
        served,
        elapsed: started.elapsed(),
    })
}

/// The same bots with no coordinator: straight at a fresh mock upstream.
fn run_direct(args: &DemoArgs) -> Result<DirectReport, DemoError> {
    let mock = MockUpstream::start(MockOptions::default()).map_err(DemoError::Mock)?;
    eprintln!(
        "demo: the same {} bots for {:.0} s straight at the mock upstream {}, without syncoord",
        args.bots,
        args.duration,
        mock.base_url()
    );
    let phase = drive_bots(args, &mock.base_url(), |t, counters| {
        eprintln!(
            "  t={t:>4.0}s  requests {:>7}  429s to bots {}",
            counters.requests.load(Ordering::Relaxed),
            counters.rate_limited.load(Ordering::Relaxed),
        );
    })?;
    let upstream = mock.stats();
    mock.shutdown();
    Ok(DirectReport {
        requests: phase.counters.requests.load(Ordering::Relaxed),
        bot_429s: phase.counters.rate_limited.load(Ordering::Relaxed),
        bots_served: phase.served(),
        upstream_requests: upstream.requests_total,
    })
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn fetch_json(agent: &ureq::Agent, url: &str) -> Value {
    agent
        .get(url)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

/// One bot: evaluates its strategy every `interval` seconds (±20%) until
/// `deadline`.
fn run_bot(
    bot: usize,
    base: &str,
    key: &str,
    interval: f64,
    deadline: Instant,
    counters: &Counters,
    served: &AtomicBool,
) {
    let agent = client();
    let client_name = format!("bot-{bot}");
    let mut rng = fastrand::Rng::with_seed(bot as u64);
    let product = PRODUCTS[bot % PRODUCTS.len()];
    let mut evaluation = 0u64;
    // Bots start spread over the first interval, as real ones do.
    std::thread::sleep(Duration::from_secs_f64(interval * rng.f64()));
    while Instant::now() < deadline {
        let mut calls: Vec<(&str, String, Option<String>)> = vec![
            (
                "GET",
                format!("/api/v3/brokerage/market/products/{product}/ticker?limit=1"),
                None,
            ),
            (
                "GET",
                format!("/api/v3/brokerage/best_bid_ask?product_ids={product}"),
                None,
            ),
            ("GET", "/api/v3/brokerage/accounts".to_owned(), None),
        ];
        if evaluation.is_multiple_of(4) {
            calls.push((
                "GET",
                format!(
                    "/api/v3/brokerage/market/products/{product}/candles?granularity=ONE_MINUTE"
                ),
                None,
            ));
        }
        if rng.u32(0..100) == 0 {
            let order = format!(
                r#"{{"client_order_id":"{client_name}-{evaluation}","product_id":"{product}","side":"BUY","order_configuration":{{"market_market_ioc":{{"quote_size":"10"}}}}}}"#
            );
            calls.push(("POST", "/api/v3/brokerage/orders".to_owned(), Some(order)));
        }
        for (method, path, body) in calls {
            let url = format!("{base}{path}");
            let request = ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .header("CB-ACCESS-KEY", key)
                .header("X-Syncoord-Client", &client_name)
                .header("Content-Type", "application/json")
                .body(body.unwrap_or_default());
            let status = request
                .map_err(|e| e.to_string())
                .and_then(|request| agent.run(request).map_err(|e| e.to_string()))
                .map(|mut r| {
                    let status = r.status().as_u16();
                    let body = r.body_mut().read_to_string().unwrap_or_default();
                    (status, body)
                });
            counters.requests.fetch_add(1, Ordering::Relaxed);
            match status {
                Ok((s, _)) if (200..300).contains(&s) => served.store(true, Ordering::Relaxed),
                Ok((429, _)) => {
                    counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                Ok((s, body)) => {
                    let error = serde_json::from_str::<Value>(&body)
                        .ok()
                        // `syncoord_error` where the preset shapes errors
                        // for Coinbase's clients (no `error` field).
                        .and_then(|v| {
                            v["error"]
                                .as_str()
                                .or_else(|| v["syncoord_error"].as_str())
                                .map(str::to_owned)
                        })
                        .unwrap_or_default();
                    counters.failed(format!("{method} {s} {error}"));
                }
                Err(e) => counters.failed(format!("{method} transport: {e}")),
            }
        }
        evaluation += 1;
        let pause = interval * (0.8 + 0.4 * rng.f64());
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs_f64(pause).min(deadline - now));
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".into(), |r| format!("{:.2}%", r * 100.0))
}

/// Served age p50 and p99 in seconds over every answer of every upstream
/// (the worst upstream's, when there are several).
pub fn served_age(stats: &Value) -> Option<(f64, f64)> {
    stats["upstreams"]
        .as_array()?
        .iter()
        .filter_map(|u| {
            let all = &u["stats"]["served_age"]["all"];
            Some((all["p50_secs"].as_f64()?, all["p99_secs"].as_f64()?))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

fn print_report(r: &DemoReport) {
    let totals = &r.stats["totals"];
    let d = r.direct.as_ref();
    // The `--compare` column: what the bots saw without syncoord.
    let without = |cell: &dyn Fn(&DirectReport) -> String| {
        d.map_or_else(String::new, |d| format!(" {} |", cell(d)))
    };
    println!();
    println!(
        "| | reference system | with syncoord |{}",
        without(&|_| "without syncoord".into())
    );
    println!("|---|---|---|{}", without(&|_| "---".into()));
    println!(
        "| cache hit rate | 93.8% | {} |{}",
        percent(totals["cache_hit_rate"].as_f64()),
        without(&|_| "-".into())
    );
    let age = served_age(&r.stats);
    println!(
        "| served age p50 / p99 | up to the TTL (90 s) | {} |{}",
        age.map_or_else(|| "-".into(), |(p50, p99)| format!("{p50:.2} / {p99:.2} s")),
        without(&|_| "0 s (every call upstream)".into())
    );
    println!(
        "| upstream 429s | 0 | {} |{}",
        r.upstream_429s,
        without(&|d| d.bot_429s.to_string())
    );
    println!(
        "| 429s seen by bots | | {} |{}",
        r.bot_429s,
        without(&|d| d.bot_429s.to_string())
    );
    println!(
        "| other failed requests | | {} |{}",
        r.bot_failures,
        without(&|_| String::new())
    );
    for (cause, n) in &r.failure_causes {
        println!("| &nbsp; {cause} | | {n} |{}", without(&|_| String::new()));
    }
    println!(
        "| requests handled | | {} |{}",
        r.requests,
        without(&|d| d.requests.to_string())
    );
    println!(
        "| bots served | | {} / {} |{}",
        r.bots_served,
        r.bots,
        without(&|d| format!("{} / {}", d.bots_served, r.bots))
    );
    let per_sec = |calls: u64| calls as f64 / r.elapsed.as_secs_f64().max(1e-9);
    println!(
        "| upstream calls | | {} ({:.1}/s) |{}",
        r.upstream_requests,
        per_sec(r.upstream_requests),
        without(&|d| format!(
            "{} ({:.1}/s)",
            d.upstream_requests,
            per_sec(d.upstream_requests)
        ))
    );
    println!(
        "| API call reduction | | {} |{}",
        percent(totals["api_call_reduction"].as_f64()),
        without(&|_| "0%".into())
    );
    if let Some(upstreams) = r.stats["upstreams"].as_array() {
        for upstream in upstreams {
            for class in upstream["stats"]["queue"]["classes"]
                .as_array()
                .into_iter()
                .flatten()
            {
                println!(
                    "| queue wait `{}` p50 / p99 | | {} / {} ms |{}",
                    class["class"].as_str().unwrap_or("?"),
                    class["wait"]["p50_ms"],
                    class["wait"]["p99_ms"],
                    without(&|_| "-".into())
                );
            }
        }
    }
    println!();
    println!(
        "{}",
        if r.passed() {
            "PASS: no bot saw a rate-limit error"
        } else {
            "FAIL: rate-limit errors reached bots or upstream, or a bot was never served"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_bots_see_no_429_through_syncoord_and_many_without() {
        let report = run(DemoArgs {
            bots: 25,
            duration: 3.0,
            interval: 0.5,
            keys: 1,
            compare: true,
            listen: "127.0.0.1:0".into(),
        })
        .expect("demo runs");
        assert!(report.passed(), "{report:?}");
        let (_, p99) = served_age(&report.stats).expect("the stats report served age");
        assert!(p99 <= 2.0, "served age p99 {p99} s");
        assert_eq!((report.bot_429s, report.upstream_429s), (0, 0));
        let direct = report
            .direct
            .clone()
            .expect("--compare ran the bots without syncoord");
        readme_figures_hold(&report, &direct);
        assert!(
            direct.bot_429s > 0,
            "the same bots straight at Coinbase's limits must trip them: {direct:?}"
        );
        assert!(
            report.upstream_requests * 5 < direct.upstream_requests,
            "syncoord makes far fewer upstream calls: {} vs {}",
            report.upstream_requests,
            direct.upstream_requests
        );
    }

    /// The demo's figures README quotes, each `N label [tolerance]`, after
    /// the command that produces them (this test's own run).
    const README_COMMAND: &str = "syncoord demo --compare --duration 3 --interval 0.5";

    /// README's quoted demo figures are this run's, within the tolerance
    /// each states; a figure removed from README (or its command changed)
    /// fails too.
    fn readme_figures_hold(report: &DemoReport, direct: &DirectReport) {
        let readme = include_str!("../../README.md");
        let at = readme
            .find(&format!("`{README_COMMAND}`"))
            .unwrap_or_else(|| panic!("README no longer quotes `{README_COMMAND}`"));
        let sentence = &readme[at..readme[at..].find(").").map_or(readme.len(), |e| at + e)];
        let quoted = quoted_figures(sentence);
        let measured = [
            ("upstream 429s", report.upstream_429s),
            ("upstream calls", report.upstream_requests),
            ("requests", report.requests),
            ("429s", direct.bot_429s),
            ("calls", direct.upstream_requests),
        ];
        println!("README figures measured: {measured:?}");
        for (label, value) in measured {
            let Some(&(figure, tolerance)) = quoted.get(label) else {
                panic!("README's demo sentence lost `N {label} [tolerance]`: {sentence}");
            };
            let drift = (value as f64 - figure as f64).abs();
            assert!(
                drift <= figure as f64 * tolerance,
                "README says {figure} {label} (±{:.0}%), this run made {value}: measure again \
                 and update README",
                tolerance * 100.0
            );
        }
    }

    /// `N label [±P%]` or `N label [exact]` in `text`, by label.
    fn quoted_figures(text: &str) -> std::collections::BTreeMap<String, (u64, f64)> {
        let mut out = std::collections::BTreeMap::new();
        for (i, _) in text.match_indices('[') {
            let Some(end) = text[i..].find(']') else {
                continue;
            };
            let tolerance = match &text[i + 1..i + end] {
                "exact" => 0.0,
                t => match t
                    .strip_prefix('±')
                    .and_then(|p| p.strip_suffix('%'))
                    .and_then(|p| p.parse::<f64>().ok())
                {
                    Some(p) => p / 100.0,
                    None => continue,
                },
            };
            // Back from the bracket: the label's words, then the number.
            let before = text[..i].trim_end();
            let words: Vec<&str> = before.split_whitespace().collect();
            let Some(n) = words
                .iter()
                .rposition(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit() || c == ','))
            else {
                continue;
            };
            let Ok(figure) = words[n].replace(',', "").parse::<u64>() else {
                continue;
            };
            out.insert(words[n + 1..].join(" "), (figure, tolerance));
        }
        out
    }

    #[test]
    fn quoted_figures_are_read_with_their_tolerance() {
        let f = quoted_figures(
            "(`x`: 0 upstream 429s [exact] and 1,043 upstream calls [±60%] for 9 requests [bad]).",
        );
        assert_eq!(f.get("upstream 429s"), Some(&(0, 0.0)));
        assert_eq!(f.get("upstream calls"), Some(&(1043, 0.6)));
        assert_eq!(f.len(), 2, "{f:?}");
    }
}
