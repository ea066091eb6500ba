//! Counters and gauges, and the serde snapshot hosts publish at
//! `/api/v1/sync-coordination/stats`.
//!
//! Every request ends exactly once (the coordinator counts each end in one
//! place), so the outcome counters add up to the submissions, less those
//! still waiting.

use std::collections::VecDeque;

use crate::HashMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use web_time::{Duration, Instant};

pub use crate::breaker::BreakerState;
pub use crate::breakers::BreakerSnapshot;
pub use crate::cache::CacheSnapshot;
pub use crate::health::{Health, Reason, Status, CODES};
pub use crate::limiter::BucketSnapshot;

mod buckets;
pub use buckets::{DurationBuckets, BOUNDS_SECS};

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Answered from a fresh cache entry.
    Hit,
    /// Answered from an expired cache entry (stale-if-error or
    /// stale-while-revalidate).
    Stale,
    /// Answered by an identical call another request started.
    Coalesced,
    /// Answered by its own upstream call.
    Upstream,
    /// Refused or dropped because the queue was full.
    Shed,
    /// Could not be sent before its deadline.
    Expired,
    /// Upstream failed or kept answering 429 (after retries), or a breaker
    /// was open.
    Failed,
    /// The caller gave up ([`crate::Coordinator::cancel`]).
    Cancelled,
    /// Ended unsent by a host shutting down
    /// ([`crate::Coordinator::abort_waiting`]).
    Aborted,
    /// `only-if-cached` with nothing in the cache it accepts.
    NotCached,
}

impl From<crate::request::Source> for End {
    /// How a request answered from `source` ended.
    fn from(source: crate::request::Source) -> Self {
        use crate::request::Source;
        match source {
            Source::Cache => End::Hit,
            Source::Stale => End::Stale,
            Source::Coalesced => End::Coalesced,
            Source::Upstream => End::Upstream,
        }
    }
}

/// Requests by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests submitted, including those answered or refused at once.
    pub submitted: u64,
    /// Fresh cache hits.
    pub hit: u64,
    /// Served from an expired entry because upstream failed or could not
    /// be asked.
    pub stale: u64,
    /// Joined an identical call already queued or in flight.
    pub coalesced: u64,
    /// Answered by their own upstream call.
    pub upstream: u64,
    /// Refused or dropped because the queue was full.
    pub shed: u64,
    /// Could not be sent before their deadline.
    pub expired: u64,
    /// Upstream failed after retries (still 429, a 5xx, no answer at
    /// all) or its breaker was open.
    pub failed: u64,
    /// Given up by their caller.
    pub cancelled: u64,
    /// Ended unsent because the host shut down.
    pub aborted: u64,
    /// `only-if-cached` requests the cache had no answer for (504).
    #[serde(default)]
    pub not_cached: u64,
}

impl RequestCounts {
    /// Requests that have ended, whatever the outcome.
    pub fn ended(&self) -> u64 {
        self.hit
            + self.stale
            + self.coalesced
            + self.upstream
            + self.shed
            + self.expired
            + self.failed
            + self.cancelled
            + self.aborted
            + self.not_cached
    }

    fn count(&mut self, end: End) {
        let c = match end {
            End::Hit => &mut self.hit,
            End::Stale => &mut self.stale,
            End::Coalesced => &mut self.coalesced,
            End::Upstream => &mut self.upstream,
            End::Shed => &mut self.shed,
            End::Expired => &mut self.expired,
            End::Failed => &mut self.failed,
            End::Cancelled => &mut self.cancelled,
            End::Aborted => &mut self.aborted,
            End::NotCached => &mut self.not_cached,
        };
        *c += 1;
    }
}

