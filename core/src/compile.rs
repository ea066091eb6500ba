//! Compiling a [`Config`]: every check a coordinator relies on, and the
//! form it runs on, made in one pass. Each rule's pattern is parsed once,
//! each priority and scope name resolved once; what comes out can only be
//! valid, so nothing downstream handles "cannot happen".

use std::sync::Arc;

use crate::config::{
    secs, ClassId, Config, ConfigError, ConfigErrors, Keying, Problem, RouteRule, ScopeId, MAX_SECS,
};
use crate::quota::{usable_burst, Quota};
use crate::request::Method;
use crate::route::{PathPattern, Route, RouteId, RouteTable, Rule};

/// A configuration that passed every check, compiled: route rules parsed,
/// names resolved. The only way to build a [`crate::Coordinator`]; cheap to
/// clone (shared), so a host compiles once and hands copies around.
#[derive(Debug, Clone)]
pub struct CompiledConfig(Arc<Compiled>);

#[derive(Debug)]
struct Compiled {
    config: Config,
    routes: RouteTable,
    /// Keying of each scope, in [`ScopeId`] order.
    keying: Vec<Keying>,
    /// The budget of each scope, in [`ScopeId`] order.
    quotas: Vec<Quota>,
}

impl CompiledConfig {
    /// The configuration as written.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// How a request with this method and path (no query) is handled: the
    /// first matching rule, else the defaults.
    pub fn route(&self, method: &Method, path: &str) -> &Route {
        self.0.routes.get(self.0.routes.lookup(method, path))
    }

    /// Whose budget scope `scope` counts against (`None` for an id that
    /// names no scope of this config).
    pub fn keying(&self, scope: ScopeId) -> Option<Keying> {
        self.0.keying.get(usize::from(scope.0)).copied()
    }

    pub(crate) fn routes(&self) -> &RouteTable {
        &self.0.routes
    }

    /// The budget of each scope, in [`ScopeId`] order.
    pub(crate) fn quotas(&self) -> &[Quota] {
        &self.0.quotas
    }
}

