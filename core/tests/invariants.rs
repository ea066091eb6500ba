//! Property tests over random schedules, through the public API only.
//!
//! A schedule is a list of steps; each moves the host's clock (forward,
//! not at all, or backwards) and does one thing: a bot submits, cancels,
//! upstream answers a call in flight (any status, or a transport error), or
//! time just passes. After every step the harness runs one round of the
//! host loop: `handle_timeout`, then `poll_output_unsent` until it says to
//! sleep (what ended), then `poll_output` until it says to sleep (calls
//! due, then what ended). Checked throughout:
//!
//! - (a) every request ends exactly once (at submit, by one `Finished`, or
//!   by a successful `cancel`), and nothing is left once the schedule is
//!   over and upstream answers everything;
//! - (b) replayed through each bucket's *documented* limit (rate and burst
//!   as configured, before headroom; per credential of the payload actually
//!   sent for credential-keyed scopes) as an exact integer token bucket,
//!   the dispatches never overdraw: upstream never sees more than allowed;
//! - (c) no answer on a private route (nor any POST answer) carries another
//!   credential's response, and no answer is for another path;
//! - (d) with one global scope and no coalescing or aging, no call is sent
//!   while a call of a strictly higher class is waiting in the queue;
//! - (e) the coordinator's clock never goes back: after a host round it
//!   never asks to be woken at or before the latest instant it was given,
//!   and its uptime is exactly that latest instant.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use syncoord_core::config::{Keying, RouteRule, ScopeConfig};
use syncoord_core::{
    Admission, Answer, CallId, ClassId, Config, Coordinator, Dispatch, Duration, Failure, Finished,
    Instant, Method, Outcome, Output, Request, Response, Ticket, TransportError,
};

/// How long the default deadline is in both configs.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(6);

/// One documented upstream limit: `rate` calls per `period`, `burst` at
/// once.
#[derive(Debug, Clone, Copy)]
struct Limit {
    name: &'static str,
    rate: u32,
    period_secs: u32,
    burst: u32,
    headroom: f64,
    per_credential: bool,
}

/// One kind of request the bots make.
#[derive(Debug, Clone, Copy)]
struct Kind {
    prefix: &'static str,
    post: bool,
    class: u8,
    /// Indexes into `Model::limits`.
    scopes: &'static [usize],
    cost: u32,
    private: bool,
    ttl_secs: f64,
}

struct Model {
    limits: Vec<Limit>,
    kinds: Vec<Kind>,
    coalesce: bool,
    aging_secs: Option<f64>,
    /// Check (d): only meaningful with one global scope, no coalescing
    /// and no aging.
    check_priority: bool,
}

const CLASSES: [&str; 4] = ["trading", "account", "market", "analysis"];

/// Two scopes, one per IP at exactly the documented limit (a whole number
/// of nanoseconds per call) and one per credential at exactly 3/s (not a
/// whole number of nanoseconds); shared and private reads, orders, and a
/// shared read paced per credential.
fn general() -> Model {
    Model {
        limits: vec![
            Limit {
                name: "ip",
                rate: 4,
                period_secs: 1,
                burst: 3,
                headroom: 1.0,
                per_credential: false,
            },
            Limit {
                name: "key",
                rate: 3,
                period_secs: 1,
                burst: 4,
                headroom: 1.0,
                per_credential: true,
            },
        ],
        kinds: vec![
            Kind {
                prefix: "/pub",
                post: false,
                class: 2,
                scopes: &[0],
                cost: 1,
                private: false,
                ttl_secs: 2.0,
            },
            Kind {
                prefix: "/priv",
                post: false,
                class: 1,
                scopes: &[0, 1],
                cost: 1,
                private: true,
                ttl_secs: 2.0,
            },
            Kind {
                prefix: "/orders",
                post: true,
                class: 0,
                scopes: &[1],
                cost: 1,
                private: true,
                ttl_secs: 0.0,
            },
            Kind {
                prefix: "/shared",
                post: false,
                class: 3,
                scopes: &[1],
                cost: 2,
                private: false,
                ttl_secs: 1.0,
            },
        ],
        coalesce: true,
        aging_secs: Some(1.5),
        check_priority: false,
    }
}

