//! The run itself: an event queue of bot wake-ups and upstream arrivals in
//! virtual time, with the coordinator between the bots and the upstream.

mod accounting;
mod upstream;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

use syncoord_core::config::secs;
use syncoord_core::{
    Admission, CallId, Coordinator, Dispatch, Duration, Finished, Freshness, Instant, Method,
    Outcome, Output, Request, Response, Ticket, TransportError,
};

use crate::prepare::in_window;
use crate::prepare::Prepared;
use crate::report::{Breakdown, BucketUse, LimitUse, Report};
use crate::scenario::{Credentials, Scenario, When};
use accounting::{Acc, BucketAcc, End};

/// The simulated host's payload: what the upstream needs to answer.
#[derive(Debug, Clone)]
struct Sent {
    path: String,
    method: Method,
    credential: usize,
    route: usize,
    /// Its priority class (the override, else the route's).
    class: usize,
    /// The request it was submitted for (its first dispatch ends its
    /// queue wait).
    request: u64,
    submitted: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    BotWakes(usize),
    /// A dispatched call reaches upstream (half the round trip later).
    UpstreamReceives(u64),
    UpstreamAnswers(u64),
}

struct Bot {
    group: usize,
    /// Bot `i` of its group.
    index: usize,
    client: String,
    credential: usize,
    evaluations: u32,
    /// Requests of the current evaluation still to make, in order: the
    /// call's index and its path.
    pending: VecDeque<(usize, String)>,
    failed: bool,
    /// Routes and classes it used, and whether one failed there.
    used: BTreeMap<(bool, usize), bool>,
}

/// What is known about a request while it waits.
struct Waiting {
    bot: usize,
    /// The request's id (its payload's [`Sent::request`]).
    request: u64,
    route: usize,
    class: usize,
}

pub(crate) struct Sim<'a> {
    s: &'a Scenario,
    p: Prepared,
    t0: Instant,
    end: Instant,
    core: Coordinator<Sent>,
    /// When the core asked to be woken, at the end of the latest round of
    /// its output loop (a new core asks for nothing).
    wake: Option<Instant>,
    rng: fastrand::Rng,
    events: BinaryHeap<Reverse<(Instant, u64, Event)>>,
    seq: u64,
    bots: Vec<Bot>,
    tickets: HashMap<Ticket, Waiting>,
    /// Requests whose first call has not been dispatched yet, and their
    /// route.
    unsent: HashMap<u64, usize>,
    /// Calls on the wire: sent, waiting to arrive upstream.
    wire: HashMap<u64, (CallId, Sent, Duration)>,
    /// Calls upstream has answered (`None`: it never will).
    answers: HashMap<u64, (CallId, Option<Response>)>,
    /// Upstream's own GCRA state per limit (and credential): theoretical
    /// arrival time.
    upstream_tat: HashMap<(usize, usize), Instant>,
    /// Units accepted per limit (and credential) in the current minute,
    /// for weight headers: (minute, units).
    upstream_weight: HashMap<(usize, usize), (u64, u64)>,
    /// The upstream's recent 429s (for its ban rule), and the ban's end.
    recent_429s: VecDeque<Instant>,
    banned_until: Option<Instant>,
    bans: u64,
    banned_calls: u64,
    /// Upstream 429s per minute of the run: the learning curve.
    curve: Vec<u32>,
    requests: u64,
    evaluations: u64,
    failures: BTreeMap<&'static str, u64>,
    upstream_429s: u64,
    fault_429s: u64,
    bot_429s: u64,
    cross_credential: u64,
    hot_keys: BTreeSet<String>,
    orders: u64,
    routes: Vec<Acc>,
    route_index: HashMap<String, usize>,
    classes: Vec<Acc>,
    /// By scope id, then credential (`None`: a global scope).
    buckets: BTreeMap<(u16, Option<usize>), BucketAcc>,
    limits: Vec<LimitUse>,
    /// When the last call was dispatched.
    last_call: Instant,
}