/// What went upstream and how it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamCounts {
    /// Calls sent, retries included: `bot_calls + refreshes`.
    pub calls: u64,
    /// Of `calls`, those bots' requests made (a miss, or a retry of one);
    /// the rest are refreshes.
    #[serde(default)]
    pub bot_calls: u64,
    /// Of those, retries.
    pub retries: u64,
    /// Answered 429 (each pauses the call's limiter buckets).
    pub rate_limited: u64,
    /// Answered with a retryable status (`[retry] retry_statuses`, 5xx by
    /// default).
    pub server_errors: u64,
    /// Got no answer: connection errors and timeouts.
    pub transport_errors: u64,
    /// Calls with no outcome reported in time (counted in transport errors).
    pub timeouts: u64,
    /// Times a route's circuit breaker opened.
    pub breaker_opened: u64,
    /// Times an open breaker's period ended and its probe left.
    #[serde(default)]
    pub breaker_half_opened: u64,
    /// Times a tripped breaker closed again (its probe was answered).
    #[serde(default)]
    pub breaker_closed: u64,
    /// Of `calls`, refresh-ahead calls: sent from spare budget to keep a
    /// cached answer young, answering no request directly.
    #[serde(default)]
    pub refreshes: u64,
    /// Dispatches the shared store refused before they left (another
    /// coordinator had spent the shared budget): back in the queue, not
    /// counted in `calls`.
    #[serde(default)]
    pub shared_refusals: u64,
    /// Dispatches answered from the shared store instead of upstream (not
    /// counted in `calls`).
    #[serde(default)]
    pub shared_answers: u64,
    /// Requests that had joined a call whose answer turned out to carry
    /// `Vary` and to select another variant than theirs: each group of
    /// them was given a call of its own (counted in `calls` when it left).
    #[serde(default)]
    pub vary_redispatched: u64,
}

/// Queue wait of requests that reached upstream, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WaitSummary {
    /// Requests whose wait was recorded: once each, when their call first
    /// went upstream.
    pub count: u64,
    /// Mean wait.
    pub mean_ms: f64,
    /// Median wait.
    pub p50_ms: f64,
    /// 90th percentile wait.
    pub p90_ms: f64,
    /// 99th percentile wait.
    pub p99_ms: f64,
    /// Longest wait (recorded up to one hour).
    pub max_ms: f64,
}

/// Ages of answers served, in seconds: how old the data a bot got was
/// (zero for an answer straight from upstream).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgeSummary {
    /// Answers counted.
    pub count: u64,
    /// Mean age.
    pub mean_secs: f64,
    /// Median age.
    pub p50_secs: f64,
    /// 99th percentile age.
    pub p99_secs: f64,
    /// Oldest answer served.
    pub max_secs: f64,
}

/// The stats' `served_age`: the age of answers served, by where they came
/// from, and over all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServedAge {
    /// Every answer.
    pub all: AgeSummary,
    /// Fresh cache hits.
    pub hit: AgeSummary,
    /// Expired entries served (stale-if-error, stale-while-revalidate,
    /// `max-stale`, a deadline's fallback).
    pub stale: AgeSummary,
    /// Answers from upstream, own call or coalesced (age zero).
    pub upstream: AgeSummary,
}

/// One priority class in the stats' `queue.classes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassSnapshot {
    /// The class name, from `priorities`.
    pub class: String,
    /// Calls queued in this class now (after any aging).
    pub depth: usize,
    /// Queue waits of this class's requests since start.
    pub wait: WaitSummary,
    /// The same waits counted into fixed buckets, for a Prometheus
    /// histogram (absent in reports from older hosts).
    #[serde(default)]
    pub wait_buckets: DurationBuckets,
}

/// One client's requests by outcome, since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounts {
    /// Requests submitted.
    pub requests: u64,
    /// Fresh cache hits.
    pub hit: u64,
    /// Served from an expired cache entry.
    pub stale: u64,
    /// Joined an identical call already queued or in flight.
    pub coalesced: u64,
    /// Answered by their own upstream call.
    pub upstream: u64,
    /// Shed, expired, failed or aborted.
    pub failed: u64,
}

/// One row of the stats' `clients`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSnapshot {
    /// The client name the request was submitted under, or
    /// [`OTHER_CLIENTS`] for those past `[stats] max_clients`.
    pub client: String,
    /// Its counts, flattened into the row in JSON.
    #[serde(flatten)]
    pub counts: ClientCounts,
}

/// The stats' `queue`: calls waiting for the limiter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// Calls queued now, over all classes (coalesced requests share one).
    pub depth: usize,
    /// The limit, `[queue] max_len`.
    pub max_len: usize,
    /// Seconds since the longest-waiting queued call entered its current
    /// class; `None` when the queue is empty.
    pub oldest_wait_secs: Option<f64>,
    /// Per priority class, highest first.
    pub classes: Vec<ClassSnapshot>,
}