/// One global scope (with headroom), no coalescing, no aging.
fn single_scope() -> Model {
    let mut m = general();
    m.limits = vec![Limit {
        name: "ip",
        rate: 3,
        period_secs: 2,
        burst: 4,
        headroom: 0.9,
        per_credential: false,
    }];
    for k in &mut m.kinds {
        k.scopes = &[0];
    }
    m.coalesce = false;
    m.aging_secs = None;
    m.check_priority = true;
    m
}

fn config(m: &Model) -> Config {
    let scopes = m
        .limits
        .iter()
        .map(|l| {
            let s = ScopeConfig {
                rate: l.rate.into(),
                period_secs: l.period_secs.into(),
                burst: l.burst,
                per: if l.per_credential {
                    Keying::Credential
                } else {
                    Keying::Global
                },
                headroom: l.headroom,
            };
            (l.name.to_owned(), s)
        })
        .collect();
    let mut c = Config {
        scopes,
        ..Config::default()
    };
    c.defaults.scopes = vec![m.limits[0].name.into()];
    c.routes = m
        .kinds
        .iter()
        .map(|k| RouteRule {
            name: Some(k.prefix.into()),
            methods: vec![if k.post { "POST" } else { "GET" }.into()],
            path: format!("{}/**", k.prefix),
            priority: Some(CLASSES[k.class as usize].into()),
            cost: Some(k.cost),
            ttl_secs: Some(k.ttl_secs),
            scopes: Some(k.scopes.iter().map(|&i| m.limits[i].name.into()).collect()),
            cacheable: Some(!k.post),
            private: Some(k.private),
            coalesce: Some(!k.post && m.coalesce),
            ..Default::default()
        })
        .collect();
    c.queue.max_len = 6;
    c.queue.default_deadline_secs = DEFAULT_DEADLINE.as_secs_f64();
    c.queue.aging_secs = m.aging_secs;
    c.cache.stale_if_error_secs = 3.0;
    c.cache.stale_while_revalidate_secs = 1.0;
    c.limiter.base_pause_secs = 0.5;
    c.limiter.max_pause_secs = 4.0;
    c.limiter.recovery_secs = 5.0;
    c.retry.max_attempts = 3;
    c.retry.base_delay_secs = 0.2;
    c.retry.max_delay_secs = 1.0;
    c.retry.max_total_secs = 5.0;
    c.retry.call_timeout_secs = 2.0;
    c.breaker.failure_threshold = 3;
    c.breaker.open_secs = 1.0;
    c.breaker.max_open_secs = 4.0;
    c
}

/// What a hot reload may change while requests wait and calls are in
/// flight, as variant `n` of `m`'s config: TTLs (to none, shorter,
/// longer), retries, queue length, a rule that disappears (its calls fall
/// back to the defaults, which spend from the same first scope) and one
/// that appears. Budgets and classes stay (budget reloads have their own
/// property test in `coordinator::tests::reconfigure`).
fn reloaded(m: &Model, n: u8) -> Config {
    let mut c = config(m);
    match n {
        0 => {}
        1 => {
            for r in &mut c.routes {
                r.ttl_secs = r.ttl_secs.map(|t| t * 3.0);
            }
            c.retry.max_attempts = 2;
            c.queue.max_len = 3;
        }
        2 => {
            for r in &mut c.routes {
                r.ttl_secs = Some(0.0);
            }
            c.retry.max_attempts = 4;
            c.queue.max_len = 10;
        }
        _ => {
            for r in &mut c.routes {
                r.ttl_secs = r.ttl_secs.map(|t| t * 0.25);
                r.name = r.name.take().map(|n| format!("{n}-renamed"));
            }
        }
    }
    c
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    NotFound,
    TooMany(Option<u8>),
    Status(u16),
    Connect,
    Broken,
}

