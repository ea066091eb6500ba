//! `syncoord simulate`: a configuration against a workload in virtual time.
//!
//! The configuration is read exactly as `serve` reads it (same file, same
//! presets, same checks, same `--set`); the workload file is
//! [`syncoord_sim::workload`]'s; the run is [`syncoord_sim`]'s simulation. Output goes to stdout and is the same, byte for
//! byte, for the same inputs and seed; progress goes to stderr.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use syncoord_core::Duration;
use syncoord_proxy::ProxyConfig;
use syncoord_sim::workload::{reference_config, Workload};
use syncoord_sim::{self as sim, Report};

use crate::config_file::{apply_overrides, load_config};
use crate::summary::{busiest_bucket, Summary};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The configuration file `serve` would read; without one the Coinbase
    /// defaults (for `--workload reference`: the reference configuration).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The workload file (TOML), or `reference` for the built-in reference
    /// workload.
    #[arg(long, short)]
    workload: String,
    /// Virtual hours the bots run for.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Seed of every random choice (default: the workload's, else 2026).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Override a configuration value as `serve --set` does (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run the same workload and seed through a second configuration and
    /// show the two side by side.
    #[arg(long, value_name = "OTHER.toml", conflicts_with = "sweep")]
    compare: Option<PathBuf>,
    /// One run per value of a configuration field (any key `serve --set`
    /// takes), e.g. `upstreams.advanced.coordination.defaults.ttl_secs=5,15,30,90`.
    #[arg(long, value_name = "KEY=V1,V2,...")]
    sweep: Option<String>,
    /// Draw an SVG chart: for a sweep, hit rate, served age, upstream
    /// calls and 429s against the swept value; for one run, the learning
    /// curve (upstream 429s per minute).
    #[arg(long, value_name = "FILE.svg", conflicts_with = "compare")]
    plot: Option<PathBuf>,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<bool> {
    if !(args.hours.is_finite() && args.hours > 0.0 && args.hours <= 24.0 * 365.0) {
        bail!(
            "--hours must be more than 0 and at most a year (got {})",
            args.hours
        );
    }
    let duration = Duration::from_secs_f64(args.hours * 3600.0);
    let reference = args.workload == "reference";
    let workload = if reference {
        Workload::reference()
    } else {
        let text = std::fs::read_to_string(&args.workload)
            .with_context(|| format!("cannot read {}", args.workload))?;
        Workload::from_toml_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.display_with(&args.workload)))?
    };
    let read = |path: &Option<PathBuf>| -> anyhow::Result<ProxyConfig> {
        let mut config = match path {
            Some(p) => load_config(p)?,
            None if reference => reference_config(),
            None => ProxyConfig::default(),
        };
        apply_overrides(&mut config, &args.overrides)?;
        Ok(config)
    };
    let config = read(&args.config)?;
    let scenario_of = |config: &ProxyConfig| {
        workload
            .scenario(config, duration, args.seed)
            .map_err(|e| anyhow::anyhow!("{}", e.display_with(&args.workload)))
    };
    let name = |p: &Option<PathBuf>| match p {
        Some(p) => p.display().to_string(),
        None if reference => "(reference configuration)".to_owned(),
        None => "(Coinbase defaults)".to_owned(),
    };
    let mut out;
    let ok;
    if let Some(other) = &args.compare {
        let other_config = read(&Some(other.clone()))?;
        let a = simulate(&scenario_of(&config)?, "1/2")?;
        let b = simulate(&scenario_of(&other_config)?, "2/2")?;
        let names = [name(&args.config), other.display().to_string()];
        if args.json {
            let runs = serde_json::json!([
                {"config": names[0], "report": a},
                {"config": names[1], "report": b},
            ]);
            out = serde_json::to_string_pretty(&runs)? + "\n";
        } else {
            out = render_compare(&names, &a, &b);
        }
        ok = passed(&a) && passed(&b);
    } else if let Some(sweep) = &args.sweep {
        let Some((key, values)) = sweep.split_once('=') else {
            bail!("--sweep {sweep}: expected KEY=V1,V2,...");
        };
        let key = key.trim();
        let values: Vec<&str> = values.split(',').map(str::trim).collect();
        if values.iter().any(|v| v.is_empty()) {
            bail!("--sweep {sweep}: a value is empty");
        }
        let mut runs = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let mut c = config.clone();
            c.apply_override(key, value)
                .map_err(|e| anyhow::anyhow!("--sweep {key}={value}: {e}"))?;
            let label = format!("{}/{} {key}={value}", i + 1, values.len());
            runs.push(((*value).to_owned(), simulate(&scenario_of(&c)?, &label)?));
        }
        if args.json {
            let runs: Vec<_> = runs
                .iter()
                .map(|(v, r)| serde_json::json!({"key": key, "value": v, "report": r}))
                .collect();
            out = serde_json::to_string_pretty(&runs)? + "\n";
        } else {
            out = render_sweep(key, &runs);
        }
        if let Some(path) = &args.plot {
            crate::plot::sweep(path, key, &runs)?;
            if !args.json {
                let _ = writeln!(out, "\nchart: {}", path.display());
            }
        }
        ok = runs.iter().all(|(_, r)| passed(r));
    } else {
        let report = simulate(&scenario_of(&config)?, "")?;
        if args.json {
            out = serde_json::to_string_pretty(&serde_json::json!({
                "config": name(&args.config),
                "workload": args.workload,
                "report": report,
            }))? + "\n";
        } else {
            out = render(&name(&args.config), &args.workload, &report);
        }
        if let Some(path) = &args.plot {
            crate::plot::learning(path, &args.workload, &report)?;
            if !args.json {
                let _ = writeln!(out, "\nchart: {}", path.display());
            }
        }
        ok = passed(&report);
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ok)
}

