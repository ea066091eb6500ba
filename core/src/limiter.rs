//! The rate limiter: one GCRA bucket per scope instance, paced under
//! upstream's documented limits, adapting when upstream says 429.
//!
//! GCRA (the generic cell rate algorithm, as in `governor`) keeps one
//! instant per bucket, the theoretical arrival time `tat`: the bucket is
//! full when `tat <= now`, and a call of cost `c` conforms when
//! `max(tat, now) + c * T - now <= burst * T`, `T` being the interval
//! between calls at the allowed rate. Arithmetic is exact (integer
//! nanoseconds inside `Duration`), so "never more than `burst + rate * w`
//! calls in any window `w`" holds exactly, not approximately.
//!
//! A call may draw on several buckets at once (per IP, per credential, per
//! endpoint): it conforms when every bucket admits it, and spends in all.
//!
//! On a 429 the bucket is emptied and paused (for `Retry-After` if
//! upstream sent one, else an exponential backoff), then runs throttled
//! (`throttle_factor` of its rate) and climbs back to the full rate over
//! `recovery_secs`. Throttling only ever lengthens `T`; the burst tolerance
//! stays measured at the full rate, so a throttled bucket is strictly
//! slower than a healthy one.

use crate::HashMap;

use serde::{Deserialize, Serialize};
use web_time::{Duration, Instant};

use crate::backoff::exponential;
#[cfg(test)]
use crate::config::ScopeConfig;
use crate::config::{secs, Config, Keying, ScopeId};
use crate::quota::{gcra_step, Quota};
use crate::request::Credential;
use crate::shared::SharedBucket;
use crate::signals::Signals;

mod learn;
mod tally;
use learn::{Learned, Meter, Rules};
pub use learn::{LearnedFrom, LearnedRate};

/// Calls a scope may make at once after headroom (at least one).
#[cfg(test)]
pub(crate) fn usable_burst(scope: &ScopeConfig) -> u32 {
    crate::quota::usable_burst(scope.burst, scope.headroom).get()
}

/// One bucket: a scope, and for per-credential scopes, whose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BucketKey {
    pub scope: ScopeId,
    pub credential: Option<Credential>,
}

#[derive(Debug, Clone)]
struct Scope {
    name: String,
    /// The budget at the share this coordinator may use.
    quota: Quota,
    /// The budget at the whole share (1).
    full: Quota,
    keying: Keying,
    /// The fraction of a stated limit to use, as of the configured one.
    headroom: f64,
    /// Units per second upstream documents (before headroom): what a
    /// weight header's window is measured against.
    documented: f64,
}

impl Scope {
    /// The ceiling at the whole budget, units per second.
    fn ceiling(&self) -> f64 {
        self.full.rate()
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tat: Option<Instant>,
    paused_until: Option<Instant>,
    /// Consecutive 429s, for the backoff exponent.
    strikes: u32,
    /// When the throttle started lifting (end of the last pause).
    recovering_from: Option<Instant>,
    /// The effective rate under the ceiling, once something was learned.
    learned: Option<Learned>,
    /// What this bucket really dispatches.
    meter: Meter,
}

/// The quota `bucket` runs at: its learned rate and burst at `share`, never
/// above the scope's configured ones unless upstream's word is trusted.
fn effective(scope: &Scope, bucket: &Bucket, rules: Rules, share: f64) -> Quota {
    let Some(l) = &bucket.learned else {
        return scope.quota;
    };
    let learned = Quota::at_rate(l.rate * share, l.burst);
    if rules.trust && l.from == LearnedFrom::Stated {
        return learned;
    }
    learned.slower_of(scope.quota)
}

/// A bucket's debt when its quota changes from `before` to `after`: the
/// same units owed, at the new pace, and never a smaller share of the
/// burst (a bucket emptied at a small burst stays empty when a larger one
/// returns, so the units it sent just before are not sent again).
fn carry_over(bucket: &mut Bucket, now: Instant, before: Quota, after: Quota) {
    if let Some(tat) = bucket.tat {
        let debt = tat.saturating_duration_since(now).as_secs_f64();
        let units = debt / before.interval().as_secs_f64();
        let share = debt / before.tolerance().as_secs_f64().max(f64::MIN_POSITIVE);
        let owed = units.max(share * f64::from(after.burst()));
        bucket.tat = Some(now + after.interval().mul_f64(owed.min(1e9)));
    }
}

/// The bucket for `key`, created full if absent (never seen, or forgotten
/// as idle while a call on it was in flight: what upstream says about that
/// call still counts).
fn bucket_mut<'a>(buckets: &'a mut HashMap<BucketKey, Bucket>, key: &BucketKey) -> &'a mut Bucket {
    buckets.entry(key.clone()).or_insert_with(Bucket::new)
}

