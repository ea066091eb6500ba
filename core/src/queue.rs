//! The priority queue of calls waiting for the limiter.
//!
//! - **Classes**: strict priority, class 0 first.
//! - **Lanes**: within a class, calls that draw on the same limiter
//!   buckets share a lane, so a call blocked on one bucket (a paused
//!   credential) never holds up calls that need other buckets.
//! - **Fairness**: within a class, each call gets a round number: a
//!   client's first waiting call joins the current round, its next ones the
//!   rounds after (start-time fair queueing). Calls go out by round, then
//!   arrival, so a bot with fifty calls queued cannot starve a bot with one.
//! - **No overtaking on a shared bucket**: when a call cannot go, the
//!   buckets that stop it are reserved for it; later calls and lower
//!   classes that need those buckets wait behind it, while calls on other
//!   buckets go ahead.
//! - **Shedding**: when full, the newest call of the lowest class below the
//!   newcomer's makes room.
//! - **Aging** (optional): a call that has waited `aging` in its class moves
//!   up one class, so low priority is never starved forever. It stops below
//!   the top class, which stays reserved for urgent calls (orders).

use std::collections::{BTreeMap, HashSet, VecDeque};

use crate::HashMap;
use std::sync::Arc;

use web_time::{Duration, Instant};

use crate::config::ClassId;
use crate::limiter::{BucketKey, Wait};
use crate::request::CallId;

/// The buckets a call draws on; calls with equal lanes compete in order.
pub(crate) type Lane = Arc<[BucketKey]>;

#[derive(Debug)]
struct Entry {
    class: ClassId,
    lane: Lane,
    client: Arc<str>,
    cost: u32,
    seq: u64,
    round: u64,
    entered_class: Instant,
}

#[derive(Debug, Default)]
struct Class {
    /// Per lane: calls by (round, seq).
    lanes: HashMap<Lane, BTreeMap<(u64, u64), CallId>>,
    /// Calls by arrival: the newest is shed first.
    by_arrival: BTreeMap<u64, CallId>,
    /// Last round given to each client with calls here.
    client_rounds: HashMap<Arc<str>, u64>,
    /// Round of the last call that went out.
    round: u64,
    /// Arrivals into this class, oldest first, for aging (lazily pruned).
    aging: VecDeque<(Instant, u64, CallId)>,
}

/// What the queue would send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    Go(CallId),
    /// Nothing can go now; look again at this instant (`None`: not before
    /// something else happens).
    Wait(Option<Instant>),
}

pub(crate) struct Queue {
    classes: Vec<Class>,
    entries: HashMap<CallId, Entry>,
    seq: u64,
    aging: Option<Duration>,
    /// Extra cost every class but the first must leave in a bucket.
    top_reserve: u32,
}

impl Queue {
    pub(crate) fn new(classes: usize, aging: Option<Duration>) -> Self {
        Queue {
            classes: (0..classes.max(1)).map(|_| Class::default()).collect(),
            entries: HashMap::default(),
            seq: 0,
            aging,
            top_reserve: 0,
        }
    }

