//! A deterministic simulation in virtual time: groups of trading bots on
//! timers, an upstream that enforces its documented limits (and answers 429
//! past them), and the coordinator between them. Hours of traffic run in
//! a second; the same seed gives the same run.
//!
//! A [`Scenario`] is a workload (bot groups and the calls each evaluation
//! makes, [`BotGroup`]), a simulated [`Upstream`] (its limits, latency and
//! fault windows) and the coordinator's [`Config`]. [`run`] plays it and
//! returns a [`Report`]: the coordinator's own stats, plus a breakdown per
//! route and per priority class, the budget each bucket used, and what the
//! upstream's limits saw.
//!
//! [`Scenario::reference`] is the reference workload: 25 bots sharing one
//! API key, each evaluating every ~30 s (ticker, balances, candles every
//! fourth time, an occasional order), an upstream budget of 8 calls per
//! minute with a burst of 8, and a 90 s cache TTL. [`Scenario::coinbase`]
//! is the same bots at Coinbase Advanced Trade's own limits, evaluating
//! every second. Both run with the presets' refresh-ahead on;
//! [`Scenario::without_refresh`] turns it off for comparison.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;
use web_time::{Duration, Instant};

use crate::config::{coinbase, secs, ClassId, Config, ConfigErrors, Keying, ScopeConfig};
use crate::freshness::Freshness;
use crate::request::{Method, Outcome, Request, Response, Source, Ticket, TransportError};
use crate::stats::{AgeSummary, StatsSnapshot, WaitSummary};
use crate::{Admission, CompiledConfig, Coordinator};

/// One documented upstream limit: `rate` calls per `period`, up to `burst`
/// at once, enforced as a lazy-fill token bucket (as Coinbase documents);
/// a call past it is answered 429.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// Names the limit in the report.
    pub name: String,
    /// Calls allowed per `period`.
    pub rate: f64,
    /// The period `rate` is counted over.
    pub period: Duration,
    /// Calls a full bucket accepts at once.
    pub burst: u32,
    /// One bucket per credential (an API key's limit) rather than one for
    /// every caller (a per-IP limit: the coordinator is one IP).
    pub per_credential: bool,
    /// Which calls count against it: those whose route in
    /// [`Upstream::rules`] draws on this scope; `None`: every call.
    pub scope: Option<String>,
}

/// How long the upstream takes to answer (the whole round trip).
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    /// Uniform between the two.
    Uniform(Duration, Duration),
    /// Log-normal with this median and 99th percentile (a long tail).
    LogNormal {
        /// Half the calls are faster than this.
        median: Duration,
        /// One call in a hundred is slower than this.
        p99: Duration,
    },
}

/// What goes wrong during a [`Fault`] window.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Every call is answered 429, with `Retry-After` when set (a 429
    /// storm: another tenant or a lowered limit).
    RateLimited {
        /// The `Retry-After` upstream sends.
        retry_after: Option<Duration>,
    },
    /// A call fails with a 503 with this probability.
    ServerErrors {
        /// Chance per call, 0 to 1.
        probability: f64,
    },
    /// No call gets an answer (each times out).
    Outage,
}

/// A window of virtual time in which the upstream misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// From this long after the start...
    pub start: Duration,
    /// ...for this long.
    pub duration: Duration,
}

/// How the simulated upstream behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Its documented limits; a call must fit every one that applies.
    pub limits: Vec<Limit>,
    /// Which calls draw on which scope of a [`Limit::scope`]: the routes
    /// and scopes of this configuration (a preset's documented rules);
    /// `None`: the coordinator's own.
    pub rules: Option<Config>,
    /// Round-trip latency.
    pub latency: Latency,
    /// Chance, at any time, that a call fails with a 503.
    pub error_rate: f64,
    /// Chance, at any time, that a call gets no answer at all (a transport
    /// timeout).
    pub timeout_rate: f64,
    /// Windows of misbehaviour.
    pub faults: Vec<Fault>,
}

/// When a call of an evaluation is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Every evaluation.
    Always,
    /// Every n-th evaluation of the bot.
    Every(u32),
    /// With this probability at each evaluation.
    Chance(f64),
}

/// One call an evaluation may make.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// Path and query as upstream knows them, with `{name}` variables:
    /// from the bot's group ([`BotGroup::vars`]) or drawn at random from
    /// [`Call::vars`] at each call.
    pub path: String,
    /// Variables drawn at random, one value per call.
    pub vars: BTreeMap<String, Vec<String>>,
    /// When the call is made.
    pub when: When,
    /// A priority class other than the route's (`X-Syncoord-Priority`).
    pub priority: Option<String>,
    /// The request's `Cache-Control` (`max-age=5`, `no-cache`, ...).
    pub cache_control: Option<String>,
}

impl Call {
    /// A call made at every evaluation, with no variables or directives.
    pub fn new(method: Method, path: &str) -> Self {
        Call {
            method,
            path: path.to_owned(),
            vars: BTreeMap::new(),
            when: When::Always,
            priority: None,
            cache_control: None,
        }
    }

    /// The same call, made `when`.
    pub fn when(mut self, when: When) -> Self {
        self.when = when;
        self
    }
}

/// Which credentials a group's bots sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// One API key for the whole group.
    Shared,
    /// A key of its own for every bot.
    OneEach,
    /// `n` keys, bot `i` using key `i % n`.
    Keys(usize),
}