impl Bucket {
    /// Pauses until `until` unless already paused longer (a pause never
    /// shortens); returns the pause's end.
    fn pause_until(&mut self, until: Instant) -> Instant {
        let until = self.paused_until.map_or(until, |p| p.max(until));
        self.paused_until = Some(until);
        until
    }

    fn new() -> Self {
        Bucket {
            tat: None,
            paused_until: None,
            strikes: 0,
            recovering_from: None,
            learned: None,
            meter: Meter::default(),
        }
    }
}

/// How a bucket's rate comes back after a 429: from `throttle` of the full
/// rate at the end of the pause, linearly to the full rate over `over`.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    throttle: f64,
    over: Duration,
}

impl Recovery {
    /// The fraction of the full rate `bucket` runs at `now`.
    fn factor(self, bucket: &Bucket, now: Instant) -> f64 {
        let Some(from) = bucket.recovering_from else {
            return 1.0;
        };
        if now <= from {
            return self.throttle;
        }
        if self.over.is_zero() {
            return 1.0;
        }
        let progress = (now - from).as_secs_f64() / self.over.as_secs_f64();
        (self.throttle + (1.0 - self.throttle) * progress).min(1.0)
    }

    /// `cost * T`, stretched while the bucket recovers from a 429.
    fn cost_time(self, bucket: &Bucket, quota: Quota, now: Instant, cost: u32) -> Duration {
        let base = quota.interval() * cost;
        match self.factor(bucket, now) {
            f if f >= 1.0 => base,
            f => base.div_f64(f),
        }
    }
}

/// Why a set of buckets cannot take a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Tokens refill (or a pause ends) at this instant.
    Until(Instant),
    /// Upstream told us to stop (429): paused until this instant.
    Paused(Instant),
}

impl Wait {
    /// The instant worth waking up at.
    pub(crate) fn instant(self) -> Instant {
        match self {
            Wait::Until(t) | Wait::Paused(t) => t,
        }
    }

    /// Upstream cannot be asked right now for reasons other than pacing:
    /// a stale answer beats waiting.
    pub(crate) fn is_degraded(self) -> bool {
        !matches!(self, Wait::Until(_))
    }

    /// Orders waits: a pause beats pacing, later beats earlier. Used to
    /// report the worst of several buckets.
    fn rank(self) -> (u8, Instant) {
        match self {
            Wait::Until(t) => (0, t),
            Wait::Paused(t) => (1, t),
        }
    }
}

/// A bucket as stats show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketSnapshot {
    /// The scope's name, from `[scopes]`.
    pub scope: String,
    /// Whose bucket this is, for a per-credential scope; `None` for a
    /// global one.
    pub credential: Option<String>,
    /// Cost units that could be spent right now.
    pub tokens: f64,
    /// The usable burst: the configured burst after headroom (at least 1),
    /// or the learned one.
    pub burst: u32,
    /// Current calls per second (lower while recovering from a 429).
    pub rate_per_sec: f64,
    /// The scope's configured rate in calls per second, after headroom:
    /// the ceiling (absent in reports from older hosts, read as 0).
    #[serde(default)]
    pub budget_per_sec: f64,
    /// The effective rate learned under the ceiling, calls per second;
    /// `None`: the bucket runs at the configured rate.
    #[serde(default)]
    pub learned_per_sec: Option<f64>,
    /// What the learned rate came from.
    #[serde(default)]
    pub learned_from: Option<LearnedFrom>,
    /// Seconds since the last evidence for the learned rate.
    #[serde(default)]
    pub learned_secs_ago: Option<f64>,
    /// Seconds until the bucket's pause ends (after a 429, or when upstream
    /// said its window is spent); `None` when not paused.
    pub paused_for_secs: Option<f64>,
    /// Calls dispatched on this bucket since the coordinator started,
    /// whatever their cost (kept while the bucket is idle: see
    /// `limiter::tally`).
    pub calls: u64,
    /// Upstream 429s on calls that drew on this bucket, likewise.
    pub rate_limited: u64,
}

/// One bucket a request draws on, as syncoord tells the bot that sent it
/// (the `RateLimit-Policy` and `RateLimit` fields it may add to answers):
/// the budget in effect (learned or configured, at this coordinator's
/// share) and where the bucket stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The scope's name, from `[scopes]`.
    pub scope: String,
    /// Whether the bucket is the bot's credential's own (a per-credential
    /// scope) rather than shared by every caller.
    pub per_credential: bool,
    /// Units per second in effect.
    pub rate_per_sec: f64,
    /// Units that may go at once.
    pub burst: u32,
    /// Units that could be spent right now (0 while paused).
    pub remaining: f64,
    /// Until the bucket is full again (or its pause ends).
    pub reset: Duration,
}