#[derive(Debug, Clone)]
enum Op {
    Submit {
        kind: usize,
        item: u8,
        client: u8,
        /// 0: no credential.
        cred: u8,
        priority: Option<u8>,
        deadline_ms: Option<u32>,
    },
    Cancel(usize),
    Complete(usize, Reply),
    /// Only time passes.
    Idle,
    /// A hot reload: [`reloaded`] variant `n` swapped in.
    Reconfigure(u8),
}

#[derive(Debug, Clone)]
struct Step {
    dt_ms: i64,
    op: Op,
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        8 => Just(Reply::Ok),
        1 => Just(Reply::NotFound),
        2 => proptest::option::of(0u8..3).prop_map(Reply::TooMany),
        1 => Just(Reply::Status(500)),
        1 => Just(Reply::Status(503)),
        1 => Just(Reply::Connect),
        1 => Just(Reply::Broken),
    ]
}

fn step(kinds: usize) -> impl Strategy<Value = Step> {
    let dt = prop_oneof![
        3 => Just(0i64),
        5 => 1i64..400,
        2 => 400i64..3000,
        1 => -2000i64..0,
    ];
    let submit = (
        0..kinds,
        0u8..3,
        0u8..3,
        0u8..4,
        proptest::option::weighted(0.2, 0u8..6),
        proptest::option::weighted(0.3, 0u32..4000),
    )
        .prop_map(
            |(kind, item, client, cred, priority, deadline_ms)| Op::Submit {
                kind,
                item,
                client,
                cred,
                priority,
                deadline_ms,
            },
        );
    let op = prop_oneof![
        10 => submit,
        7 => (any::<usize>(), reply()).prop_map(|(i, r)| Op::Complete(i, r)),
        2 => any::<usize>().prop_map(Op::Cancel),
        3 => Just(Op::Idle),
        1 => (0u8..4).prop_map(Op::Reconfigure),
    ];
    (dt, op).prop_map(|(dt_ms, op)| Step { dt_ms, op })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Answered or refused by `submit`.
    EndedAtSubmit,
    Waiting,
    Finished,
    Cancelled,
}

#[derive(Debug)]
struct Sub {
    kind: usize,
    item: u8,
    cred: Option<String>,
    class: u8,
    /// The send-by deadline as the core computes it.
    deadline: Instant,
    state: State,
    /// Waiting in the queue for sure (for (d)): not yet sent, or sent back
    /// to the queue by a 429.
    queued: bool,
    /// Ended with an answer (not a failure).
    answered: bool,
}

#[derive(Debug)]
struct Sent {
    sub: usize,
    at: Instant,
    timeout: Duration,
}

/// A documented limit replayed as a token bucket, in units of
/// 1 / period_nanos of a token, so refills are exact integers.
#[derive(Debug)]
struct Replay {
    level: u128,
    last: Instant,
}

struct World<'m> {
    m: &'m Model,
    c: Coordinator<u32>,
    t0: Instant,
    /// The host's clock (may go backwards).
    host: Instant,
    /// The latest instant handed to the core.
    clock: Instant,
    subs: Vec<Sub>,
    by_ticket: HashMap<Ticket, usize>,
    in_flight: BTreeMap<CallId, Sent>,
    replay: HashMap<(usize, Option<String>), Replay>,
    /// In the final drain: upstream answers every call at once.
    auto_answer: bool,
    dispatches: usize,
    /// (d) suspects: (sent, queued of a higher class, when), judged at
    /// the round's end.
    outranked: Vec<(usize, usize, Duration)>,
    /// Requests whose call got a 429 this step: queued again if still
    /// waiting once the step's ends are drained.
    requeued: Vec<usize>,
    /// When the core asked to be woken, at the end of the latest round.
    wake: Option<Instant>,
}

