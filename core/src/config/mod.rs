//! Configuration: one upstream API's limits and the rules that map its
//! routes to priority, cost, cache lifetime and limiter scopes.
//!
//! The same serde schema is read by every host (TOML for the native
//! daemon, `wrangler.toml` vars for the Worker). Every field has a default,
//! and [`Config::default`] is Coinbase Advanced Trade as documented (see
//! [`coinbase`]), so an empty file is a working configuration.
//! [`Config::compile`] checks it, reporting every problem at once, each
//! naming the field it is about, and compiles it into the
//! [`CompiledConfig`](crate::CompiledConfig) a coordinator runs on.

pub mod coinbase;
mod learning;
pub use learning::{LearnConfig, ResetUnit, SignalsConfig};

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use web_time::Duration;

/// Index of a priority class; 0 is the highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClassId(pub u8);

/// Index of a limiter scope in [`Config::scopes`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeId(pub u16);

/// One upstream API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Priority class names, highest first.
    pub priorities: Vec<String>,
    /// Rate-limit scopes by name (e.g. `public`, `private`, `fills`).
    pub scopes: BTreeMap<String, ScopeConfig>,
    /// What a route rule leaves unsaid, and what applies when none matches.
    pub defaults: RouteDefaults,
    /// Route rules; the first that matches a request wins.
    pub routes: Vec<RouteRule>,
    /// `[queue]`: how many requests may wait, for how long, and aging.
    pub queue: QueueConfig,
    /// `[cache]`: size limits and stale-serving windows of the response cache.
    pub cache: CacheConfig,
    /// `[limiter]`: how scopes pause and throttle after an upstream 429.
    pub limiter: LimiterConfig,
    /// `[retry]`: attempts and backoff for calls that fail or are refused.
    pub retry: RetryConfig,
    /// `[breaker]`: when a bucket's circuit breaker opens and for how long.
    pub breaker: BreakerConfig,
    /// `[health]`: thresholds for the degraded and unhealthy verdicts.
    pub health: HealthConfig,
    /// `[stats]`: limits on what the stats track.
    pub stats: StatsConfig,
    /// `[refresh]`: how refresh-ahead spends spare budget.
    pub refresh: RefreshConfig,
    /// `[credential]`: which credential upstream authenticates, so that a
    /// private answer is filed under (and a per-credential budget charged
    /// to) the account upstream answered for. See
    /// `syncoord_wire::credential_identity`.
    pub credential: CredentialConfig,
}

/// The `[credential]` table: what upstream authenticates a request by.
///
/// The identity of a request is computed from exactly this, so that what
/// the cache files an answer under is what upstream answered for: Advanced
/// Trade reads the `Authorization: Bearer` JWT, Exchange the `CB-ACCESS-*`
/// headers (identified by `CB-ACCESS-KEY`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialConfig {
    /// The header upstream authenticates requests by: `Authorization` (a
    /// `Bearer` JWT is identified by its `sub` claim, the key it was
    /// signed with; any other value by a fingerprint), or a header naming
    /// the key, e.g. Exchange's `CB-ACCESS-KEY` (identified by its value).
    /// Default `Authorization`.
    pub header: String,
    /// Other headers that carry a credential clients may send this
    /// upstream, which it may or may not read (Advanced Trade's legacy
    /// `CB-ACCESS-KEY`; `Authorization` on Exchange). A request carrying
    /// one of them besides `header`, on a route where the identity counts
    /// (private answers, a per-credential budget, a required credential),
    /// is refused with 400: which of two credentials upstream would
    /// authenticate is not something to guess. A request carrying only
    /// one of them is identified by it. Default: none.
    pub others: Vec<String>,
    /// Labels shown for key names in stats, metrics and logs: key name
    /// (the `header` value, or a JWT's `sub`) to label, e.g.
    /// `"organizations/o/apiKeys/k1" = "trader-1"`. A key without one is
    /// shown as `id:` and a hash of its name, never the name itself.
    pub aliases: BTreeMap<String, String>,
}