/// Everything a host publishes about the coordinator at one instant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Seconds since the coordinator started.
    pub uptime_secs: f64,
    /// Requests by outcome, since start.
    pub requests: RequestCounts,
    /// Submitted requests not ended yet.
    pub in_progress: u64,
    /// Fresh and stale hits over ended requests.
    pub cache_hit_rate: f64,
    /// Share of requests that needed no upstream call of their own (hits,
    /// stale hits and coalesced), over ended requests.
    pub served_without_upstream_rate: f64,
    /// 1 - upstream calls / submitted requests, never negative (see
    /// [`call_reduction`]).
    pub api_call_reduction: f64,
    /// Upstream calls and how they went, since start.
    pub upstream: UpstreamCounts,
    /// The age of answers served, since start.
    #[serde(default)]
    pub served_age: ServedAge,
    /// Upstream latency, from sending a call to its answer (answers only,
    /// not timeouts or connection errors), counted into fixed buckets.
    #[serde(default)]
    pub upstream_latency: DurationBuckets,
    /// Upstream 429s within the health window.
    pub recent_rate_limited: u64,
    /// Calls sent upstream and not yet answered.
    pub calls_in_flight: usize,
    /// The queue now.
    pub queue: QueueSnapshot,
    /// The response cache now.
    pub cache: CacheSnapshot,
    /// Limiter buckets, sorted by scope, then credential: every global
    /// scope's from the start, and a per-credential one until an hour
    /// after its last call (an idle one is shown full).
    pub scopes: Vec<BucketSnapshot>,
    /// Route breakers that have counted failures or tripped, sorted by
    /// route, then credential (a closed breaker with no failures is not
    /// listed).
    #[serde(default)]
    pub breakers: Vec<BreakerSnapshot>,
    /// Per-client counts, sorted by client name.
    pub clients: Vec<ClientSnapshot>,
    /// Health as [`crate::Coordinator::health`] reports it.
    pub health: Health,
    /// The shared store, for a host in a cluster (`None` alone). The core
    /// leaves it empty; the host that talks to the store fills it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
    /// Orders that left for upstream and did not reach their bot. The
    /// core leaves it empty; the daemon, which sees bots hang up, fills
    /// it in.
    #[serde(default)]
    pub orders: OrderFates,
}

/// Orders (calls other than GET, HEAD, OPTIONS) that left for upstream and
/// whose answer did not reach their bot, since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFates {
    /// Answered `outcome_unknown`: no answer came back from upstream.
    pub outcome_unknown: u64,
    /// The bot hung up after its call left.
    pub bot_gone: u64,
    /// Of those, answers that came after the bot had gone, by upstream's
    /// status (or ours, when the call failed).
    pub late_answers: std::collections::BTreeMap<u16, u64>,
}

/// A host's traffic with its shared store (Redis), since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    /// The store, without credentials.
    pub store: String,
    /// Whether the store is reached now (false: limiting locally).
    pub connected: bool,
    /// Daemons of the cluster last seen alive (this one included).
    pub daemons_alive: u64,
    /// The share of each budget used while the store is not reached.
    pub fallback_share: f64,
    /// Round trips to the store (scripts, reads, writes; a pipeline is one).
    pub round_trips: u64,
    /// Of those, failed ones (timeouts included), and the connects that
    /// failed.
    pub errors: u64,
    /// Of the errors, timeouts.
    pub timeouts: u64,
    /// Times the host fell back to local limiting.
    pub fallbacks: u64,
    /// Seconds spent limiting locally, since start.
    pub fallback_secs: f64,
    /// Round-trip time, median and 99th percentile, in milliseconds.
    pub round_trip_p50_ms: f64,
    /// See `round_trip_p50_ms`.
    pub round_trip_p99_ms: f64,
    /// Answers written to the store for the other daemons.
    pub answers_stored: u64,
    /// Answers not shared: too large for `max_answer_bytes`.
    pub answers_too_large: u64,
    /// Local misses answered from the store.
    pub answers_found: u64,
    /// Reads that waited on another daemon's lease (shared coalescing).
    pub lease_waits: u64,
    /// Peers under the same cluster name whose fingerprint disagrees with
    /// this daemon's (same upstream name at another URL, or the same URL
    /// paced by other limits); each is logged at `error`.
    #[serde(default)]
    pub peers_disagreeing: u64,
}