impl<'m> World<'m> {
    fn new(m: &'m Model, seed: u64) -> Self {
        let t0 = Instant::now();
        World {
            m,
            c: Coordinator::new(config(m).compile().expect("valid config"), t0, seed),
            t0,
            host: t0,
            clock: t0,
            subs: Vec::new(),
            by_ticket: HashMap::new(),
            in_flight: BTreeMap::new(),
            replay: HashMap::new(),
            auto_answer: false,
            dispatches: 0,
            outranked: Vec::new(),
            requeued: Vec::new(),
            wake: None,
        }
    }

    /// The host's clock moves to `host`; the core never sees time go back.
    fn set_host(&mut self, host: Instant) {
        self.host = host;
        self.clock = self.clock.max(host);
    }

    fn body(&self, sub: usize) -> String {
        let s = &self.subs[sub];
        format!("{}|{}|{}", s.kind, s.item, s.cred.as_deref().unwrap_or("-"))
    }

    /// (c): an answer (or a failure's upstream response) reaching `sub`.
    fn check_response(&self, sub: usize, response: &Response, how: &str) {
        let s = &self.subs[sub];
        let body = std::str::from_utf8(&response.body).unwrap();
        let parts: Vec<&str> = body.split('|').collect();
        assert_eq!(parts.len(), 3, "{how}: body {body:?}");
        assert_eq!(
            (parts[0], parts[1]),
            (s.kind.to_string().as_str(), s.item.to_string().as_str()),
            "{how}: request {sub} got another path's response {body:?}"
        );
        if self.m.kinds[s.kind].private {
            assert_eq!(
                parts[2],
                s.cred.as_deref().unwrap_or("-"),
                "{how}: request {sub} of {:?} got another credential's response",
                s.cred
            );
        }
    }

    fn check_answer(&self, sub: usize, a: &Answer, how: &str) {
        self.check_response(sub, &a.response, how);
    }

    fn check_failure(&self, sub: usize, f: &Failure) {
        match f {
            Failure::Upstream { response, .. } | Failure::RateLimited { response, .. } => {
                self.check_response(sub, response, "failure")
            }
            _ => {}
        }
    }

    fn submit(
        &mut self,
        kind: usize,
        item: u8,
        client: u8,
        cred: u8,
        priority: Option<u8>,
        deadline_ms: Option<u32>,
    ) {
        let k = self.m.kinds[kind];
        let path = format!("{}/{}?v=1", k.prefix, item);
        let client = format!("bot-{client}");
        let mut r = if k.post {
            Request::new(Method::post(), &path, &client)
        } else {
            Request::get(&path, &client)
        };
        let cred = (cred > 0).then(|| format!("key:{cred}"));
        if let Some(c) = &cred {
            r = r.with_credential(c);
        }
        if let Some(p) = priority {
            r = r.with_priority(ClassId(p));
        }
        let deadline = match deadline_ms {
            Some(ms) => {
                let d = self.host + Duration::from_millis(ms.into());
                r = r.with_deadline(d);
                d
            }
            None => self.clock + DEFAULT_DEADLINE,
        };
        let idx = self.subs.len();
        self.subs.push(Sub {
            kind,
            item,
            cred,
            class: priority.unwrap_or(k.class).min(3),
            deadline,
            state: State::Waiting,
            queued: true,
            answered: false,
        });
        match self.c.submit(self.host, r, idx as u32) {
            Admission::Answered(a) => {
                self.check_answer(idx, &a, "answered at submit");
                self.subs[idx].state = State::EndedAtSubmit;
                self.subs[idx].answered = true;
            }
            Admission::Refused(f) => {
                self.check_failure(idx, &f);
                self.subs[idx].state = State::EndedAtSubmit;
            }
            Admission::Waiting { ticket, joined } => {
                let fresh = self.by_ticket.insert(ticket, idx).is_none();
                assert!(fresh, "{ticket:?} handed out twice");
                if joined {
                    assert!(self.m.coalesce && !k.post, "joined without coalescing");
                    // Whether its call is queued is unknown from outside.
                    self.subs[idx].queued = false;
                }
            }
        }
    }

