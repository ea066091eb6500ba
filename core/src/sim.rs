//! A deterministic simulation in virtual time: trading bots on timers, an
//! upstream that enforces its documented limit (and answers 429 when it is
//! exceeded), and the coordinator between them. Hours of traffic run in
//! milliseconds; the same seed gives the same run.
//!
//! [`Scenario::reference`] is the reference workload: 25 bots sharing one
//! API key, each evaluating every ~30 s (ticker, balances, candles every
//! fourth time, an occasional order), an upstream budget of 8 calls per
//! minute with a burst of 8, and a 90 s cache TTL. [`Scenario::coinbase`]
//! is the same bots at Coinbase Advanced Trade's own limits, evaluating
//! every second. Both run with the presets' refresh-ahead on;
//! [`Scenario::without_refresh`] turns it off for comparison.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt;

use web_time::{Duration, Instant};

use crate::config::{coinbase, Config, Keying, ScopeConfig};
use crate::request::{Method, Outcome, Request, Response, Ticket, TransportError};
use crate::stats::StatsSnapshot;
use crate::{Admission, Coordinator};

/// How the simulated upstream behaves.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its real limit: `rate` calls per `period` with `burst`, enforced as
    /// a lazy-fill token bucket (as Coinbase documents); over it, 429.
    pub rate: f64,
    /// The period `rate` is counted over.
    pub period: Duration,
    /// Calls a full bucket accepts at once.
    pub burst: u32,
    /// Round-trip latency, uniform between these.
    pub latency: (Duration, Duration),
    /// Chance that a call fails with a 503.
    pub error_rate: f64,
    /// Chance that a call gets no answer at all (a transport timeout).
    pub timeout_rate: f64,
}

/// One simulated run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Number of bots.
    pub bots: usize,
    /// How long bots keep evaluating, in virtual time.
    pub duration: Duration,
    /// Each bot evaluates this often, give or take 20%.
    pub eval_every: Duration,
    /// Bot `i` trades `products[i % len]`.
    pub products: Vec<String>,
    /// Every n-th evaluation also reads candles.
    pub candles_every: u32,
    /// Chance that an evaluation places an order.
    pub order_chance: f64,
    /// Distinct API keys; bot `i` uses key `i % credentials`.
    pub credentials: usize,
    /// The simulated upstream.
    pub upstream: Upstream,
    /// The coordinator's configuration.
    pub config: Config,
    /// Drives every random choice of the run (bots, upstream, coordinator).
    pub seed: u64,
}

const BASE: &str = "/api/v3/brokerage";

/// The reference workload's coordinator settings: Coinbase Advanced Trade
/// routes, one budget of 8 calls per minute with a burst of 8 (run at 90%),
/// a 90 s TTL everywhere, aging so no class starves, and 60 s of
/// stale-while-revalidate.
pub fn reference_config() -> Config {
    let mut c = coinbase::advanced_trade();
    c.scopes = BTreeMap::from([(
        "budget".to_owned(),
        ScopeConfig {
            rate: 8.0,
            period_secs: 60.0,
            burst: 8,
            per: Keying::Global,
            headroom: 0.9,
        },
    )]);
    c.defaults.scopes = vec!["budget".into()];
    c.defaults.ttl_secs = 90.0;
    // When the budget is saturated, a call that has waited 8 s climbs a
    // class, so analysis reads still get through before their stale
    // window runs out.
    c.queue.aging_secs = Some(8.0);
    // ...and while a refresh waits for the budget, other bots get the
    // entry that just expired rather than queueing behind it.
    c.cache.stale_while_revalidate_secs = 60.0;
    for r in &mut c.routes {
        r.scopes = None;
        r.ttl_secs = None;
    }
    c
}

impl Scenario {
    /// The reference workload with `bots` bots, simulated for 24 hours.
    pub fn reference(bots: usize) -> Self {
        Scenario {
            bots,
            duration: Duration::from_secs(24 * 3600),
            eval_every: Duration::from_secs(30),
            products: ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            candles_every: 4,
            order_chance: 0.01,
            credentials: 1,
            upstream: Upstream {
                rate: 8.0,
                period: Duration::from_secs(60),
                burst: 8,
                latency: (Duration::from_millis(40), Duration::from_millis(400)),
                error_rate: 0.0,
                timeout_rate: 0.0,
            },
            config: reference_config(),
            seed: 2026,
        }
    }

