//! What a run reports: the coordinator's stats plus per-route and
//! per-class breakdowns, each bucket's budget use and what upstream's
//! limits saw; printed as the table `syncoord simulate` shows.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use syncoord_core::stats::{AgeSummary, WaitSummary};
use syncoord_core::{Duration, StatsSnapshot};

/// Requests under one route, or one priority class, and how they ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// The route's name (or the class's).
    pub name: String,
    /// Requests the bots made.
    pub requests: u64,
    /// Answered from a fresh cache entry.
    pub hit: u64,
    /// Answered from an expired entry (stale-while-revalidate or
    /// stale-if-error).
    pub stale: u64,
    /// Answered by a call another request started.
    pub coalesced: u64,
    /// Answered by a call of their own.
    pub upstream: u64,
    /// Refused or dropped because the queue was full.
    pub shed: u64,
    /// Not sent before their deadline.
    pub expired: u64,
    /// Every other failure (upstream errors after retries, open breakers,
    /// unknown outcomes).
    pub failed: u64,
    /// Calls sent upstream for them (refreshes and retries included).
    pub upstream_calls: u64,
    /// 429s the upstream sent for those calls.
    pub upstream_429s: u64,
    /// Age of the answers served, in seconds.
    pub served_age: AgeSummary,
    /// How long a request waited in the queue for its own call, in ms
    /// (requests answered without one do not wait and are not counted).
    pub queue_wait: WaitSummary,
    /// Bots that made such requests...
    pub bots: usize,
    /// ...and of them, those that never saw one fail.
    pub bots_served: usize,
}

impl Breakdown {
    /// Fresh and stale hits over requests.
    pub fn hit_rate(&self) -> f64 {
        (self.hit + self.stale) as f64 / (self.requests as f64).max(1.0)
    }
}

/// How much of one coordinator bucket's budget the run used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketUse {
    /// The scope's name.
    pub scope: String,
    /// The credential of a per-credential bucket.
    pub credential: Option<String>,
    /// Calls dispatched on it (cost units).
    pub calls: u64,
    /// Calls per minute over the whole run.
    pub per_min_mean: f64,
    /// Calls in the busiest minute.
    pub per_min_peak: u64,
    /// The scope's budget per minute after headroom.
    pub budget_per_min: f64,
}

