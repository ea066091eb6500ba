//! What a simulation plays: the bots ([`BotGroup`], [`Call`]), the simulated
//! [`Upstream`] (its limits, latency and faults) and the coordinator's
//! [`Config`], together a [`Scenario`].

use std::collections::BTreeMap;
use std::fmt;

use syncoord_core::{ClientShare, Config, Duration, Method};

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
    /// Which headers it states its limits in.
    pub headers: HeaderStyle,
    /// Whether repeated 429s get the caller banned (418).
    pub ban: Option<Ban>,
}

/// How a simulated upstream states its limits (of the first limit a call
/// counts against) on each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// Nothing (Coinbase): the coordinator learns from 429s alone.
    #[default]
    None,
    /// `x-ratelimit-limit` (per the limit's period), `-remaining`,
    /// `-reset` (seconds until the bucket is full).
    XRateLimit,
    /// `RateLimit-Policy` and `RateLimit` (draft 12).
    RateLimit,
    /// `x-mbx-used-weight-1m`: units used in the current minute.
    Weight,
}

/// Binance's rule: this many 429s within `within` earn a ban of `ban_for`
/// during which every call is answered 418.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ban {
    /// 429s that trigger it.
    pub after: u32,
    /// The window they are counted in.
    pub within: Duration,
    /// How long it lasts.
    pub ban_for: Duration,
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
    /// The share of each bucket the group's bots may spend together (a
    /// `[[clients]] share`, the group being one client); `None`: no cap.
    pub share: Option<ClientShare>,
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

impl Scenario {
    /// Every bot of every group.
    pub fn bots(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }
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
