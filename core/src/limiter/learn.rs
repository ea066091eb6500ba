//! The learning part of a bucket: an effective rate below the configured
//! ceiling that moves with evidence.
//!
//! - A limit upstream states (`RateLimit-Policy`, `x-ratelimit-limit` with
//!   a configured window) sets the effective rate at once, at the scope's
//!   headroom, never above the ceiling unless `trust_upstream_limits`.
//! - Without one, a 429 cuts the rate to `decrease` times the lower of the
//!   rate and what the bucket was really sending (so a ceiling 200 times
//!   too high is found in a handful of 429s, not two hundred halvings). A
//!   429 on a call sent before the last cut, or one after a cut with no
//!   call accepted since (a storm, a persistent refusal), is old news and
//!   cuts nothing: one stray 429 costs one cut. The burst drops to a
//!   second's worth of the new rate; a 429 earned while the burst was
//!   larger than that may be the burst's fault, so it does not set the
//!   rate probing stops below.
//! - A bucket that was busy (more than half its burst spent) through a
//!   whole probe period without a 429 steps up: x1.1 while below 90% of
//!   the last rate that earned a 429, then by `increase` of that rate per
//!   period, so probing past a persistent limit costs one 429 every few
//!   tens of minutes.
//! - With no new evidence for `expire_secs` the bucket forgets and runs at
//!   the ceiling again.

use serde::{Deserialize, Serialize};
use web_time::{Duration, Instant};

use crate::config::{secs, LearnConfig};

/// What a learned rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearnedFrom {
    /// Upstream stated its limit in a header.
    Stated,
    /// 429s without a stated limit (AIMD).
    RateLimited,
}

impl LearnedFrom {
    /// Its name in stats and state files.
    pub fn as_str(self) -> &'static str {
        match self {
            LearnedFrom::Stated => "stated",
            LearnedFrom::RateLimited => "rate-limited",
        }
    }
}

/// A bucket's learned rate as it leaves the coordinator, to survive a
/// restart (a state file) or reach the other daemons (a shared store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedRate {
    /// The scope's name.
    pub scope: String,
    /// Whose bucket, for a per-credential scope (an identity alias, never
    /// a secret).
    pub credential: Option<String>,
    /// Units per second at the whole budget.
    pub rate_per_sec: f64,
    /// Usable burst.
    pub burst: u32,
    /// What it was learned from.
    pub from: LearnedFrom,
    /// Seconds since its last evidence, when exported.
    pub age_secs: f64,
}

/// The rules, from `[limiter.learn]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    pub(super) enabled: bool,
    decrease: f64,
    pub(super) floor: f64,
    pub(super) probe: Duration,
    increase: f64,
    pub(super) trust: bool,
    expire: Duration,
}

impl Rules {
    pub(super) fn new(c: &LearnConfig) -> Self {
        Rules {
            enabled: c.enabled,
            decrease: c.decrease,
            floor: c.floor,
            probe: secs(c.probe_secs),
            increase: c.increase,
            trust: c.trust_upstream_limits,
            expire: secs(c.expire_secs),
        }
    }
}

/// How fast a bucket really dispatches: units in the current and the
/// previous window (a sliding-window estimate).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Meter {
    start: Option<Instant>,
    prev: u32,
    cur: u32,
    /// A whole window has passed: the estimate is a rate, not a burst.
    seasoned: bool,
}

impl Meter {
    pub(super) fn count(&mut self, now: Instant, cost: u32, window: Duration) {
        self.roll(now, window);
        self.cur = self.cur.saturating_add(cost);
    }

    fn roll(&mut self, now: Instant, window: Duration) {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= window * 2 {
            (self.prev, self.cur, self.start) = (0, 0, Some(now));
            self.seasoned = true;
        } else if elapsed >= window {
            (self.prev, self.cur, self.start) = (self.cur, 0, Some(start + window));
            self.seasoned = true;
        }
    }

    /// Units per second over the last `window`; `None` before a whole
    /// window has passed.
    pub(super) fn rate(&self, now: Instant, window: Duration) -> Option<f64> {
        let mut m = *self;
        m.roll(now, window);
        let start = m.start?;
        if !m.seasoned || window.is_zero() {
            return None;
        }
        let frac =
            (now.saturating_duration_since(start).as_secs_f64() / window.as_secs_f64()).min(1.0);
        Some((f64::from(m.prev) * (1.0 - frac) + f64::from(m.cur)) / window.as_secs_f64())
    }
}

/// A bucket's learned state.
#[derive(Debug, Clone)]
pub(super) struct Learned {
    /// Units per second at the whole budget (share 1).
    pub(super) rate: f64,
    /// Usable burst.
    pub(super) burst: u32,
    /// The lowest rate that earned a 429 since it was learned.
    bad: Option<f64>,
    pub(super) from: LearnedFrom,
    /// The last evidence.
    pub(super) at: Instant,
    /// The last cut.
    cut_at: Option<Instant>,
    accepted_since_cut: u32,
    probe_from: Instant,
    pub(super) busy: bool,
}

