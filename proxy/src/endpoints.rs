//! The coordinator's own endpoints, rendered the same by both hosts from
//! each upstream's [`StatsSnapshot`] and [`Health`]:
//! - `GET /api/v1/sync-coordination/stats`: JSON, per upstream plus totals;
//! - `GET /api/v1/sync-coordination/health`: JSON, 200 healthy or degraded,
//!   503 unhealthy (the worst upstream decides);
//! - `GET /metrics`: Prometheus text exposition;
//! - `GET /dashboard` and its assets: the live dashboard page
//!   ([`crate::dashboard`]), the same bytes from both hosts.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use syncoord_core::stats::{Health, StatsSnapshot, Status};
use syncoord_core::Response;

use crate::histogram::BucketHistogram;

mod freshness;
mod orders;

/// Every upstream's stats, as JSON.
pub const STATS_PATH: &str = "/api/v1/sync-coordination/stats";
/// Every upstream's health, as JSON (503 when one is down).
pub const HEALTH_PATH: &str = "/api/v1/sync-coordination/health";
/// Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// Most per-client and per-bucket series exported per upstream, so a
/// crowd of bots or credentials cannot blow up a metrics store.
pub const MAX_SERIES_PER_UPSTREAM: usize = 50;

/// One of our own endpoints, answered by the host without upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// [`STATS_PATH`].
    Stats,
    /// [`HEALTH_PATH`].
    Health,
    /// [`METRICS_PATH`].
    Metrics,
    /// The dashboard page, [`crate::dashboard::DASHBOARD_PATH`].
    Dashboard,
    /// One of the page's embedded assets.
    Asset(&'static crate::dashboard::Asset),
    /// A path under [`crate::dashboard::ASSETS_PREFIX`] naming no asset:
    /// 404 from the host itself (the prefix is ours, never upstream's).
    NoSuchAsset,
}

/// The endpoint a request is for, if any (GET and HEAD only; the query is
/// ignored). Other methods on these paths are refused by
/// [`crate::Proxy::route`] with 405, so they never reach upstream. For
/// HEAD the host sends the rendered response's status and headers only.
pub fn endpoint(method: &str, target: &str) -> Option<Endpoint> {
    if !(method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")) {
        return None;
    }
    endpoint_for_path(target)
}

fn endpoint_for_path(target: &str) -> Option<Endpoint> {
    let path = target.split('?').next().unwrap_or(target);
    match path {
        STATS_PATH => Some(Endpoint::Stats),
        HEALTH_PATH => Some(Endpoint::Health),
        METRICS_PATH => Some(Endpoint::Metrics),
        crate::dashboard::DASHBOARD_PATH => Some(Endpoint::Dashboard),
        _ if path.starts_with(crate::dashboard::ASSETS_PREFIX) => {
            Some(crate::dashboard::asset(path).map_or(Endpoint::NoSuchAsset, Endpoint::Asset))
        }
        _ => None,
    }
}

pub(crate) fn is_endpoint_path(target: &str) -> bool {
    endpoint_for_path(target).is_some()
}

impl Endpoint {
    /// Whether rendering reads the upstreams' stats. The dashboard and its
    /// assets are static: a host answers them with `render(&[])` and
    /// skips collecting snapshots (on the Worker, one subrequest per
    /// shard).
    pub fn reads_stats(self) -> bool {
        matches!(self, Endpoint::Stats | Endpoint::Health | Endpoint::Metrics)
    }