impl Default for CredentialConfig {
    fn default() -> Self {
        CredentialConfig {
            header: "Authorization".into(),
            others: Vec::new(),
            aliases: BTreeMap::new(),
        }
    }
}

/// Whose budget a scope counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keying {
    /// One bucket for everyone (a per-IP limit: the coordinator is one IP).
    Global,
    /// One bucket per credential identity (per API key / profile limits).
    Credential,
}

/// A documented upstream limit: `rate` calls per `period_secs`, with up to
/// `burst` at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeConfig {
    /// Calls (cost units) allowed per `period_secs`, as documented upstream,
    /// before `headroom`. Default 10.
    pub rate: f64,
    /// The period `rate` is counted over, in seconds. Default 1.
    pub period_secs: f64,
    /// Cost units a full bucket may spend at once, before `headroom` (at
    /// least 1 remains usable). Default 10.
    pub burst: u32,
    /// `global` (one bucket) or `credential` (one bucket per credential).
    /// Default `global`.
    pub per: Keying,
    /// Fraction of the documented limit to actually use (0 < h <= 1), so
    /// clock drift and upstream's own accounting never tip us over.
    pub headroom: f64,
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig {
            rate: 10.0,
            period_secs: 1.0,
            burst: 10,
            per: Keying::Global,
            headroom: 0.9,
        }
    }
}

/// Route properties that apply when a rule does not set them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteDefaults {
    /// Priority class, one of `priorities` (case-insensitive). Default `market`.
    pub priority: String,
    /// Cost units a call spends in each of its scopes' buckets; must fit in
    /// each scope's usable burst. Default 1.
    pub cost: u32,
    /// How long a cached response stays fresh, in seconds; 0 means it is
    /// not cached. Default 90.
    pub ttl_secs: f64,
    /// Scopes (names from `[scopes]`) a call spends from; it waits until
    /// every one of them admits it. Default `["private"]`.
    pub scopes: Vec<String>,
    /// Keep GET/HEAD responses in the cache.
    pub cacheable: bool,
    /// Key cached responses by credential (safe default: yes).
    pub private: bool,
    /// Fold identical in-flight reads into one call.
    pub coalesce: bool,
    /// Retry non-idempotent calls after 5xx or a broken connection (a 429
    /// or a refused connection is always safe to retry).
    pub retry_unsafe: bool,
    /// Upstream answers only authenticated requests here: one without a
    /// credential is answered 401 by the proxy, without an upstream call
    /// and without a cached answer, even when the route's answers are
    /// shared between credentials (`private = false`). Default false.
    pub credential_required: bool,
    /// Refresh cached answers that bots keep reading before they age, from
    /// spare budget only (see [`RefreshConfig`]). Default false.
    pub refresh_ahead: bool,
    /// Refresh-ahead never refreshes an entry younger than this, in
    /// seconds: how often the data really changes. Default 1.
    pub min_age_secs: f64,
}

impl Default for RouteDefaults {
    fn default() -> Self {
        RouteDefaults {
            priority: "market".into(),
            cost: 1,
            ttl_secs: 90.0,
            // As in the Coinbase presets (and so `Config::default()`): a
            // `[defaults]` table that leaves `scopes` unset keeps it.
            scopes: vec!["private".into()],
            cacheable: true,
            private: true,
            coalesce: true,
            retry_unsafe: false,
            credential_required: false,
            refresh_ahead: false,
            min_age_secs: 1.0,
        }
    }
}

