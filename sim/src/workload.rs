//! The workload file `syncoord simulate` reads (TOML): the bots, the calls
//! each of their evaluations makes, and how the simulated upstream behaves.
//! Problems are reported like the configuration file's: every one at once,
//! each with its field and its line and column.
//!
//! ```toml
//! seed = 7                       # optional; --seed wins
//!
//! [upstream]
//! name = "advanced"              # which upstream of the configuration (default: the first)
//! latency = { median_ms = 80, p99_ms = 600 }   # or { min_ms = 40, max_ms = 400 }
//! # [[upstream.limits]] default to the preset's documented limits
//!
//! [[upstream.faults]]
//! kind = "429-storm"             # or "5xx" (with probability), "outage"
//! start_secs = 7200
//! duration_secs = 300
//!
//! [[groups]]
//! name = "trend"
//! count = 25
//! every_secs = 30
//! jitter = 0.2                   # 80% to 120% of every_secs
//! credentials = "shared"         # "one-each", or a number of keys
//! vars = { product = ["BTC-USD", "ETH-USD"] }   # bot i takes value i % len
//! active_hours = [13.5, 20]     # market hours of each simulated day (default: always)
//!
//! [[groups.calls]]
//! path = "/api/v3/brokerage/products/{product}/ticker"
//!
//! [[groups.calls]]
//! method = "POST"
//! path = "/api/v3/brokerage/orders"
//! chance = 0.01                  # or every = 4 (every fourth evaluation)
//! ```
//!
//! [`Workload::scenario`] resolves it against a [`ProxyConfig`] into the
//! core's [`Scenario`]: the named upstream's compiled rules, exactly as
//! `serve` runs them.

use std::collections::BTreeMap;

use crate::{BotGroup, Call, Credentials, Fault, FaultKind, Latency, Limit, Scenario, When};
use serde::Deserialize;
use syncoord_core::config::secs;
use syncoord_core::{Duration, Method};

use syncoord_proxy::config::{join, locate_fields, path_string, read_toml, reword};
use syncoord_proxy::{ConfigFileError, ConfigFileErrors, Preset, ProxyConfig, UpstreamConfig};

/// The seed a run uses when neither the workload nor the caller names one.
pub const DEFAULT_SEED: u64 = 2026;