/// Bots that behave alike.
#[derive(Debug, Clone, PartialEq)]
pub struct BotGroup {
    /// Names the group (and its bots' clients, `NAME-007`; the first
    /// group's bots are `bot-000`, ...).
    pub name: String,
    /// How many bots.
    pub count: usize,
    /// Each bot evaluates this often...
    pub every: Duration,
    /// ...give or take this fraction of it (0.2: 80% to 120%).
    pub jitter: f64,
    /// Evaluations on the clock: at each multiple of `every` from the
    /// start (the top of the minute, for 60 s), each bot within
    /// `jitter * every` after it, so the whole group arrives at once (the
    /// candle-close stampede).
    pub aligned: bool,
    /// Market hours: the bots evaluate only between these two offsets
    /// into each simulated day (the run starts at 00:00), e.g. 13:30 to
    /// 20:00; `None`: around the clock. A window may wrap past midnight.
    pub active: Option<(Duration, Duration)>,
    /// Which keys the bots use.
    pub credentials: Credentials,
    /// Per-bot variables: bot `i` of the group takes value `i % len`.
    pub vars: BTreeMap<String, Vec<String>>,
    /// What each evaluation calls, in order (a bot waits for each answer
    /// before the next call; it skips a tick while still busy).
    pub calls: Vec<Call>,
}

/// One simulated run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The bots.
    pub groups: Vec<BotGroup>,
    /// The simulated upstream.
    pub upstream: Upstream,
    /// How long bots keep evaluating, in virtual time.
    pub duration: Duration,
    /// The coordinator's configuration.
    pub config: Config,
    /// Drives every random choice of the run (bots, upstream, coordinator).
    pub seed: u64,
}

const BASE: &str = "/api/v3/brokerage";

/// The reference workload's coordinator settings: Coinbase Advanced Trade
/// routes, one budget of 8 calls per minute with a burst of 8 (run at 90%),
/// a 90 s TTL everywhere, aging so no class starves, and 60 s of
/// stale-while-revalidate.
pub fn reference_config() -> Config {
    let mut c = coinbase::advanced_trade();
    c.scopes = BTreeMap::from([(
        "budget".to_owned(),
        ScopeConfig {
            rate: 8.0,
            period_secs: 60.0,
            burst: 8,
            per: Keying::Global,
            headroom: 0.9,
        },
    )]);
    c.defaults.scopes = vec!["budget".into()];
    c.defaults.ttl_secs = 90.0;
    // When the budget is saturated, a call that has waited 8 s climbs a
    // class, so analysis reads still get through before their stale
    // window runs out.
    c.queue.aging_secs = Some(8.0);
    // ...and while a refresh waits for the budget, other bots get the
    // entry that just expired rather than queueing behind it.
    c.cache.stale_while_revalidate_secs = 60.0;
    for r in &mut c.routes {
        r.scopes = None;
        r.ttl_secs = None;
    }
    c
}

/// The reference workload's bots: `bots` bots sharing one key, each
/// evaluating every 30 s ± 20% (ticker, balances, candles every fourth
/// time, an order 1% of the time), bot `i` trading product `i % 4`.
pub fn reference_group(bots: usize) -> BotGroup {
    let products = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"];
    BotGroup {
        name: "bot".into(),
        count: bots,
        every: Duration::from_secs(30),
        jitter: 0.2,
        aligned: false,
        active: None,
        credentials: Credentials::Shared,
        vars: BTreeMap::from([(
            "product".to_owned(),
            products.iter().map(|p| (*p).to_owned()).collect(),
        )]),
        calls: vec![
            Call::new(
                Method::get(),
                &format!("{BASE}/products/{{product}}/ticker"),
            ),
            Call::new(Method::get(), &format!("{BASE}/accounts")),
            Call::new(
                Method::get(),
                &format!("{BASE}/products/{{product}}/candles?granularity=ONE_HOUR"),
            )
            .when(When::Every(4)),
            Call::new(Method::post(), &format!("{BASE}/orders")).when(When::Chance(0.01)),
        ],
    }
}

/// The reference upstream: 8 calls a minute with a burst of 8 for every
/// caller together, 40 to 400 ms round trips, no faults.
pub fn reference_upstream() -> Upstream {
    Upstream {
        limits: vec![Limit {
            name: "budget".into(),
            rate: 8.0,
            period: Duration::from_secs(60),
            burst: 8,
            per_credential: false,
            scope: None,
        }],
        rules: None,
        latency: Latency::Uniform(Duration::from_millis(40), Duration::from_millis(400)),
        error_rate: 0.0,
        timeout_rate: 0.0,
        faults: Vec::new(),
    }
}

/// The limits a configuration documents: each of its scopes at its full
/// rate (no headroom), counting the calls whose route draws on it.
pub fn documented_limits(config: &Config) -> Vec<Limit> {
    config
        .scopes
        .iter()
        .map(|(name, s)| Limit {
            name: name.clone(),
            rate: s.rate,
            period: secs(s.period_secs),
            burst: s.burst,
            per_credential: s.per == Keying::Credential,
            scope: Some(name.clone()),
        })
        .collect()
}

impl Scenario {
    /// The reference workload with `bots` bots, simulated for 24 hours.
    pub fn reference(bots: usize) -> Self {
        Scenario {
            groups: vec![reference_group(bots)],
            upstream: reference_upstream(),
            duration: Duration::from_secs(24 * 3600),
            config: reference_config(),
            seed: 2026,
        }
    }