    /// Keeps `reserve` cost units in every bucket for the highest class:
    /// other classes are asked to fit `cost + reserve` (the `check` of
    /// [`Self::select`] should clamp that to the lane's burst).
    pub(crate) fn with_top_class_reserve(mut self, reserve: u32) -> Self {
        self.top_reserve = reserve;
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn depth(&self, class: ClassId) -> usize {
        self.classes
            .get(class.0 as usize)
            .map_or(0, |c| c.by_arrival.len())
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, call: CallId) -> bool {
        self.entries.contains_key(&call)
    }

    #[cfg(test)]
    pub(crate) fn class_of(&self, call: CallId) -> Option<ClassId> {
        self.entries.get(&call).map(|e| e.class)
    }

    /// The lowest class index this queue has (classes beyond it clamp).
    fn clamp(&self, class: ClassId) -> ClassId {
        ClassId(class.0.min(self.classes.len() as u8 - 1))
    }

    pub(crate) fn push(
        &mut self,
        now: Instant,
        call: CallId,
        class: ClassId,
        lane: Lane,
        client: Arc<str>,
        cost: u32,
    ) {
        self.seq += 1;
        let seq = self.seq;
        self.insert(now, call, self.clamp(class), lane, client, cost, seq);
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        now: Instant,
        call: CallId,
        class: ClassId,
        lane: Lane,
        client: Arc<str>,
        cost: u32,
        seq: u64,
    ) {
        let c = &mut self.classes[class.0 as usize];
        let round = match c.client_rounds.get(&client) {
            Some(&last) => (last + 1).max(c.round),
            None => c.round,
        };
        c.client_rounds.insert(client.clone(), round);
        c.lanes
            .entry(lane.clone())
            .or_default()
            .insert((round, seq), call);
        c.by_arrival.insert(seq, call);
        if self.aging.is_some() {
            c.aging.push_back((now, seq, call));
        }
        self.entries.insert(
            call,
            Entry {
                class,
                lane,
                client,
                cost,
                seq,
                round,
                entered_class: now,
            },
        );
    }

    pub(crate) fn remove(&mut self, call: CallId) -> bool {
        let Some(e) = self.entries.remove(&call) else {
            return false;
        };
        let c = &mut self.classes[e.class.0 as usize];
        if let Some(lane) = c.lanes.get_mut(&e.lane) {
            lane.remove(&(e.round, e.seq));
            if lane.is_empty() {
                c.lanes.remove(&e.lane);
            }
        }
        c.by_arrival.remove(&e.seq);
        if c.by_arrival.is_empty() {
            // Nobody waits here: fairness history has nothing left to say.
            c.client_rounds.clear();
            c.aging.clear();
        }
        true
    }

    /// Moves a call up to `class` (a higher-priority caller joined it);
    /// it keeps its place in arrival order.
    pub(crate) fn promote(&mut self, now: Instant, call: CallId, class: ClassId) {
        let class = self.clamp(class);
        let Some(e) = self.entries.get(&call) else {
            return;
        };
        if class >= e.class {
            return;
        }
        let (lane, client, cost, seq) = (e.lane.clone(), e.client.clone(), e.cost, e.seq);
        self.remove(call);
        self.insert(now, call, class, lane, client, cost, seq);
    }

    /// Moves every call that has waited `aging` in its class up one class.
    pub(crate) fn age(&mut self, now: Instant) {
        let Some(aging) = self.aging else {
            return;
        };
        // Aging stops at class 1: the top class (orders) stays reserved for
        // calls that are urgent, not merely old.
        for class in 2..self.classes.len() {
            while let Some(&(entered, seq, call)) = self.classes[class].aging.front() {
                let current = self.aging_record_is_current(class, entered, seq, call);
                if !current {
                    self.classes[class].aging.pop_front();
                    continue;
                }
                if now < entered + aging {
                    break;
                }
                self.classes[class].aging.pop_front();
                self.promote(now, call, ClassId(class as u8 - 1));
            }
        }
    }

    /// When the next call becomes due for aging.
    pub(crate) fn next_aging(&self) -> Option<Instant> {
        let aging = self.aging?;
        self.classes
            .iter()
            .enumerate()
            .skip(2)
            .filter_map(|(class, c)| {
                c.aging
                    .iter()
                    .find(|(entered, seq, call)| {
                        self.aging_record_is_current(class, *entered, *seq, *call)
                    })
                    .map(|(entered, _, _)| *entered + aging)
            })
            .min()
    }

    /// Whether an aging record still describes its call: the call is queued
    /// in that class since that instant (records of calls that left or
    /// moved are pruned lazily).
    fn aging_record_is_current(
        &self,
        class: usize,
        entered: Instant,
        seq: u64,
        call: CallId,
    ) -> bool {
        self.entries.get(&call).is_some_and(|e| {
            e.seq == seq && e.class.0 as usize == class && e.entered_class == entered
        })
    }

    /// The newest call of the lowest class strictly below `class`: the one
    /// to shed to make room for a call of `class`.
    pub(crate) fn shed_candidate(&self, class: ClassId) -> Option<CallId> {
        let class = self.clamp(class);
        self.classes
            .iter()
            .enumerate()
            .rev()
            .take_while(|(i, _)| *i > class.0 as usize)
            .find_map(|(_, c)| c.by_arrival.last_key_value().map(|(_, call)| *call))
    }

    /// When the longest-waiting call arrived in its current class.
    pub(crate) fn oldest_arrival(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.entered_class).min()
    }

    /// Picks the call to send now: the highest class first; within a class,
    /// lanes by their head's (round, arrival); a lane whose head the
    /// limiter refuses reserves the refusing buckets. `check` is the
    /// limiter's verdict for a lane and cost (plus the top-class reserve
    /// for lower classes). `held` says when a call may go as far as its
    /// client's share is concerned (`None`: now): a held call is passed
    /// over, and reserves nothing, so the calls behind it on the same
    /// buckets go ahead.
    pub(crate) fn select(
        &self,
        mut check: impl FnMut(&[BucketKey], u32) -> Option<Wait>,
        mut held: impl FnMut(CallId, u32) -> Option<Instant>,
    ) -> Selection {
        let mut reserved: HashSet<&BucketKey> = HashSet::new();
        let mut earliest: Option<Instant> = None;
        let wake = |t: Instant, earliest: &mut Option<Instant>| {
            *earliest = Some(earliest.map_or(t, |e| e.min(t)));
        };
        for (index, class) in self.classes.iter().enumerate() {
            let reserve = if index == 0 { 0 } else { self.top_reserve };
            let mut heads: Vec<(&(u64, u64), &Lane, CallId)> = Vec::new();
            for (lane, calls) in &class.lanes {
                for (k, call) in calls {
                    let cost = self.entries.get(call).map_or(1, |e| e.cost);
                    match held(*call, cost) {
                        None => {
                            heads.push((k, lane, *call));
                            break;
                        }
                        Some(t) => wake(t, &mut earliest),
                    }
                }
            }
            heads.sort_unstable_by_key(|(k, _, _)| **k);
            for (_, lane, call) in heads {
                if lane.iter().any(|b| reserved.contains(&b)) {
                    continue;
                }
                let cost = self.entries.get(&call).map_or(1, |e| e.cost) + reserve;
                match check(lane, cost) {
                    None => return Selection::Go(call),
                    Some(wait) => {
                        wake(wait.instant(), &mut earliest);
                        for bucket in lane.iter() {
                            if check(std::slice::from_ref(bucket), cost).is_some() {
                                reserved.insert(bucket);
                            }
                        }
                    }
                }
            }
        }
        Selection::Wait(earliest)
    }

    /// Takes a selected call out of the queue.
    pub(crate) fn take(&mut self, call: CallId) {
        if let Some(e) = self.entries.get(&call) {
            let c = &mut self.classes[e.class.0 as usize];
            c.round = c.round.max(e.round);
            // Clients whose last round is past hold no information (absent
            // means "current round"): forget them, so a stream of distinct
            // client names cannot grow this map without bound.
            if c.client_rounds.len() > 2 * c.by_arrival.len() + 64 {
                let round = c.round;
                c.client_rounds.retain(|_, last| *last >= round);
            }
        }
        self.remove(call);
    }
}

#[cfg(test)]
mod tests;