    /// `bots` bots evaluating every second for an hour against Coinbase
    /// Advanced Trade's limits (the preset as shipped: the sim's reads and
    /// orders all draw on the per-key `private` scope, 30/s with a burst
    /// of 30, run at 90%), the upstream enforcing 30/s, burst 30.
    pub fn coinbase(bots: usize) -> Self {
        let mut s = Scenario::reference(bots);
        s.duration = Duration::from_secs(3600);
        s.eval_every = Duration::from_secs(1);
        s.upstream.rate = 30.0;
        s.upstream.period = Duration::from_secs(1);
        s.upstream.burst = 30;
        s.config = coinbase::advanced_trade();
        s
    }

    /// The same scenario with refresh-ahead off on every route.
    pub fn without_refresh(mut self) -> Self {
        self.config.defaults.refresh_ahead = false;
        for r in &mut self.config.routes {
            r.refresh_ahead = Some(false);
        }
        self
    }

    fn min_age_floor(&self) -> f64 {
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
    /// upstream's rate after the headroom of the first default scope.
    fn paced_rate(&self) -> f64 {
        let headroom = self
            .config
            .defaults
            .scopes
            .first()
            .and_then(|name| self.config.scopes.get(name))
            .map_or(1.0, |s| s.headroom);
        self.upstream.rate / self.upstream.period.as_secs_f64().max(1e-9) * headroom
    }
}

/// The simulated host's payload: what the upstream needs to answer.
#[derive(Debug, Clone)]
struct Sent {
    path: String,
    method: Method,
    credential: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    BotWakes(usize),
    /// A dispatched call reaches upstream (half the round trip later).
    UpstreamReceives(u64),
    UpstreamAnswers(u64),
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// Bots simulated.
    pub bots: usize,
    /// Virtual time the bots ran for ([`Scenario::duration`]).
    pub simulated: Duration,
    /// Requests the bots submitted.
    pub requests: u64,
    /// Evaluations the bots started (a bot still busy skips its tick).
    pub evaluations: u64,
    /// Bots that completed evaluations and never saw a failure.
    pub bots_served: usize,
    /// Requests that ended without an answer, by failure kind.
    pub failures: BTreeMap<&'static str, u64>,
    /// 429s the upstream sent (each one a call the coordinator misjudged).
    pub upstream_429s: u64,
    /// 429s that reached a bot.
    pub bot_429s: u64,
    /// Answers whose body belonged to another credential.
    pub cross_credential: u64,
    /// Distinct cache keys the bots read (K).
    pub hot_keys: usize,
    /// Calls per second left for reads (B): the paced rate less the orders
    /// the bots placed.
    pub spare_per_sec: f64,
    /// Half the smallest `min_age` of a refreshed route (0 when nothing is
    /// refreshed): refresh-ahead cannot bring the mean age below it either.
    pub min_age_floor_secs: f64,
    /// The coordinator's stats at the end of the run.
    pub stats: StatsSnapshot,
}

impl Report {
    /// The coordinator's cache hit rate ([`StatsSnapshot::cache_hit_rate`]).
    pub fn cache_hit_rate(&self) -> f64 {
        self.stats.cache_hit_rate
    }

    /// The lowest mean age the budget allows, in seconds: with B spare calls
    /// per second over K hot keys, each key can be refreshed every K/B s,
    /// so answers are on average at least K/(2B) old.
    pub fn age_bound_secs(&self) -> f64 {
        self.hot_keys as f64 / (2.0 * self.spare_per_sec.max(1e-9))
    }
}

/// Runs `scenario` to the end (bots stop at `duration`; what is in flight
/// then finishes).
pub fn run(scenario: &Scenario) -> Report {
    Sim::new(scenario).run()
}

struct Bot {
    product: String,
    credential: usize,
    evaluations: u32,
    /// Requests of the current evaluation still to make, in order.
    pending: VecDeque<(Method, String)>,
    failed: bool,
}

struct Sim<'a> {
    s: &'a Scenario,
    t0: Instant,
    end: Instant,
    core: Coordinator<Sent>,
    rng: fastrand::Rng,
    events: BinaryHeap<Reverse<(Instant, u64, Event)>>,
    seq: u64,
    bots: Vec<Bot>,
    tickets: HashMap<Ticket, usize>,
    /// Calls on the wire: sent, waiting to arrive upstream.
    wire: HashMap<u64, (crate::CallId, Sent, Duration)>,
    /// Calls upstream has answered (`None`: it never will).
    answers: HashMap<u64, (crate::CallId, Option<Response>)>,
    /// Upstream's own GCRA state: theoretical arrival time.
    upstream_tat: Instant,
    requests: u64,
    evaluations: u64,
    failures: BTreeMap<&'static str, u64>,
    upstream_429s: u64,
    bot_429s: u64,
    cross_credential: u64,
    hot_keys: BTreeSet<String>,
    orders: u64,
}