impl Config {
    /// Checks everything a [`crate::Coordinator`] relies on and compiles
    /// it; on failure, every problem found, each naming its field.
    pub fn compile(&self) -> Result<CompiledConfig, ConfigErrors> {
        let mut v = Validator::default();
        self.check_names(&mut v);
        let default = self.compile_defaults(&mut v);
        let rules: Option<Vec<Rule>> = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| self.compile_rule(&mut v, i, r, default.as_ref()))
            // Every rule is checked, not only those before the first bad one.
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        self.check_settings(&mut v);
        // The checks above reported every bad number by field; a scope
        // that passed them makes a quota.
        let quotas: Option<Vec<Quota>> = self
            .scopes
            .values()
            .map(|s| Quota::for_scope(s).ok())
            .collect();
        match (default, rules, quotas) {
            (Some(default), Some(rules), Some(quotas)) if v.errors.is_empty() => {
                Ok(CompiledConfig(Arc::new(Compiled {
                    quotas,
                    keying: self.scopes.values().map(|s| s.per).collect(),
                    routes: RouteTable::new(rules, default),
                    config: self.clone(),
                })))
            }
            _ => Err(ConfigErrors(v.errors)),
        }
    }

    /// [`Self::compile`] for its verdict alone.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        self.compile().map(drop)
    }

    /// Priority classes and scopes: what rules refer to by name.
    fn check_names(&self, v: &mut Validator) {
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
    }

    /// Everything after the route rules (queue, cache, limiter, retry,
    /// breaker, health, headers, stats), in the order the schema lists it.
    fn check_settings(&self, v: &mut Validator) {
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
        v.range("limiter.learn.decrease", l.learn.decrease, 0.05, 1.0);
        v.range("limiter.learn.floor", l.learn.floor, 1e-6, 1.0);
        v.positive("limiter.learn.probe_secs", l.learn.probe_secs);
        v.range("limiter.learn.increase", l.learn.increase, 0.0, 1.0);
        v.positive("limiter.learn.expire_secs", l.learn.expire_secs);
        v.positive(
            "limiter.signals.weight_window_secs",
            l.signals.weight_window_secs,
        );
        if let Some(w) = l.signals.limit_window_secs {
            v.positive("limiter.signals.limit_window_secs", w);
        }
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
        self.check_credential(v);
        let f = &self.refresh;
        v.range("refresh.reserve", f.reserve, 0.0, 1.0);
        v.positive("refresh.idle_secs", f.idle_secs);
        v.positive("refresh.resend_max_age_secs", f.resend_max_age_secs);
        if f.min_reads == 0 {
            v.push("refresh.min_reads", Problem::NotPositive(0.0));
        }
        if self.stats.max_clients == 0 {
            v.push("stats.max_clients", Problem::NotPositive(0.0));
        }
    }

    /// The `[credential]` table: header names that are tokens, named once,
    /// and labels that are short, printable and unique (a label stands
    /// for one key in stats; two keys under one label would read as one).
    fn check_credential(&self, v: &mut Validator) {
        let c = &self.credential;
        let is_name = |h: &str| {
            !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if !is_name(&c.header) {
            v.push(
                "credential.header",
                Problem::Conflict(format!(
                    "`{}` is not a header name (1 to 64 token characters)",
                    c.header.escape_debug()
                )),
            );
        }
        for (i, h) in c.others.iter().enumerate() {
            let field = format!("credential.others[{i}]");
            if !is_name(h) {
                v.push(
                    field,
                    Problem::Conflict(format!(
                        "`{}` is not a header name (1 to 64 token characters)",
                        h.escape_debug()
                    )),
                );
            } else if h.eq_ignore_ascii_case(&c.header)
                || c.others[..i].iter().any(|o| o.eq_ignore_ascii_case(h))
            {
                v.push(field, Problem::Duplicate(h.clone()));
            }
        }
        let mut labels: Vec<&str> = Vec::with_capacity(c.aliases.len());
        for (key, label) in &c.aliases {
            let field = format!("credential.aliases.{key}");
            let ok = !label.is_empty()
                && label.len() <= 64
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if key.is_empty() {
                v.push(field, Problem::Empty);
            } else if !ok {
                v.push(
                    field,
                    Problem::Conflict(format!(
                        "label `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                        label.escape_debug()
                    )),
                );
            } else if labels.contains(&label.as_str()) {
                v.push(field, Problem::Duplicate(label.clone()));
            }
            labels.push(label);
        }
    }

    /// The route that applies when no rule matches.
    fn compile_defaults(&self, v: &mut Validator) -> Option<Route> {
        let d = &self.defaults;
        let class = self.check_priority(v, "defaults.priority", &d.priority);
        if d.cost == 0 {
            v.push("defaults.cost", Problem::NotPositive(0.0));
        }
        v.non_negative("defaults.ttl_secs", d.ttl_secs);
        v.non_negative("defaults.min_age_secs", d.min_age_secs);
        let scopes = self.check_scopes(v, "defaults.scopes", &d.scopes);
        self.check_cost_fits(v, "defaults.cost", d.cost, &d.scopes);
        Some(Route {
            name: "default".into(),
            class: class?,
            cost: d.cost,
            ttl: secs(d.ttl_secs),
            scopes: scopes?,
            cacheable: d.cacheable,
            private: d.private,
            coalesce: d.coalesce,
            retry_unsafe: d.retry_unsafe,
            credential_required: d.credential_required,
            ttl_pinned: false,
            refresh_ahead: d.refresh_ahead,
            min_age: secs(d.min_age_secs),
            invalidates: Vec::new(),
        })
    }

    /// Rule `i`, with what it leaves unsaid taken from the defaults
    /// (`default`: the defaults' own route, if they compiled). Every check
    /// runs whatever fails, so one pass reports every problem.
    fn compile_rule(
        &self,
        v: &mut Validator,
        i: usize,
        r: &RouteRule,
        default: Option<&Route>,
    ) -> Option<Rule> {
        let d = &self.defaults;
        let f = |k: &str| format!("routes[{i}].{k}");
        let pattern = PathPattern::parse(&r.path)
            .map_err(|e| v.push(f("path"), Problem::BadPattern(e)))
            .ok();
        let mut methods = Vec::with_capacity(r.methods.len());
        for (j, m) in r.methods.iter().enumerate() {
            if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) {
                methods.push(Method::new(m));
            } else {
                v.push(
                    format!("routes[{i}].methods[{j}]"),
                    Problem::BadMethod(m.clone()),
                );
            }
        }
        let class = match &r.priority {
            Some(p) => self.check_priority(v, &f("priority"), p),
            None => default.map(|d| d.class),
        };
        if r.cost == Some(0) {
            v.push(f("cost"), Problem::NotPositive(0.0));
        }
        if let Some(t) = r.ttl_secs {
            v.non_negative(f("ttl_secs"), t);
        }
        if let Some(t) = r.min_age_secs {
            v.non_negative(f("min_age_secs"), t);
        }
        let scopes = match &r.scopes {
            Some(s) => self.check_scopes(v, &f("scopes"), s),
            None => default.map(|d| d.scopes.clone()),
        };
        let scope_names = r.scopes.as_ref().unwrap_or(&d.scopes);
        let cost = r.cost.unwrap_or(d.cost);
        self.check_cost_fits(v, &f("cost"), cost, scope_names);
        let methods_cacheable = methods.iter().all(Method::is_cacheable);
        if r.cacheable == Some(true) && !r.methods.is_empty() {
            if let Some(m) = r.methods.iter().find(|m| !Method::new(m).is_cacheable()) {
                v.push(
                    f("cacheable"),
                    Problem::Conflict(format!(
                        "only GET and HEAD responses can be cached, and this rule matches {m}"
                    )),
                );
            }
        }
        let route = Route {
            name: r.name.clone().unwrap_or_else(|| r.path.clone()),
            class: class?,
            cost,
            ttl: secs(r.ttl_secs.unwrap_or(d.ttl_secs)),
            scopes: scopes?,
            cacheable: r.cacheable.unwrap_or(d.cacheable) && methods_cacheable,
            private: r.private.unwrap_or(d.private),
            coalesce: r.coalesce.unwrap_or(d.coalesce),
            retry_unsafe: r.retry_unsafe.unwrap_or(d.retry_unsafe),
            credential_required: r.credential_required.unwrap_or(d.credential_required),
            ttl_pinned: r.ttl_secs.is_some(),
            refresh_ahead: r.refresh_ahead.unwrap_or(d.refresh_ahead),
            min_age: secs(r.min_age_secs.unwrap_or(d.min_age_secs)),
            invalidates: self.check_invalidates(v, i, r),
        };
        (methods.len() == r.methods.len()).then_some(Rule {
            methods,
            pattern: pattern?,
            route,
        })
    }

    /// The rules rule `i`'s `invalidates` names (every rule of that name:
    /// names need not be unique); a name no rule has is an error.
    fn check_invalidates(&self, v: &mut Validator, i: usize, r: &RouteRule) -> Vec<RouteId> {
        let mut ids = Vec::new();
        for (j, name) in r.invalidates.iter().enumerate() {
            let before = ids.len();
            ids.extend(
                self.routes
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.name.as_deref().unwrap_or(&o.path) == name)
                    .map(|(k, _)| RouteId::Rule(k)),
            );
            if ids.len() == before {
                v.push(
                    format!("routes[{i}].invalidates[{j}]"),
                    Problem::Conflict(format!("no route is named `{name}`")),
                );
            }
        }
        ids
    }

    fn check_priority(&self, v: &mut Validator, field: &str, name: &str) -> Option<ClassId> {
        let class = self.class_id(name);
        if class.is_none() {
            v.push(
                field,
                Problem::UnknownPriority {
                    name: name.to_owned(),
                    known: self.priorities.join(", "),
                },
            );
        }
        class
    }

    /// The ids of `names`, if every one is a known scope named once.
    fn check_scopes(
        &self,
        v: &mut Validator,
        field: &str,
        names: &[String],
    ) -> Option<Vec<ScopeId>> {
        let mut ids = Vec::with_capacity(names.len());
        let mut ok = true;
        for (j, s) in names.iter().enumerate() {
            match self.scope_id(s) {
                Some(id) => ids.push(id),
                None => {
                    ok = false;
                    v.push(
                        format!("{field}[{j}]"),
                        Problem::UnknownScope {
                            name: s.clone(),
                            known: self.scopes.keys().cloned().collect::<Vec<_>>().join(", "),
                        },
                    );
                }
            }
            if names[..j].contains(s) {
                ok = false;
                v.push(format!("{field}[{j}]"), Problem::Duplicate(s.clone()));
            }
        }
        ok.then_some(ids)
    }

    /// A call that costs more than a scope's burst could never be sent.
    fn check_cost_fits(&self, v: &mut Validator, field: &str, cost: u32, scopes: &[String]) {
        for s in scopes {
            if let Some(sc) = self.scopes.get(s) {
                let usable = usable_burst(sc.burst, sc.headroom).get();
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