    fn cancel(&mut self, pick: usize) {
        let tickets: Vec<(Ticket, usize)> = self.by_ticket.iter().map(|(t, i)| (*t, *i)).collect();
        if tickets.is_empty() {
            return;
        }
        let mut tickets = tickets;
        tickets.sort();
        let (ticket, idx) = tickets[pick % tickets.len()];
        let was_waiting = self.subs[idx].state == State::Waiting;
        let cancelled = self.c.cancel(ticket);
        assert_eq!(
            cancelled, was_waiting,
            "cancel({ticket:?}) = {cancelled} but its state was {:?}",
            self.subs[idx].state
        );
        if cancelled {
            self.subs[idx].state = State::Cancelled;
        }
    }

    fn outcome(&self, sub: usize, reply: Reply) -> Outcome {
        let body = self.body(sub);
        let response = |status| Outcome::response(Response::new(status, body.clone()));
        match reply {
            Reply::Ok => response(200),
            Reply::NotFound => response(404),
            Reply::Status(s) => response(s),
            Reply::TooMany(after) => {
                let r = Response::new(429, body.clone());
                Outcome::response(match after {
                    Some(s) => r.with_header("Retry-After", &s.to_string()),
                    None => r,
                })
            }
            Reply::Connect => Outcome::Transport(TransportError::Connect("refused".into())),
            Reply::Broken => Outcome::Transport(TransportError::Broken("reset".into())),
        }
    }

    fn complete(&mut self, call: CallId, reply: Reply) {
        let Some(sent) = self.in_flight.remove(&call) else {
            return;
        };
        let outcome = self.outcome(sent.sub, reply);
        match self.c.complete(self.host, call, outcome) {
            Ok(()) => {
                if let Reply::TooMany(_) = reply {
                    // Back in the queue unless it ended (drained next).
                    self.requeued.push(sent.sub);
                }
            }
            Err(e) => {
                assert_eq!(e.0, call);
                assert!(
                    self.clock >= sent.at + sent.timeout,
                    "{call:?} refused before its timeout"
                );
            }
        }
    }

    fn complete_pick(&mut self, pick: usize, reply: Reply) {
        if self.in_flight.is_empty() {
            return;
        }
        let call = *self
            .in_flight
            .keys()
            .nth(pick % self.in_flight.len())
            .unwrap();
        self.complete(call, reply);
    }

    /// Hands out what ended (the host cannot send now), to the round's end.
    fn drain_finished(&mut self) {
        loop {
            match self.c.poll_output_unsent() {
                Output::Finished(f) => self.finished(f),
                Output::Dispatch(_) => panic!("a call handed out to a host that cannot send"),
                Output::Shared(_) => panic!("shared output without sharing"),
                Output::WakeAt(t) => return self.wake = Some(t),
                Output::Idle => return self.wake = None,
            }
        }
    }

    fn finished(&mut self, f: Finished) {
        let idx = *self
            .by_ticket
            .get(&f.ticket)
            .unwrap_or_else(|| panic!("Finished for unknown {:?}", f.ticket));
        assert_eq!(
            self.subs[idx].state,
            State::Waiting,
            "{:?} (request {idx}) ended twice",
            f.ticket
        );
        self.subs[idx].state = State::Finished;
        self.subs[idx].answered = f.result.is_ok();
        match &f.result {
            Ok(a) => self.check_answer(idx, a, "finished"),
            Err(e) => self.check_failure(idx, e),
        }
    }

