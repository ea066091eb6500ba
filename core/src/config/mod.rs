//! Configuration: one upstream API's limits and the rules that map its
//! routes to priority, cost, cache lifetime and limiter scopes.
//!
//! The same serde schema is read by every host (TOML for the native
//! daemon, `wrangler.toml` vars for the Worker). Every field has a default,
//! and [`Config::default`] is Coinbase Advanced Trade as documented (see
//! [`coinbase`]), so an empty file is a working configuration.
//! [`Config::validate`] reports every problem at once, each naming the
//! field it is about.

pub mod coinbase;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use web_time::Duration;

use crate::route::PathPattern;

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
    pub queue: QueueConfig,
    pub cache: CacheConfig,
    pub limiter: LimiterConfig,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    pub health: HealthConfig,
    pub stats: StatsConfig,
    /// Request headers that name the caller's credential (an API key id,
    /// not a secret), checked in order before `Authorization`. See
    /// `syncoord_proxy::credential_identity`.
    pub credential_headers: Vec<String>,
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
    pub rate: f64,
    pub period_secs: f64,
    pub burst: u32,
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
    pub priority: String,
    pub cost: u32,
    pub ttl_secs: f64,
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
    pub path: String,
    pub priority: Option<String>,
    pub cost: Option<u32>,
    pub ttl_secs: Option<f64>,
    pub scopes: Option<Vec<String>>,
    pub cacheable: Option<bool>,
    pub private: Option<bool>,
    pub coalesce: Option<bool>,
    pub retry_unsafe: Option<bool>,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub max_entries: usize,
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
    /// Pause after a 429 without `Retry-After`; doubles with each
    /// consecutive 429, up to `max_pause_secs`.
    pub base_pause_secs: f64,
    pub max_pause_secs: f64,
    /// After a 429 the scope runs at this fraction of its rate...
    pub throttle_factor: f64,
    /// ...and climbs back to the full rate over this long.
    pub recovery_secs: f64,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            base_pause_secs: 1.0,
            max_pause_secs: 60.0,
            throttle_factor: 0.5,
            recovery_secs: 60.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    pub base_delay_secs: f64,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls (5xx, transport) that open a scope's breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through; doubles each
    /// time a probe fails, up to `max_open_secs`.
    pub open_secs: f64,
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
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("must be a positive, finite number (got {0})")]
    NotPositive(f64),
    #[error("must be between {min} and {max} (got {value})")]
    OutOfRange { value: f64, min: f64, max: f64 },
    #[error("must not be empty")]
    Empty,
    #[error("too many entries ({count}; at most {max})")]
    TooMany { count: usize, max: usize },
    #[error("`{0}` appears more than once")]
    Duplicate(String),
    #[error("unknown priority class `{name}` (known: {known})")]
    UnknownPriority { name: String, known: String },
    #[error("unknown scope `{name}` (known: {known})")]
    UnknownScope { name: String, known: String },
    #[error("invalid path pattern: {0}")]
    BadPattern(String),
    #[error("invalid method `{0}`")]
    BadMethod(String),
    #[error("{0}")]
    Conflict(String),
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
const MAX_SECS: f64 = 1e9;

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

    pub fn class_name(&self, class: ClassId) -> &str {
        self.priorities
            .get(class.0 as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    pub fn scope_id(&self, name: &str) -> Option<ScopeId> {
        self.scopes
            .keys()
            .position(|s| s == name)
            .map(|i| ScopeId(i as u16))
    }

    /// Checks everything a [`crate::Coordinator`] relies on and returns all
    /// problems found.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut v = Validator::default();
        self.validate_into(&mut v);
        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(v.errors))
        }
    }

    fn validate_into(&self, v: &mut Validator) {
        if self.priorities.is_empty() {
            v.push("priorities", Problem::Empty);
        }
        if self.priorities.len() > 64 {
            v.push(
                "priorities",
                Problem::TooMany {
                    count: self.priorities.len(),
                    max: 64,
                },
            );
        }
        for (i, p) in self.priorities.iter().enumerate() {
            if p.trim().is_empty() {
                v.push(format!("priorities[{i}]"), Problem::Empty);
            }
            if self.priorities[..i]
                .iter()
                .any(|q| q.eq_ignore_ascii_case(p))
            {
                v.push(format!("priorities[{i}]"), Problem::Duplicate(p.clone()));
            }
        }
        if self.scopes.is_empty() {
            v.push("scopes", Problem::Empty);
        }
        for (name, s) in &self.scopes {
            let f = |k: &str| format!("scopes.{name}.{k}");
            v.positive(f("rate"), s.rate);
            v.positive(f("period_secs"), s.period_secs);
            if s.burst == 0 {
                v.push(f("burst"), Problem::NotPositive(0.0));
            }
            v.range(f("headroom"), s.headroom, f64::MIN_POSITIVE, 1.0);
        }
        self.validate_defaults(v);
        for (i, r) in self.routes.iter().enumerate() {
            self.validate_rule(v, i, r);
        }
        let q = &self.queue;
        if q.max_len == 0 {
            v.push("queue.max_len", Problem::NotPositive(0.0));
        }
        v.positive("queue.default_deadline_secs", q.default_deadline_secs);
        if let Some(a) = q.aging_secs {
            v.positive("queue.aging_secs", a);
        }
        let c = &self.cache;
        if c.max_entries == 0 {
            v.push("cache.max_entries", Problem::NotPositive(0.0));
        }
        if c.max_bytes == 0 {
            v.push("cache.max_bytes", Problem::NotPositive(0.0));
        }
        v.non_negative("cache.stale_if_error_secs", c.stale_if_error_secs);
        v.non_negative(
            "cache.stale_while_revalidate_secs",
            c.stale_while_revalidate_secs,
        );
        if c.stale_while_revalidate_secs > c.stale_if_error_secs {
            v.push(
                "cache.stale_while_revalidate_secs",
                Problem::Conflict(format!(
                    "{} exceeds cache.stale_if_error_secs ({}): entries are dropped before they could be served",
                    c.stale_while_revalidate_secs, c.stale_if_error_secs
                )),
            );
        }
        for (i, s) in c.cacheable_statuses.iter().enumerate() {
            v.status(format!("cache.cacheable_statuses[{i}]"), *s);
            if *s == 429 || *s >= 500 {
                v.push(
                    format!("cache.cacheable_statuses[{i}]"),
                    Problem::Conflict(format!("status {s} is an error to retry, not to cache")),
                );
            }
        }
        let l = &self.limiter;
        v.positive("limiter.base_pause_secs", l.base_pause_secs);
        v.positive("limiter.max_pause_secs", l.max_pause_secs);
        v.range("limiter.throttle_factor", l.throttle_factor, 0.01, 1.0);
        v.non_negative("limiter.recovery_secs", l.recovery_secs);
        let r = &self.retry;
        if r.max_attempts == 0 {
            v.push("retry.max_attempts", Problem::NotPositive(0.0));
        }
        v.positive("retry.base_delay_secs", r.base_delay_secs);
        v.positive("retry.max_delay_secs", r.max_delay_secs);
        v.non_negative("retry.max_total_secs", r.max_total_secs);
        v.positive("retry.call_timeout_secs", r.call_timeout_secs);
        for (i, s) in r.retry_statuses.iter().enumerate() {
            v.status(format!("retry.retry_statuses[{i}]"), *s);
        }
        let b = &self.breaker;
        if b.failure_threshold == 0 {
            v.push("breaker.failure_threshold", Problem::NotPositive(0.0));
        }
        v.positive("breaker.open_secs", b.open_secs);
        v.positive("breaker.max_open_secs", b.max_open_secs);
        let h = &self.health;
        v.positive("health.window_secs", h.window_secs);
        v.positive("health.degraded_wait_secs", h.degraded_wait_secs);
        v.positive("health.unhealthy_wait_secs", h.unhealthy_wait_secs);
        v.range(
            "health.degraded_queue_fill",
            h.degraded_queue_fill,
            0.0,
            1.0,
        );
        for (i, h) in self.credential_headers.iter().enumerate() {
            let ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                v.push(
                    format!("credential_headers[{i}]"),
                    Problem::Conflict(format!("`{h}` is not a valid header name")),
                );
            }
        }
        if self.stats.max_clients == 0 {
            v.push("stats.max_clients", Problem::NotPositive(0.0));
        }
    }

    fn validate_defaults(&self, v: &mut Validator) {
        let d = &self.defaults;
        self.check_priority(v, "defaults.priority", &d.priority);
        if d.cost == 0 {
            v.push("defaults.cost", Problem::NotPositive(0.0));
        }
        v.non_negative("defaults.ttl_secs", d.ttl_secs);
        self.check_scopes(v, "defaults.scopes", &d.scopes);
        self.check_cost_fits(v, "defaults.cost", d.cost, &d.scopes);
    }

    fn validate_rule(&self, v: &mut Validator, i: usize, r: &RouteRule) {
        let f = |k: &str| format!("routes[{i}].{k}");
        if let Err(e) = PathPattern::parse(&r.path) {
            v.push(f("path"), Problem::BadPattern(e));
        }
        for (j, m) in r.methods.iter().enumerate() {
            let ok = !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic());
            if !ok {
                v.push(
                    format!("routes[{i}].methods[{j}]"),
                    Problem::BadMethod(m.clone()),
                );
            }
        }
        if let Some(p) = &r.priority {
            self.check_priority(v, &f("priority"), p);
        }
        if r.cost == Some(0) {
            v.push(f("cost"), Problem::NotPositive(0.0));
        }
        if let Some(t) = r.ttl_secs {
            v.non_negative(f("ttl_secs"), t);
        }
        if let Some(s) = &r.scopes {
            self.check_scopes(v, &f("scopes"), s);
        }
        let scopes = r.scopes.as_ref().unwrap_or(&self.defaults.scopes);
        self.check_cost_fits(v, &f("cost"), r.cost.unwrap_or(self.defaults.cost), scopes);
        if r.cacheable == Some(true) && !r.methods.is_empty() {
            if let Some(m) = r
                .methods
                .iter()
                .find(|m| !crate::request::Method::new(m).is_cacheable())
            {
                v.push(
                    f("cacheable"),
                    Problem::Conflict(format!(
                        "only GET and HEAD responses can be cached, and this rule matches {m}"
                    )),
                );
            }
        }
    }

    fn check_priority(&self, v: &mut Validator, field: &str, name: &str) {
        if self.class_id(name).is_none() {
            v.push(
                field,
                Problem::UnknownPriority {
                    name: name.to_owned(),
                    known: self.priorities.join(", "),
                },
            );
        }
    }

    fn check_scopes(&self, v: &mut Validator, field: &str, names: &[String]) {
        for (j, s) in names.iter().enumerate() {
            if !self.scopes.contains_key(s) {
                v.push(
                    format!("{field}[{j}]"),
                    Problem::UnknownScope {
                        name: s.clone(),
                        known: self.scopes.keys().cloned().collect::<Vec<_>>().join(", "),
                    },
                );
            }
            if names[..j].contains(s) {
                v.push(format!("{field}[{j}]"), Problem::Duplicate(s.clone()));
            }
        }
    }

    /// A call that costs more than a scope's burst could never be sent.
    fn check_cost_fits(&self, v: &mut Validator, field: &str, cost: u32, scopes: &[String]) {
        for s in scopes {
            if let Some(sc) = self.scopes.get(s) {
                let usable = crate::limiter::usable_burst(sc);
                if cost > usable {
                    v.push(
                        field,
                        Problem::Conflict(format!(
                            "cost {cost} exceeds scope `{s}`'s usable burst of {usable} (burst {} at headroom {}), so such a call could never be sent",
                            sc.burst, sc.headroom
                        )),
                    );
                }
            }
        }
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn push(&mut self, field: impl Into<String>, problem: Problem) {
        self.errors.push(ConfigError {
            field: field.into(),
            problem,
        });
    }

    fn positive(&mut self, field: impl Into<String>, value: f64) {
        if !(value.is_finite() && value > 0.0 && value <= MAX_SECS) {
            self.push(field, Problem::NotPositive(value));
        }
    }

    fn non_negative(&mut self, field: impl Into<String>, value: f64) {
        self.range(field, value, 0.0, MAX_SECS);
    }

    fn range(&mut self, field: impl Into<String>, value: f64, min: f64, max: f64) {
        if !(value.is_finite() && value >= min && value <= max) {
            self.push(field, Problem::OutOfRange { value, min, max });
        }
    }

    fn status(&mut self, field: impl Into<String>, status: u16) {
        if !(100..=599).contains(&status) {
            self.push(
                field,
                Problem::OutOfRange {
                    value: status.into(),
                    min: 100.0,
                    max: 599.0,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