pub(crate) struct Limiter {
    scopes: Vec<Scope>,
    buckets: HashMap<BucketKey, Bucket>,
    /// Each bucket's counters, kept while its series should persist.
    tallies: tally::Tallies,
    base_pause: Duration,
    max_pause: Duration,
    recovery: Recovery,
    rules: Rules,
    /// The share of the budget this coordinator may use (1 unless a shared
    /// store is out of reach).
    share: f64,
}

impl Limiter {
    /// A limiter for an unchecked `config` (tests and benchmarks, whose
    /// configurations are valid by construction).
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn new(config: &Config) -> Self {
        let quotas: Vec<Quota> = config
            .scopes
            .values()
            .map(|s| Quota::for_scope(s).expect("a valid scope"))
            .collect();
        Self::with_quotas(config, &quotas)
    }

    /// A limiter over `config`'s scopes, whose quotas (in scope order)
    /// config compilation built.
    pub(crate) fn with_quotas(config: &Config, quotas: &[Quota]) -> Self {
        let scopes: Vec<Scope> = config
            .scopes
            .iter()
            .zip(quotas)
            .map(|((name, s), &quota)| Scope {
                name: name.clone(),
                quota,
                full: quota,
                keying: s.per,
                headroom: s.headroom,
                documented: s.rate / s.period_secs,
            })
            .collect();
        let tallies = tally::Tallies::new(
            scopes
                .iter()
                .enumerate()
                .filter(|(_, s)| s.keying == Keying::Global)
                .map(|(i, _)| BucketKey {
                    scope: ScopeId(i as u16),
                    credential: None,
                }),
        );
        let l = &config.limiter;
        Limiter {
            scopes,
            buckets: HashMap::default(),
            tallies,
            base_pause: secs(l.base_pause_secs),
            max_pause: secs(l.max_pause_secs),
            recovery: Recovery {
                throttle: l.throttle_factor,
                over: secs(l.recovery_secs),
            },
            rules: Rules::new(&l.learn),
            share: 1.0,
        }
    }

    /// Takes up new quotas for the same scopes (a reload that changes
    /// only budgets: rate, period, burst, headroom; `quotas` in scope
    /// order, as config compilation built them). Every bucket keeps its
    /// level: the units it owes carry over at the new pace
    /// ([`carry_over`]), so a bucket whose rate drops drains at the new
    /// rate from `now` on, with no burst. A learned rate stays the
    /// effective one under the new ceiling, cut to it if above (unless it
    /// is upstream's stated word and trusted). Scopes beyond `quotas` (a
    /// caller that changed the scope set, which needs a restart) keep
    /// their budget.
    pub(crate) fn reconfigure(&mut self, now: Instant, config: &Config, quotas: &[Quota]) {
        for (i, (s, &quota)) in config.scopes.values().zip(quotas).enumerate() {
            let Some(old) = self.scopes.get(i).cloned() else {
                break;
            };
            let mut scope = old.clone();
            scope.full = quota;
            scope.quota = quota.share(self.share);
            scope.headroom = s.headroom;
            scope.documented = s.rate / s.period_secs;
            let ceiling = scope.ceiling();
            let (rules, share) = (self.rules, self.share);
            for (_, bucket) in self
                .buckets
                .iter_mut()
                .filter(|(k, _)| k.scope.0 as usize == i)
            {
                let before = effective(&old, bucket, rules, share);
                if let Some(l) = &mut bucket.learned {
                    if !(rules.trust && l.from == LearnedFrom::Stated) {
                        l.rate = l.rate.min(ceiling);
                    }
                }
                let after = effective(&scope, bucket, rules, share);
                if after != before {
                    carry_over(bucket, now, before, after);
                }
            }
            self.scopes[i] = scope;
        }
    }