/// A workload file, read and checked for its own shape (the names it uses
/// are checked against a configuration by [`Workload::scenario`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The upstream of the configuration the bots call; `None`: the first.
    pub upstream: Option<String>,
    /// The file's seed.
    pub seed: Option<u64>,
    /// The bots.
    pub groups: Vec<BotGroup>,
    /// The simulated upstream's limits; `None`: the preset's documented
    /// ones.
    pub limits: Option<Vec<Limit>>,
    /// Latency, background failure rates and fault windows (its limits are
    /// set by [`Workload::scenario`]).
    pub behaviour: crate::Upstream,
    /// The file's text, to locate problems found later.
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    seed: Option<u64>,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Option<String>,
    #[serde(default)]
    latency: RawLatency,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    timeout_rate: f64,
    limits: Option<Vec<RawLimit>>,
    #[serde(default)]
    faults: Vec<RawFault>,
    /// Which headers state its limits: `none`, `x-ratelimit`,
    /// `ratelimit` (draft 12) or `weight` (`x-mbx-used-weight-1m`).
    #[serde(default)]
    headers: RawHeaders,
    /// 418 for `for_secs` after `after` 429s within `within_secs`.
    ban: Option<RawBan>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawHeaders {
    #[default]
    None,
    XRatelimit,
    Ratelimit,
    Weight,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBan {
    after: u32,
    within_secs: f64,
    for_secs: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    min_ms: Option<f64>,
    max_ms: Option<f64>,
    median_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    name: Option<String>,
    rate: f64,
    #[serde(default = "one")]
    period_secs: f64,
    burst: u32,
    #[serde(default)]
    per: PerKind,
    scope: Option<String>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PerKind {
    #[default]
    Global,
    Credential,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: RawFaultKind,
    start_secs: f64,
    duration_secs: f64,
    probability: Option<f64>,
    retry_after_secs: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum RawFaultKind {
    #[serde(rename = "429-storm")]
    Storm,
    #[serde(rename = "5xx")]
    ServerErrors,
    #[serde(rename = "outage")]
    Outage,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Option<String>,
    count: usize,
    every_secs: f64,
    #[serde(default)]
    jitter: f64,
    #[serde(default)]
    aligned: bool,
    /// `[from, until]` in hours of each simulated day.
    active_hours: Option<Vec<f64>>,
    #[serde(default)]
    credentials: RawCredentials,
    #[serde(default)]
    vars: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    calls: Vec<RawCall>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCredentials {
    Keys(u64),
    Named(String),
}

impl Default for RawCredentials {
    fn default() -> Self {
        RawCredentials::Named("shared".into())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    #[serde(default = "get")]
    method: String,
    path: String,
    every: Option<u32>,
    chance: Option<f64>,
    priority: Option<String>,
    cache_control: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, Vec<String>>,
}

fn get() -> String {
    "GET".into()
}

impl Workload {
    /// Reads a workload file; every problem found is reported with its
    /// field and position.
    pub fn from_toml_str(text: &str) -> Result<Workload, ConfigFileErrors> {
        let table = read_toml(text)?;
        let raw: RawWorkload = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                locate_fields(
                    text,
                    vec![(path_string(e.path()), reword(e.inner().message()))],
                )
            })?;
        let mut issues = Vec::new();
        let workload = Self::from_raw(raw, text, &mut issues);
        if issues.is_empty() {
            Ok(workload)
        } else {
            Err(locate_fields(text, issues))
        }
    }

    /// The reference workload (`--workload reference`): 25 bots of
    /// [`crate::reference_group`] against [`crate::reference_upstream`]'s
    /// 8 calls a minute. Run it with [`reference_config`].
    pub fn reference() -> Workload {
        let upstream = crate::reference_upstream();
        Workload {
            upstream: None,
            seed: None,
            groups: vec![crate::reference_group(25)],
            limits: Some(upstream.limits.clone()),
            behaviour: upstream,
            source: String::new(),
        }
    }

    fn from_raw(raw: RawWorkload, text: &str, issues: &mut Vec<(String, String)>) -> Workload {
        let mut issue = |field: String, message: String| issues.push((field, message));
        let u = raw.upstream;
        let l = &u.latency;
        let ms = |v: f64| secs(v / 1000.0);
        let latency = match (l.min_ms, l.max_ms, l.median_ms, l.p99_ms) {
            (None, None, None, None) => {
                Latency::Uniform(Duration::from_millis(40), Duration::from_millis(400))
            }
            (Some(lo), Some(hi), None, None) => Latency::Uniform(ms(lo), ms(hi)),
            (None, None, Some(median), Some(p99)) => Latency::LogNormal {
                median: ms(median),
                p99: ms(p99),
            },
            _ => {
                issue(
                    "upstream.latency".into(),
                    "give either min_ms and max_ms (uniform) or median_ms and p99_ms (log-normal)"
                        .into(),
                );
                Latency::Uniform(Duration::ZERO, Duration::ZERO)
            }
        };
        for (name, v) in [
            ("min_ms", l.min_ms),
            ("max_ms", l.max_ms),
            ("median_ms", l.median_ms),
            ("p99_ms", l.p99_ms),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && (0.0..=3_600_000.0).contains(&v))) {
                issue(
                    format!("upstream.latency.{name}"),
                    "must be from 0 to 3600000 ms".into(),
                );
            }
        }
        let limits = u.limits.map(|limits| {
            limits
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    if !(l.period_secs.is_finite() && l.period_secs > 0.0) {
                        issue(
                            format!("upstream.limits[{i}].period_secs"),
                            format!("must be more than 0 (got {})", l.period_secs),
                        );
                    }
                    Limit {
                        name: l
                            .name
                            .or_else(|| l.scope.clone())
                            .unwrap_or_else(|| format!("limit-{i}")),
                        rate: l.rate,
                        period: secs(l.period_secs),
                        burst: l.burst,
                        per_credential: matches!(l.per, PerKind::Credential),
                        scope: l.scope,
                    }
                })
                .collect()
        });
        let ban = u.ban.as_ref().map(|b| {
            if b.after == 0 {
                issue("upstream.ban.after".into(), "must be at least 1".into());
            }
            for (name, v) in [("within_secs", b.within_secs), ("for_secs", b.for_secs)] {
                if !(v.is_finite() && v > 0.0) {
                    issue(
                        format!("upstream.ban.{name}"),
                        format!("must be more than 0 (got {v})"),
                    );
                }
            }
            crate::Ban {
                after: b.after.max(1),
                within: secs(b.within_secs.max(0.0)),
                ban_for: secs(b.for_secs.max(0.0)),
            }
        });
        let faults = u
            .faults
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let at = |name: &str| format!("upstream.faults[{i}].{name}");
                for (name, v) in [
                    ("start_secs", f.start_secs),
                    ("duration_secs", f.duration_secs),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        issue(at(name), format!("must be 0 or more (got {v})"));
                    }
                }
                let kind = match f.kind {
                    RawFaultKind::Storm => FaultKind::RateLimited {
                        retry_after: f.retry_after_secs.map(secs),
                    },
                    RawFaultKind::ServerErrors => FaultKind::ServerErrors {
                        probability: f.probability.unwrap_or(1.0),
                    },
                    RawFaultKind::Outage => FaultKind::Outage,
                };
                if f.probability.is_some() && !matches!(f.kind, RawFaultKind::ServerErrors) {
                    issue(
                        at("probability"),
                        "only a \"5xx\" fault has a probability".into(),
                    );
                }
                if f.retry_after_secs.is_some() && !matches!(f.kind, RawFaultKind::Storm) {
                    issue(
                        at("retry_after_secs"),
                        "only a \"429-storm\" fault has a retry_after_secs".into(),
                    );
                }
                Fault {
                    kind,
                    start: secs(f.start_secs),
                    duration: secs(f.duration_secs),
                }
            })
            .collect();
        if raw.groups.is_empty() {
            issue("groups".into(), "no bots: add a [[groups]] table".into());
        }
        let groups = raw
            .groups
            .into_iter()
            .enumerate()
            .map(|(g, r)| {
                let at = |name: &str| format!("groups[{g}].{name}");
                if !(r.every_secs.is_finite() && r.every_secs > 0.0) {
                    issue(
                        at("every_secs"),
                        format!("must be more than 0 (got {})", r.every_secs),
                    );
                }
                let active = match r.active_hours.as_deref() {
                    None => None,
                    Some([from, until])
                        if [from, until]
                            .iter()
                            .all(|h| h.is_finite() && (0.0..=24.0).contains(*h)) =>
                    {
                        Some((secs(from * 3600.0), secs(until * 3600.0)))
                    }
                    Some(_) => {
                        issue(
                            at("active_hours"),
                            "expected [from, until] in hours of the day (0 to 24), e.g. [13.5, 20]"
                                .into(),
                        );
                        None
                    }
                };
                let credentials = match r.credentials {
                    RawCredentials::Keys(0) => {
                        issue(at("credentials"), "must be at least 1 key".into());
                        Credentials::Shared
                    }
                    RawCredentials::Keys(n) => Credentials::Keys(n as usize),
                    RawCredentials::Named(n) if n == "shared" => Credentials::Shared,
                    RawCredentials::Named(n) if n == "one-each" => Credentials::OneEach,
                    RawCredentials::Named(n) => {
                        issue(
                            at("credentials"),
                            format!("`{n}`: expected \"shared\", \"one-each\" or a number of keys"),
                        );
                        Credentials::Shared
                    }
                };
                let calls = r
                    .calls
                    .into_iter()
                    .enumerate()
                    .map(|(c, call)| {
                        let at = |name: &str| format!("groups[{g}].calls[{c}].{name}");
                        let when = match (call.every, call.chance) {
                            (None, None) => When::Always,
                            (Some(n), None) => When::Every(n),
                            (None, Some(p)) => When::Chance(p),
                            (Some(_), Some(_)) => {
                                issue(at("chance"), "give `every` or `chance`, not both".into());
                                When::Always
                            }
                        };
                        let method = call.method.to_ascii_uppercase();
                        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                            issue(at("method"), format!("`{}` is not a method", call.method));
                        }
                        Call {
                            method: Method::new(&method),
                            path: call.path,
                            vars: call.vars,
                            when,
                            priority: call.priority,
                            cache_control: call.cache_control,
                        }
                    })
                    .collect();
                BotGroup {
                    name: r.name.unwrap_or_else(|| format!("group-{g}")),
                    count: r.count,
                    every: secs(r.every_secs),
                    jitter: r.jitter,
                    aligned: r.aligned,
                    active,
                    credentials,
                    vars: r.vars,
                    calls,
                    share: None,
                }
            })
            .collect();
        Workload {
            upstream: u.name,
            seed: raw.seed,
            groups,
            limits,
            behaviour: crate::Upstream {
                limits: Vec::new(),
                rules: None,
                latency,
                error_rate: u.error_rate,
                timeout_rate: u.timeout_rate,
                faults,
                headers: match u.headers {
                    RawHeaders::None => crate::HeaderStyle::None,
                    RawHeaders::XRatelimit => crate::HeaderStyle::XRateLimit,
                    RawHeaders::Ratelimit => crate::HeaderStyle::RateLimit,
                    RawHeaders::Weight => crate::HeaderStyle::Weight,
                },
                ban,
            },
            source: text.to_owned(),
        }
    }

    /// The run of this workload against `config`'s upstream for
    /// `duration`: that upstream's coordination rules exactly as `serve`
    /// runs them, and a simulated upstream enforcing the workload's limits
    /// or, when it gives none, the preset's documented ones. Problems in
    /// the workload are located in its file.
    pub fn scenario(
        &self,
        config: &ProxyConfig,
        duration: Duration,
        seed: Option<u64>,
    ) -> Result<Scenario, ConfigFileErrors> {
        let (index, upstream) = self.upstream_of(config)?;
        let mut behaviour = self.behaviour.clone();
        match &self.limits {
            Some(limits) => behaviour.limits = limits.clone(),
            None if upstream.preset != Preset::None => {
                let rules = upstream.preset.config();
                behaviour.limits = crate::documented_limits(&rules);
                behaviour.rules = Some(rules);
            }
            None => {
                return Err(self.located(vec![(
                    "upstream".into(),
                    format!(
                        "upstream `{}` has no preset, so its limits are unknown: describe them in [[upstream.limits]]",
                        upstream.name
                    ),
                )]))
            }
        }
        let scenario = Scenario {
            groups: self.groups.clone(),
            upstream: behaviour,
            duration,
            config: upstream.coordination.clone(),
            seed: seed.or(self.seed).unwrap_or(DEFAULT_SEED),
        };
        scenario.check().map_err(|errors| {
            let mut located = Vec::new();
            let mut config_errors = Vec::new();
            for e in errors.0 {
                match e.field.strip_prefix("config.") {
                    Some(rest) => config_errors.push(ConfigFileError {
                        field: join(&format!("upstreams[{index}].coordination"), rest),
                        line: None,
                        column: None,
                        message: e.message,
                    }),
                    None => located.push((e.field, e.message)),
                }
            }
            let mut all = self.located(located).0;
            all.extend(config_errors);
            ConfigFileErrors(all)
        })?;
        Ok(scenario)
    }

    fn upstream_of<'a>(
        &self,
        config: &'a ProxyConfig,
    ) -> Result<(usize, &'a UpstreamConfig), ConfigFileErrors> {
        match &self.upstream {
            None => config.upstreams.first().map(|u| (0, u)),
            Some(name) => config
                .upstreams
                .iter()
                .enumerate()
                .find(|(_, u)| &u.name == name),
        }
        .ok_or_else(|| {
            let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
            self.located(vec![(
                "upstream.name".into(),
                format!(
                    "no upstream `{}` in the configuration (it has: {})",
                    self.upstream.as_deref().unwrap_or(""),
                    names.join(", ")
                ),
            )])
        })
    }

    fn located(&self, issues: Vec<(String, String)>) -> ConfigFileErrors {
        locate_fields(&self.source, issues)
    }
}