    /// (b): spends the dispatch on each documented bucket.
    fn replay(&mut self, sub: usize) {
        let now = self.clock;
        let s = &self.subs[sub];
        let k = self.m.kinds[s.kind];
        for &scope in k.scopes {
            let l = self.m.limits[scope];
            let per = u128::from(l.period_secs) * 1_000_000_000;
            let cap = u128::from(l.burst) * per;
            let key = (scope, l.per_credential.then(|| s.cred.clone()).flatten());
            let b = self.replay.entry(key.clone()).or_insert(Replay {
                level: cap,
                last: now,
            });
            assert!(now >= b.last, "dispatched in the past");
            let refill = u128::from(l.rate) * (now - b.last).as_nanos();
            b.level = (b.level + refill).min(cap);
            b.last = now;
            let cost = u128::from(k.cost) * per;
            assert!(
                b.level >= cost,
                "bucket {key:?} overdrawn at {:?}: {} units left, call costs {cost} (dispatch #{})",
                now - self.t0,
                b.level,
                self.dispatches
            );
            b.level -= cost;
        }
    }

    /// (d): nothing of a strictly higher class waits in the queue. A
    /// round hands out its calls before its ended requests, so one of a
    /// higher class that ended in the same round (its route's breaker
    /// opened, say) was not waiting: suspects are judged at the round's
    /// end (`judge_priority`).
    fn check_priority(&mut self, sub: usize) {
        let class = self.subs[sub].class;
        for (i, s) in self.subs.iter().enumerate() {
            if i != sub
                && s.state == State::Waiting
                && s.queued
                && s.class < class
                && s.deadline > self.clock
            {
                self.outranked.push((sub, i, self.clock - self.t0));
            }
        }
    }

    fn judge_priority(&mut self) {
        for (sub, i, at) in std::mem::take(&mut self.outranked) {
            if self.subs[i].state == State::Waiting {
                panic!(
                    "request {sub} (class {}) sent at {at:?} while request {i} (class {}) was queued",
                    self.subs[sub].class, self.subs[i].class
                );
            }
        }
    }

    /// Sends what is due, then hands out what ended, to the round's end.
    fn drain_outputs(&mut self) {
        loop {
            match self.c.poll_output(self.host) {
                Output::Dispatch(d) => self.dispatched(d),
                Output::Finished(f) => self.finished(f),
                Output::Shared(_) => panic!("shared output without sharing"),
                Output::WakeAt(t) => {
                    self.judge_priority();
                    return self.wake = Some(t);
                }
                Output::Idle => {
                    self.judge_priority();
                    return self.wake = None;
                }
            }
        }
    }

    fn dispatched(&mut self, d: Dispatch<u32>) {
        self.dispatches += 1;
        let sub = d.payload as usize;
        assert!(sub < self.subs.len(), "unknown payload");
        assert_eq!(
            self.subs[sub].state,
            State::Waiting,
            "sent with the payload of request {sub}, which has ended"
        );
        // Its rule, or (after a reload renamed it, see `reloaded`) the
        // rule's new name or the defaults.
        let prefix = self.m.kinds[self.subs[sub].kind].prefix;
        assert!(
            d.route == prefix || d.route == format!("{prefix}-renamed") || d.route == "default",
            "{} sent under {}",
            prefix,
            d.route
        );
        self.replay(sub);
        if self.m.check_priority {
            self.check_priority(sub);
        }
        self.subs[sub].queued = false;
        let sent = Sent {
            sub,
            at: self.clock,
            timeout: d.timeout,
        };
        if self.auto_answer {
            let outcome = self.outcome(sub, Reply::Ok);
            self.c.complete(self.host, d.call, outcome).unwrap();
        } else {
            self.in_flight.insert(d.call, sent);
        }
    }

    /// One round of the host loop, and the checks that hold after it.
    fn round(&mut self) {
        self.c.handle_timeout(self.host);
        self.drain_finished();
        for sub in std::mem::take(&mut self.requeued) {
            if self.subs[sub].state == State::Waiting && !self.m.coalesce {
                self.subs[sub].queued = true;
            }
        }
        self.drain_outputs();
        // (e) nothing overdue is left, and the core's clock is ours.
        if let Some(t) = self.wake {
            assert!(
                t > self.clock,
                "WakeAt {:?} not after the clock {:?}",
                t - self.t0,
                self.clock - self.t0
            );
        }
        let waiting = self
            .subs
            .iter()
            .filter(|s| s.state == State::Waiting)
            .count();
        assert_eq!(self.c.waiting(), waiting, "(a) waiting requests");
    }