    /// `bots` bots evaluating every second for an hour against Coinbase
    /// Advanced Trade's limits (the preset as shipped: the sim's reads and
    /// orders all draw on the per-key `private` scope, 30/s with a burst
    /// of 30, run at 90%), the upstream enforcing 30/s, burst 30.
    pub fn coinbase(bots: usize) -> Self {
        let mut s = Scenario::reference(bots);
        s.duration = Duration::from_secs(3600);
        s.groups[0].every = Duration::from_secs(1);
        s.upstream.limits[0].rate = 30.0;
        s.upstream.limits[0].period = Duration::from_secs(1);
        s.upstream.limits[0].burst = 30;
        s.config = coinbase::advanced_trade();
        s
    }

    /// The same scenario with refresh-ahead off on every route.
    pub fn without_refresh(mut self) -> Self {
        self.config.defaults.refresh_ahead = false;
        for r in &mut self.config.routes {
            r.refresh_ahead = Some(false);
        }
        self
    }

    /// Every bot of every group.
    pub fn bots(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }

    fn min_age_floor(&self) -> f64 {
        let d = &self.config.defaults;
        self.config
            .routes
            .iter()
            .filter(|r| r.refresh_ahead.unwrap_or(d.refresh_ahead))
            .map(|r| r.min_age_secs.unwrap_or(d.min_age_secs))
            .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.min(a))))
            .map_or(0.0, |m| m / 2.0)
    }

    /// Calls per second the coordinator paces the bots' reads at: the
    /// first default scope's rate after its headroom.
    fn paced_rate(&self) -> f64 {
        self.config
            .defaults
            .scopes
            .first()
            .and_then(|name| self.config.scopes.get(name))
            .map_or(0.0, |s| s.rate / s.period_secs.max(1e-9) * s.headroom)
    }

    /// Checks everything a run relies on: the configuration compiles,
    /// every priority and scope named exists, every variable of a path is
    /// defined, every number is in range. Each problem names its field
    /// (`groups[0].calls[2].priority`).
    pub fn check(&self) -> Result<(), ScenarioErrors> {
        self.prepare().map(|_| ())
    }

    fn prepare(&self) -> Result<Prepared, ScenarioErrors> {
        let mut problems = Vec::new();
        let mut push = |field: String, message: String| {
            problems.push(ScenarioError { field, message });
        };
        let config = match self.config.compile() {
            Ok(c) => Some(c),
            Err(e) => {
                for e in e.0 {
                    push(format!("config.{}", e.field), e.problem.to_string());
                }
                None
            }
        };
        let rules = match &self.upstream.rules {
            None => config.clone(),
            Some(r) => match r.compile() {
                Ok(c) => Some(c),
                Err(ConfigErrors(errors)) => {
                    for e in errors {
                        push(format!("upstream.rules.{}", e.field), e.problem.to_string());
                    }
                    None
                }
            },
        };
        if self.groups.iter().all(|g| g.count == 0) {
            push(
                "groups".into(),
                "there are no bots: give a group a count".into(),
            );
        }
        if self.duration.is_zero() {
            push("duration".into(), "must be more than 0".into());
        }
        let mut priorities = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            let at = |f: &str| format!("groups[{g}].{f}");
            if group.every < Duration::from_millis(1) {
                push(at("every_secs"), "must be at least 0.001 s".into());
            }
            if let Some((from, until)) = group.active {
                let day = Duration::from_secs(86_400);
                if from > day || until > day || from == until {
                    push(
                        at("active_hours"),
                        "needs two different times of day, from 0 to 24 hours".into(),
                    );
                }
            }
            if !(0.0..=1.0).contains(&group.jitter) {
                push(
                    at("jitter"),
                    format!("must be from 0 to 1 (got {})", group.jitter),
                );
            }
            if group.credentials == Credentials::Keys(0) {
                push(at("credentials"), "must be at least 1 key".into());
            }
            if group.calls.is_empty() {
                push(at("calls"), "a group needs at least one call".into());
            }
            for (name, values) in &group.vars {
                if values.is_empty() {
                    push(
                        at(&format!("vars.{name}")),
                        "needs at least one value".into(),
                    );
                }
            }
            let mut classes = Vec::new();
            for (c, call) in group.calls.iter().enumerate() {
                let at = |f: &str| format!("groups[{g}].calls[{c}].{f}");
                for (name, values) in &call.vars {
                    if values.is_empty() {
                        push(
                            at(&format!("vars.{name}")),
                            "needs at least one value".into(),
                        );
                    }
                }
                for var in template_vars(&call.path) {
                    if !group.vars.contains_key(var) && !call.vars.contains_key(var) {
                        push(
                            at("path"),
                            format!("`{{{var}}}` is not a variable of the call or its group"),
                        );
                    }
                }
                if !call.path.starts_with('/') {
                    push(at("path"), format!("`{}` must start with `/`", call.path));
                }
                match call.when {
                    When::Every(0) => push(at("every"), "must be at least 1".into()),
                    When::Chance(p) if !(0.0..=1.0).contains(&p) => {
                        push(at("chance"), format!("must be from 0 to 1 (got {p})"))
                    }
                    _ => {}
                }
                let class = match &call.priority {
                    None => None,
                    Some(name) => match self.config.class_id(name) {
                        Some(id) => Some(id),
                        None => {
                            push(
                                at("priority"),
                                format!(
                                    "no priority class `{name}` (the configuration has: {})",
                                    self.config.priorities.join(", ")
                                ),
                            );
                            None
                        }
                    },
                };
                classes.push(class);
            }
            priorities.push(classes);
        }
        let u = &self.upstream;
        let mut limits = Vec::new();
        for (i, l) in u.limits.iter().enumerate() {
            let at = |f: &str| format!("upstream.limits[{i}].{f}");
            if !(l.rate.is_finite() && l.rate > 0.0) {
                push(at("rate"), format!("must be more than 0 (got {})", l.rate));
            }
            if l.period < Duration::from_millis(1) {
                push(at("period_secs"), "must be at least 0.001 s".into());
            }
            if l.burst == 0 {
                push(at("burst"), "must be at least 1".into());
            }
            let scope = match (&l.scope, &rules) {
                (None, _) => None,
                (Some(name), Some(r)) => match r.config().scope_id(name) {
                    Some(id) => Some(id),
                    None => {
                        push(
                            at("scope"),
                            format!(
                                "no scope `{name}` in the upstream's rules (they have: {})",
                                r.config()
                                    .scopes
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                        None
                    }
                },
                (Some(_), None) => None,
            };
            limits.push(scope);
        }
        if let Latency::Uniform(lo, hi) = u.latency {
            if lo > hi {
                push("upstream.latency".into(), "min_ms is above max_ms".into());
            }
        }
        if let Latency::LogNormal { median, p99 } = u.latency {
            if median.is_zero() || p99 < median {
                push(
                    "upstream.latency".into(),
                    "needs 0 < median_ms <= p99_ms".into(),
                );
            }
        }
        for (name, p) in [
            ("error_rate", u.error_rate),
            ("timeout_rate", u.timeout_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                push(
                    format!("upstream.{name}"),
                    format!("must be from 0 to 1 (got {p})"),
                );
            }
        }
        for (i, f) in u.faults.iter().enumerate() {
            if let FaultKind::ServerErrors { probability } = f.kind {
                if !(0.0..=1.0).contains(&probability) {
                    push(
                        format!("upstream.faults[{i}].probability"),
                        format!("must be from 0 to 1 (got {probability})"),
                    );
                }
            }
        }
        match (config, rules, problems.is_empty()) {
            (Some(config), Some(rules), true) => Ok(Prepared {
                config,
                rules,
                priorities,
                limits,
            }),
            _ => Err(ScenarioErrors(problems)),
        }
    }
}