impl Learned {
    pub(super) fn new(rate: f64, burst: u32, from: LearnedFrom, now: Instant) -> Self {
        Learned {
            rate,
            burst: burst.max(1),
            bad: None,
            from,
            at: now,
            cut_at: None,
            accepted_since_cut: 0,
            probe_from: now,
            busy: false,
        }
    }

    /// A rate learned elsewhere (or before a restart), `age` old: kept as
    /// it was learned; a cut rate remembers it as the rate that earned its
    /// 429, so probing resumes where it stood.
    pub(super) fn restored(rate: f64, burst: u32, from: LearnedFrom, at: Instant) -> Self {
        let mut l = Learned::new(rate, burst, from, at);
        if from != LearnedFrom::Stated {
            l.bad = Some(rate / 0.9);
        }
        l
    }

    pub(super) fn expired(&self, now: Instant, rules: Rules) -> bool {
        now.saturating_duration_since(self.at) >= rules.expire
    }

    pub(super) fn accepted(&mut self) {
        self.accepted_since_cut = self.accepted_since_cut.saturating_add(1);
    }

    /// Whether a 429 on a call sent at `sent` is news for this state.
    pub(super) fn is_news(&self, sent: Option<Instant>) -> bool {
        match self.cut_at {
            None => true,
            Some(cut) => sent.is_none_or(|s| s >= cut) && self.accepted_since_cut > 0,
        }
    }

    /// A 429 that is news: cut to `decrease` of the lower of the rate and
    /// `measured`, within `[floor, ceiling]`.
    pub(super) fn cut(
        &mut self,
        now: Instant,
        measured: Option<f64>,
        rules: Rules,
        floor: f64,
        burst_ceiling: u32,
    ) {
        // The rate that earned the 429: what the bucket really sent.
        let sending = measured.map_or(self.rate, |m| m.min(self.rate));
        // What upstream let through since the last cut estimates its limit
        // (the calls went out faster than that, or there would be no 429);
        // pauses make it low, so it sets the rate, not the memory.
        let let_through = self.cut_at.and_then(|c| {
            let since = now.saturating_duration_since(c).as_secs_f64();
            (since >= 1.0).then(|| f64::from(self.accepted_since_cut) / since)
        });
        // A burst larger than a second's worth may have earned the 429 on
        // its own (upstream's burst is smaller): the rate is then not known
        // to be wrong and probing may climb back past it.
        if self.burst.min(burst_ceiling) <= sending.ceil() as u32 + 1 || self.bad.is_none() {
            self.bad = Some(sending.max(floor));
        }
        self.rate = (let_through.map_or(sending, |l| l.min(sending)) * rules.decrease).max(floor);
        // The burst shrinks to at most a second's worth of the new rate
        // (upstream's may be much smaller than ours: a burst left large
        // earns 429s at a rate upstream allows, and those would teach a
        // false limit), but never below two: a bucket of one call starves
        // the orders' reserve and refresh-ahead for no gain in pace.
        let cut = (f64::from(self.burst.min(burst_ceiling)) * rules.decrease).floor();
        let worth = self.rate.ceil();
        self.burst = cut
            .min(worth)
            .max(2.0)
            .min(f64::from(burst_ceiling))
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        self.from = LearnedFrom::RateLimited;
        self.at = now;
        self.cut_at = Some(now);
        self.accepted_since_cut = 0;
        self.probe_from = now;
        self.busy = false;
    }

    /// At each dispatch: a busy probe period without a cut steps the rate
    /// up (only a rate learned from 429s probes; a stated one is upstream's
    /// word).
    pub(super) fn probe(&mut self, now: Instant, rules: Rules, ceiling: f64) {
        if now.saturating_duration_since(self.probe_from) < rules.probe {
            return;
        }
        if self.busy && self.from != LearnedFrom::Stated {
            let bad = self.bad.unwrap_or(ceiling);
            let stepped = if self.rate < 0.9 * bad {
                (self.rate * 1.1).min(0.9 * bad)
            } else {
                self.rate + rules.increase * bad
            };
            self.rate = stepped.min(ceiling);
            // Busy at this rate without a 429: evidence that it holds.
            self.at = now;
        }
        self.probe_from = now;
        self.busy = false;
    }

    /// Whether probing has brought the rate back to the ceiling: the
    /// bucket has nothing left to remember.
    pub(super) fn at_ceiling(&self, ceiling: f64) -> bool {
        self.rate >= ceiling && self.from == LearnedFrom::RateLimited
    }
}
