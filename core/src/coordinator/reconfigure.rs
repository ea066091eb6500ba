//! A configuration swapped in while the coordinator runs (hot reload):
//! the cache, the limiter's buckets and levels, the queue and the calls in
//! flight carry over; only what they are judged by changes.
//!
//! What the running state is built around cannot change in place: the
//! priority classes (queue lanes), the scope set and keying (the limiter's
//! buckets, what every queued call was admitted under), and the
//! sizes and windows the cache, queue, limiter, breaker and stats were
//! made with. A configuration that changes one of them is refused as a
//! whole and says which: those need a restart. Everything else changes
//! at once: route rules (TTLs, priorities, cacheability, which scopes a
//! rule spends from), defaults, queue length and deadlines, retries,
//! health thresholds, refresh-ahead timing, the credential header, and
//! the scopes' budgets (rate, period, burst, headroom): each bucket keeps
//! its level, the units it owes carried over at the new pace, so a bucket
//! whose rate drops drains at the new rate from the reload on, and in any
//! window dispatches stay within the old budget's allowance before the
//! reload plus the new one's after it.
//!
//! A call already admitted keeps its class, cost and buckets (it never
//! spends more than it was admitted under); the rest of its handling
//! follows its rule by name in the new table (the defaults if the rule is
//! gone).

use super::*;

/// A configuration [`Coordinator::reconfigure`] cannot take while running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("needs a restart: {} changed", .0.join(", "))]
pub struct NeedsRestart(pub Vec<String>);

/// The parts of `old` that `new` may not change live, by field name, in
/// the order of [`Config`]'s fields.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |field: &str, same: bool| {
        if !same {
            changed.push(field.to_owned());
        }
    };
    check("priorities", old.priorities == new.priorities);
    // Budgets change live; the scope set and keying are what buckets,
    // routes and queued calls are built around.
    let same_scopes = old.scopes.len() == new.scopes.len()
        && old
            .scopes
            .iter()
            .zip(&new.scopes)
            .all(|((a, x), (b, y))| a == b && x.per == y.per);
    check("scopes", same_scopes);
    check(
        "queue.aging_secs",
        old.queue.aging_secs == new.queue.aging_secs,
    );
    check(
        "queue.top_class_reserve",
        old.queue.top_class_reserve == new.queue.top_class_reserve,
    );
    check("cache", old.cache == new.cache);
    check("limiter", old.limiter == new.limiter);
    check("breaker", old.breaker == new.breaker);
    check(
        "health.window_secs",
        old.health.window_secs == new.health.window_secs,
    );
    check("stats", old.stats == new.stats);
    check(
        "refresh.idle_secs",
        old.refresh.idle_secs == new.refresh.idle_secs,
    );
    changed
}

impl<P: Clone> Coordinator<P> {
    /// Runs on `compiled` from now on, keeping all state (see the module
    /// documentation), or refuses it, changing nothing, when it changes
    /// what needs a restart ([`needs_restart`]).
    pub fn reconfigure(&mut self, compiled: CompiledConfig) -> Result<(), NeedsRestart> {
        let changed = needs_restart(self.config(), compiled.config());
        if !changed.is_empty() {
            return Err(NeedsRestart(changed));
        }
        let old = std::mem::replace(&mut self.config, compiled);
        // Each bucket's level carries over at its new pace, from the
        // latest instant this coordinator has seen.
        self.limiter
            .reconfigure(self.now, self.config.config(), self.config.quotas());
        let (old_routes, new_routes) = (old.routes(), self.config.routes());
        let remap = |id: RouteId| match id {
            RouteId::Default => RouteId::Default,
            rule => new_routes.by_name(&old_routes.get(rule).name),
        };
        for call in self.calls.values_mut() {
            call.route = remap(call.route);
        }
        for template in self.templates.values_mut() {
            template.route = remap(template.route);
        }
        self.marks.remap(remap);
        self.route_memo = RouteMemo::default();
        let config = self.config.config();
        self.retry = RetryPolicy::new(&config.retry);
        self.refresh_resend = secs(config.refresh.resend_max_age_secs);
        self.default_deadline = secs(config.queue.default_deadline_secs);
        self.call_timeout = secs(config.retry.call_timeout_secs);
        // New TTLs and rules may make refreshes due sooner or never.
        self.refresh_dirty = true;
        Ok(())
    }
}