impl<'a> Sim<'a> {
    pub(crate) fn new(s: &'a Scenario, p: Prepared) -> Self {
        let t0 = Instant::now();
        let core = Coordinator::new(p.config.clone(), t0, s.seed);
        let mut rng = fastrand::Rng::with_seed(s.seed ^ 0x5eed);
        let mut bots = Vec::new();
        for (g, group) in s.groups.iter().enumerate() {
            for i in 0..group.count {
                let n = bots.len();
                let client = if g == 0 {
                    format!("bot-{n:03}")
                } else {
                    format!("{}-{i:03}", group.name)
                };
                let key = match group.credentials {
                    Credentials::Shared => 0,
                    Credentials::OneEach => i,
                    Credentials::Keys(k) => i % k.max(1),
                };
                // Keys of different groups are different keys.
                let offset: usize = s.groups[..g]
                    .iter()
                    .map(|o| match o.credentials {
                        Credentials::Shared => 1,
                        Credentials::OneEach => o.count,
                        Credentials::Keys(k) => k,
                    })
                    .sum();
                bots.push(Bot {
                    group: g,
                    index: i,
                    client,
                    credential: offset + key,
                    evaluations: 0,
                    pending: VecDeque::new(),
                    failed: false,
                    used: BTreeMap::new(),
                });
            }
        }
        let classes = s
            .config
            .priorities
            .iter()
            .map(|c| Acc::new(c.clone()))
            .collect();
        let limits = s
            .upstream
            .limits
            .iter()
            .map(|l| LimitUse {
                name: l.name.clone(),
                per_min: l.rate * 60.0 / l.period.as_secs_f64(),
                accepted: 0,
                rejected: 0,
            })
            .collect();
        let mut sim = Sim {
            s,
            p,
            t0,
            end: t0 + s.duration,
            core,
            wake: None,
            events: BinaryHeap::new(),
            seq: 0,
            bots,
            tickets: HashMap::new(),
            unsent: HashMap::new(),
            wire: HashMap::new(),
            answers: HashMap::new(),
            upstream_tat: HashMap::new(),
            upstream_weight: HashMap::new(),
            recent_429s: VecDeque::new(),
            banned_until: None,
            bans: 0,
            banned_calls: 0,
            curve: Vec::new(),
            requests: 0,
            evaluations: 0,
            failures: BTreeMap::new(),
            upstream_429s: 0,
            fault_429s: 0,
            bot_429s: 0,
            cross_credential: 0,
            hot_keys: BTreeSet::new(),
            orders: 0,
            routes: Vec::new(),
            route_index: HashMap::new(),
            classes,
            buckets: BTreeMap::new(),
            limits,
            last_call: t0,
            rng: fastrand::Rng::with_seed(rng.u64(..)),
        };
        for bot in 0..sim.bots.len() {
            let g = &s.groups[sim.bots[bot].group];
            // Bots start spread over the first evaluation period (on the
            // clock: within the jitter after the start).
            let start = if g.aligned {
                g.every.mul_f64(g.jitter * sim.rng.f64())
            } else {
                g.every.mul_f64(sim.rng.f64())
            };
            sim.schedule(t0 + start, Event::BotWakes(bot));
        }
        sim
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    pub(crate) fn run(mut self, progress: &mut dyn FnMut(Duration)) -> Report {
        let mut reported = Duration::ZERO;
        loop {
            let next_event = self.events.peek().map(|Reverse((t, _, _))| *t);
            let next = match (next_event, self.wake) {
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
            let elapsed = next.saturating_duration_since(self.t0);
            if elapsed >= reported + Duration::from_secs(60) {
                reported = elapsed;
                progress(elapsed);
            }
        }
        let stats = self.core.stats(self.end.max(self.t0));
        let bots_served = self
            .bots
            .iter()
            .filter(|b| b.evaluations > 0 && !b.failed)
            .count();
        let mut routes: Vec<Breakdown> = self.routes.into_iter().map(Acc::finish).collect();
        let mut classes: Vec<Breakdown> = self.classes.into_iter().map(Acc::finish).collect();
        for bot in &self.bots {
            for (&(is_class, i), &failed) in &bot.used {
                let b = if is_class {
                    &mut classes[i]
                } else {
                    &mut routes[i]
                };
                b.bots += 1;
                b.bots_served += usize::from(!failed);
            }
        }
        // The core's queue waits by class count every dispatch, retries
        // included; its histograms are the class figures.
        for (b, c) in classes.iter_mut().zip(&stats.queue.classes) {
            b.queue_wait = c.wait.clone();
        }
        classes.retain(|c| c.requests > 0 || c.upstream_calls > 0);
        let span = self
            .s
            .duration
            .max(self.last_call.saturating_duration_since(self.t0));
        let minutes = (span.as_secs_f64() / 60.0).max(1e-9);
        let buckets = self
            .buckets
            .into_values()
            .map(|b| BucketUse {
                scope: b.scope,
                credential: b.credential,
                calls: b.calls,
                per_min_mean: b.calls as f64 / minutes,
                per_min_peak: b.per_minute.iter().copied().max().unwrap_or(0).into(),
                budget_per_min: b.budget_per_min,
            })
            .collect();
        Report {
            bots: self.bots.len(),
            seed: self.s.seed,
            simulated: self.s.duration,
            span,
            requests: self.requests,
            reads: self.requests - self.orders,
            evaluations: self.evaluations,
            bots_served,
            failures: self.failures,
            upstream_429s: self.upstream_429s,
            fault_429s: self.fault_429s,
            bans: self.bans,
            banned_calls: self.banned_calls,
            learning_curve: self.curve,
            bot_429s: self.bot_429s,
            cross_credential: self.cross_credential,
            hot_keys: self.hot_keys.len(),
            min_age_floor_secs: self.s.min_age_floor(),
            spare_per_sec: (self.s.paced_rate()
                - self.orders as f64 / self.s.duration.as_secs_f64().max(1e-9))
            .max(0.0),
            routes,
            classes,
            buckets,
            limits: self.limits,
            stats,
        }
    }

    fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::BotWakes(bot) => {
                if now < self.end {
                    let g = &self.s.groups[self.bots[bot].group];
                    if in_window(g.active, now.saturating_duration_since(self.t0)) {
                        self.evaluate(now, bot);
                    }
                    let g = &self.s.groups[self.bots[bot].group];
                    let next = if g.aligned {
                        // The next tick of the clock, then within the jitter.
                        let every = g.every.as_secs_f64();
                        let since = now.saturating_duration_since(self.t0).as_secs_f64();
                        let tick = ((since / every).floor() + 1.0) * every;
                        self.t0 + secs(tick) + g.every.mul_f64(g.jitter * self.rng.f64())
                    } else {
                        let jitter = (1.0 - g.jitter) + 2.0 * g.jitter * self.rng.f64();
                        now + g.every.mul_f64(jitter)
                    };
                    self.schedule(next, Event::BotWakes(bot));
                }
            }
            Event::UpstreamReceives(id) => {
                if let Some((call, sent, rtt)) = self.wire.remove(&id) {
                    let response = self.upstream(now, &sent);
                    let at = match response {
                        Some(_) => now + rtt / 2,
                        // No answer: the host's own timeout fires.
                        None => now + secs(self.s.config.retry.call_timeout_secs / 2.0),
                    };
                    if response.as_ref().is_some_and(|r| r.status == 429) {
                        self.routes[sent.route].b.upstream_429s += 1;
                        if let Some(c) = self.classes.get_mut(sent.class) {
                            c.b.upstream_429s += 1;
                        }
                    }
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

    /// One round of the core's output loop: sends what is due upstream,
    /// then hands finished requests to bots, then notes when to wake.
    fn pump(&mut self, now: Instant) {
        self.wake = loop {
            match self.core.poll_output(now) {
                Output::Dispatch(d) => self.send(now, d),
                Output::Finished(f) => self.finish(now, f),
                // The simulated coordinator shares with nobody.
                Output::Shared(_) => {}
                Output::WakeAt(at) => break Some(at),
                Output::Idle => break None,
            }
        };
    }

    fn send(&mut self, now: Instant, d: Dispatch<Sent>) {
        let rtt = self.latency();
        if !d.refresh {
            if let Some(route) = self.unsent.remove(&d.payload.request) {
                let wait = now.saturating_duration_since(d.payload.submitted);
                let us = (wait.as_micros() as u64).max(1);
                let _ = self.routes[route].waits.record(us);
            }
        }
        self.count_call(now, &d.payload);
        self.seq += 1;
        let id = self.seq;
        self.wire.insert(id, (d.call, d.payload, rtt));
        self.schedule(now + rtt / 2, Event::UpstreamReceives(id));
    }

    fn finish(&mut self, now: Instant, f: Finished) {
        if let Some(w) = self.tickets.remove(&f.ticket) {
            // Answered by another request's call: it never waited for
            // one of its own.
            self.unsent.remove(&w.request);
            match f.result {
                Ok(answer) => {
                    self.record(&w, End::Answered(answer.source, answer.age));
                    self.answered(now, w.bot, &answer.response)
                }
                Err(failure) => self.failed(now, &w, failure.kind()),
            }
        }
    }

    fn evaluate(&mut self, now: Instant, bot: usize) {
        if !self.bots[bot].pending.is_empty() {
            // Still busy with the previous evaluation: skip this tick, as a
            // bot on a timer that is still waiting would.
            return;
        }
        let b = &mut self.bots[bot];
        b.evaluations += 1;
        self.evaluations += 1;
        let (evaluations, g, index) = (b.evaluations, b.group, b.index);
        let group = &self.s.groups[g];
        for (c, call) in group.calls.iter().enumerate() {
            let due = match call.when {
                When::Always => true,
                When::Every(n) => evaluations % n.max(1) == 0,
                When::Chance(p) => self.rng.f64() < p,
            };
            if !due {
                continue;
            }
            let mut path = call.path.clone();
            if path.contains('{') {
                for (name, values) in &group.vars {
                    if let Some(v) = values.get(index % values.len().max(1)) {
                        path = path.replace(&format!("{{{name}}}"), v);
                    }
                }
                for (name, values) in &call.vars {
                    let pattern = format!("{{{name}}}");
                    if path.contains(&pattern) && !values.is_empty() {
                        let v = &values[self.rng.usize(..values.len())];
                        path = path.replace(&pattern, v);
                    }
                }
            }
            self.bots[bot].pending.push_back((c, path));
        }
        self.next_request(now, bot);
    }

    fn route_slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.route_index.get(name) {
            return i;
        }
        let i = self.routes.len();
        self.routes.push(Acc::new(name.to_owned()));
        self.route_index.insert(name.to_owned(), i);
        i
    }

    fn next_request(&mut self, now: Instant, bot: usize) {
        let Some((c, path)) = self.bots[bot].pending.front().cloned() else {
            return;
        };
        let g = self.bots[bot].group;
        let call = &self.s.groups[g].calls[c];
        let method = call.method.clone();
        self.requests += 1;
        let credential = self.bots[bot].credential;
        let route = self
            .p
            .config
            .route(&method, path.split('?').next().unwrap_or(""));
        let (route_name, route_class, private) = (route.name.clone(), route.class, route.private);
        if method.is_cacheable() {
            let key = if private {
                format!("{path}#{credential}")
            } else {
                path.clone()
            };
            self.hot_keys.insert(key);
        } else {
            self.orders += 1;
        }
        let mut request = Request::new(method.clone(), &path, &self.bots[bot].client)
            .with_credential(&format!("key:{credential}"));
        let priority = self.p.priorities[g][c];
        if let Some(class) = priority {
            request = request.with_priority(class);
        }
        if let Some(share) = &self.s.groups[g].share {
            request = request.with_share(share.clone());
        }
        if let Some(cc) = &call.cache_control {
            request = request.with_freshness(Freshness::from_headers(&[(
                "cache-control".to_owned(),
                cc.clone(),
            )]));
        }
        let r = self.route_slot(&route_name);
        let class = usize::from(priority.unwrap_or(route_class).0);
        self.routes[r].b.requests += 1;
        if let Some(acc) = self.classes.get_mut(class) {
            acc.b.requests += 1;
        }
        self.bots[bot].used.entry((false, r)).or_insert(false);
        self.bots[bot].used.entry((true, class)).or_insert(false);
        self.seq += 1;
        let id = self.seq;
        let sent = Sent {
            path: request.path.clone(),
            method,
            credential,
            route: r,
            class,
            request: id,
            submitted: now,
        };
        let waiting = Waiting {
            bot,
            request: id,
            route: r,
            class,
        };
        match self.core.submit(now, request, sent) {
            Admission::Answered(answer) => {
                self.record(&waiting, End::Answered(answer.source, answer.age));
                self.answered(now, bot, &answer.response)
            }
            Admission::Waiting { ticket, .. } => {
                self.unsent.insert(id, r);
                self.tickets.insert(ticket, waiting);
            }
            Admission::Refused(failure) => self.failed(now, &waiting, failure.kind()),
        }
    }
}