    fn check_stats(&mut self) {
        let s = self.c.stats(self.host);
        let up = (self.clock - self.t0).as_secs_f64();
        assert!(
            (s.uptime_secs - up).abs() < 1e-6,
            "(e) uptime {}",
            s.uptime_secs
        );
        assert_eq!(s.requests.submitted as usize, self.subs.len());
        assert_eq!(s.requests.ended() + s.in_progress, s.requests.submitted);
        assert_eq!(s.in_progress as usize, self.c.waiting());
    }

    fn apply(&mut self, step: &Step) {
        let host = if step.dt_ms >= 0 {
            self.host + Duration::from_millis(step.dt_ms as u64)
        } else {
            let back = Duration::from_millis(step.dt_ms.unsigned_abs());
            self.host.checked_sub(back).unwrap_or(self.t0).max(self.t0)
        };
        self.set_host(host);
        match step.op.clone() {
            Op::Submit {
                kind,
                item,
                client,
                cred,
                priority,
                deadline_ms,
            } => self.submit(kind, item, client, cred, priority, deadline_ms),
            Op::Cancel(pick) => self.cancel(pick),
            Op::Complete(pick, reply) => self.complete_pick(pick, reply),
            Op::Idle => {}
            Op::Reconfigure(n) => {
                let compiled = reloaded(self.m, n).compile().expect("valid config");
                self.c
                    .reconfigure(compiled)
                    .expect("only live settings change");
            }
        }
        self.round();
    }

    /// Liveness: whatever the schedule did (open breakers, pauses,
    /// throttling), once upstream is healthy again every kind of request,
    /// for every credential, gets an answer well within its deadline.
    fn recover(&mut self) {
        // Longer than any breaker opening or pause in the config.
        self.set_host(self.clock + Duration::from_secs(10));
        let first = self.subs.len();
        for kind in 0..self.m.kinds.len() {
            for cred in 0..4 {
                // One at a time: the queue is short.
                self.submit(kind, 9, cred, cred, None, Some(120_000));
                self.drain_until_idle();
            }
        }
        for (i, s) in self.subs.iter().enumerate().skip(first) {
            assert!(
                s.answered,
                "request {i} ({s:?}) not answered once upstream recovered"
            );
        }
    }

    fn drain_until_idle(&mut self) {
        let limit = self.clock + Duration::from_secs(600);
        for _ in 0..10_000 {
            self.round();
            match self.wake {
                Some(t) if t <= limit => self.set_host(t.max(self.host)),
                _ => return,
            }
        }
    }

    /// Upstream answers everything; time runs until nothing is left.
    fn finish(&mut self) {
        let calls: Vec<CallId> = self.in_flight.keys().copied().collect();
        for call in calls {
            self.complete(call, Reply::Ok);
        }
        self.auto_answer = true;
        self.drain_until_idle();
        assert_eq!(self.c.waiting(), 0, "(a) requests left waiting");
        assert_eq!(self.c.calls_in_flight(), 0);
        assert_eq!(self.c.queue_len(), 0);
        for (i, s) in self.subs.iter().enumerate() {
            assert_ne!(s.state, State::Waiting, "(a) request {i} never ended");
        }
        self.check_stats();
    }
}

fn run(m: &Model, seed: u64, steps: &[Step]) {
    let mut w = World::new(m, seed);
    for (i, step) in steps.iter().enumerate() {
        w.apply(step);
        if i % 8 == 0 {
            w.check_stats();
        }
    }
    w.finish();
    w.recover();
    w.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn schedules_keep_every_invariant(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(4), 1..200),
    ) {
        run(&general(), seed, &steps);
    }

    #[test]
    fn one_scope_schedules_respect_priority(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(4), 1..200),
    ) {
        run(&single_scope(), seed, &steps);
    }
}
