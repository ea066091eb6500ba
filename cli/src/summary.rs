//! The few figures of a simulation run that a comparison, a sweep and its
//! chart show side by side.

use syncoord_sim::{BucketUse, Report};

/// The figures a comparison or a sweep shows for one run.
pub(crate) struct Summary {
    pub(crate) hit_rate: f64,
    pub(crate) stale_share: f64,
    pub(crate) age_p50: f64,
    pub(crate) age_p99: f64,
    pub(crate) calls_per_min: f64,
    /// The budget per minute of the bucket closest to its budget.
    pub(crate) budget_per_min: f64,
    pub(crate) upstream_429s: u64,
    /// The highest class used, and its queue wait p99 and max in ms.
    pub(crate) top_class: String,
    pub(crate) top_wait_p99: f64,
    pub(crate) top_wait_max: f64,
    pub(crate) shed: u64,
    pub(crate) expired: u64,
    pub(crate) failed: u64,
    pub(crate) bots_served: usize,
    pub(crate) bots: usize,
}

impl Summary {
    pub(crate) fn of(r: &Report) -> Self {
        let s = &r.stats;
        let minutes = (r.span.as_secs_f64() / 60.0).max(1e-9);
        let top = r
            .classes
            .iter()
            .find(|c| c.queue_wait.count > 0 || c.requests > 0);
        let busiest = busiest_bucket(r);
        Summary {
            hit_rate: s.cache_hit_rate,
            stale_share: s.requests.stale as f64 / (r.reads as f64).max(1.0),
            age_p50: s.served_age.all.p50_secs,
            age_p99: s.served_age.all.p99_secs,
            calls_per_min: s.upstream.calls as f64 / minutes,
            budget_per_min: busiest.map_or(0.0, |b| b.budget_per_min),
            upstream_429s: r.upstream_429s,
            top_class: top.map_or_else(String::new, |c| c.name.clone()),
            top_wait_p99: top.map_or(0.0, |c| c.queue_wait.p99_ms),
            top_wait_max: top.map_or(0.0, |c| c.queue_wait.max_ms),
            shed: s.requests.shed,
            expired: s.requests.expired,
            failed: s.requests.failed,
            bots_served: r.bots_served,
            bots: r.bots,
        }
    }
}

/// The bucket that used the largest share of its budget.
pub(crate) fn busiest_bucket(r: &Report) -> Option<&BucketUse> {
    r.buckets.iter().max_by(|a, b| {
        (a.per_min_mean / a.budget_per_min.max(1e-9))
            .total_cmp(&(b.per_min_mean / b.budget_per_min.max(1e-9)))
    })
}
