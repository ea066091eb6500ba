//! The dashboard in a real browser: Debian's `chromium`, headless, loads a
//! host's `/dashboard`, runs its script for several refreshes (virtual
//! time: timers run at once, network waits are real) and dumps the DOM,
//! which the checks here read: rendered charts, live numbers, tables, and
//! no console output at all (a script error, a refused asset or a
//! Content-Security-Policy violation would each log a line).
//!
//! Chromium is installed by `scripts/install-chromium.sh` (CI's setup
//! step). Without it the browser tests fail, saying so, unless
//! `SYNCOORD_SKIP_BROWSER=1` skips them knowingly.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// What the browser left: the DOM after its script ran, and every console
/// line it logged.
pub struct Loaded {
    pub dom: String,
    pub console: Vec<String>,
}

/// `None` when the browser test is skipped knowingly.
pub fn chromium() -> Option<&'static Path> {
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
pub fn load(chromium: &Path, url: &str, width: u32, height: u32, virtual_ms: u32) -> Loaded {
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
    assert!(
        dom.contains("</html>"),
        "no DOM dumped; chromium said:\n{log}"
    );
    Loaded { dom, console }
}

/// The start tag of the element with `id`.
pub fn tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let start = dom[..at].rfind('<').unwrap_or(0);
    let end = at + dom[at..].find('>').unwrap_or(0);
    &dom[start..=end]
}

/// The value of `attr` on the element with `id`.
pub fn attr(dom: &str, id: &str, attr: &str) -> Option<String> {
    let t = tag(dom, id);
    let at = t.find(&format!(" {attr}=\""))? + attr.len() + 3;
    Some(t[at..at + t[at..].find('"')?].to_owned())
}

/// The text directly inside the element with `id` (up to its first child).
pub fn text(dom: &str, id: &str) -> String {
    let t = tag(dom, id);
    let at = dom.find(t).unwrap_or(0) + t.len();
    dom[at..at + dom[at..].find('<').unwrap_or(0)]
        .trim()
        .to_owned()
}

/// The inner HTML of the element with `id`, up to the matching close of
/// its tag name (enough for the tables and chart containers here).
pub fn inner<'a>(dom: &'a str, id: &str, close: &str) -> &'a str {
    let t = tag(dom, id);
    let at = dom.find(t).unwrap_or(0) + t.len();
    &dom[at..at + dom[at..].find(close).unwrap_or(dom.len() - at)]
}

pub fn number(s: &str) -> f64 {
    s.trim_end_matches(['%', '/', 's', ' ', 'm'])
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("`{s}` is not a number"))
}

pub fn assert_no_errors(page: &Loaded) {
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

/// Bots that keep reading tickers and balances through `base` (as
/// `dash-bot-N`, credentials `dash-key-0/1`) until the returned flag is
/// set; returns once they have made 50 requests.
pub fn bots(base: &str) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    let base = base.to_owned();
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
                let mut i = 0usize;
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

    (stop, bots)
}

/// What every host's dashboard must show after loading under [`bots`]'
/// load: `upstream_label` is the name of the upstream (or, on the Worker,
/// a shard) expected in the per-upstream table, `per` its heading.
/// `base` is the host, asked for its stats to know whether they carry
/// served-age figures (the panel shows exactly when they do).
pub fn check_live(page: &Loaded, base: &str, upstream_label: &str, per: &str) {
    assert_no_errors(page);
    {
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
        // Per-credential buckets appear by alias, never by key name.
        assert!(
            buckets.contains("public") && buckets.contains(">id:"),
            "{buckets}"
        );
        assert!(!dom.contains("dash-key-"), "a key name reached the page");
        let per_upstream = inner(dom, "t-upstreams", "</table>");
        assert!(
            per_upstream.contains(&format!(">{upstream_label}<")),
            "{per_upstream}"
        );
        assert_eq!(text(dom, "h-per-upstream"), per);
        // The served-age panel shows exactly when the stats carry figures.
        let stats = crate::get(&format!("{base}/api/v1/sync-coordination/stats"), &[])
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("stats: {e}"));
        let has_age = stats.to_string().contains("\"served_age\"");
        assert_eq!(
            !tag(dom, "panel-age").contains("hidden"),
            has_age,
            "served-age panel shown: {}, stats carry served_age: {has_age}",
            !has_age
        );
    }
}
