//! Checking a scenario and resolving it against the coordinator's compiled
//! rules before a run: every problem at once, each with its field.

use syncoord_core::{ClassId, CompiledConfig, ConfigErrors, Duration};

use crate::scenario::{
    Credentials, FaultKind, Latency, Scenario, ScenarioError, ScenarioErrors, When,
};

impl Scenario {
    pub(crate) fn min_age_floor(&self) -> f64 {
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
    pub(crate) fn paced_rate(&self) -> f64 {
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

    pub(crate) fn prepare(&self) -> Result<Prepared, ScenarioErrors> {
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

/// What [`Scenario::prepare`] resolved.
pub(crate) struct Prepared {
    pub(crate) config: CompiledConfig,
    pub(crate) rules: CompiledConfig,
    /// Per group, per call: the priority override.
    pub(crate) priorities: Vec<Vec<Option<ClassId>>>,
    /// Per limit: the scope of [`Upstream::rules`] it counts.
    pub(crate) limits: Vec<Option<syncoord_core::config::ScopeId>>,
}

/// Whether `at` (since the start) falls in the daily window `active`.
pub(crate) fn in_window(active: Option<(Duration, Duration)>, at: Duration) -> bool {
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