/// Whether `at` (since the start) falls in the daily window `active`.
fn in_window(active: Option<(Duration, Duration)>, at: Duration) -> bool {
    let Some((from, until)) = active else {
        return true;
    };
    let day = Duration::from_secs(86_400);
    let t = Duration::from_nanos((at.as_nanos() % day.as_nanos()) as u64);
    if from <= until {
        from <= t && t < until
    } else {
        t >= from || t < until
    }
}

/// `{name}` variables of a path template, in order.
fn template_vars(path: &str) -> impl Iterator<Item = &str> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

/// One problem with a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// Path of the field, e.g. `groups[0].calls[2].priority`, or
    /// `config.routes[1].scopes[0]` for the coordinator's configuration.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// What [`Scenario::prepare`] resolved.
struct Prepared {
    config: CompiledConfig,
    rules: CompiledConfig,
    /// Per group, per call: the priority override.
    priorities: Vec<Vec<Option<ClassId>>>,
    /// Per limit: the scope of [`Upstream::rules`] it counts.
    limits: Vec<Option<crate::config::ScopeId>>,
}

/// The simulated host's payload: what the upstream needs to answer.
#[derive(Debug, Clone)]
struct Sent {
    path: String,
    method: Method,
    credential: usize,
    route: usize,
    /// Its priority class (the override, else the route's).
    class: usize,
    /// The request it was submitted for (its first dispatch ends its
    /// queue wait).
    request: u64,
    submitted: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    BotWakes(usize),
    /// A dispatched call reaches upstream (half the round trip later).
    UpstreamReceives(u64),
    UpstreamAnswers(u64),
}

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

/// Runs `scenario` to the end (bots stop at `duration`; what is in flight
/// then finishes).
///
/// # Panics
///
/// When the scenario does not pass [`Scenario::check`]; use [`try_run`]
/// for scenarios read from outside.
pub fn run(scenario: &Scenario) -> Report {
    match try_run(scenario, &mut |_| {}) {
        Ok(r) => r,
        Err(e) => panic!("invalid scenario:\n{e}"),
    }
}

/// Runs `scenario`, calling `progress` with the virtual time reached about
/// every simulated minute (a host shows progress with it; it cannot change
/// the run).
pub fn try_run(
    scenario: &Scenario,
    progress: &mut dyn FnMut(Duration),
) -> Result<Report, ScenarioErrors> {
    let prepared = scenario.prepare()?;
    Ok(Sim::new(scenario, prepared).run(progress))
}

struct Bot {
    group: usize,
    /// Bot `i` of its group.
    index: usize,
    client: String,
    credential: usize,
    evaluations: u32,
    /// Requests of the current evaluation still to make, in order: the
    /// call's index and its path.
    pending: VecDeque<(usize, String)>,
    failed: bool,
    /// Routes and classes it used, and whether one failed there.
    used: BTreeMap<(bool, usize), bool>,
}

/// What is known about a request while it waits.
struct Waiting {
    bot: usize,
    /// The request's id (its payload's [`Sent::request`]).
    request: u64,
    route: usize,
    class: usize,
}

/// Running counts for one [`Breakdown`].
struct Acc {
    b: Breakdown,
    ages: Histogram<u64>,
    waits: Histogram<u64>,
}

impl Acc {
    fn new(name: String) -> Self {
        Acc {
            b: Breakdown {
                name,
                ..Breakdown::default()
            },
            ages: crate::stats::age_histogram(),
            waits: crate::stats::wait_histogram(),
        }
    }