/// Matches requests by method and path pattern and sets how they are
/// handled. Unset fields fall back to [`RouteDefaults`].
///
/// Patterns are `/`-separated segments: a literal, `*` (exactly one
/// segment), or `**` (any number of segments, including none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteRule {
    /// Shown in stats and errors; defaults to the pattern.
    pub name: Option<String>,
    /// Methods this rule applies to; empty means any.
    pub methods: Vec<String>,
    /// Path pattern matched against the request path (query excluded),
    /// e.g. `/api/v3/brokerage/orders/**`.
    pub path: String,
    /// Overrides `defaults.priority`.
    pub priority: Option<String>,
    /// Overrides `defaults.cost`.
    pub cost: Option<u32>,
    /// Overrides `defaults.ttl_secs` (seconds). A rule that sets it *pins*
    /// its TTL: upstream's `Cache-Control: max-age`, `s-maxage`, `no-store`
    /// and `no-cache` no longer change how long its answers are kept
    /// (`private` still keeps them out of a shared entry).
    pub ttl_secs: Option<f64>,
    /// Overrides `defaults.scopes`.
    pub scopes: Option<Vec<String>>,
    /// Overrides `defaults.cacheable`; only GET and HEAD are ever cached.
    pub cacheable: Option<bool>,
    /// Overrides `defaults.private`.
    pub private: Option<bool>,
    /// Overrides `defaults.coalesce`.
    pub coalesce: Option<bool>,
    /// Overrides `defaults.retry_unsafe`.
    pub retry_unsafe: Option<bool>,
    /// Overrides `defaults.credential_required`.
    pub credential_required: Option<bool>,
    /// Overrides `defaults.refresh_ahead`.
    pub refresh_ahead: Option<bool>,
    /// Overrides `defaults.min_age_secs`.
    pub min_age_secs: Option<f64>,
    /// Names of the routes whose cached answers a successful (2xx/3xx)
    /// call of this route changes, e.g. `["orders-read", "accounts"]` on
    /// an order-placing route: they are dropped for the same credential
    /// (for every caller where the named route is shared), and no call
    /// that left before the write may store or answer later reads.
    pub invalidates: Vec<String>,
}

/// The `[queue]` table: requests waiting for the limiter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Requests waiting at most, over all classes; past it the lowest
    /// class is shed first.
    pub max_len: usize,
    /// How long a request may wait to be sent when it carries no deadline.
    /// Stays under the 30 s a Coinbase Exchange signature lives.
    pub default_deadline_secs: f64,
    /// A request that has waited this long moves up one class (repeatedly,
    /// but never into the top class), so low priority is never starved
    /// forever. `None`: strict priority.
    pub aging_secs: Option<f64>,
    /// Cost units in every limiter bucket that only the highest class may
    /// spend, so an order finds a token at once instead of waiting for the
    /// next refill behind market data. Clamped to each bucket's burst.
    pub top_class_reserve: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_len: 10_000,
            default_deadline_secs: 25.0,
            aging_secs: None,
            top_class_reserve: 1,
        }
    }
}

/// The `[cache]` table: the response cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most responses kept; the least recently used is evicted first.
    /// Default 10000.
    pub max_entries: usize,
    /// Most bytes kept (estimated: body, headers and key); a larger response
    /// is never stored. Default 64 MiB.
    pub max_bytes: usize,
    /// How long after expiry an entry may still be served, marked stale,
    /// when upstream fails or cannot be asked (stale-if-error).
    pub stale_if_error_secs: f64,
    /// How long after expiry an entry may be served, marked stale, to a
    /// request that would otherwise queue behind a refresh of the same key
    /// that is already waiting for the limiter (stale-while-revalidate,
    /// RFC 5861). The refresh still happens. 0 turns this off: callers
    /// wait for the fresh answer.
    pub stale_while_revalidate_secs: f64,
    /// Upstream statuses worth keeping.
    pub cacheable_statuses: Vec<u16>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            stale_if_error_secs: 300.0,
            stale_while_revalidate_secs: 0.0,
            cacheable_statuses: vec![200, 203],
        }
    }
}

/// How a scope reacts to an upstream 429.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimiterConfig {
    /// Pause after a 429 when upstream says nothing of its own (neither
    /// `Retry-After` nor an `x-ratelimit-reset`); doubles with each
    /// consecutive 429, up to `max_pause_secs`.
    pub base_pause_secs: f64,
    /// Cap on that doubling pause, in seconds. Default 60.
    pub max_pause_secs: f64,
    /// After a 429 the scope runs at this fraction of its rate...
    pub throttle_factor: f64,
    /// ...and climbs back to the full rate over this long.
    pub recovery_secs: f64,
    /// `[limiter.learn]`: the effective rate under the configured ceiling.
    pub learn: LearnConfig,
    /// `[limiter.signals]`: the headers that carry upstream's limits.
    pub signals: SignalsConfig,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            base_pause_secs: 1.0,
            max_pause_secs: 60.0,
            throttle_factor: 0.5,
            recovery_secs: 60.0,
            learn: LearnConfig::default(),
            signals: SignalsConfig::default(),
        }
    }
}