/// No 429 from upstream past its limits, none reaching a bot.
fn passed(r: &Report) -> bool {
    r.upstream_429s == 0 && r.bot_429s == 0
}

/// Runs one scenario, showing progress on stderr once it has taken more
/// than a second.
fn simulate(scenario: &sim::Scenario, label: &str) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut shown = false;
    let mut last = started;
    let total = scenario.duration.as_secs_f64() / 3600.0;
    let mut progress = |at: Duration| {
        let now = Instant::now();
        if now.duration_since(started).as_secs_f64() > 1.0
            && now.duration_since(last).as_millis() >= 200
        {
            last = now;
            shown = true;
            eprint!(
                "\rsimulating {label}{}{:.1} of {total:.1} h ",
                if label.is_empty() { "" } else { ": " },
                at.as_secs_f64() / 3600.0
            );
        }
    };
    let report = sim::try_run(scenario, &mut progress).map_err(|e| anyhow::anyhow!("{e}"))?;
    if shown {
        eprintln!(
            "\rsimulated {label}{}{total:.1} h in {:.1} s",
            if label.is_empty() { "" } else { ": " },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(report)
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// The verdicts, in plain words, one per line.
fn verdicts(r: &Report) -> Vec<String> {
    let s = Summary::of(r);
    let mut v = Vec::new();
    let busiest = busiest_bucket(r);
    let budget = busiest.map_or_else(String::new, |b| {
        format!(
            " (busiest bucket `{}`{}: {:.2} of its {:.2} calls/min, {:.0}%)",
            b.scope,
            b.credential
                .as_ref()
                .map_or_else(String::new, |c| format!(" for {c}")),
            b.per_min_mean,
            b.budget_per_min,
            100.0 * b.per_min_mean / b.budget_per_min.max(1e-9)
        )
    });
    if r.upstream_429s == 0 {
        v.push(format!("0 upstream 429s{budget}"));
    } else {
        let over: Vec<String> = r
            .limits
            .iter()
            .filter(|l| l.rejected > 0)
            .map(|l| format!("`{}` {}", l.name, l.rejected))
            .collect();
        v.push(format!(
            "{} upstream 429s: the configured budget is above what upstream allows ({}){budget}",
            r.upstream_429s,
            over.join(", ")
        ));
    }
    if r.fault_429s > 0 {
        v.push(format!(
            "{} 429s came from the 429-storm window; {} reached bots",
            r.fault_429s, r.bot_429s
        ));
    } else if r.bot_429s > 0 {
        v.push(format!("{} 429s reached bots", r.bot_429s));
    }
    if !s.top_class.is_empty() {
        v.push(format!(
            "{} requests waited at most {} in the queue (p99 {})",
            s.top_class,
            ms(s.top_wait_max),
            ms(s.top_wait_p99)
        ));
    }
    if let Some(worst) = r
        .classes
        .iter()
        .filter(|c| c.name != s.top_class)
        .max_by(|a, b| a.queue_wait.max_ms.total_cmp(&b.queue_wait.max_ms))
    {
        if worst.queue_wait.max_ms >= 1.0 {
            v.push(format!(
                "the longest waits were {}'s: p99 {}, at most {}",
                worst.name,
                ms(worst.queue_wait.p99_ms),
                ms(worst.queue_wait.max_ms)
            ));
        }
    }
    v.push(format!(
        "{:.2}% of reads were answered from the cache, {:.2}% stale; answers were {:.1} s old at p50, {:.1} s at p99",
        s.hit_rate * 100.0,
        s.stale_share * 100.0,
        s.age_p50,
        s.age_p99
    ));
    let lost = s.shed + s.expired + s.failed;
    if lost == 0 {
        v.push(format!(
            "every request was answered; {} of {} bots served",
            s.bots_served, s.bots
        ));
    } else {
        v.push(format!(
            "{lost} requests got no answer ({} shed, {} expired, {} failed); {} of {} bots never saw one fail",
            s.shed, s.expired, s.failed, s.bots_served, s.bots
        ));
    }
    v
}

/// One run's report: verdicts, then a table per route and per class, the
/// buckets' budgets and the upstream's limits.
pub(crate) fn render(config: &str, workload: &str, r: &Report) -> String {
    let mut o = String::new();
    let hours = r.simulated.as_secs_f64() / 3600.0;
    let _ = writeln!(
        o,
        "syncoord simulate: {hours} virtual hours, {} bots, workload {workload}, config {config}, seed {}",
        r.bots,
        r.seed
    );
    o.push('\n');
    for v in verdicts(r) {
        let _ = writeln!(o, "  * {v}");
    }
    o.push('\n');
    let span = r.span.as_secs_f64() / 3600.0;
    breakdown_table(&mut o, "route", &r.routes, span);
    o.push('\n');
    breakdown_table(&mut o, "priority", &r.classes, span);
    o.push('\n');
    let _ = writeln!(
        o,
        "{:<34} {:>10} {:>10} {:>11} {:>6}",
        "bucket", "calls/min", "peak min", "budget/min", "used"
    );
    // Per scope: its busiest bucket, and how many there were.
    let mut scopes: Vec<&str> = r.buckets.iter().map(|b| b.scope.as_str()).collect();
    scopes.dedup();
    for scope in scopes {
        let of: Vec<_> = r.buckets.iter().filter(|b| b.scope == scope).collect();
        let Some(b) = of
            .iter()
            .max_by(|a, b| a.per_min_mean.total_cmp(&b.per_min_mean))
        else {
            continue;
        };
        let label = match (&b.credential, of.len()) {
            (None, _) => scope.to_owned(),
            (Some(c), 1) => format!("{scope} ({c})"),
            (Some(c), n) => format!("{scope} ({c}, busiest of {n})"),
        };
        let _ = writeln!(
            o,
            "{:<34} {:>10.2} {:>10} {:>11.2} {:>5.0}%",
            label,
            b.per_min_mean,
            b.per_min_peak,
            b.budget_per_min,
            100.0 * b.per_min_mean / b.budget_per_min.max(1e-9)
        );
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "{:<34} {:>10} {:>10} {:>11}",
        "upstream limit", "limit/min", "accepted", "429s"
    );
    for l in &r.limits {
        let _ = writeln!(
            o,
            "{:<34} {:>10.2} {:>10} {:>11}",
            l.name, l.per_min, l.accepted, l.rejected
        );
    }
    let s = &r.stats;
    let _ = writeln!(
        o,
        "\n{} requests, {} upstream calls ({} refreshes, {} retries), API call reduction {}",
        r.requests,
        s.upstream.calls,
        s.upstream.refreshes,
        s.upstream.retries,
        pct(s.api_call_reduction)
    );
    o
}

fn breakdown_table(o: &mut String, what: &str, rows: &[sim::Breakdown], hours: f64) {
    let _ = writeln!(
        o,
        "{:<16} {:>9} {:>7} {:>6} {:>6} {:>6} {:>15} {:>7} {:>5} {:>22} {:>5} {:>7} {:>6} {:>7}",
        what,
        "requests",
        "hit",
        "fresh",
        "stale",
        "coal.",
        "age p50/p99 s",
        "up/min",
        "429s",
        "queue p50/p99/max ms",
        "shed",
        "expired",
        "failed",
        "bots"
    );
    let minutes = (hours * 60.0).max(1e-9);
    for b in rows {
        let n = (b.requests as f64).max(1.0);
        let _ = writeln!(
            o,
            "{:<16} {:>9} {:>6.1}% {:>5.1}% {:>5.1}% {:>5.1}% {:>15} {:>7.2} {:>5} {:>22} {:>5} {:>7} {:>6} {:>7}",
            b.name,
            b.requests,
            100.0 * b.hit_rate(),
            100.0 * b.hit as f64 / n,
            100.0 * b.stale as f64 / n,
            100.0 * b.coalesced as f64 / n,
            format!("{:.1}/{:.1}", b.served_age.p50_secs, b.served_age.p99_secs),
            b.upstream_calls as f64 / minutes,
            b.upstream_429s,
            format!(
                "{:.0}/{:.0}/{:.0}",
                b.queue_wait.p50_ms, b.queue_wait.p99_ms, b.queue_wait.max_ms
            ),
            b.shed,
            b.expired,
            b.failed,
            format!("{}/{}", b.bots_served, b.bots)
        );
    }
}

fn summary_rows(s: &Summary) -> Vec<String> {
    vec![
        pct(s.hit_rate),
        format!("{:.2}%", s.stale_share * 100.0),
        format!("{:.1} / {:.1} s", s.age_p50, s.age_p99),
        format!("{:.2}", s.calls_per_min),
        s.upstream_429s.to_string(),
        format!("{} / {}", ms(s.top_wait_p99), ms(s.top_wait_max)),
        format!("{} / {} / {}", s.shed, s.expired, s.failed),
        format!("{} / {}", s.bots_served, s.bots),
    ]
}

const SUMMARY_LABELS: [&str; 8] = [
    "cache hit rate",
    "stale answers (of reads)",
    "served age p50 / p99",
    "upstream calls/min",
    "upstream 429s",
    "top class wait p99 / max",
    "shed / expired / failed",
    "bots served",
];

fn render_compare(names: &[String; 2], a: &Report, b: &Report) -> String {
    let (sa, sb) = (Summary::of(a), Summary::of(b));
    let mut o = String::new();
    let _ = writeln!(
        o,
        "syncoord simulate --compare: {:.1} virtual hours, {} bots, one workload and seed\n",
        a.simulated.as_secs_f64() / 3600.0,
        a.bots
    );
    for (name, r) in [(&names[0], a), (&names[1], b)] {
        let _ = writeln!(o, "{name}:");
        for v in verdicts(r) {
            let _ = writeln!(o, "  * {v}");
        }
    }
    o.push('\n');
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0).max(18);
    let _ = writeln!(o, "{:<26} {:>w$} {:>w$}", "", names[0], names[1]);
    for ((label, x), y) in SUMMARY_LABELS
        .iter()
        .zip(summary_rows(&sa))
        .zip(summary_rows(&sb))
    {
        let _ = writeln!(o, "{label:<26} {x:>w$} {y:>w$}");
    }
    let _ = writeln!(
        o,
        "{:<26} {:>w$} {:>w$}",
        "top class", sa.top_class, sb.top_class
    );
    o
}

fn render_sweep(key: &str, runs: &[(String, Report)]) -> String {
    let mut o = String::new();
    if let Some((_, r)) = runs.first() {
        let _ = writeln!(
            o,
            "syncoord simulate --sweep {key}: {:.1} virtual hours, {} bots, one workload and seed\n",
            r.simulated.as_secs_f64() / 3600.0,
            r.bots
        );
    }
    let _ = writeln!(
        o,
        "{:>10} {:>9} {:>7} {:>17} {:>10} {:>6} {:>22} {:>16} {:>9}",
        "value",
        "hit",
        "stale",
        "age p50 / p99",
        "calls/min",
        "429s",
        "top wait p99 / max",
        "shed/exp/failed",
        "bots"
    );
    for (value, r) in runs {
        let s = Summary::of(r);
        let _ = writeln!(
            o,
            "{:>10} {:>9} {:>6.2}% {:>17} {:>10.2} {:>6} {:>22} {:>16} {:>9}",
            value,
            pct(s.hit_rate),
            s.stale_share * 100.0,
            format!("{:.1} / {:.1} s", s.age_p50, s.age_p99),
            s.calls_per_min,
            s.upstream_429s,
            format!("{} / {}", ms(s.top_wait_p99), ms(s.top_wait_max)),
            format!("{}/{}/{}", s.shed, s.expired, s.failed),
            format!("{}/{}", s.bots_served, s.bots)
        );
    }
    o
}