/// Name under which clients past `max_clients` are counted.
pub const OTHER_CLIENTS: &str = "(other)";

/// The counters a coordinator keeps: request outcomes, upstream results,
/// per-class queue waits, per-client counts and recent 429s.
pub(crate) struct Stats {
    started: Instant,
    /// Requests by outcome.
    pub(crate) requests: RequestCounts,
    /// Upstream calls and how they went.
    pub(crate) upstream: UpstreamCounts,
    waits: Vec<Histogram<u64>>,
    /// The same waits in fixed buckets, per class.
    wait_buckets: Vec<DurationBuckets>,
    /// Upstream latency of answered calls.
    pub(crate) latency: DurationBuckets,
    /// Served ages in milliseconds: hits, stale, upstream.
    ages: [Histogram<u64>; 3],
    clients: HashMap<Arc<str>, ClientCounts>,
    max_clients: usize,
    /// [`OTHER_CLIENTS`], allocated once.
    other: Arc<str>,
    recent_429s: VecDeque<Instant>,
    window: Duration,
}

/// Waits are recorded in microseconds, up to an hour, 3 significant digits.
pub fn wait_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Ages are recorded in milliseconds, up to 30 days, 2 significant digits
/// (1% resolution keeps the three histograms small).
pub fn age_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, 30 * 86_400_000, 2).expect("valid histogram bounds")
}

