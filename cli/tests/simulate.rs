//! `syncoord simulate` end to end: the real binary, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn syncoord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run syncoord")
}

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("syncoord-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write");
    file
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "syncoord failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn f(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

#[test]
fn the_reference_workload_gives_the_readme_figures() {
    let out = syncoord(&["simulate", "--workload", "reference", "--json"]);
    assert!(out.status.success(), "0 upstream 429s: exit 0");
    let r = &json(&out)["report"];
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    // The 25-bot column of the README's reference table, from the CLI's
    // run of the built-in workload and configuration.
    let hit = format!(
        "| cache hit rate (fresh + stale) | 93.8% | **{:.2}%** |",
        f(r, "stats.cache_hit_rate") * 100.0
    );
    assert!(readme.contains(&hit), "README lacks {hit}");
    let calls = f(r, "stats.upstream.calls");
    let row = format!(
        "| upstream calls (per min), of which refresh-ahead | | {},{:03} ({:.2}), {},{:03} |",
        calls as u64 / 1000,
        calls as u64 % 1000,
        calls / (24.0 * 60.0),
        f(r, "stats.upstream.refreshes") as u64 / 1000,
        f(r, "stats.upstream.refreshes") as u64 % 1000,
    );
    assert!(readme.contains(&row), "README lacks {row}");
    assert_eq!(f(r, "upstream_429s"), 0.0);
    assert_eq!(f(r, "bots_served"), 25.0);
}

#[test]
fn one_seed_gives_byte_identical_output() {
    let args = [
        "simulate",
        "--workload",
        "examples/workload.toml",
        "--hours",
        "1",
    ];
    let (a, b) = (syncoord(&args), syncoord(&args));
    assert!(a.status.code().is_some_and(|c| c < 2), "{a:?}");
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout, "text report");
    let with = |extra: &[&str]| syncoord(&[&args[..], extra].concat());
    assert_eq!(with(&["--json"]).stdout, with(&["--json"]).stdout, "JSON");
    assert_ne!(
        with(&["--seed", "8"]).stdout,
        a.stdout,
        "another seed, another run"
    );
}

#[test]
fn hit_rate_never_falls_as_the_ttl_rises() {
    let out = syncoord(&[
        "simulate",
        "--workload",
        "reference",
        "--hours",
        "6",
        "--json",
        "--sweep",
        "upstreams.advanced.coordination.defaults.ttl_secs=5,15,30,60,90,180,600",
    ]);
    let runs = json(&out);
    let runs = runs.as_array().expect("one run per value");
    assert_eq!(runs.len(), 7);
    let rates: Vec<f64> = runs
        .iter()
        .map(|r| f(&r["report"], "stats.cache_hit_rate"))
        .collect();
    for w in rates.windows(2) {
        assert!(w[1] >= w[0], "hit rate fell as the TTL rose: {rates:?}");
    }
    assert!(rates[6] > rates[0] + 0.1, "the TTL matters: {rates:?}");
    for r in runs {
        assert_eq!(f(&r["report"], "upstream_429s"), 0.0);
    }
}