/// The `[retry]` table: retries of upstream calls that were refused (429)
/// or failed (retryable status, transport error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff ceiling after the first attempt, in seconds, doubling with
    /// each attempt; the delay is a uniform draw below it (full jitter),
    /// unless upstream said how long to wait (`Retry-After`,
    /// `x-ratelimit-reset`). Default 0.25.
    pub base_delay_secs: f64,
    /// Cap on that ceiling, in seconds. Default 8.
    pub max_delay_secs: f64,
    /// No retry starts later than this after the first attempt.
    pub max_total_secs: f64,
    /// Statuses (besides 429) that mean "try again".
    pub retry_statuses: Vec<u16>,
    /// A dispatched call with no outcome after this long is failed as a
    /// timeout, so a lost host thread never strands the call's waiters.
    pub call_timeout_secs: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 4,
            base_delay_secs: 0.25,
            max_delay_secs: 8.0,
            max_total_secs: 20.0,
            retry_statuses: vec![500, 502, 503, 504],
            call_timeout_secs: 30.0,
        }
    }
}

/// The `[breaker]` table: the circuit breaker each limiter bucket has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls (5xx, transport) that open a route's breaker
    /// (one per route; per credential where the route is private).
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through; doubles each
    /// time a probe fails, up to `max_open_secs`.
    pub open_secs: f64,
    /// Cap on the open period as failed probes double it, in seconds.
    /// Default 60.
    pub max_open_secs: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_secs: 5.0,
            max_open_secs: 60.0,
        }
    }
}

/// The `[health]` table: when the health check reports degraded or
/// unhealthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// How far back upstream 429s count against health.
    pub window_secs: f64,
    /// Oldest queued request older than this: degraded.
    pub degraded_wait_secs: f64,
    /// Oldest queued request older than this: unhealthy.
    pub unhealthy_wait_secs: f64,
    /// Queue fuller than this fraction of `queue.max_len`: degraded.
    pub degraded_queue_fill: f64,
    /// This many upstream 429s within the window: unhealthy (one is degraded).
    pub unhealthy_429s: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            window_secs: 300.0,
            degraded_wait_secs: 5.0,
            unhealthy_wait_secs: 20.0,
            degraded_queue_fill: 0.8,
            unhealthy_429s: 10,
        }
    }
}

/// The `[refresh]` table: refresh-ahead, which keeps the answers bots
/// keep reading young with budget that no real request needs.
///
/// A refresh re-sends the last request upstream saw for that key (or the
/// request of a later read, see `resend_max_age_secs`), exactly as it was
/// signed, at the lowest priority: only when no real call waits on any of
/// its buckets, and only if each bucket keeps at least `reserve` of its
/// burst afterwards. Its answer only ever lands in the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshConfig {
    /// Fraction of each bucket's usable burst a refresh never spends
    /// (0..=1), rounded up to whole cost units: what is left for real
    /// requests that arrive next. Default 0.5.
    pub reserve: f64,
    /// A key nobody has read for this long, in seconds, is no longer
    /// refreshed. Default 30.
    pub idle_secs: f64,
    /// A refresh never re-sends a request older than this, in seconds
    /// (signatures expire: Coinbase Exchange's after 30 s, Advanced
    /// Trade's JWTs after 120 s). A read of an entry whose stored request
    /// is older than half of it lends its own request instead. Default 20.
    pub resend_max_age_secs: f64,
    /// A key is refreshed ahead only when the answer it holds served at
    /// least this many reads by the time the refresh is due; a key read
    /// less is fetched on demand instead: the first read of it past its
    /// refresh interval goes upstream (coalesced with the reads that
    /// follow). A refresh costs as much as that call but comes a read gap
    /// earlier, so for a key with `n` reads an interval it costs about
    /// `1/(n+1)` more calls, to spare one read per interval a round trip.
    /// Default 8 (at most ~11% more calls than on demand). 1 refreshes
    /// every key read at all.
    pub min_reads: u32,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            reserve: 0.5,
            idle_secs: 30.0,
            resend_max_age_secs: 20.0,
            min_reads: 8,
        }
    }
}