    /// The endpoint's response for `upstreams` (name, stats, health), in
    /// configuration order.
    pub fn render<N: AsRef<str>>(self, upstreams: &[(N, StatsSnapshot, Health)]) -> Response {
        match self {
            Endpoint::Stats => stats_response(upstreams),
            Endpoint::Health => health_response(upstreams),
            Endpoint::Metrics => metrics_response(upstreams),
            Endpoint::Dashboard => crate::dashboard::page_response(),
            Endpoint::Asset(asset) => crate::dashboard::asset_response(asset),
            Endpoint::NoSuchAsset => crate::response::error_response(
                404,
                "not_found",
                &json!({
                    "error": "not_found",
                    "message": "no such dashboard asset",
                    "retry_after_secs": null,
                }),
            ),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Per-upstream snapshots plus totals over all upstreams.
pub fn stats_response<N: AsRef<str>>(upstreams: &[(N, StatsSnapshot, Health)]) -> Response {
    let mut t = syncoord_core::stats::RequestCounts::default();
    let (mut calls, mut retries, mut r429, mut e5xx, mut transport) = (0, 0, 0, 0, 0);
    let (mut in_progress, mut depth, mut in_flight, mut recent) = (0, 0, 0, 0);
    let (mut refreshes, mut bot_calls) = (0, 0);
    let mut per = Vec::new();
    for (name, s, h) in upstreams {
        let r = &s.requests;
        t.submitted += r.submitted;
        t.hit += r.hit;
        t.stale += r.stale;
        t.coalesced += r.coalesced;
        t.upstream += r.upstream;
        t.shed += r.shed;
        t.expired += r.expired;
        t.failed += r.failed;
        t.cancelled += r.cancelled;
        t.aborted += r.aborted;
        t.not_cached += r.not_cached;
        refreshes += s.upstream.refreshes;
        bot_calls += s.upstream.bot_calls;
        calls += s.upstream.calls;
        retries += s.upstream.retries;
        r429 += s.upstream.rate_limited;
        e5xx += s.upstream.server_errors;
        transport += s.upstream.transport_errors;
        in_progress += s.in_progress;
        depth += s.queue.depth;
        in_flight += s.calls_in_flight;
        recent += s.recent_rate_limited;
        per.push(json!({
            "name": name.as_ref(),
            "status": h.status,
            "stats": s,
        }));
    }
    let ended = t.ended();
    let status = upstreams
        .iter()
        .map(|(_, _, h)| h.status)
        .max()
        .unwrap_or(Status::Healthy);
    let body = json!({
        "totals": {
            // The worst upstream's, as the health endpoint answers it.
            "status": status,
            "requests": t.submitted,
            "ended": ended,
            "in_progress": in_progress,
            "outcomes": t,
            "cache_hit_rate": ratio(t.hit + t.stale, ended),
            "served_without_upstream_rate": ratio(t.hit + t.stale + t.coalesced, ended),
            "upstream_calls": calls,
            // Of those, made for bots' requests (misses and their
            // retries); the rest are refreshes.
            "upstream_bot_calls": bot_calls,
            "upstream_retries": retries,
            "upstream_refreshes": refreshes,
            "upstream_429s": r429,
            "upstream_server_errors": e5xx,
            "upstream_transport_errors": transport,
            "api_call_reduction": syncoord_core::stats::call_reduction(calls, t.submitted),
            "recent_rate_limited": recent,
            "queue_depth": depth,
            "calls_in_flight": in_flight,
        },
        "upstreams": per,
    });
    Response::json(200, body.to_string())
}

/// The worst status over all upstreams, with every reason named by its
/// upstream; 503 when unhealthy.
pub fn health_response<N: AsRef<str>>(upstreams: &[(N, StatsSnapshot, Health)]) -> Response {
    let status = upstreams
        .iter()
        .map(|(_, _, h)| h.status)
        .max()
        .unwrap_or(Status::Healthy);
    let reasons: Vec<_> = upstreams
        .iter()
        .flat_map(|(name, _, h)| {
            h.reasons.iter().map(move |r| {
                json!({
                    "upstream": name.as_ref(),
                    "severity": r.severity,
                    "code": r.code,
                    "message": r.message,
                })
            })
        })
        .collect();
    let per: Vec<_> = upstreams
        .iter()
        .map(|(name, _, h)| json!({ "name": name.as_ref(), "status": h.status }))
        .collect();
    let code = if status == Status::Unhealthy {
        503
    } else {
        200
    };
    Response::json(
        code,
        json!({ "status": status, "reasons": reasons, "upstreams": per }).to_string(),
    )
}

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

struct Families {
    registry: Registry,
}

impl Families {
    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.registry.register(name, help, f.clone());
        f
    }
    fn float_counter(&mut self, name: &str, help: &str) -> Family<Labels, FloatCounter> {
        let f = Family::<Labels, FloatCounter>::default();
        self.registry.register(name, help, f.clone());
        f
    }
    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, FloatGauge> {
        let f = Family::<Labels, FloatGauge>::default();
        self.registry.register(name, help, f.clone());
        f
    }
    fn histogram(&mut self, name: &str, help: &str) -> Family<Labels, BucketHistogram> {
        let f = Family::<Labels, BucketHistogram>::default();
        self.registry.register(name, help, f.clone());
        f
    }
}

fn labels(upstream: &str, more: &[(&str, &str)]) -> Labels {
    let mut l = vec![("upstream".to_owned(), upstream.to_owned())];
    l.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    l
}

fn status_value(s: Status) -> f64 {
    match s {
        Status::Healthy => 0.0,
        Status::Degraded => 1.0,
        Status::Unhealthy => 2.0,
    }
}

fn breaker_value(b: syncoord_core::stats::BreakerState) -> f64 {
    use syncoord_core::stats::BreakerState;
    match b {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    }
}

/// Prometheus text exposition (OpenMetrics) of every upstream, each series
/// labelled `upstream`. Per-client and per-credential-bucket series are
/// capped at [`MAX_SERIES_PER_UPSTREAM`] (busiest first).
///
/// Names follow Prometheus conventions: counters end in `_total` (the
/// encoder appends it), durations are `_seconds`, ratios `_ratio` (0 to
/// 1), and labels are bounded: `upstream` (configured upstreams; on the
/// Worker, shards, at most 47 per scrape), `outcome`, `class`, `scope`,
/// `quantile` (fixed sets), `client` and `credential` (at most
/// [`MAX_SERIES_PER_UPSTREAM`] per upstream). Every metric is listed in
/// `docs/metrics.md`; `docs/grafana-dashboard.json` charts them.
pub fn metrics_response<N: AsRef<str>>(upstreams: &[(N, StatsSnapshot, Health)]) -> Response {
    let mut m = Families {
        registry: Registry::with_prefix("syncoord"),
    };
    let submitted = m.counter("requests_submitted", "Requests received.");
    let requests = m.counter(
        "requests",
        "Requests that ended, by how (hit, stale, coalesced, upstream, shed, expired, failed, cancelled, aborted).",
    );
    let calls = m.counter("upstream_calls", "Calls sent upstream, retries included.");
    let retries = m.counter("upstream_retries", "Retried upstream calls.");
    let r429 = m.counter("upstream_rate_limited", "Upstream 429 answers.");
    let e5xx = m.counter(
        "upstream_server_errors",
        "Upstream answers with a retryable status (5xx).",
    );
    let transport = m.counter(
        "upstream_transport_errors",
        "Upstream calls without an answer (connection errors and timeouts).",
    );
    let timeouts = m.counter(
        "upstream_timeouts",
        "Upstream calls with no outcome in time (also counted as transport errors).",
    );
    let breaker_opened = m.counter("breaker_opened", "Times a route's circuit breaker opened.");
    let breaker_half_opened = m.counter(
        "breaker_half_opened",
        "Times a route's open breaker let its one probe through.",
    );
    let breaker_closed = m.counter(
        "breaker_closed",
        "Times a route's tripped breaker closed again (its probe was answered).",
    );
    let cache_inserts = m.counter("cache_inserts", "Responses stored in the cache.");
    let cache_evictions = m.counter("cache_evictions", "Cache entries evicted for space.");
    let client_requests = m.counter("client_requests", "Requests by client and how they ended.");
    let bucket_calls = m.counter("bucket_calls", "Calls admitted by a limiter bucket.");
    let bucket_429 = m.counter(
        "bucket_rate_limited",
        "Upstream 429s on calls that drew on a limiter bucket.",
    );
    let in_progress = m.gauge("in_progress", "Requests received and not ended.");
    let in_flight = m.gauge("calls_in_flight", "Upstream calls in flight.");
    let queue_depth = m.gauge("queue_depth", "Requests waiting to be sent, by class.");
    let queue_max = m.gauge("queue_max_len", "Queue capacity.");
    let oldest = m.gauge(
        "queue_oldest_wait_seconds",
        "Age of the oldest queued request.",
    );
    let wait = m.histogram(
        "queue_wait_seconds",
        "Queue wait of requests sent upstream (once each, when first sent), by class.",
    );
    let latency = m.histogram(
        "upstream_latency_seconds",
        "Upstream latency, from sending a call to its answer (answers only).",
    );
    let hit_rate = m.gauge(
        "cache_hit_ratio",
        "Fresh and stale hits over ended requests, since start.",
    );
    let reduction = m.gauge(
        "api_call_reduction_ratio",
        "1 - upstream calls (refreshes and retries included) / requests, since start; never negative.",
    );
    let cache_entries = m.gauge("cache_entries", "Responses in the cache.");
    let cache_bytes = m.gauge("cache_bytes", "Bytes held by the cache.");
    let tokens = m.gauge(
        "bucket_tokens",
        "Cost units a limiter bucket could spend now.",
    );
    let burst = m.gauge(
        "bucket_burst",
        "A limiter bucket's usable burst (after headroom).",
    );
    let rate = m.gauge(
        "bucket_rate_per_second",
        "A limiter bucket's current rate (lower while recovering from a 429).",
    );
    let budget = m.gauge(
        "bucket_budget_per_second",
        "A limiter bucket's full rate after headroom.",
    );
    let learned = m.gauge(
        "bucket_learned_rate_per_second",
        "A limiter bucket's effective rate learned under its configured one (equal to the budget when nothing was learned).",
    );
    let paused = m.gauge(
        "bucket_pause_remaining_seconds",
        "Seconds until a paused bucket's pause ends; 0 when not paused.",
    );
    let breaker = m.gauge(
        "route_breaker_state",
        "A route's circuit breaker that counted failures or tripped: 0 closed, 1 half-open, 2 open.",
    );
    let recent = m.gauge(
        "recent_rate_limited",
        "Upstream 429s within the health window.",
    );
    let health = m.gauge("health_status", "0 healthy, 1 degraded, 2 unhealthy.");
    let reasons = m.gauge(
        "health_reasons",
        "Health reasons now, by code (every code listed, 0 when absent).",
    );
    let uptime = m.gauge("uptime_seconds", "Seconds since the coordinator started.");
    let refreshes = m.counter(
        "upstream_refreshes",
        "Refresh-ahead calls (counted in upstream_calls too).",
    );
    let bot_calls = m.counter(
        "upstream_bot_calls",
        "Calls made for bots' requests, retries included (upstream_calls less refreshes).",
    );

    let cluster = ClusterFamilies::new(&mut m);
    let orders = orders::OrderFamilies::new(&mut m);
    let freshness = freshness::FreshnessFamilies::new(&mut m);

    for (name, s, h) in upstreams {
        let u = name.as_ref();
        cluster.record(u, s);
        orders.record(u, s);
        freshness.record(u, s);
        let l = labels(u, &[]);
        let r = &s.requests;
        submitted.get_or_create(&l).inc_by(r.submitted);
        for (outcome, v) in [
            ("hit", r.hit),
            ("stale", r.stale),
            ("coalesced", r.coalesced),
            ("upstream", r.upstream),
            ("shed", r.shed),
            ("expired", r.expired),
            ("failed", r.failed),
            ("cancelled", r.cancelled),
            ("aborted", r.aborted),
            ("not_cached", r.not_cached),
        ] {
            requests
                .get_or_create(&labels(u, &[("outcome", outcome)]))
                .inc_by(v);
        }
        let up = &s.upstream;
        calls.get_or_create(&l).inc_by(up.calls);
        refreshes.get_or_create(&l).inc_by(up.refreshes);
        bot_calls.get_or_create(&l).inc_by(up.bot_calls);
        retries.get_or_create(&l).inc_by(up.retries);
        r429.get_or_create(&l).inc_by(up.rate_limited);
        e5xx.get_or_create(&l).inc_by(up.server_errors);
        transport.get_or_create(&l).inc_by(up.transport_errors);
        timeouts.get_or_create(&l).inc_by(up.timeouts);
        breaker_opened.get_or_create(&l).inc_by(up.breaker_opened);
        breaker_half_opened
            .get_or_create(&l)
            .inc_by(up.breaker_half_opened);
        breaker_closed.get_or_create(&l).inc_by(up.breaker_closed);
        for b in s.breakers.iter().take(MAX_SERIES_PER_UPSTREAM) {
            let bl = labels(
                u,
                &[
                    ("route", &b.route),
                    ("credential", b.credential.as_deref().unwrap_or("")),
                ],
            );
            breaker.get_or_create(&bl).set(breaker_value(b.state));
        }
        cache_inserts.get_or_create(&l).inc_by(s.cache.inserts);
        cache_evictions.get_or_create(&l).inc_by(s.cache.evictions);
        in_progress.get_or_create(&l).set(s.in_progress as f64);
        in_flight.get_or_create(&l).set(s.calls_in_flight as f64);
        queue_max.get_or_create(&l).set(s.queue.max_len as f64);
        oldest
            .get_or_create(&l)
            .set(s.queue.oldest_wait_secs.unwrap_or(0.0));
        hit_rate.get_or_create(&l).set(s.cache_hit_rate);
        reduction.get_or_create(&l).set(s.api_call_reduction);
        cache_entries.get_or_create(&l).set(s.cache.entries as f64);
        cache_bytes.get_or_create(&l).set(s.cache.bytes as f64);
        recent.get_or_create(&l).set(s.recent_rate_limited as f64);
        health.get_or_create(&l).set(status_value(h.status));
        for code in syncoord_core::stats::CODES {
            let n = h.reasons.iter().filter(|r| r.code == *code).count();
            reasons
                .get_or_create(&labels(u, &[("code", code)]))
                .set(n as f64);
        }
        uptime.get_or_create(&l).set(s.uptime_secs);
        for c in &s.queue.classes {
            let cl = labels(u, &[("class", &c.class)]);
            queue_depth.get_or_create(&cl).set(c.depth as f64);
            wait.get_or_create(&cl).set(&c.wait_buckets);
        }
        latency.get_or_create(&l).set(&s.upstream_latency);
        let mut clients: Vec<_> = s.clients.iter().collect();
        clients.sort_by_key(|c| std::cmp::Reverse(c.counts.requests));
        for c in clients.into_iter().take(MAX_SERIES_PER_UPSTREAM) {
            for (outcome, v) in [
                ("hit", c.counts.hit),
                ("stale", c.counts.stale),
                ("coalesced", c.counts.coalesced),
                ("upstream", c.counts.upstream),
                ("failed", c.counts.failed),
            ] {
                client_requests
                    .get_or_create(&labels(u, &[("client", &c.client), ("outcome", outcome)]))
                    .inc_by(v);
            }
        }
        let mut buckets: Vec<_> = s.scopes.iter().collect();
        // Shared buckets first, then the busiest per-credential ones.
        buckets.sort_by(|a, b| {
            (a.credential.is_some(), std::cmp::Reverse(a.calls))
                .cmp(&(b.credential.is_some(), std::cmp::Reverse(b.calls)))
        });
        for b in buckets.into_iter().take(MAX_SERIES_PER_UPSTREAM) {
            let bl = labels(
                u,
                &[
                    ("scope", &b.scope),
                    ("credential", b.credential.as_deref().unwrap_or("")),
                ],
            );
            tokens.get_or_create(&bl).set(b.tokens);
            burst.get_or_create(&bl).set(f64::from(b.burst));
            rate.get_or_create(&bl).set(b.rate_per_sec);
            budget.get_or_create(&bl).set(b.budget_per_sec);
            learned
                .get_or_create(&bl)
                .set(b.learned_per_sec.unwrap_or(b.budget_per_sec));
            paused
                .get_or_create(&bl)
                .set(b.paused_for_secs.unwrap_or(0.0));
            bucket_calls.get_or_create(&bl).inc_by(b.calls);
            bucket_429.get_or_create(&bl).inc_by(b.rate_limited);
        }
    }

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &m.registry);
    Response::new(200, text).with_header(
        "Content-Type",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}

/// The shared store of a cluster (`[cluster]`): how the daemon's traffic
/// with Redis goes. Series appear only for a daemon in a cluster.
struct ClusterFamilies {
    refusals: Family<Labels, Counter>,
    answers_used: Family<Labels, Counter>,
    connected: Family<Labels, FloatGauge>,
    alive: Family<Labels, FloatGauge>,
    share: Family<Labels, FloatGauge>,
    round_trips: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    timeouts: Family<Labels, Counter>,
    fallbacks: Family<Labels, Counter>,
    fallback_secs: Family<Labels, FloatCounter>,
    rtt: Family<Labels, FloatGauge>,
    answers: Family<Labels, Counter>,
    lease_waits: Family<Labels, Counter>,
    disagreeing: Family<Labels, FloatGauge>,
}

impl ClusterFamilies {
    fn new(m: &mut Families) -> Self {
        ClusterFamilies {
            refusals: m.counter(
                "upstream_shared_refusals",
                "Dispatches the shared store refused before they left (back in the queue; not upstream calls).",
            ),
            answers_used: m.counter(
                "upstream_shared_answers",
                "Dispatches answered from the shared store instead of upstream.",
            ),
            connected: m.gauge(
                "cluster_connected",
                "1 while the shared store is reached, 0 while limiting locally.",
            ),
            alive: m.gauge(
                "cluster_daemons_alive",
                "Daemons of the cluster last seen alive (heartbeats).",
            ),
            share: m.gauge(
                "cluster_fallback_share_ratio",
                "Share of each budget this daemon uses while the store is not reached.",
            ),
            round_trips: m.counter("cluster_round_trips", "Round trips to the shared store."),
            errors: m.counter(
                "cluster_errors",
                "Failed round trips or connects to the shared store (timeouts included).",
            ),
            timeouts: m.counter(
                "cluster_timeouts",
                "Shared store calls that timed out (also counted as errors).",
            ),
            fallbacks: m.counter(
                "cluster_fallbacks",
                "Times the daemon fell back to local limiting.",
            ),
            fallback_secs: m.float_counter(
                "cluster_fallback_seconds",
                "Seconds spent limiting locally because the store was not reached.",
            ),
            rtt: m.gauge(
                "cluster_round_trip_seconds",
                "Shared store round-trip time since start, by quantile.",
            ),
            answers: m.counter(
                "cluster_answers",
                "Shared answers by outcome (stored, found, too_large).",
            ),
            lease_waits: m.counter(
                "cluster_lease_waits",
                "Local misses that waited on another daemon's lease (shared coalescing).",
            ),
            disagreeing: m.gauge(
                "cluster_peers_disagreeing",
                "Peers under the same cluster name whose fingerprint (upstream URL, limits) disagrees with this daemon's.",
            ),
        }
    }

    fn record(&self, u: &str, s: &StatsSnapshot) {
        let Some(c) = &s.cluster else {
            return;
        };
        let l = labels(u, &[]);
        self.refusals
            .get_or_create(&l)
            .inc_by(s.upstream.shared_refusals);
        self.answers_used
            .get_or_create(&l)
            .inc_by(s.upstream.shared_answers);
        self.connected
            .get_or_create(&l)
            .set(if c.connected { 1.0 } else { 0.0 });
        self.alive.get_or_create(&l).set(c.daemons_alive as f64);
        self.share.get_or_create(&l).set(c.fallback_share);
        self.round_trips.get_or_create(&l).inc_by(c.round_trips);
        self.errors.get_or_create(&l).inc_by(c.errors);
        self.timeouts.get_or_create(&l).inc_by(c.timeouts);
        self.fallbacks.get_or_create(&l).inc_by(c.fallbacks);
        self.fallback_secs.get_or_create(&l).inc_by(c.fallback_secs);
        for (q, ms) in [("0.5", c.round_trip_p50_ms), ("0.99", c.round_trip_p99_ms)] {
            self.rtt
                .get_or_create(&labels(u, &[("quantile", q)]))
                .set(ms / 1000.0);
        }
        for (outcome, n) in [
            ("stored", c.answers_stored),
            ("found", c.answers_found),
            ("too_large", c.answers_too_large),
        ] {
            self.answers
                .get_or_create(&labels(u, &[("outcome", outcome)]))
                .inc_by(n);
        }
        self.lease_waits.get_or_create(&l).inc_by(c.lease_waits);
        self.disagreeing
            .get_or_create(&l)
            .set(c.peers_disagreeing as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncoord_core::{Config, Coordinator, Instant, Outcome, Output, Request};

    pub(super) fn snapshot() -> (StatsSnapshot, Health) {
        let t0 = Instant::now();
        let mut core: Coordinator<()> =
            Coordinator::new(Config::default().compile().unwrap(), t0, 1);
        let path = "/api/v3/brokerage/market/products/BTC-USD/ticker";
        let _ = core.submit(t0, Request::get(path, "bot-1"), ());
        let Output::Dispatch(call) = core.poll_output(t0) else {
            panic!("due");
        };
        core.complete(t0, call.call, Outcome::response(Response::new(200, "{}")))
            .unwrap();
        let _ = core.submit(t0, Request::get(path, "bot-2"), ());
        let _ = core.submit(t0, Request::get("/api/v3/brokerage/accounts", "bot-2"), ());
        (core.stats(t0), core.health(t0))
    }

    /// A route's breaker, open.
    pub(super) fn a_breaker() -> syncoord_core::stats::BreakerSnapshot {
        syncoord_core::stats::BreakerSnapshot {
            route: "candles".into(),
            credential: None,
            state: syncoord_core::stats::BreakerState::Open,
            failures: 5,
            retry_after_secs: Some(3.0),
        }
    }

    #[test]
    fn endpoints_are_recognised() {
        assert_eq!(endpoint("GET", STATS_PATH), Some(Endpoint::Stats));
        assert_eq!(
            endpoint("head", "/api/v1/sync-coordination/health?x=1"),
            Some(Endpoint::Health)
        );
        assert_eq!(endpoint("GET", "/metrics"), Some(Endpoint::Metrics));
        assert_eq!(endpoint("POST", "/metrics"), None);
        assert_eq!(endpoint("GET", "/metrics/x"), None);
        assert_eq!(endpoint("GET", "/api/v3/brokerage/accounts"), None);
    }

    #[test]
    fn stats_totals_add_up() {
        let (s, h) = snapshot();
        let ups = [("a", s.clone(), h.clone()), ("b", s, h)];
        let r = Endpoint::Stats.render(&ups);
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["totals"]["requests"], 6);
        assert_eq!(v["totals"]["upstream_calls"], 2);
        assert_eq!(v["totals"]["outcomes"]["hit"], 2);
        assert_eq!(v["totals"]["queue_depth"], 2);
        // 2 hits over 4 ended requests.
        assert_eq!(v["totals"]["cache_hit_rate"], 0.5);
        assert_eq!(v["upstreams"][1]["name"], "b");
        assert_eq!(v["totals"]["status"], "healthy");
        let bucket = &v["upstreams"][0]["stats"]["scopes"][0];
        assert!(
            bucket["budget_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
            "{bucket}"
        );
        assert_eq!(v["upstreams"][0]["stats"]["requests"]["submitted"], 3);
    }

    #[test]
    fn health_takes_the_worst() {
        let (s, mut h) = snapshot();
        let healthy = h.clone();
        h.status = Status::Unhealthy;
        h.reasons.push(syncoord_core::stats::Reason {
            severity: Status::Unhealthy,
            code: "queue_wait",
            message: "slow".into(),
        });
        let r = health_response(&[("a", s.clone(), healthy.clone())]);
        assert_eq!(r.status, 200);
        let r = health_response(&[("a", s.clone(), healthy), ("b", s, h)]);
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], "unhealthy");
        assert_eq!(v["reasons"][0]["upstream"], "b");
        assert_eq!(v["upstreams"][0]["status"], "healthy");
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let (mut s, h) = snapshot();
        s.breakers.push(a_breaker());
        let r = metrics_response(&[("advanced".to_owned(), s, h)]);
        let text = String::from_utf8(r.body).unwrap();
        for line in [
            "syncoord_requests_total{upstream=\"advanced\",outcome=\"hit\"} 1",
            "syncoord_requests_submitted_total{upstream=\"advanced\"} 3",
            "# TYPE syncoord_queue_wait_seconds histogram",
            "syncoord_queue_wait_seconds_count{upstream=\"advanced\",class=\"market\"} 1",
            "syncoord_queue_wait_seconds_bucket{le=\"0.001\",upstream=\"advanced\",class=\"market\"} 1",
            "syncoord_queue_wait_seconds_bucket{le=\"+Inf\",upstream=\"advanced\",class=\"account\"} 0",
            "# TYPE syncoord_upstream_latency_seconds histogram",
            "syncoord_upstream_latency_seconds_count{upstream=\"advanced\"} 1",
            "syncoord_upstream_latency_seconds_bucket{le=\"+Inf\",upstream=\"advanced\"} 1",
            "# TYPE syncoord_cache_hit_ratio gauge",
            "syncoord_route_breaker_state{upstream=\"advanced\",route=\"candles\",credential=\"\"} 2",
            "syncoord_breaker_half_opened_total{upstream=\"advanced\"} 0",
            "syncoord_breaker_closed_total{upstream=\"advanced\"} 0",
            "syncoord_upstream_calls_total{upstream=\"advanced\"} 1",
            "syncoord_queue_depth{upstream=\"advanced\",class=\"account\"} 1",
            "syncoord_client_requests_total{upstream=\"advanced\",client=\"bot-2\",outcome=\"hit\"} 1",
            "syncoord_health_status{upstream=\"advanced\"} 0",
            "syncoord_health_reasons{upstream=\"advanced\",code=\"breaker_open\"} 0",
            "syncoord_upstream_refreshes_total{upstream=\"advanced\"} 0",
            "# TYPE syncoord_served_age_seconds histogram",
            "syncoord_served_age_seconds_bucket{le=\"+Inf\",upstream=\"advanced\",source=\"stale\"} 0",
            "syncoord_served_age_seconds_bucket{le=\"0.05\",upstream=\"advanced\",source=\"hit\"} 1",
            "syncoord_served_age_seconds_count{upstream=\"advanced\",source=\"upstream\"} 1",
            "syncoord_upstream_refreshes_stopped_total{upstream=\"advanced\",reason=\"server_error\"} 0",
            "# TYPE syncoord_bucket_tokens gauge",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            text.contains(
                "syncoord_bucket_tokens{upstream=\"advanced\",scope=\"public\",credential=\"\"}"
            ),
            "{text}"
        );
        assert!(
            !text.contains("outcome=\"submitted\""),
            "submissions are not an outcome: sum(syncoord_requests_total) must not count a request twice"
        );
        // Conventions: every counter's samples end in `_total`, and no
        // name carries a unit other than the base ones.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split_whitespace().skip(2);
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            assert!(name.starts_with("syncoord_"), "{line}");
            assert!(
                !name.ends_with("_total"),
                "the encoder appends _total: {line}"
            );
            if kind == "counter" {
                assert!(text.contains(&format!("\n{name}_total")), "{line}");
            }
            if kind == "histogram" {
                for part in ["_sum", "_count", "_bucket{le=\"+Inf\""] {
                    assert!(text.contains(&format!("\n{name}{part}")), "{line}: {part}");
                }
            }
            for unit in ["_ms", "_millis", "_rate", "_percent", "_secs"] {
                assert!(!name.ends_with(unit), "{line}: not a base unit");
            }
        }
    }

    /// A daemon in a cluster exports the cluster families, each listed in
    /// docs/metrics.md; one alone exports none of them.
    #[test]
    fn cluster_metrics_only_in_a_cluster_and_all_documented() {
        let (s, h) = snapshot();
        let alone =
            String::from_utf8(metrics_response(&[("a", s.clone(), h.clone())]).body).unwrap();
        assert!(!alone.contains("syncoord_cluster_"), "{alone}");
        let mut s = s;
        s.cluster = Some(syncoord_core::stats::ClusterStats {
            store: "redis://127.0.0.1:1".into(),
            connected: true,
            daemons_alive: 3,
            round_trips: 7,
            answers_found: 2,
            ..Default::default()
        });
        let text = String::from_utf8(metrics_response(&[("a", s, h)]).body).unwrap();
        assert!(
            text.contains("syncoord_cluster_round_trips_total{upstream=\"a\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("syncoord_cluster_daemons_alive{upstream=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("syncoord_cluster_answers_total{upstream=\"a\",outcome=\"found\"} 2"),
            "{text}"
        );
        // The reference, without the table of names renamed away.
        let doc = include_str!("../../docs/metrics.md");
        let doc = doc.split("## Renamed").next().unwrap_or(doc);
        let names: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .filter(|n| n.starts_with("syncoord_cluster_") || n.contains("_shared_"))
            .collect();
        assert!(names.len() >= 13, "{names:?}");
        for name in names {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
        }
    }

    /// The Grafana dashboard in the repository queries only metrics the
    /// coordinator exports, so renaming one here breaks this test, not a
    /// user's dashboard.
    #[test]
    fn the_grafana_dashboard_queries_exported_metrics() {
        let (mut s, h) = snapshot();
        s.clients.truncate(1);
        s.breakers.push(a_breaker());
        let text = String::from_utf8(metrics_response(&[("a", s, h)]).body).unwrap();
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let grafana: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).unwrap();
        let mut queried = 0;
        for panel in grafana["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for (i, _) in expr.match_indices("syncoord_") {
                    let name: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    queried += 1;
                    assert!(
                        exported.contains(name.as_str()),
                        "panel `{}` queries {name}, which is not exported",
                        panel["title"]
                    );
                }
            }
        }
        assert!(queried > 20, "{queried}");
    }
}