/// What one documented upstream limit saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitUse {
    /// The limit's name.
    pub name: String,
    /// Its rate in calls per minute (per credential when it is per
    /// credential).
    pub per_min: f64,
    /// Calls it counted and let through.
    pub accepted: u64,
    /// Calls it answered 429.
    pub rejected: u64,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Bots simulated.
    pub bots: usize,
    /// The run's seed ([`Scenario::seed`]).
    pub seed: u64,
    /// Virtual time the bots ran for ([`Scenario::duration`]).
    #[serde(serialize_with = "as_secs")]
    pub simulated: Duration,
    /// Virtual time until the last call left (at least `simulated`: what
    /// was queued when the bots stopped is still sent). Rates per minute
    /// are over this.
    #[serde(serialize_with = "as_secs")]
    pub span: Duration,
    /// Requests the bots submitted.
    pub requests: u64,
    /// Of them, reads (`GET` and `HEAD`: the ones a cache can answer).
    pub reads: u64,
    /// Evaluations the bots started (a bot still busy skips its tick).
    pub evaluations: u64,
    /// Bots that completed evaluations and never saw a failure.
    pub bots_served: usize,
    /// Requests that ended without an answer, by failure kind.
    pub failures: BTreeMap<&'static str, u64>,
    /// 429s the upstream sent past its limits (each one a call the
    /// coordinator misjudged).
    pub upstream_429s: u64,
    /// 429s the upstream sent during a 429-storm fault window.
    pub fault_429s: u64,
    /// Bans the upstream's ban rule imposed (418s after repeated 429s).
    pub bans: u64,
    /// Calls answered 418 while banned.
    pub banned_calls: u64,
    /// Upstream 429s (past its limits) in each minute of the run: how fast
    /// the coordinator learned.
    pub learning_curve: Vec<u32>,
    /// 429s that reached a bot.
    pub bot_429s: u64,
    /// Answers whose body belonged to another credential.
    pub cross_credential: u64,
    /// Distinct cache keys the bots read (K).
    pub hot_keys: usize,
    /// Calls per second left for reads (B): the paced rate less the orders
    /// the bots placed.
    pub spare_per_sec: f64,
    /// Half the smallest `min_age` of a refreshed route (0 when nothing is
    /// refreshed): refresh-ahead cannot bring the mean age below it either.
    pub min_age_floor_secs: f64,
    /// Per route of the configuration, in the order first used.
    pub routes: Vec<Breakdown>,
    /// Per priority class, highest first (classes no request used are
    /// left out).
    pub classes: Vec<Breakdown>,
    /// The coordinator's buckets, by scope then credential.
    pub buckets: Vec<BucketUse>,
    /// The upstream's limits, in the scenario's order.
    pub limits: Vec<LimitUse>,
    /// The coordinator's stats at the end of the run.
    pub stats: StatsSnapshot,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Report {
    /// The coordinator's cache hit rate ([`StatsSnapshot::cache_hit_rate`]).
    pub fn cache_hit_rate(&self) -> f64 {
        self.stats.cache_hit_rate
    }

    /// The lowest mean age the budget allows, in seconds: with B spare calls
    /// per second over K hot keys, each key can be refreshed every K/B s,
    /// so answers are on average at least K/(2B) old.
    pub fn age_bound_secs(&self) -> f64 {
        self.hot_keys as f64 / (2.0 * self.spare_per_sec.max(1e-9))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let r = &s.requests;
        let hours = self.simulated.as_secs_f64() / 3600.0;
        writeln!(f, "Simulated {:.1} h, {} bots", hours, self.bots)?;
        writeln!(
            f,
            "  requests              {:>10}  ({} evaluations)",
            self.requests, self.evaluations
        )?;
        writeln!(
            f,
            "  cache hit rate        {:>9.2}%  (fresh {}, stale {})",
            s.cache_hit_rate * 100.0,
            r.hit,
            r.stale
        )?;
        writeln!(f, "  coalesced             {:>10}", r.coalesced)?;
        writeln!(
            f,
            "  served w/o own call   {:>9.2}%",
            s.served_without_upstream_rate * 100.0
        )?;
        writeln!(
            f,
            "  upstream calls        {:>10}  ({:.2}/min, {} retries)",
            s.upstream.calls,
            s.upstream.calls as f64 / (hours * 60.0).max(1e-9),
            s.upstream.retries
        )?;
        writeln!(
            f,
            "  API call reduction    {:>9.2}%",
            s.api_call_reduction * 100.0
        )?;
        writeln!(f, "  of which refreshes    {:>10}", s.upstream.refreshes)?;
        writeln!(f, "  upstream 429s         {:>10}", self.upstream_429s)?;
        writeln!(f, "  429s reaching bots    {:>10}", self.bot_429s)?;
        writeln!(f, "  cross-credential      {:>10}", self.cross_credential)?;
        let failed: u64 = self.failures.values().sum();
        writeln!(
            f,
            "  failed requests       {:>10}  {:?}",
            failed, self.failures
        )?;
        writeln!(
            f,
            "  bots served           {:>6} / {}",
            self.bots_served, self.bots
        )?;
        let a = &s.served_age;
        writeln!(
            f,
            "  served age (s):               source      n      p50      p99      max     mean"
        )?;
        for (name, sum) in [
            ("all", &a.all),
            ("hit", &a.hit),
            ("stale", &a.stale),
            ("upstream", &a.upstream),
        ] {
            writeln!(
                f,
                "                                {:<9} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                name, sum.count, sum.p50_secs, sum.p99_secs, sum.max_secs, sum.mean_secs
            )?;
        }
        writeln!(
            f,
            "  age bound K/(2B)      {:>9.2}s  (K = {} keys, B = {:.3} spare calls/s; mean served age {:.2} s = {:.2}x the bound)",
            self.age_bound_secs(),
            self.hot_keys,
            self.spare_per_sec,
            a.all.mean_secs,
            a.all.mean_secs / self.age_bound_secs().max(1e-9)
        )?;
        if self.min_age_floor_secs > self.age_bound_secs() {
            writeln!(
                f,
                "  min_age floor         {:>9.2}s  (half the smallest refreshed min_age; mean = {:.2}x it)",
                self.min_age_floor_secs,
                a.all.mean_secs / self.min_age_floor_secs.max(1e-9)
            )?;
        }
        writeln!(
            f,
            "  queue wait by priority (ms):  class       n      p50      p99      max"
        )?;
        for c in &s.queue.classes {
            writeln!(
                f,
                "                                {:<9} {:>7} {:>8.0} {:>8.0} {:>8.0}",
                c.class, c.wait.count, c.wait.p50_ms, c.wait.p99_ms, c.wait.max_ms
            )?;
        }
        Ok(())
    }
}