impl<'a> Sim<'a> {
    fn new(s: &'a Scenario) -> Self {
        let t0 = Instant::now();
        let core = match s.config.compile() {
            Ok(compiled) => Coordinator::new(compiled, t0, s.seed),
            Err(e) => panic!("scenario config is invalid:\n{e}"),
        };
        let mut rng = fastrand::Rng::with_seed(s.seed ^ 0x5eed);
        let mut sim = Sim {
            s,
            t0,
            end: t0 + s.duration,
            core,
            events: BinaryHeap::new(),
            seq: 0,
            bots: (0..s.bots)
                .map(|i| Bot {
                    product: s.products[i % s.products.len().max(1)].clone(),
                    credential: i % s.credentials.max(1),
                    evaluations: 0,
                    pending: VecDeque::new(),
                    failed: false,
                })
                .collect(),
            tickets: HashMap::new(),
            wire: HashMap::new(),
            answers: HashMap::new(),
            upstream_tat: t0,
            requests: 0,
            evaluations: 0,
            failures: BTreeMap::new(),
            upstream_429s: 0,
            bot_429s: 0,
            cross_credential: 0,
            hot_keys: BTreeSet::new(),
            orders: 0,
            rng: fastrand::Rng::with_seed(rng.u64(..)),
        };
        for bot in 0..s.bots {
            // Bots start spread over the first evaluation period.
            let start = sim.s.eval_every.mul_f64(sim.rng.f64());
            sim.schedule(t0 + start, Event::BotWakes(bot));
        }
        sim
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn run(mut self) -> Report {
        loop {
            let next_event = self.events.peek().map(|Reverse((t, _, _))| *t);
            let next = match (next_event, self.core.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) if self.core.waiting() > 0 || self.core.calls_in_flight() > 0 => b,
                _ => break,
            };
            while let Some(Reverse((t, _, event))) = self.events.peek().copied() {
                if t > next {
                    break;
                }
                self.events.pop();
                self.handle(t, event);
            }
            self.core.handle_timeout(next);
            self.pump(next);
        }
        let stats = self.core.stats(self.end.max(self.t0));
        let bots_served = self
            .bots
            .iter()
            .filter(|b| b.evaluations > 0 && !b.failed)
            .count();
        Report {
            bots: self.s.bots,
            simulated: self.s.duration,
            requests: self.requests,
            evaluations: self.evaluations,
            bots_served,
            failures: self.failures,
            upstream_429s: self.upstream_429s,
            bot_429s: self.bot_429s,
            cross_credential: self.cross_credential,
            hot_keys: self.hot_keys.len(),
            min_age_floor_secs: self.s.min_age_floor(),
            spare_per_sec: (self.s.paced_rate()
                - self.orders as f64 / self.s.duration.as_secs_f64().max(1e-9))
            .max(0.0),
            stats,
        }
    }

    fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::BotWakes(bot) => {
                if now < self.end {
                    self.evaluate(now, bot);
                    let jitter = 0.8 + 0.4 * self.rng.f64();
                    self.schedule(
                        now + self.s.eval_every.mul_f64(jitter),
                        Event::BotWakes(bot),
                    );
                }
            }
            Event::UpstreamReceives(id) => {
                if let Some((call, sent, rtt)) = self.wire.remove(&id) {
                    let response = self.upstream(now, &sent);
                    let at = match response {
                        Some(_) => now + rtt / 2,
                        // No answer: the host's own timeout fires.
                        None => {
                            now + crate::config::secs(self.s.config.retry.call_timeout_secs / 2.0)
                        }
                    };
                    self.answers.insert(id, (call, response));
                    self.schedule(at, Event::UpstreamAnswers(id));
                }
            }
            Event::UpstreamAnswers(id) => {
                if let Some((call, response)) = self.answers.remove(&id) {
                    let outcome = match response {
                        Some(r) => Outcome::response(r),
                        None => {
                            Outcome::Transport(TransportError::Timeout("simulated timeout".into()))
                        }
                    };
                    // A late answer after the core timed the call out is
                    // ignored by the core, as a real host's would be.
                    let _ = self.core.complete(now, call, outcome);
                }
            }
        }
        self.pump(now);
    }

    /// Sends what is due upstream and hands finished requests to bots.
    fn pump(&mut self, now: Instant) {
        while let Some(d) = self.core.poll_dispatch(now) {
            let (lo, hi) = self.s.upstream.latency;
            let rtt = lo + (hi.saturating_sub(lo)).mul_f64(self.rng.f64());
            self.seq += 1;
            let id = self.seq;
            self.wire.insert(id, (d.call, d.payload, rtt));
            self.schedule(now + rtt / 2, Event::UpstreamReceives(id));
        }
        while let Some(f) = self.core.poll_finished() {
            if let Some(bot) = self.tickets.remove(&f.ticket) {
                match f.result {
                    Ok(answer) => self.answered(now, bot, &answer.response),
                    Err(failure) => self.failed(now, bot, failure.kind()),
                }
            }
        }
    }

    /// The upstream receives a call at `arrival`: enforces its limit, then
    /// answers like Coinbase would.
    fn upstream(&mut self, arrival: Instant, sent: &Sent) -> Option<Response> {
        let u = &self.s.upstream;
        let interval = u.period.div_f64(u.rate);
        let tat = self.upstream_tat.max(arrival);
        if tat + interval > arrival + interval * u.burst {
            self.upstream_429s += 1;
            return Some(Response::new(
                429,
                r#"{"message":"Public rate limit exceeded"}"#,
            ));
        }
        self.upstream_tat = tat + interval;
        if self.rng.f64() < u.timeout_rate {
            return None;
        }
        if self.rng.f64() < u.error_rate {
            return Some(Response::new(503, "<html>Service Unavailable</html>"));
        }
        let body = if sent.path.ends_with("/accounts") {
            format!(
                r#"{{"credential":{},"accounts":[{{"currency":"USD","available":"1000.00"}}]}}"#,
                sent.credential
            )
        } else if sent.method.as_str() == "POST" {
            r#"{"success":true,"order_id":"sim"}"#.to_owned()
        } else {
            format!(
                r#"{{"path":"{}","price":"{}"}}"#,
                sent.path,
                self.rng.u32(10_000..70_000)
            )
        };
        Some(Response::new(200, body).with_header("content-type", "application/json"))
    }

    fn evaluate(&mut self, now: Instant, bot: usize) {
        let b = &mut self.bots[bot];
        if !b.pending.is_empty() {
            // Still busy with the previous evaluation: skip this tick, as a
            // bot on a timer that is still waiting would.
            return;
        }
        b.evaluations += 1;
        self.evaluations += 1;
        let p = b.product.clone();
        b.pending
            .push_back((Method::get(), format!("{BASE}/products/{p}/ticker")));
        b.pending
            .push_back((Method::get(), format!("{BASE}/accounts")));
        if b.evaluations % self.s.candles_every.max(1) == 0 {
            b.pending.push_back((
                Method::get(),
                format!("{BASE}/products/{p}/candles?granularity=ONE_HOUR"),
            ));
        }
        if self.rng.f64() < self.s.order_chance {
            self.bots[bot]
                .pending
                .push_back((Method::post(), format!("{BASE}/orders")));
        }
        self.next_request(now, bot);
    }

    fn next_request(&mut self, now: Instant, bot: usize) {
        let Some((method, path)) = self.bots[bot].pending.front().cloned() else {
            return;
        };
        self.requests += 1;
        let credential = self.bots[bot].credential;
        if method.is_cacheable() {
            let key = if path.ends_with("/accounts") {
                format!("{path}#{credential}")
            } else {
                path.clone()
            };
            self.hot_keys.insert(key);
        } else {
            self.orders += 1;
        }
        let request = Request::new(method.clone(), &path, &format!("bot-{bot:03}"))
            .with_credential(&format!("key:{credential}"));
        let sent = Sent {
            path: request.path.clone(),
            method,
            credential,
        };
        match self.core.submit(now, request, sent) {
            Admission::Answered(answer) => self.answered(now, bot, &answer.response),
            Admission::Waiting { ticket, .. } => {
                self.tickets.insert(ticket, bot);
            }
            Admission::Refused(failure) => self.failed(now, bot, failure.kind()),
        }
    }

    fn answered(&mut self, now: Instant, bot: usize, response: &Response) {
        let credential = self.bots[bot].credential;
        if response.status == 429 {
            self.bot_429s += 1;
        }
        let body = String::from_utf8_lossy(&response.body);
        if body.contains("\"credential\":")
            && !body.contains(&format!("\"credential\":{credential},"))
        {
            self.cross_credential += 1;
        }
        self.bots[bot].pending.pop_front();
        self.next_request(now, bot);
    }

    fn failed(&mut self, now: Instant, bot: usize, kind: &'static str) {
        *self.failures.entry(kind).or_default() += 1;
        if kind == "rate_limited" {
            self.bot_429s += 1;
        }
        self.bots[bot].failed = true;
        self.bots[bot].pending.pop_front();
        self.next_request(now, bot);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let r = &s.requests;
        let hours = self.simulated.as_secs_f64() / 3600.0;
        writeln!(f, "Simulated {:.1} h, {} bots", hours, self.bots)?;
        writeln!(
            f,
            "  requests              {:>10}  ({} evaluations)",
            self.requests, self.evaluations
        )?;
        writeln!(
            f,
            "  cache hit rate        {:>9.2}%  (fresh {}, stale {})",
            s.cache_hit_rate * 100.0,
            r.hit,
            r.stale
        )?;
        writeln!(f, "  coalesced             {:>10}", r.coalesced)?;
        writeln!(
            f,
            "  served w/o own call   {:>9.2}%",
            s.served_without_upstream_rate * 100.0
        )?;
        writeln!(
            f,
            "  upstream calls        {:>10}  ({:.2}/min, {} retries)",
            s.upstream.calls,
            s.upstream.calls as f64 / (hours * 60.0).max(1e-9),
            s.upstream.retries
        )?;
        writeln!(
            f,
            "  API call reduction    {:>9.2}%",
            s.api_call_reduction * 100.0
        )?;
        writeln!(f, "  of which refreshes    {:>10}", s.upstream.refreshes)?;
        writeln!(f, "  upstream 429s         {:>10}", self.upstream_429s)?;
        writeln!(f, "  429s reaching bots    {:>10}", self.bot_429s)?;
        writeln!(f, "  cross-credential      {:>10}", self.cross_credential)?;
        let failed: u64 = self.failures.values().sum();
        writeln!(
            f,
            "  failed requests       {:>10}  {:?}",
            failed, self.failures
        )?;
        writeln!(
            f,
            "  bots served           {:>6} / {}",
            self.bots_served, self.bots
        )?;
        let a = &s.served_age;
        writeln!(
            f,
            "  served age (s):               source      n      p50      p99      max     mean"
        )?;
        for (name, sum) in [
            ("all", &a.all),
            ("hit", &a.hit),
            ("stale", &a.stale),
            ("upstream", &a.upstream),
        ] {
            writeln!(
                f,
                "                                {:<9} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                name, sum.count, sum.p50_secs, sum.p99_secs, sum.max_secs, sum.mean_secs
            )?;
        }
        writeln!(
            f,
            "  age bound K/(2B)      {:>9.2}s  (K = {} keys, B = {:.3} spare calls/s; mean served age {:.2} s = {:.2}x the bound)",
            self.age_bound_secs(),
            self.hot_keys,
            self.spare_per_sec,
            a.all.mean_secs,
            a.all.mean_secs / self.age_bound_secs().max(1e-9)
        )?;
        if self.min_age_floor_secs > self.age_bound_secs() {
            writeln!(
                f,
                "  min_age floor         {:>9.2}s  (half the smallest refreshed min_age; mean = {:.2}x it)",
                self.min_age_floor_secs,
                a.all.mean_secs / self.min_age_floor_secs.max(1e-9)
            )?;
        }
        writeln!(
            f,
            "  queue wait by priority (ms):  class       n      p50      p99      max"
        )?;
        for c in &s.queue.classes {
            writeln!(
                f,
                "                                {:<9} {:>7} {:>8.0} {:>8.0} {:>8.0}",
                c.class, c.wait.count, c.wait.p50_ms, c.wait.p99_ms, c.wait.max_ms
            )?;
        }
        Ok(())
    }
}