/// The `[stats]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Clients tracked by name; the rest are counted under `(other)`.
    pub max_clients: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { max_clients: 1000 }
    }
}

impl Default for Config {
    /// Coinbase Advanced Trade.
    fn default() -> Self {
        coinbase::advanced_trade()
    }
}

/// One thing wrong with a configuration, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `routes[2].scopes[0]`.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// Must be positive and finite (durations at most 1e9 s); a zero count
    /// is reported as `0`. Holds the value given.
    #[error("must be a positive, finite number (got {0})")]
    NotPositive(f64),
    /// Must lie in `min..=max`.
    #[error("must be between {min} and {max} (got {value})")]
    OutOfRange {
        /// The value given.
        value: f64,
        /// The smallest value allowed.
        min: f64,
        /// The largest value allowed.
        max: f64,
    },
    /// A list or name that must not be empty is.
    #[error("must not be empty")]
    Empty,
    /// A list has more entries than allowed.
    #[error("too many entries ({count}; at most {max})")]
    TooMany {
        /// Entries given.
        count: usize,
        /// Most entries allowed.
        max: usize,
    },
    /// A name that must be unique in its list is repeated; holds the name.
    #[error("`{0}` appears more than once")]
    Duplicate(String),
    /// A priority class name that is not in `priorities`.
    #[error("unknown priority class `{name}` (known: {known})")]
    UnknownPriority {
        /// The name given.
        name: String,
        /// The known classes, comma-separated.
        known: String,
    },
    /// A scope name that is not in `scopes`.
    #[error("unknown scope `{name}` (known: {known})")]
    UnknownScope {
        /// The name given.
        name: String,
        /// The known scopes, comma-separated.
        known: String,
    },
    /// A route `path` that is not a valid pattern.
    #[error("invalid path pattern: {0}")]
    BadPattern(PatternError),
    /// A route method that is not a token of ASCII letters; holds it.
    #[error("invalid method `{0}`")]
    BadMethod(String),
    /// A value that is well-formed but cannot work, alone or with another
    /// setting (e.g. a cost above a scope's usable burst); holds the reason.
    #[error("{0}")]
    Conflict(String),
}

/// Why a path pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns are absolute, like the paths they match.
    #[error("`{pattern}` must start with `/`")]
    Relative {
        /// The pattern as written.
        pattern: String,
    },
    /// `*` inside a segment (`/a/b*`): globbing within a segment is not
    /// supported, so the rule would never match what its author meant.
    #[error("`{pattern}`: `*` must stand alone in a segment (`*` or `**`), found `{segment}`")]
    PartialWildcard {
        /// The pattern as written.
        pattern: String,
        /// The offending segment.
        segment: String,
    },
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Longest duration a config may name (about 31 years): keeps instant
/// arithmetic far from overflow.
pub(crate) const MAX_SECS: f64 = 1e9;

/// Turns validated seconds into a duration.
pub fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.clamp(0.0, MAX_SECS))
}

impl Config {
    /// Finds a priority class by name (case-insensitive).
    pub fn class_id(&self, name: &str) -> Option<ClassId> {
        self.priorities
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
            .map(|i| ClassId(i as u8))
    }

    /// The name of priority class `class`, or `?` if there is none.
    pub fn class_name(&self, class: ClassId) -> &str {
        self.priorities
            .get(class.0 as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    /// Finds a scope by name (exact match).
    pub fn scope_id(&self, name: &str) -> Option<ScopeId> {
        self.scopes
            .keys()
            .position(|s| s == name)
            .map(|i| ScopeId(i as u16))
    }
}

#[cfg(test)]
mod tests;