    fn finish(mut self) -> Breakdown {
        self.b.served_age = crate::stats::age_summary(&self.ages);
        self.b.queue_wait = crate::stats::wait_summary(&self.waits);
        self.b
    }
}

/// A coordinator bucket's calls, minute by minute.
struct BucketAcc {
    scope: String,
    credential: Option<String>,
    budget_per_min: f64,
    per_minute: Vec<u32>,
    calls: u64,
}

/// How a request ended, for the breakdowns.
enum End {
    Answered(Source, Duration),
    Shed,
    Expired,
    Failed,
}

struct Sim<'a> {
    s: &'a Scenario,
    p: Prepared,
    t0: Instant,
    end: Instant,
    core: Coordinator<Sent>,
    rng: fastrand::Rng,
    events: BinaryHeap<Reverse<(Instant, u64, Event)>>,
    seq: u64,
    bots: Vec<Bot>,
    tickets: HashMap<Ticket, Waiting>,
    /// Requests whose first call has not been dispatched yet, and their
    /// route.
    unsent: HashMap<u64, usize>,
    /// Calls on the wire: sent, waiting to arrive upstream.
    wire: HashMap<u64, (crate::CallId, Sent, Duration)>,
    /// Calls upstream has answered (`None`: it never will).
    answers: HashMap<u64, (crate::CallId, Option<Response>)>,
    /// Upstream's own GCRA state per limit (and credential): theoretical
    /// arrival time.
    upstream_tat: HashMap<(usize, usize), Instant>,
    requests: u64,
    evaluations: u64,
    failures: BTreeMap<&'static str, u64>,
    upstream_429s: u64,
    fault_429s: u64,
    bot_429s: u64,
    cross_credential: u64,
    hot_keys: BTreeSet<String>,
    orders: u64,
    routes: Vec<Acc>,
    route_index: HashMap<String, usize>,
    classes: Vec<Acc>,
    /// By scope id, then credential (`None`: a global scope).
    buckets: BTreeMap<(u16, Option<usize>), BucketAcc>,
    limits: Vec<LimitUse>,
    /// When the last call was dispatched.
    last_call: Instant,
}

impl<'a> Sim<'a> {
    fn new(s: &'a Scenario, p: Prepared) -> Self {
        let t0 = Instant::now();
        let core = Coordinator::new(p.config.clone(), t0, s.seed);
        let mut rng = fastrand::Rng::with_seed(s.seed ^ 0x5eed);
        let mut bots = Vec::new();
        for (g, group) in s.groups.iter().enumerate() {
            for i in 0..group.count {
                let n = bots.len();
                let client = if g == 0 {
                    format!("bot-{n:03}")
                } else {
                    format!("{}-{i:03}", group.name)
                };
                let key = match group.credentials {
                    Credentials::Shared => 0,
                    Credentials::OneEach => i,
                    Credentials::Keys(k) => i % k.max(1),
                };
                // Keys of different groups are different keys.
                let offset: usize = s.groups[..g]
                    .iter()
                    .map(|o| match o.credentials {
                        Credentials::Shared => 1,
                        Credentials::OneEach => o.count,
                        Credentials::Keys(k) => k,
                    })
                    .sum();
                bots.push(Bot {
                    group: g,
                    index: i,
                    client,
                    credential: offset + key,
                    evaluations: 0,
                    pending: VecDeque::new(),
                    failed: false,
                    used: BTreeMap::new(),
                });
            }
        }
        let classes = s
            .config
            .priorities
            .iter()
            .map(|c| Acc::new(c.clone()))
            .collect();
        let limits = s
            .upstream
            .limits
            .iter()
            .map(|l| LimitUse {
                name: l.name.clone(),
                per_min: l.rate * 60.0 / l.period.as_secs_f64(),
                accepted: 0,
                rejected: 0,
            })
            .collect();
        let mut sim = Sim {
            s,
            p,
            t0,
            end: t0 + s.duration,
            core,
            events: BinaryHeap::new(),
            seq: 0,
            bots,
            tickets: HashMap::new(),
            unsent: HashMap::new(),
            wire: HashMap::new(),
            answers: HashMap::new(),
            upstream_tat: HashMap::new(),
            requests: 0,
            evaluations: 0,
            failures: BTreeMap::new(),
            upstream_429s: 0,
            fault_429s: 0,
            bot_429s: 0,
            cross_credential: 0,
            hot_keys: BTreeSet::new(),
            orders: 0,
            routes: Vec::new(),
            route_index: HashMap::new(),
            classes,
            buckets: BTreeMap::new(),
            limits,
            last_call: t0,
            rng: fastrand::Rng::with_seed(rng.u64(..)),
        };
        for bot in 0..sim.bots.len() {
            let g = &s.groups[sim.bots[bot].group];
            // Bots start spread over the first evaluation period (on the
            // clock: within the jitter after the start).
            let start = if g.aligned {
                g.every.mul_f64(g.jitter * sim.rng.f64())
            } else {
                g.every.mul_f64(sim.rng.f64())
            };
            sim.schedule(t0 + start, Event::BotWakes(bot));
        }
        sim
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn run(mut self, progress: &mut dyn FnMut(Duration)) -> Report {
        let mut reported = Duration::ZERO;
        loop {
            let next_event = self.events.peek().map(|Reverse((t, _, _))| *t);
            let next = match (next_event, self.core.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) if self.core.waiting() > 0 || self.core.calls_in_flight() > 0 => b,
                _ => break,
            };
            while let Some(Reverse((t, _, event))) = self.events.peek().copied() {
                if t > next {
                    break;
                }
                self.events.pop();
                self.handle(t, event);
            }
            self.core.handle_timeout(next);
            self.pump(next);
            let elapsed = next.saturating_duration_since(self.t0);
            if elapsed >= reported + Duration::from_secs(60) {
                reported = elapsed;
                progress(elapsed);
            }
        }
        let stats = self.core.stats(self.end.max(self.t0));
        let bots_served = self
            .bots
            .iter()
            .filter(|b| b.evaluations > 0 && !b.failed)
            .count();
        let mut routes: Vec<Breakdown> = self.routes.into_iter().map(Acc::finish).collect();
        let mut classes: Vec<Breakdown> = self.classes.into_iter().map(Acc::finish).collect();
        for bot in &self.bots {
            for (&(is_class, i), &failed) in &bot.used {
                let b = if is_class {
                    &mut classes[i]
                } else {
                    &mut routes[i]
                };
                b.bots += 1;
                b.bots_served += usize::from(!failed);
            }
        }
        // The core's queue waits by class count every dispatch, retries
        // included; its histograms are the class figures.
        for (b, c) in classes.iter_mut().zip(&stats.queue.classes) {
            b.queue_wait = c.wait.clone();
        }
        classes.retain(|c| c.requests > 0 || c.upstream_calls > 0);
        let span = self
            .s
            .duration
            .max(self.last_call.saturating_duration_since(self.t0));
        let minutes = (span.as_secs_f64() / 60.0).max(1e-9);
        let buckets = self
            .buckets
            .into_values()
            .map(|b| BucketUse {
                scope: b.scope,
                credential: b.credential,
                calls: b.calls,
                per_min_mean: b.calls as f64 / minutes,
                per_min_peak: b.per_minute.iter().copied().max().unwrap_or(0).into(),
                budget_per_min: b.budget_per_min,
            })
            .collect();
        Report {
            bots: self.bots.len(),
            seed: self.s.seed,
            simulated: self.s.duration,
            span,
            requests: self.requests,
            reads: self.requests - self.orders,
            evaluations: self.evaluations,
            bots_served,
            failures: self.failures,
            upstream_429s: self.upstream_429s,
            fault_429s: self.fault_429s,
            bot_429s: self.bot_429s,
            cross_credential: self.cross_credential,
            hot_keys: self.hot_keys.len(),
            min_age_floor_secs: self.s.min_age_floor(),
            spare_per_sec: (self.s.paced_rate()
                - self.orders as f64 / self.s.duration.as_secs_f64().max(1e-9))
            .max(0.0),
            routes,
            classes,
            buckets,
            limits: self.limits,
            stats,
        }
    }

    fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::BotWakes(bot) => {
                if now < self.end {
                    let g = &self.s.groups[self.bots[bot].group];
                    if in_window(g.active, now.saturating_duration_since(self.t0)) {
                        self.evaluate(now, bot);
                    }
                    let g = &self.s.groups[self.bots[bot].group];
                    let next = if g.aligned {
                        // The next tick of the clock, then within the jitter.
                        let every = g.every.as_secs_f64();
                        let since = now.saturating_duration_since(self.t0).as_secs_f64();
                        let tick = ((since / every).floor() + 1.0) * every;
                        self.t0 + secs(tick) + g.every.mul_f64(g.jitter * self.rng.f64())
                    } else {
                        let jitter = (1.0 - g.jitter) + 2.0 * g.jitter * self.rng.f64();
                        now + g.every.mul_f64(jitter)
                    };
                    self.schedule(next, Event::BotWakes(bot));
                }
            }
            Event::UpstreamReceives(id) => {
                if let Some((call, sent, rtt)) = self.wire.remove(&id) {
                    let response = self.upstream(now, &sent);
                    let at = match response {
                        Some(_) => now + rtt / 2,
                        // No answer: the host's own timeout fires.
                        None => now + secs(self.s.config.retry.call_timeout_secs / 2.0),
                    };
                    if response.as_ref().is_some_and(|r| r.status == 429) {
                        self.routes[sent.route].b.upstream_429s += 1;
                        if let Some(c) = self.classes.get_mut(sent.class) {
                            c.b.upstream_429s += 1;
                        }
                    }
                    self.answers.insert(id, (call, response));
                    self.schedule(at, Event::UpstreamAnswers(id));
                }
            }
            Event::UpstreamAnswers(id) => {
                if let Some((call, response)) = self.answers.remove(&id) {
                    let outcome = match response {
                        Some(r) => Outcome::response(r),
                        None => {
                            Outcome::Transport(TransportError::Timeout("simulated timeout".into()))
                        }
                    };
                    // A late answer after the core timed the call out is
                    // ignored by the core, as a real host's would be.
                    let _ = self.core.complete(now, call, outcome);
                }
            }
        }
        self.pump(now);
    }

    fn latency(&mut self) -> Duration {
        match self.s.upstream.latency {
            Latency::Uniform(lo, hi) => lo + (hi.saturating_sub(lo)).mul_f64(self.rng.f64()),
            Latency::LogNormal { median, p99 } => {
                // Box-Muller: a standard normal from two uniforms.
                let (u1, u2) = (1.0 - self.rng.f64(), self.rng.f64());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let sigma = (p99.as_secs_f64() / median.as_secs_f64()).ln() / 2.326_348;
                secs(median.as_secs_f64() * (sigma * z).exp())
            }
        }
    }

    /// Sends what is due upstream and hands finished requests to bots.
    fn pump(&mut self, now: Instant) {
        while let Some(d) = self.core.poll_dispatch(now) {
            let rtt = self.latency();
            if !d.refresh {
                if let Some(route) = self.unsent.remove(&d.payload.request) {
                    let wait = now.saturating_duration_since(d.payload.submitted);
                    let us = (wait.as_micros() as u64).max(1);
                    let _ = self.routes[route].waits.record(us);
                }
            }
            self.count_call(now, &d.payload);
            self.seq += 1;
            let id = self.seq;
            self.wire.insert(id, (d.call, d.payload, rtt));
            self.schedule(now + rtt / 2, Event::UpstreamReceives(id));
        }
        while let Some(f) = self.core.poll_finished() {
            if let Some(w) = self.tickets.remove(&f.ticket) {
                // Answered by another request's call: it never waited for
                // one of its own.
                self.unsent.remove(&w.request);
                match f.result {
                    Ok(answer) => {
                        self.record(&w, End::Answered(answer.source, answer.age));
                        self.answered(now, w.bot, &answer.response)
                    }
                    Err(failure) => self.failed(now, &w, failure.kind()),
                }
            }
        }
    }

    /// One call leaves: its route's count and each of its buckets'.
    fn count_call(&mut self, now: Instant, sent: &Sent) {
        self.routes[sent.route].b.upstream_calls += 1;
        if let Some(c) = self.classes.get_mut(sent.class) {
            c.b.upstream_calls += 1;
        }
        let route = self.p.config.route(&sent.method, &sent.path);
        let minute = (now.saturating_duration_since(self.t0).as_secs() / 60) as usize;
        self.last_call = now;
        for scope in &route.scopes {
            let per_credential = self.p.config.keying(*scope) == Some(Keying::Credential);
            let key = (scope.0, per_credential.then_some(sent.credential));
            let b = match self.buckets.get_mut(&key) {
                Some(b) => b,
                None => {
                    let config = self.p.config.config();
                    let Some((name, sc)) = config.scopes.iter().nth(usize::from(scope.0)) else {
                        continue;
                    };
                    self.buckets.entry(key).or_insert(BucketAcc {
                        scope: name.clone(),
                        credential: key.1.map(|c| format!("key:{c}")),
                        budget_per_min: sc.rate * 60.0 / sc.period_secs.max(1e-9) * sc.headroom,
                        per_minute: Vec::new(),
                        calls: 0,
                    })
                }
            };
            b.calls += u64::from(route.cost);
            if b.per_minute.len() <= minute {
                b.per_minute.resize(minute + 1, 0);
            }
            b.per_minute[minute] += route.cost;
        }
    }

    /// The upstream receives a call at `arrival`: a fault window first,
    /// then its limits, then answers like Coinbase would.
    fn upstream(&mut self, arrival: Instant, sent: &Sent) -> Option<Response> {
        let u = &self.s.upstream;
        let since = arrival.saturating_duration_since(self.t0);
        for f in &u.faults {
            if since < f.start || since >= f.start + f.duration {
                continue;
            }
            match f.kind {
                FaultKind::RateLimited { retry_after } => {
                    self.fault_429s += 1;
                    let mut r = Response::new(429, r#"{"message":"Rate limit exceeded"}"#);
                    if let Some(after) = retry_after {
                        r = r.with_header("retry-after", &after.as_secs().max(1).to_string());
                    }
                    return Some(r);
                }
                FaultKind::Outage => return None,
                FaultKind::ServerErrors { probability } => {
                    if self.rng.f64() < probability {
                        return Some(Response::new(503, "<html>Service Unavailable</html>"));
                    }
                }
            }
        }
        let route = self.p.rules.route(&sent.method, &sent.path);
        let mut counted = Vec::new();
        for (i, l) in u.limits.iter().enumerate() {
            if let Some(scope) = self.p.limits[i] {
                if !route.scopes.contains(&scope) {
                    continue;
                }
            } else if l.scope.is_some() {
                continue;
            }
            let key = (i, if l.per_credential { sent.credential } else { 0 });
            let interval = l.period.div_f64(l.rate);
            let tat = self
                .upstream_tat
                .get(&key)
                .copied()
                .unwrap_or(self.t0)
                .max(arrival);
            if tat + interval > arrival + interval * l.burst {
                self.limits[i].rejected += 1;
                self.upstream_429s += 1;
                return Some(Response::new(
                    429,
                    r#"{"message":"Public rate limit exceeded"}"#,
                ));
            }
            counted.push((key, tat + interval));
        }
        for (key, tat) in counted {
            self.limits[key.0].accepted += 1;
            self.upstream_tat.insert(key, tat);
        }
        if self.rng.f64() < u.timeout_rate {
            return None;
        }
        if self.rng.f64() < u.error_rate {
            return Some(Response::new(503, "<html>Service Unavailable</html>"));
        }
        let body = if sent.path.ends_with("/accounts") {
            format!(
                r#"{{"credential":{},"accounts":[{{"currency":"USD","available":"1000.00"}}]}}"#,
                sent.credential
            )
        } else if !sent.method.is_cacheable() {
            r#"{"success":true,"order_id":"sim"}"#.to_owned()
        } else {
            format!(
                r#"{{"path":"{}","price":"{}"}}"#,
                sent.path,
                self.rng.u32(10_000..70_000)
            )
        };
        Some(Response::new(200, body).with_header("content-type", "application/json"))
    }

    fn evaluate(&mut self, now: Instant, bot: usize) {
        if !self.bots[bot].pending.is_empty() {
            // Still busy with the previous evaluation: skip this tick, as a
            // bot on a timer that is still waiting would.
            return;
        }
        let b = &mut self.bots[bot];
        b.evaluations += 1;
        self.evaluations += 1;
        let (evaluations, g, index) = (b.evaluations, b.group, b.index);
        let group = &self.s.groups[g];
        for (c, call) in group.calls.iter().enumerate() {
            let due = match call.when {
                When::Always => true,
                When::Every(n) => evaluations % n.max(1) == 0,
                When::Chance(p) => self.rng.f64() < p,
            };
            if !due {
                continue;
            }
            let mut path = call.path.clone();
            if path.contains('{') {
                for (name, values) in &group.vars {
                    if let Some(v) = values.get(index % values.len().max(1)) {
                        path = path.replace(&format!("{{{name}}}"), v);
                    }
                }
                for (name, values) in &call.vars {
                    let pattern = format!("{{{name}}}");
                    if path.contains(&pattern) && !values.is_empty() {
                        let v = &values[self.rng.usize(..values.len())];
                        path = path.replace(&pattern, v);
                    }
                }
            }
            self.bots[bot].pending.push_back((c, path));
        }
        self.next_request(now, bot);
    }

    fn route_slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.route_index.get(name) {
            return i;
        }
        let i = self.routes.len();
        self.routes.push(Acc::new(name.to_owned()));
        self.route_index.insert(name.to_owned(), i);
        i
    }

    fn next_request(&mut self, now: Instant, bot: usize) {
        let Some((c, path)) = self.bots[bot].pending.front().cloned() else {
            return;
        };
        let g = self.bots[bot].group;
        let call = &self.s.groups[g].calls[c];
        let method = call.method.clone();
        self.requests += 1;
        let credential = self.bots[bot].credential;
        let route = self
            .p
            .config
            .route(&method, path.split('?').next().unwrap_or(""));
        let (route_name, route_class, private) = (route.name.clone(), route.class, route.private);
        if method.is_cacheable() {
            let key = if private {
                format!("{path}#{credential}")
            } else {
                path.clone()
            };
            self.hot_keys.insert(key);
        } else {
            self.orders += 1;
        }
        let mut request = Request::new(method.clone(), &path, &self.bots[bot].client)
            .with_credential(&format!("key:{credential}"));
        let priority = self.p.priorities[g][c];
        if let Some(class) = priority {
            request = request.with_priority(class);
        }
        if let Some(cc) = &call.cache_control {
            request = request.with_freshness(Freshness::from_headers(&[(
                "cache-control".to_owned(),
                cc.clone(),
            )]));
        }
        let r = self.route_slot(&route_name);
        let class = usize::from(priority.unwrap_or(route_class).0);
        self.routes[r].b.requests += 1;
        if let Some(acc) = self.classes.get_mut(class) {
            acc.b.requests += 1;
        }
        self.bots[bot].used.entry((false, r)).or_insert(false);
        self.bots[bot].used.entry((true, class)).or_insert(false);
        self.seq += 1;
        let id = self.seq;
        let sent = Sent {
            path: request.path.clone(),
            method,
            credential,
            route: r,
            class,
            request: id,
            submitted: now,
        };
        let waiting = Waiting {
            bot,
            request: id,
            route: r,
            class,
        };
        match self.core.submit(now, request, sent) {
            Admission::Answered(answer) => {
                self.record(&waiting, End::Answered(answer.source, answer.age));
                self.answered(now, bot, &answer.response)
            }
            Admission::Waiting { ticket, .. } => {
                self.unsent.insert(id, r);
                self.tickets.insert(ticket, waiting);
            }
            Admission::Refused(failure) => self.failed(now, &waiting, failure.kind()),
        }
    }

    /// Counts how a request ended in its route's and class's breakdowns.
    fn record(&mut self, w: &Waiting, end: End) {
        let route = &mut self.routes[w.route];
        let mut accs: Vec<&mut Acc> = vec![route];
        if let Some(c) = self.classes.get_mut(w.class) {
            accs.push(c);
        }
        for acc in accs {
            let b = &mut acc.b;
            match end {
                End::Answered(source, age) => {
                    match source {
                        Source::Cache => b.hit += 1,
                        Source::Stale => b.stale += 1,
                        Source::Coalesced => b.coalesced += 1,
                        Source::Upstream => b.upstream += 1,
                    }
                    let _ = acc.ages.record((age.as_millis() as u64).max(1));
                }
                End::Shed => b.shed += 1,
                End::Expired => b.expired += 1,
                End::Failed => b.failed += 1,
            }
        }
    }

    fn answered(&mut self, now: Instant, bot: usize, response: &Response) {
        let credential = self.bots[bot].credential;
        if response.status == 429 {
            self.bot_429s += 1;
        }
        let body = String::from_utf8_lossy(&response.body);
        if body.contains("\"credential\":")
            && !body.contains(&format!("\"credential\":{credential},"))
        {
            self.cross_credential += 1;
        }
        self.bots[bot].pending.pop_front();
        self.next_request(now, bot);
    }

    fn failed(&mut self, now: Instant, w: &Waiting, kind: &'static str) {
        let end = match kind {
            "shed" => End::Shed,
            "expired" => End::Expired,
            _ => End::Failed,
        };
        self.record(w, end);
        *self.failures.entry(kind).or_default() += 1;
        if kind == "rate_limited" {
            self.bot_429s += 1;
        }
        let bot = &mut self.bots[w.bot];
        bot.failed = true;
        bot.used.insert((false, w.route), true);
        bot.used.insert((true, w.class), true);
        bot.pending.pop_front();
        self.next_request(now, w.bot);
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