#[test]
fn a_sweep_draws_its_chart() {
    let svg = std::env::temp_dir().join(format!("syncoord-sweep-{}.svg", std::process::id()));
    let out = syncoord(&[
        "simulate",
        "--workload",
        "reference",
        "--hours",
        "2",
        "--sweep",
        "upstreams.advanced.coordination.defaults.ttl_secs=15,90",
        "--plot",
        svg.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ttl_secs"), "{stdout}");
    let text = std::fs::read_to_string(&svg).expect("the chart");
    assert!(text.starts_with("<svg"), "an SVG");
    for label in [
        "cache hit rate",
        "served age",
        "upstream calls",
        "upstream 429s",
    ] {
        assert!(text.contains(label), "panel {label}");
    }
    let _ = std::fs::remove_file(svg);
}

#[test]
fn demand_past_the_budget_queues_and_sheds_without_a_429() {
    // 60 bots sharing one key, each reading one of 500 accounts every
    // second with no-cache (so every read needs a call of its own, none
    // coalesced): 60 calls/s against the preset's 30/s per key (27/s at
    // 90% headroom).
    let accounts: Vec<String> = (0..500).map(|i| format!("\"acct-{i}\"")).collect();
    let workload = temp(
        "overload.toml",
        &format!(
            r#"
[[groups]]
name = "hungry"
count = 60
every_secs = 1
jitter = 0.1
credentials = "shared"

[[groups.calls]]
path = "/api/v3/brokerage/accounts/{{account}}"
cache_control = "no-cache"
vars = {{ account = [{}] }}

[[groups.calls]]
method = "POST"
path = "/api/v3/brokerage/orders"
chance = 0.05
"#,
            accounts.join(", ")
        ),
    );
    let out = syncoord(&[
        "simulate",
        "--workload",
        workload.to_str().expect("utf-8 path"),
        "--hours",
        "0.25",
        "--json",
    ]);
    assert!(out.status.success(), "no upstream 429: exit 0");
    let r = &json(&out)["report"];
    assert_eq!(f(r, "upstream_429s"), 0.0, "the budget held");
    assert_eq!(f(r, "bot_429s"), 0.0);
    let bucket = &r["buckets"][0];
    assert_eq!(bucket["scope"], "private");
    // No minute past the paced budget plus the burst (30 at 90%).
    assert!(
        f(bucket, "per_min_peak") <= f(bucket, "budget_per_min") + 27.0,
        "{bucket}"
    );
    assert!(
        f(bucket, "per_min_mean") > 0.9 * f(bucket, "budget_per_min"),
        "the budget is used: {bucket}"
    );
    // What did not fit waited or was refused: bots skipped ticks, reads
    // queued for seconds, and the queue turned some away.
    let accounts = r["routes"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == "accounts"))
        .expect("accounts route");
    assert!(f(accounts, "queue_wait.max_ms") > 1000.0, "{accounts}");
    let lost = f(accounts, "shed") + f(accounts, "expired");
    let evaluations = f(r, "evaluations");
    assert!(
        lost > 0.0 || evaluations < 0.9 * 60.0 * 900.0,
        "queueing shows as shed/expired reads or skipped evaluations: {accounts}, {evaluations} evaluations"
    );
    // Orders go first: they wait far less than the reads.
    let trading = r["classes"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == "trading"))
        .expect("trading class");
    assert!(
        f(trading, "queue_wait.p99_ms") < f(accounts, "queue_wait.p99_ms"),
        "{trading}"
    );
    let text = syncoord(&[
        "simulate",
        "--workload",
        workload.to_str().expect("utf-8 path"),
        "--hours",
        "0.25",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("* 0 upstream 429s"), "{text}");
}

#[test]
fn a_malformed_workload_is_located() {
    let workload = temp(
        "bad.toml",
        "[[groups]]\ncount = 3\nevery_secs = 1\n\n[[groups.calls]]\npath = \"/p\"\npriority = \"urgent\"\n",
    );
    let out = syncoord(&["simulate", "--workload", workload.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:7:1: groups[0].calls[0].priority: no priority class `urgent`"),
        "{stderr}"
    );
    let workload = temp("syntax.toml", "[[groups]]\ncount = 3\nevery_secs = \n");
    let out = syncoord(&["simulate", "--workload", workload.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("syntax.toml:3:"), "{stderr}");
}

#[test]
fn compare_runs_one_workload_through_two_configs() {
    let config = temp(
        "short-ttl.toml",
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reference.toml"),
        )
        .expect("examples/reference.toml")
        .replace("ttl_secs = 90.0", "ttl_secs = 15.0"),
    );
    let out = syncoord(&[
        "simulate",
        "--workload",
        "reference",
        "--config",
        "examples/reference.toml",
        "--hours",
        "2",
        "--compare",
        config.to_str().expect("path"),
        "--json",
    ]);
    let runs = json(&out);
    let (a, b) = (&runs[0]["report"], &runs[1]["report"]);
    assert_eq!(
        f(a, "requests"),
        f(
            &json(&syncoord(&[
                "simulate",
                "--workload",
                "reference",
                "--hours",
                "2",
                "--json"
            ]))["report"],
            "requests"
        ),
        "examples/reference.toml is the built-in reference configuration"
    );
    assert!(
        f(a, "stats.cache_hit_rate") > f(b, "stats.cache_hit_rate"),
        "a 15 s TTL hits less than 90 s"
    );
}

/// The README's chart and table are this binary's output: regenerated
/// here, byte for byte (rerun the README's command when the core's figures
/// change on purpose).
#[test]
fn the_readme_sweep_chart_is_current() {
    let svg = std::env::temp_dir().join(format!("syncoord-readme-{}.svg", std::process::id()));
    let out = syncoord(&[
        "simulate",
        "--workload",
        "reference",
        "--sweep",
        "upstreams.advanced.coordination.defaults.ttl_secs=5,15,30,60,90,180,300",
        "--plot",
        svg.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let committed = std::fs::read(root.join("docs/simulate-ttl-sweep.svg"))
        .expect("docs/simulate-ttl-sweep.svg");
    let fresh = std::fs::read(&svg).expect("the chart");
    let _ = std::fs::remove_file(&svg);
    assert!(
        committed == fresh,
        "docs/simulate-ttl-sweep.svg is stale: rerun the command in README's \"Tune before you deploy\""
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
    {
        assert!(
            readme.lines().any(|l| l == line),
            "README's sweep table lacks\n{line}"
        );
    }
}
