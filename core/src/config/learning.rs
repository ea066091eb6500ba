//! The `[limiter.learn]` and `[limiter.signals]` tables: how a bucket's
//! effective rate moves under its configured ceiling, and which upstream
//! headers say what about upstream's real limits.

use serde::{Deserialize, Serialize};

/// `[limiter.learn]`: the configured rate of each scope is a ceiling; the
/// rate a bucket actually runs at (its effective rate) moves below it with
/// evidence. Headers that state a limit set it; without them, a 429 cuts
/// it multiplicatively and a busy, quiet bucket probes back up (AIMD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnConfig {
    /// Whether buckets learn at all; `false` keeps today's behaviour (the
    /// configured rate, paused and throttled after each 429). Default true.
    pub enabled: bool,
    /// A 429 without a stated limit multiplies the effective rate (or the
    /// rate the bucket was really sending at, if lower) by this. Default 0.7.
    pub decrease: f64,
    /// The effective rate never goes below this fraction of the ceiling
    /// (a floor that a storm of 429s cannot dig under). Default 0.001.
    pub floor: f64,
    /// How often a bucket that was busy (more than half its burst spent)
    /// and saw no 429 steps its rate up. Default 60 s.
    pub probe_secs: f64,
    /// Below 90% of the last rate that earned a 429 the step is x1.1; from
    /// there on it adds this fraction of that rate per probe, so the next
    /// 429 is an hour or more away. Default 0.001.
    pub increase: f64,
    /// Let a limit upstream states raise the effective rate above the
    /// configured ceiling. Default false: the configuration stays the ceiling.
    pub trust_upstream_limits: bool,
    /// Learned rates with no new evidence (a cut, a stated limit, a busy
    /// probe period) for this long go back to the ceiling. Default 3600 s.
    pub expire_secs: f64,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            enabled: true,
            decrease: 0.7,
            floor: 0.001,
            probe_secs: 60.0,
            increase: 0.001,
            trust_upstream_limits: false,
            expire_secs: 3600.0,
        }
    }
}

/// How an `x-ratelimit-reset`-style header counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ResetUnit {
    /// Seconds from now, or a Unix time when the number is that large.
    #[default]
    Auto,
    /// Always seconds from now.
    Seconds,
    /// Always a Unix time (seconds).
    Epoch,
}

/// `[limiter.signals]`: which response headers carry upstream's limits.
/// The defaults read every common spelling; name the headers of an API
/// that uses others, or empty a list to ignore a header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalsConfig {
    /// Read the IETF `RateLimit-Policy` and `RateLimit` fields (draft 12,
    /// Structured Fields). Default true.
    pub ratelimit_fields: bool,
    /// Headers that state the limit (quota per window). The first present
    /// wins.
    pub limit: Vec<String>,
    /// The window, in seconds, the `limit` header counts over (those
    /// headers do not say). Without it a `limit` header states no rate,
    /// but `remaining` and `reset` still correct the bucket's level.
    pub limit_window_secs: Option<f64>,
    /// Headers that say how much of the window is left.
    pub remaining: Vec<String>,
    /// Headers that say when the window resets.
    pub reset: Vec<String>,
    /// How the `reset` header counts.
    pub reset_unit: ResetUnit,
    /// A weight-style header: units used in the current window
    /// (`X-MBX-USED-WEIGHT-1M`). Compared with the scope's configured
    /// budget over `weight_window_secs`.
    pub weight: Option<String>,
    /// The window the `weight` header counts over. Default 60 s.
    pub weight_window_secs: f64,
    /// Signals out: answers to bots carry `RateLimit-Policy` and
    /// `RateLimit` (draft 12) describing the budget of each bucket their
    /// call draws on, as syncoord holds it. Default true; turn it off for
    /// an API whose client libraries misread these fields (none of the
    /// presets' known clients read them).
    pub send_ratelimit_fields: bool,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        let names = |base: &str| {
            ["x-ratelimit-", "ratelimit-", "x-rate-limit-"]
                .iter()
                .map(|p| format!("{p}{base}"))
                .collect()
        };
        SignalsConfig {
            ratelimit_fields: true,
            limit: names("limit"),
            limit_window_secs: None,
            remaining: names("remaining"),
            reset: names("reset"),
            reset_unit: ResetUnit::Auto,
            weight: None,
            weight_window_secs: 60.0,
            send_ratelimit_fields: true,
        }
    }
}

impl SignalsConfig {
    /// Binance-style weights: `X-MBX-USED-WEIGHT-1M` counts units used in
    /// the current minute.
    pub fn binance() -> Self {
        SignalsConfig {
            weight: Some("x-mbx-used-weight-1m".into()),
            weight_window_secs: 60.0,
            ..SignalsConfig::default()
        }
    }

    /// Only `Retry-After`: an upstream whose other headers mislead.
    pub fn none() -> Self {
        SignalsConfig {
            ratelimit_fields: false,
            limit: Vec::new(),
            limit_window_secs: None,
            remaining: Vec::new(),
            reset: Vec::new(),
            reset_unit: ResetUnit::Auto,
            weight: None,
            weight_window_secs: 60.0,
            send_ratelimit_fields: true,
        }
    }
}