/// docs/metrics.md lists every metric `/metrics` exposes, and nothing it
/// does not: a metric added without its line fails here.
#[cfg(test)]
mod metrics_doc {
    use super::*;
    use syncoord_core::stats::ClusterStats;

    #[test]
    fn docs_metrics_md_lists_every_metric_and_no_other() {
        // Traffic, so that per-bucket and per-client families exist, and a
        // cluster, so that its families do.
        let (mut stats, health) = super::tests::snapshot();
        stats.cluster = Some(ClusterStats::default());
        stats.breakers.push(super::tests::a_breaker());
        // And a late answer to an order, so that its family has a series.
        stats.orders.late_answers.insert(200, 1);
        let ups = [("a", stats, health)];
        let body = String::from_utf8(metrics_response(&ups).body).unwrap();
        let exposed: std::collections::BTreeSet<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(exposed.len() > 10, "{body}");
        // The reference, without the table of names renamed away.
        let doc = include_str!("../../docs/metrics.md");
        let doc = doc.split("## Renamed").next().unwrap_or(doc);
        let missing: Vec<_> = exposed
            .iter()
            .filter(|m| !doc.contains(&format!("`{m}")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/metrics.md does not list {missing:?}"
        );
        // Every `syncoord_...` name the page quotes is one /metrics has
        // (a histogram's _bucket/_sum/_count series belong to it).
        let mut quoted = Vec::new();
        for piece in doc.split('`').skip(1).step_by(2) {
            let name = piece.split(['{', ' ']).next().unwrap_or("");
            if name.starts_with("syncoord_") && name.len() > "syncoord_".len() {
                quoted.push(name);
            }
        }
        let stale: Vec<_> = quoted
            .into_iter()
            .filter(|q| {
                let base = q
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count")
                    .trim_end_matches("_total");
                !exposed
                    .iter()
                    .any(|m| *m == *q || m.trim_end_matches("_total") == base || *m == base)
            })
            .collect();
        assert!(
            stale.is_empty(),
            "docs/metrics.md names metrics /metrics lacks: {stale:?}"
        );
    }

    /// The example alert rules query only series `/metrics` has (a
    /// histogram's by its `_bucket` series).
    #[test]
    fn alert_rules_query_exported_series() {
        let (mut stats, health) = super::tests::snapshot();
        stats.cluster = Some(ClusterStats::default());
        // A route breaker's series exists only once one counted a failure.
        stats.breakers.push(super::tests::a_breaker());
        let body = String::from_utf8(metrics_response(&[("a", stats, health)]).body).unwrap();
        let rules = include_str!("../../docs/alerts.yml");
        let mut queried = 0;
        for line in rules
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:"))
        {
            for (i, _) in line.match_indices("syncoord_") {
                let name: String = line[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried += 1;
                assert!(
                    body.contains(&format!("\n{name}{{")),
                    "docs/alerts.yml queries {name}, which /metrics lacks"
                );
            }
        }
        assert!(queried >= 6, "{queried}");
    }

    /// Two daemons scraped by one Prometheus are never summed unawares:
    /// the dashboard has an `instance` variable and every query selects by it.
    #[test]
    fn grafana_queries_select_the_instance_variable() {
        let grafana: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).unwrap();
        let vars = grafana["templating"]["list"].as_array().unwrap();
        assert!(vars.iter().any(|v| v["name"] == "instance"), "{vars:?}");
        for panel in grafana["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for (i, _) in expr.match_indices("syncoord_") {
                    let selector = expr[i..].split('}').next().unwrap_or("");
                    assert!(
                        selector.contains("instance=~\"$instance\""),
                        "panel `{}`: {expr}",
                        panel["title"]
                    );
                }
            }
        }
    }
}