/// A histogram of waits in microseconds, summarised in milliseconds (all
/// zero when it is empty).
pub fn wait_summary(h: &Histogram<u64>) -> WaitSummary {
    if h.is_empty() {
        return WaitSummary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    WaitSummary {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

/// A histogram of ages in milliseconds, summarised in seconds (all zero
/// when it is empty).
pub fn age_summary(h: &Histogram<u64>) -> AgeSummary {
    if h.is_empty() {
        return AgeSummary::default();
    }
    let s = |ms: u64| ms as f64 / 1000.0;
    AgeSummary {
        count: h.len(),
        mean_secs: h.mean() / 1000.0,
        p50_secs: s(h.value_at_quantile(0.5)),
        p99_secs: s(h.value_at_quantile(0.99)),
        max_secs: s(h.max()),
    }
}

impl Stats {
    /// Empty counters started at `now`, for `classes` priority classes,
    /// naming up to `max_clients` clients; 429s within `window` are recent.
    pub(crate) fn new(now: Instant, classes: usize, max_clients: usize, window: Duration) -> Self {
        Stats {
            started: now,
            requests: RequestCounts::default(),
            upstream: UpstreamCounts::default(),
            waits: (0..classes).map(|_| wait_histogram()).collect(),
            wait_buckets: vec![DurationBuckets::default(); classes],
            latency: DurationBuckets::default(),
            ages: [age_histogram(), age_histogram(), age_histogram()],
            clients: HashMap::default(),
            max_clients,
            other: Arc::from(OTHER_CLIENTS),
            recent_429s: VecDeque::new(),
            window,
        }
    }

    fn client(&mut self, client: &Arc<str>) -> &mut ClientCounts {
        let name = if self.clients.len() >= self.max_clients && !self.clients.contains_key(client) {
            self.other.clone()
        } else {
            client.clone()
        };
        self.clients.entry(name).or_default()
    }

    /// The shared name of `client`: the one already counted (no
    /// allocation for a client seen before), else a new one.
    pub(crate) fn intern(&self, client: &str) -> Arc<str> {
        match self.clients.get_key_value(client) {
            Some((name, _)) => name.clone(),
            None => Arc::from(client),
        }
    }

    /// Counts a request submitted by `client`.
    pub(crate) fn submitted(&mut self, client: &Arc<str>) {
        self.requests.submitted += 1;
        self.client(client).requests += 1;
    }

    /// Counts how a request of `client` ended; once per request.
    pub(crate) fn ended(&mut self, client: &Arc<str>, end: End) {
        self.requests.count(end);
        let c = self.client(client);
        match end {
            End::Hit => c.hit += 1,
            End::Stale => c.stale += 1,
            End::Coalesced => c.coalesced += 1,
            End::Upstream => c.upstream += 1,
            End::Cancelled => {}
            End::Shed | End::Expired | End::Failed | End::Aborted | End::NotCached => c.failed += 1,
        }
    }

    /// A waiting request's call went upstream after `waited`.
    pub(crate) fn waited(&mut self, class: usize, waited: Duration) {
        if let Some(h) = self.waits.get_mut(class) {
            let micros = (waited.as_micros() as u64).clamp(1, h.high());
            // Within bounds by the clamp above, so recording cannot fail.
            let _ = h.record(micros);
        }
        if let Some(b) = self.wait_buckets.get_mut(class) {
            b.observe(waited);
        }
    }

    /// An answer from `source`, `age` old, was served.
    pub(crate) fn served(&mut self, source: crate::request::Source, age: Duration) {
        use crate::request::Source;
        let h = match source {
            Source::Cache => &mut self.ages[0],
            Source::Stale => &mut self.ages[1],
            Source::Coalesced | Source::Upstream => &mut self.ages[2],
        };
        let ms = (age.as_millis() as u64).min(h.high());
        // Within bounds by the clamp above (zero is recordable), so this
        // cannot fail.
        let _ = h.record(ms);
    }

    /// Served ages so far.
    pub(crate) fn served_age(&self) -> ServedAge {
        let mut all = self.ages[0].clone();
        for h in &self.ages[1..] {
            // Same bounds, so adding cannot fail.
            let _ = all.add(h);
        }
        ServedAge {
            all: age_summary(&all),
            hit: age_summary(&self.ages[0]),
            stale: age_summary(&self.ages[1]),
            upstream: age_summary(&self.ages[2]),
        }
    }

    /// Counts an upstream 429 received at `now`.
    pub(crate) fn rate_limited(&mut self, now: Instant) {
        self.upstream.rate_limited += 1;
        self.recent_429s.push_back(now);
        self.prune(now);
    }

    fn prune(&mut self, now: Instant) {
        while self
            .recent_429s
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.recent_429s.pop_front();
        }
    }

    /// 429s within the window before `now`. Older ones are pruned as new
    /// ones arrive, so the list stays as short as the window's count.
    pub(crate) fn recent_rate_limited(&self, now: Instant) -> u64 {
        self.recent_429s
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= self.window)
            .count() as u64
    }

    /// Time since the counters started.
    pub(crate) fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Queue waits of priority class `class` (its index); all zero when
    /// none were recorded or there is no such class.
    pub(crate) fn wait_summary(&self, class: usize) -> WaitSummary {
        self.waits
            .get(class)
            .map_or_else(WaitSummary::default, wait_summary)
    }

    /// Queue waits of class `class` in fixed buckets (empty when there is
    /// no such class).
    pub(crate) fn wait_buckets(&self, class: usize) -> DurationBuckets {
        self.wait_buckets.get(class).cloned().unwrap_or_default()
    }

    /// Per-client counts, sorted by client name.
    pub(crate) fn clients(&self) -> Vec<ClientSnapshot> {
        let mut out: Vec<ClientSnapshot> = self
            .clients
            .iter()
            .map(|(client, counts)| ClientSnapshot {
                client: client.to_string(),
                counts: counts.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.client.cmp(&b.client));
        out
    }
}

/// `part / whole`, 0 when there is no whole.
/// The API call reduction: `1 - calls / requests`, over the same span.
/// Every upstream call counts, refreshes and retries included, so it is
/// what upstream saw against what the bots sent. Never negative: refresh
/// calls never outnumber the reads they serve, and no request makes more
/// than one call and its retries; should retries alone ever outnumber the
/// requests spared, it reads 0 rather than a negative share. 0 with no
/// requests. Stats, metrics and the dashboard all show this one figure.
pub fn call_reduction(calls: u64, requests: u64) -> f64 {
    (1.0 - ratio(calls, requests).min(1.0)).max(0.0) * f64::from(u8::from(requests > 0))
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(max_clients: usize) -> (Stats, Instant) {
        let t0 = Instant::now();
        (Stats::new(t0, 2, max_clients, Duration::from_secs(60)), t0)
    }

    #[test]
    fn every_end_is_counted_once_under_its_outcome() {
        let (mut s, _) = stats(10);
        let bot: Arc<str> = Arc::from("bot");
        let ends = [
            End::Hit,
            End::Stale,
            End::Coalesced,
            End::Upstream,
            End::Shed,
            End::Expired,
            End::Failed,
            End::Cancelled,
            End::Aborted,
        ];
        for end in ends {
            s.submitted(&bot);
            s.ended(&bot, end);
        }
        let r = &s.requests;
        assert_eq!((r.submitted, r.ended()), (9, 9));
        assert_eq!(
            [
                r.hit,
                r.stale,
                r.coalesced,
                r.upstream,
                r.shed,
                r.expired,
                r.failed,
                r.cancelled,
                r.aborted
            ],
            [1; 9]
        );
        let c = &s.clients()[0].counts;
        assert_eq!(
            (c.requests, c.hit, c.stale, c.coalesced, c.upstream),
            (9, 1, 1, 1, 1)
        );
        assert_eq!(
            c.failed, 4,
            "shed, expired, failed and aborted; not cancelled"
        );
    }

    #[test]
    fn clients_past_the_limit_share_one_row() {
        let (mut s, _) = stats(2);
        for name in ["a", "b", "c", "d", "a"] {
            s.submitted(&Arc::from(name));
        }
        let rows: Vec<(String, u64)> = s
            .clients()
            .into_iter()
            .map(|c| (c.client, c.counts.requests))
            .collect();
        assert_eq!(
            rows,
            vec![("(other)".into(), 2), ("a".into(), 2), ("b".into(), 1)]
        );
    }

    #[test]
    fn wait_percentiles_per_class() {
        let (mut s, _) = stats(10);
        assert_eq!(s.wait_summary(0), WaitSummary::default());
        for ms in 1..=100 {
            s.waited(0, Duration::from_millis(ms));
        }
        s.waited(1, Duration::from_secs(7200)); // past the histogram's hour: clamped
        let w = s.wait_summary(0);
        assert_eq!(w.count, 100);
        assert!((w.p50_ms - 50.0).abs() < 0.5, "{w:?}");
        assert!((w.p99_ms - 99.0).abs() < 0.5, "{w:?}");
        assert!((w.max_ms - 100.0).abs() < 0.5, "{w:?}");
        assert!((w.mean_ms - 50.5).abs() < 0.5, "{w:?}");
        let long = s.wait_summary(1);
        assert_eq!(long.count, 1);
        assert!(
            (long.max_ms - 3_600_000.0).abs() / 3_600_000.0 < 0.01,
            "{long:?}"
        );
        assert_eq!(s.wait_summary(5), WaitSummary::default(), "no such class");
        // The buckets hold the same waits, the long one unclamped.
        let b = s.wait_buckets(0);
        assert_eq!(b.count(), 100);
        assert!((b.sum_secs - 5.05).abs() < 1e-9, "{b:?}");
        let le_100ms: u64 = b
            .buckets()
            .iter()
            .filter(|(le, _)| *le <= 0.1)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(le_100ms, 100);
        assert_eq!(
            s.wait_buckets(1).buckets().last(),
            Some(&(f64::INFINITY, 1))
        );
        assert_eq!(s.wait_buckets(5), DurationBuckets::default());
    }

    #[test]
    fn recent_429s_leave_the_window() {
        let (mut s, t0) = stats(10);
        s.rate_limited(t0);
        s.rate_limited(t0 + Duration::from_secs(30));
        assert_eq!(s.recent_rate_limited(t0 + Duration::from_secs(60)), 2);
        assert_eq!(s.recent_rate_limited(t0 + Duration::from_secs(61)), 1);
        assert_eq!(s.recent_rate_limited(t0 + Duration::from_secs(91)), 0);
        assert_eq!(s.upstream.rate_limited, 2, "the total stays");
    }

    #[test]
    fn ratio_of_nothing_is_zero() {
        assert_eq!(ratio(0, 0), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
    }

    #[test]
    fn call_reduction_is_a_share_never_negative() {
        assert_eq!(call_reduction(0, 0), 0.0);
        assert_eq!(call_reduction(5, 0), 0.0);
        assert_eq!(call_reduction(1, 4), 0.75);
        assert_eq!(call_reduction(4, 4), 0.0);
        assert_eq!(call_reduction(40, 10), 0.0);
    }
}