/// The reference workload's configuration as a file would give it: one
/// upstream, `advanced`, on the Advanced Trade preset with
/// [`crate::reference_config`]'s rules.
pub fn reference_config() -> ProxyConfig {
    let mut upstream = UpstreamConfig::preset(
        "advanced",
        "https://api.coinbase.com",
        Preset::CoinbaseAdvanced,
    );
    upstream.coordination = crate::reference_config();
    ProxyConfig {
        upstreams: vec![upstream],
        ..ProxyConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        match Workload::from_toml_str(text) {
            Ok(w) => match w.scenario(&ProxyConfig::default(), Duration::from_secs(60), None) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e.display_with("w.toml").to_string(),
            },
            Err(e) => e.display_with("w.toml").to_string(),
        }
    }

    const GOOD: &str = r#"
[[groups]]
count = 3
every_secs = 10
[[groups.calls]]
path = "/api/v3/brokerage/products/BTC-USD/ticker"
"#;

    #[test]
    fn a_small_workload_runs_against_the_default_config() {
        let w = Workload::from_toml_str(GOOD).unwrap();
        let s = w
            .scenario(&ProxyConfig::default(), Duration::from_secs(600), None)
            .unwrap();
        assert_eq!(s.seed, DEFAULT_SEED);
        // No limits given: the preset's documented ones, per scope.
        let names: Vec<&str> = s.upstream.limits.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["private", "public"]);
        assert_eq!(s.upstream.limits[0].rate, 30.0);
        let w = Workload::from_toml_str(&GOOD.replace(
            "every_secs = 10",
            "every_secs = 10\nactive_hours = [13.5, 20]",
        ))
        .unwrap();
        assert_eq!(
            w.groups[0].active,
            Some((Duration::from_secs(48_600), Duration::from_secs(72_000)))
        );
        let r = crate::run(&s);
        assert_eq!(r.bots, 3);
        assert_eq!(r.upstream_429s, 0);
        assert!(r.requests > 100);
    }

    #[test]
    fn header_styles_and_the_ban_rule_are_read() {
        let text = "[upstream]\nheaders = \"ratelimit\"\nban = { after = 10, within_secs = 60, for_secs = 600 }\n[[groups]]\ncount = 1\nevery_secs = 1\n[[groups.calls]]\npath = \"/p\"\n";
        let w = Workload::from_toml_str(text).unwrap();
        assert_eq!(w.behaviour.headers, crate::HeaderStyle::RateLimit);
        assert_eq!(
            w.behaviour.ban,
            Some(crate::Ban {
                after: 10,
                within: Duration::from_secs(60),
                ban_for: Duration::from_secs(600),
            })
        );
    }

    #[test]
    fn mistakes_are_located_with_their_field() {
        for (text, want) in [
            (
                "[[groups]]\ncount = 3\nevery_secs = \"often\"\n",
                "w.toml:3:1: groups[0].every_secs: expected a number, found string \"often\"",
            ),
            (
                "[[groups]]\ncount = 3\nevery_secs = 1\ncredentials = \"each\"\n[[groups.calls]]\npath = \"/x\"\n",
                "w.toml:4:1: groups[0].credentials: `each`: expected \"shared\", \"one-each\" or a number of keys",
            ),
            (
                "[[groups]]\ncount = 3\nevery_secs = 1\n[[groups.calls]]\npath = \"/p/{product}\"\npriority = \"urgent\"\n",
                "w.toml:5:1: groups[0].calls[0].path: `{product}` is not a variable of the call or its group",
            ),
            (
                "[[groups]]\ncount = 3\nevery_secs = 1\n[[groups.calls]]\npath = \"/p\"\npriority = \"urgent\"\n",
                "w.toml:6:1: groups[0].calls[0].priority: no priority class `urgent`",
            ),
            (
                "[upstream]\nname = \"nope\"\n[[groups]]\ncount = 1\nevery_secs = 1\n[[groups.calls]]\npath = \"/p\"\n",
                "w.toml:2:1: upstream.name: no upstream `nope` in the configuration (it has: advanced, exchange)",
            ),
            (
                "[[groups]]\ncount = 1\nevery_secs = 1\nspeed = 3\n",
                "w.toml:4:1: groups[0].speed: unknown field `speed`, expected one of",
            ),
            (
                "[[groups]]\ncount = 1\nevery_secs = 1\nactive_hours = [25, 3]\n[[groups.calls]]\npath = \"/p\"\n",
                "w.toml:4:1: groups[0].active_hours: expected [from, until] in hours of the day",
            ),
            (
                "[upstream]\nban = { after = 0, within_secs = 60, for_secs = 600 }\n[[groups]]\ncount = 1\nevery_secs = 1\n[[groups.calls]]\npath = \"/p\"\n",
                "w.toml:2:9: upstream.ban.after: must be at least 1",
            ),
            (
                "[upstream]\nheaders = \"loud\"\n",
                "w.toml:2:1: upstream.headers: unknown variant `loud`",
            ),
            ("[[groups]\n", "w.toml:1:"),
        ] {
            let got = errors(text);
            assert!(got.starts_with(want), "got:\n{got}\nwant:\n{want}");
        }
    }

    #[test]
    fn the_example_reference_file_is_the_reference_config() {
        let text = include_str!("../../examples/reference.toml");
        let file = ProxyConfig::from_toml_str(text).unwrap();
        let mut want = crate::reference_config();
        // A file merges over the preset and cannot drop its scopes; no
        // route draws on them.
        want.scopes.extend(Preset::CoinbaseAdvanced.config().scopes);
        assert_eq!(file.upstreams.len(), 1);
        assert_eq!(file.upstreams[0].coordination, want);
    }

    #[test]
    fn reference_config_is_the_sims() {
        let c = reference_config();
        c.validate().unwrap();
        assert_eq!(c.upstreams[0].coordination, crate::reference_config());
    }
}