    /// The buckets a call on `scopes` by `credential` draws from, sorted.
    pub(crate) fn keys(
        &self,
        scopes: &[ScopeId],
        credential: Option<&Credential>,
    ) -> Vec<BucketKey> {
        let mut keys: Vec<BucketKey> = scopes
            .iter()
            .map(|&scope| BucketKey {
                scope,
                credential: match self.scopes.get(scope.0 as usize).map(|s| s.keying) {
                    Some(Keying::Credential) => credential.cloned(),
                    _ => None,
                },
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Limits at `share` (in (0, 1]) of every scope's rate and burst (a
    /// burst of at least 1), while a shared store cannot be reached; 1
    /// restores the whole budget. Debts already owed stay as they are.
    pub(crate) fn set_share(&mut self, share: f64) {
        let share = if share.is_finite() {
            share.clamp(1e-6, 1.0)
        } else {
            1.0
        };
        for s in &mut self.scopes {
            s.quota = s.full.share(share);
        }
        self.share = share;
    }

    /// `keys` as a shared store keeps them: at the whole budget, at the
    /// learned rate where one is learned (every daemon spends the same
    /// upstream limit).
    pub(crate) fn shared_buckets(&self, keys: &[BucketKey]) -> Vec<SharedBucket> {
        keys.iter()
            .filter_map(|k| {
                let s = self.scopes.get(k.scope.0 as usize)?;
                let quota = match self.buckets.get(k).and_then(|b| b.learned.as_ref()) {
                    Some(l) => {
                        let learned = Quota::at_rate(l.rate, l.burst);
                        if self.rules.trust && l.from == LearnedFrom::Stated {
                            learned
                        } else {
                            learned.slower_of(s.full)
                        }
                    }
                    None => s.full,
                };
                Some(SharedBucket {
                    scope: s.name.clone(),
                    credential: k.credential.clone(),
                    interval: quota.interval(),
                    burst: quota.burst(),
                })
            })
            .collect()
    }

    /// The shared buckets said a call of `cost` on `keys` may go at `at`
    /// and not before: each local bucket is made to agree (a call of that
    /// cost conforms at `at` exactly), replacing what the refused call had
    /// spent (refunded first). Another coordinator's spending is what the
    /// store knows and this limiter did not.
    pub(crate) fn hold_until(&mut self, keys: &[BucketKey], cost: u32, at: Instant) {
        for key in keys {
            let Some(scope) = self.scopes.get(key.scope.0 as usize) else {
                continue;
            };
            let bucket = bucket_mut(&mut self.buckets, key);
            let quota = effective(scope, bucket, self.rules, self.share);
            let tolerance = quota.tolerance();
            let spend = quota.interval() * cost.min(quota.burst());
            let tat = (at + tolerance).checked_sub(spend).unwrap_or(at);
            bucket.tat = Some(bucket.tat.map_or(tat, |t| t.max(tat)));
        }
    }

    /// Another coordinator's 429 paused these buckets until `until`: hold
    /// them too (no strike here: the throttle is the one who saw it).
    pub(crate) fn pause_shared(&mut self, keys: &[BucketKey], until: Instant) {
        for key in keys {
            bucket_mut(&mut self.buckets, key).pause_until(until);
        }
    }

    /// Gives back what a call of `cost` on `keys` spent at dispatch, when
    /// it never left (answered from the shared store instead).
    pub(crate) fn refund(&mut self, now: Instant, keys: &[BucketKey], cost: u32) {
        for key in keys {
            let Some(scope) = self.scopes.get(key.scope.0 as usize) else {
                continue;
            };
            if let Some(b) = self.buckets.get_mut(key) {
                let spent = effective(scope, b, self.rules, self.share).interval() * cost;
                b.tat = b
                    .tat
                    .and_then(|t| t.checked_sub(spent))
                    .filter(|t| *t > now);
            }
            self.tallies.refund(key);
        }
    }

    /// The quota the bucket `key` runs at now.
    pub(crate) fn quota_of(&self, key: &BucketKey) -> Option<Quota> {
        let scope = self.scopes.get(key.scope.0 as usize)?;
        Some(match self.buckets.get(key) {
            Some(b) => effective(scope, b, self.rules, self.share),
            None => scope.quota,
        })
    }

    pub(crate) fn scope_name(&self, scope: ScopeId) -> &str {
        self.scopes
            .get(scope.0 as usize)
            .map(|s| s.name.as_str())
            .unwrap_or("?")
    }

    /// `cost` limited to what every bucket in `keys` can ever hold, so a
    /// reserve on top of a call's cost never makes it unsendable.
    pub(crate) fn fit_cost(&self, keys: &[BucketKey], cost: u32) -> u32 {
        keys.iter()
            .filter_map(|k| self.quota_of(k))
            .map(|q| q.burst())
            .fold(cost, u32::min)
    }

    /// `None` if a call of `cost` may go now on all of `keys`; otherwise
    /// the worst reason to wait.
    pub(crate) fn check(&self, now: Instant, keys: &[BucketKey], cost: u32) -> Option<Wait> {
        keys.iter()
            .filter_map(|k| self.check_one(now, k, cost))
            .max_by_key(|w| w.rank())
    }

    fn check_one(&self, now: Instant, key: &BucketKey, cost: u32) -> Option<Wait> {
        // A bucket not seen yet (or forgotten as idle) is a full one; it is
        // still judged, so no call ever costs more than a burst.
        let fresh;
        let bucket = match self.buckets.get(key) {
            Some(b) => b,
            None => {
                fresh = Bucket::new();
                &fresh
            }
        };
        if let Some(p) = bucket.paused_until.filter(|&p| p > now) {
            return Some(Wait::Paused(p));
        }
        let scope = &self.scopes[key.scope.0 as usize];
        let quota = effective(scope, bucket, self.rules, self.share);
        // Conforms iff max(tat, now) + cost*T_eff - now <= burst*T. Checked
        // even for a full bucket: a throttled T_eff may not fit at once.
        let fit = self.recovery.cost_time(bucket, quota, now, cost);
        gcra_step(bucket.tat, now, fit, fit, quota.tolerance())
            .conforms_at
            .map(Wait::Until)
    }

    /// Whether a call of `cost` may go now on all of `keys` and still
    /// leave each bucket at least `reserve` of its usable burst (rounded up
    /// to whole cost units, and at least `floor`): refresh-ahead's test.
    /// `Err(Some(t))`: not before `t`; `Err(None)`: not now, and no
    /// instant is known (the reserve leaves no room at all).
    pub(crate) fn check_spare(
        &self,
        now: Instant,
        keys: &[BucketKey],
        cost: u32,
        reserve: f64,
        floor: u32,
    ) -> Result<(), Option<Instant>> {
        let mut latest = None;
        for key in keys {
            let Some(quota) = self.quota_of(key) else {
                return Err(None);
            };
            let burst = quota.burst();
            let keep = ((burst as f64 * reserve).ceil() as u32).max(floor);
            let need = cost.saturating_add(keep);
            if need > burst {
                return Err(None);
            }
            match self.check_one(now, key, need) {
                None => {}
                Some(w) => {
                    let t = w.instant();
                    latest = Some(latest.map_or(t, |l: Instant| l.max(t)));
                }
            }
        }
        latest.map_or(Ok(()), |t| Err(Some(t)))
    }

    /// Spends `cost` on every bucket in `keys` (after a successful check).
    pub(crate) fn acquire(&mut self, now: Instant, keys: &[BucketKey], cost: u32) {
        for key in keys {
            let scope = &self.scopes[key.scope.0 as usize];
            let bucket = bucket_mut(&mut self.buckets, key);
            let quota = effective(scope, bucket, self.rules, self.share);
            let spend = self.recovery.cost_time(bucket, quota, now, cost);
            let step = gcra_step(bucket.tat, now, spend, spend, quota.tolerance());
            bucket.tat = Some(step.tat);
            if self.rules.enabled {
                bucket.meter.count(now, cost, self.rules.probe);
                if let Some(l) = &mut bucket.learned {
                    // Busy: more than half the burst is spent.
                    l.busy |= step.tat.saturating_duration_since(now) * 2 > quota.tolerance();
                    l.probe(now, self.rules, scope.ceiling());
                    if l.expired(now, self.rules) || l.at_ceiling(scope.ceiling()) {
                        bucket.learned = None;
                    }
                }
            }
            self.tallies.call(key, now);
        }
    }

    /// Upstream answered 429 for a call on `keys` sent at `sent`: empty
    /// and pause each bucket for `upstream_wait` if upstream said, else for
    /// an exponential backoff with jitter, and (`learn`: the answer stated
    /// no limit of its own) cut the effective rate if the 429 is news.
    /// Returns the pause applied.
    pub(crate) fn on_rate_limited(
        &mut self,
        now: Instant,
        keys: &[BucketKey],
        upstream_wait: Option<Duration>,
        rng: &mut fastrand::Rng,
        sent: Option<Instant>,
        learn: bool,
    ) -> Duration {
        let mut longest = Duration::ZERO;
        for key in keys {
            let scope = &self.scopes[key.scope.0 as usize];
            let bucket = bucket_mut(&mut self.buckets, key);
            if self.rules.enabled && learn {
                let ceiling = scope.ceiling();
                let measured = bucket
                    .meter
                    .rate(now, self.rules.probe)
                    .map(|m| m / self.share);
                let burst = scope.full.burst();
                let l = bucket.learned.get_or_insert_with(|| {
                    Learned::new(ceiling, burst, LearnedFrom::RateLimited, now)
                });
                if l.is_news(sent) {
                    l.cut(now, measured, self.rules, ceiling * self.rules.floor, burst);
                }
            }
            let tolerance = effective(scope, bucket, self.rules, self.share).tolerance();
            bucket.strikes = bucket.strikes.saturating_add(1);
            self.tallies.rate_limited(key, now);
            let pause = upstream_wait.unwrap_or_else(|| {
                let ceiling = exponential(self.base_pause, self.max_pause, bucket.strikes);
                // Jitter in the upper half: the pause must stay meaningful,
                // but many coordinators behind one IP must not wake together.
                ceiling.mul_f64(0.5 + 0.5 * rng.f64())
            });
            let until = bucket.pause_until(now + pause);
            // A learning bucket's cut is its lasting answer; the transient
            // throttle is for one that does not learn.
            bucket.recovering_from = (!(self.rules.enabled && learn)).then_some(until);
            // Empty: at `until` the bucket holds no tokens.
            bucket.tat = Some(until + tolerance);
            longest = longest.max(until - now);
        }
        longest
    }

    /// What upstream's headers said on an answer to a call on `keys`. They
    /// describe one limit, the narrowest the call drew on: its
    /// per-credential buckets if it has any, else all of them. A stated
    /// limit sets the effective rate (at the scope's headroom); what
    /// remains caps the bucket's tokens; nothing remaining holds the bucket
    /// until the reset (no strike: no misjudgement of ours).
    pub(crate) fn on_signals(&mut self, now: Instant, keys: &[BucketKey], signals: &Signals) {
        if signals.is_empty() {
            return;
        }
        let narrow = keys.iter().any(|k| k.credential.is_some());
        for key in keys.iter().filter(|k| !narrow || k.credential.is_some()) {
            let Some(scope) = self.scopes.get(key.scope.0 as usize) else {
                continue;
            };
            let bucket = bucket_mut(&mut self.buckets, key);
            let before = effective(scope, bucket, self.rules, self.share);
            if let (true, Some(st)) = (self.rules.enabled, signals.stated) {
                let ceiling = scope.ceiling();
                let mut rate = (st.rate() * scope.headroom).max(ceiling * self.rules.floor);
                if !self.rules.trust {
                    rate = rate.min(ceiling);
                }
                let burst = (st.quota * scope.headroom)
                    .floor()
                    .clamp(1.0, f64::from(u32::MAX)) as u32;
                bucket.learned = Some(Learned::new(rate, burst, LearnedFrom::Stated, now));
            }
            let quota = effective(scope, bucket, self.rules, self.share);
            // The same units owed, at the new pace: the promise holds
            // across the change.
            if quota != before {
                carry_over(bucket, now, before, quota);
            }
            let remaining = signals.remaining.or_else(|| {
                signals.used.map(|(used, window)| {
                    let per_sec = signals.stated.map_or(scope.documented, |s| s.rate());
                    (per_sec * window.as_secs_f64() - used).max(0.0)
                })
            });
            let Some(left) = remaining else { continue };
            if left < 1.0 {
                if let Some(reset) = signals.reset {
                    bucket.pause_until(now + reset);
                }
            }
            // Never more tokens than upstream says remain.
            let room = quota.interval().mul_f64(left.min(f64::from(quota.burst())));
            let floor_tat = now + quota.tolerance().saturating_sub(room);
            bucket.tat = Some(bucket.tat.map_or(floor_tat, |t| t.max(floor_tat)));
        }
    }

    /// A call on `keys` got an answer that was not a 429.
    pub(crate) fn on_success(&mut self, keys: &[BucketKey]) {
        for key in keys {
            if let Some(b) = self.buckets.get_mut(key) {
                if let Some(l) = &mut b.learned {
                    l.accepted();
                }
                b.strikes = 0;
            }
        }
    }

    /// Forgets buckets that are full and calm (equivalent to a new bucket),
    /// so per-credential buckets do not accumulate forever.
    pub(crate) fn forget_idle(&mut self, now: Instant) {
        let recovery = self.recovery;
        let rules = self.rules;
        self.buckets.retain(|_, b| {
            if b.learned.as_ref().is_some_and(|l| l.expired(now, rules)) {
                b.learned = None;
            }
            let full = b.tat.is_none_or(|t| t <= now);
            let calm = b.paused_until.is_none_or(|p| p <= now)
                && recovery.factor(b, now) >= 1.0
                && b.strikes == 0
                && b.learned.is_none();
            !(full && calm)
        });
        let buckets = &self.buckets;
        self.tallies.prune(now, |k| buckets.contains_key(k));
    }

    /// Every learned rate, for a state file or a shared store.
    pub(crate) fn learned(&self, now: Instant) -> Vec<LearnedRate> {
        let mut out: Vec<LearnedRate> = self
            .buckets
            .iter()
            .filter_map(|(key, b)| {
                let l = b.learned.as_ref()?;
                let scope = self.scopes.get(key.scope.0 as usize)?;
                Some(LearnedRate {
                    scope: scope.name.clone(),
                    credential: key.credential.as_ref().map(|c| c.as_str().to_owned()),
                    rate_per_sec: l.rate,
                    burst: l.burst,
                    from: l.from,
                    age_secs: now.saturating_duration_since(l.at).as_secs_f64(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.scope, &a.credential).cmp(&(&b.scope, &b.credential)));
        out
    }

    /// Takes up rates learned before a restart (or by another daemon):
    /// each for a scope this configuration still has, bounded by today's
    /// ceiling and floor, with its age (one already expired is dropped),
    /// never replacing what this limiter has learned itself since; the
    /// bucket starts empty. Returns how many were taken.
    pub(crate) fn restore(&mut self, now: Instant, rates: &[LearnedRate]) -> usize {
        let mut taken = 0;
        for r in rates {
            let Some((key, learned)) = self.bounded(now, r) else {
                continue;
            };
            let scope = &self.scopes[key.scope.0 as usize];
            let bucket = bucket_mut(&mut self.buckets, &key);
            if bucket.learned.is_none() {
                bucket.learned = Some(learned);
                // Empty: what the previous life spent of upstream's window
                // just before it stopped is unknown, and the learned burst
                // may still be above upstream's.
                let tolerance = effective(scope, bucket, self.rules, self.share).tolerance();
                bucket.tat = Some(bucket.tat.map_or(now, |t| t.max(now)) + tolerance);
                taken += 1;
            }
        }
        taken
    }

    /// Takes up rates other daemons learned (through a shared store), so
    /// all learn together: each one lower than this bucket's own (or
    /// where it has none) replaces it, the units owed carried over at the
    /// new pace (the bucket is not emptied: its level is this daemon's
    /// own). Bounds as [`Self::restore`]. Returns how many were taken.
    pub(crate) fn adopt(&mut self, now: Instant, rates: &[LearnedRate]) -> usize {
        let mut taken = 0;
        for r in rates {
            let Some((key, learned)) = self.bounded(now, r) else {
                continue;
            };
            let scope = &self.scopes[key.scope.0 as usize];
            let bucket = bucket_mut(&mut self.buckets, &key);
            if bucket
                .learned
                .as_ref()
                .is_some_and(|l| l.rate <= learned.rate)
            {
                continue;
            }
            let before = effective(scope, bucket, self.rules, self.share);
            bucket.learned = Some(learned);
            let quota = effective(scope, bucket, self.rules, self.share);
            carry_over(bucket, now, before, quota);
            taken += 1;
        }
        taken
    }

    /// A rate learned elsewhere (a previous life, another daemon) as this
    /// limiter may take it up: for a scope it still has with the same
    /// keying, a finite positive rate within today's floor and ceiling
    /// (above it only if trusted and stated), not expired; `None` when
    /// learning is off or the record does not fit.
    fn bounded(&self, now: Instant, r: &LearnedRate) -> Option<(BucketKey, Learned)> {
        let i = self.scopes.iter().position(|s| s.name == r.scope)?;
        let scope = &self.scopes[i];
        let keyed = scope.keying == Keying::Credential;
        let usable = self.rules.enabled
            && keyed == r.credential.is_some()
            && r.rate_per_sec.is_finite()
            && r.rate_per_sec > 0.0
            && r.age_secs.is_finite();
        if !usable {
            return None;
        }
        let at = now.checked_sub(secs(r.age_secs))?;
        let ceiling = scope.ceiling();
        let mut rate = r.rate_per_sec.max(ceiling * self.rules.floor);
        if !(self.rules.trust && r.from == LearnedFrom::Stated) {
            rate = rate.min(ceiling);
        }
        let learned = Learned::restored(rate, r.burst, r.from, at);
        if learned.expired(now, self.rules) {
            return None;
        }
        let key = BucketKey {
            scope: ScopeId(i as u16),
            credential: r.credential.as_deref().map(Credential::new),
        };
        Some((key, learned))
    }

    pub(crate) fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Where each bucket of `keys` stands, for the bot whose call draws
    /// on them (a bucket not seen yet is a full one).
    pub(crate) fn budgets(&self, now: Instant, keys: &[BucketKey]) -> Vec<Budget> {
        keys.iter()
            .filter_map(|key| {
                let scope = self.scopes.get(key.scope.0 as usize)?;
                let fresh;
                let b = match self.buckets.get(key) {
                    Some(b) => b,
                    None => {
                        fresh = Bucket::new();
                        &fresh
                    }
                };
                let quota = effective(scope, b, self.rules, self.share);
                let unit = quota.interval().as_secs_f64() / self.recovery.factor(b, now);
                let debt = b
                    .tat
                    .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
                let paused = b.paused_until.filter(|&p| p > now);
                let remaining = match paused {
                    Some(_) => 0.0,
                    None => (quota.tolerance().saturating_sub(debt).as_secs_f64() / unit).max(0.0),
                };
                Some(Budget {
                    scope: scope.name.clone(),
                    per_credential: key.credential.is_some(),
                    rate_per_sec: 1.0 / unit,
                    burst: quota.burst(),
                    remaining,
                    reset: paused.map_or(debt, |p| (p - now).max(debt)),
                })
            })
            .collect()
    }

    /// Every bucket that exists, as stats show it: those holding state,
    /// and those forgotten as idle whose counters are kept (shown as the
    /// new, full buckets they are equivalent to), so that a bucket's series
    /// do not vanish while it is quiet.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<BucketSnapshot> {
        let fresh = Bucket::new();
        let keys: std::collections::BTreeSet<&BucketKey> =
            self.buckets.keys().chain(self.tallies.keys()).collect();
        let mut out: Vec<BucketSnapshot> = keys
            .into_iter()
            .filter_map(|key| {
                let scope = self.scopes.get(key.scope.0 as usize)?;
                let b = self.buckets.get(key).unwrap_or(&fresh);
                let tally = self.tallies.get(key);
                let quota = effective(scope, b, self.rules, self.share);
                let factor = self.recovery.factor(b, now);
                let tolerance = quota.tolerance();
                let debt = b
                    .tat
                    .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
                let unit = quota.interval().as_secs_f64() / factor;
                Some(BucketSnapshot {
                    scope: scope.name.clone(),
                    credential: key.credential.as_ref().map(|c| c.as_str().to_owned()),
                    tokens: (tolerance.saturating_sub(debt).as_secs_f64() / unit).max(0.0),
                    burst: quota.burst(),
                    rate_per_sec: 1.0 / unit,
                    learned_per_sec: b.learned.as_ref().map(|_| quota.rate()),
                    learned_from: b.learned.as_ref().map(|l| l.from),
                    learned_secs_ago: b
                        .learned
                        .as_ref()
                        .map(|l| now.saturating_duration_since(l.at).as_secs_f64()),
                    budget_per_sec: 1.0 / scope.quota.interval().as_secs_f64(),
                    paused_for_secs: b
                        .paused_until
                        .filter(|&p| p > now)
                        .map(|p| (p - now).as_secs_f64()),
                    calls: tally.calls,
                    rate_limited: tally.rate_limited,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.scope, &a.credential).cmp(&(&b.scope, &b.credential)));
        out
    }
}

/// The limiter alone, for the crate's benchmarks: a GCRA decision costs
/// tens of nanoseconds, which a measurement through the whole coordinator
/// would bury.
#[cfg(feature = "bench")]
pub(crate) mod bench {
    use web_time::Instant;

    use super::{BucketKey, Limiter};
    use crate::config::{Config, ScopeId};
    use crate::request::Credential;

    /// A limiter over `config`'s scopes, and the buckets of one call.
    #[allow(missing_debug_implementations)]
    pub struct LimiterBench {
        limiter: Limiter,
        keys: Vec<BucketKey>,
    }

    impl LimiterBench {
        /// The buckets a call on `scopes` by `credential` spends from.
        pub fn new(config: &Config, scopes: &[ScopeId], credential: Option<&Credential>) -> Self {
            let limiter = Limiter::new(config);
            let keys = limiter.keys(scopes, credential);
            LimiterBench { limiter, keys }
        }

        /// How many buckets the call spends from.
        pub fn buckets(&self) -> usize {
            self.keys.len()
        }

        /// Whether the call would have to wait at `now` (`check`).
        pub fn blocked(&self, now: Instant, cost: u32) -> bool {
            self.limiter.check(now, &self.keys, cost).is_some()
        }

        /// Spends `cost` tokens at `now` (`acquire`).
        pub fn acquire(&mut self, now: Instant, cost: u32) {
            self.limiter.acquire(now, &self.keys, cost);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod learn_tests;
