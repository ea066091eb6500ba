//! One budget across daemons: the shared store (Redis) a host consults
//! outside any lock.
//!
//! - **Budgets.** Each limiter bucket of a call is one GCRA state in Redis
//!   ([`GCRA_LUA`]: one round trip, every bucket of the call at once,
//!   cost-weighted, the top-class reserve kept, returns the wait), computed
//!   on Redis's clock exactly as [`syncoord_core::gcra`] does. A 429 seen by
//!   one daemon sets a pause key per bucket that every daemon's script
//!   honours until it expires.
//! - **Answers.** A local miss looks in Redis before upstream (`ans:` key,
//!   its TTL on Redis's clock); an answer fetched upstream is stored there
//!   for its TTL unless larger than `max_answer_bytes`. A short lease
//!   (`lease:` key) marks a key being fetched: another daemon polls for the
//!   answer for at most the lease rather than fetch too.
//! - **Faults.** Every call has a timeout. An error or a timeout turns the
//!   store off for this host at once: calls go on, limited locally at a
//!   share of the budget (1 / the daemons last seen alive, from the
//!   heartbeat set), and health says so. A background thread reconnects
//!   with backoff and keeps the heartbeat; on resuming, each bucket's first
//!   script run marks it empty, so what was spent locally meanwhile is
//!   never followed by a shared burst.
//!
//! - **Sameness.** A daemon's keys for one upstream live under
//!   `<name>:<hash of the upstream URL>:`: daemons under one name share
//!   only what reaches the same upstream. Each publishes its
//!   [`Fingerprint`] (URL, a digest of its limits) in `<name>:peers`
//!   with every heartbeat and logs an error for a peer that disagrees.
//! - **Learning.** Learned rates are exchanged at each heartbeat
//!   ([`learned`]): a daemon takes up a rate another learned where it is
//!   lower than its own, and the shared buckets run at the learned rate.
//!
//! Keys, all under `<name>:<url hash>:`: `gcra:<scope>:<credential|*>`,
//! `pause:<scope>:<credential|*>`, `ans:<cache key>`, `lease:<cache key>`,
//! `alive` (a sorted set of daemon ids by last heartbeat), `learned` (a
//! hash of each daemon's learned rates by daemon id); and `<name>:peers`
//! (a hash of fingerprints by daemon id).
//!
//! The parts: `scripts.rs` (the Lua run in Redis), `link.rs` (the pooled
//! connections, and the store turned off and on), `heartbeat.rs` (alive,
//! fingerprints, reconnecting), `budget.rs` (the shared GCRA),
//! `answers.rs` (shared answers and leases), `learned.rs` (learned rates).
//! This file holds the link itself and the calls a host makes around each
//! upstream call ([`Cluster::before`], [`Cluster::publish`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{Client, Connection, Script};
use syncoord_core::stats::ClusterStats;
use syncoord_core::{SharedBucket, SharedOutput, SharedSpend, StoreState};
use syncoord_wire::{ClusterSettings, Fingerprint};

use answers::{encode, Lookup};
use scripts::{HEARTBEAT_LUA, LOOKUP_LUA, PAUSE_LUA, RELEASE_LUA};

mod answers;
mod budget;
mod heartbeat;
mod learned;
mod link;
mod scripts;

pub use scripts::GCRA_LUA;

/// Why a cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.redis_url: {0}")]
    Url(String),
}

pub use crate::store::{Before, SharedAnswer};

#[derive(Default)]
struct Counters {
    round_trips: u64,
    errors: u64,
    timeouts: u64,
    fallbacks: u64,
    fallback_total: Duration,
    fallback_since: Option<Instant>,
    answers_stored: u64,
    answers_too_large: u64,
    answers_found: u64,
    lease_waits: u64,
    /// Round trips in µs.
    rtt: Option<hdrhistogram::Histogram<u64>>,
}

/// A host's link to the shared store. Cheap to share (`Arc`); every
/// method is safe from any thread and blocks at most the configured
/// timeouts (a lease wait: at most the lease).
pub struct Cluster {
    settings: ClusterSettings,
    client: Client,
    prefix: String,
    /// `<name>:peers`: every daemon's fingerprint, all upstreams.
    peers_key: String,
    fingerprint: Option<Fingerprint>,
    /// Peers (by id) whose disagreement was logged, with what was said.
    disagreeing: Mutex<HashMap<String, String>>,
    id: String,
    store: String,
    pool: Mutex<Vec<Connection>>,
    pool_size: usize,
    up: AtomicBool,
    alive: AtomicU64,
    /// Increments on every return from a fallback; a bucket whose applied
    /// epoch is older resumes empty.
    epoch: AtomicU64,
    resumed: Mutex<HashMap<String, u64>>,
    counters: Mutex<Counters>,
    gcra: Script,
    pause: Script,
    heartbeat: Script,
    lookup: Script,
    release: Script,
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("store", &self.store)
            .field("name", &self.settings.name)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bucket's part of its keys: `<scope>:<credential|*>`.
fn rendered(b: &SharedBucket) -> String {
    format!(
        "{}:{}",
        b.scope,
        b.credential.as_ref().map_or("*", |c| c.as_str())
    )
}

impl Cluster {
    /// A link to `settings.redis_url` with up to `pool_size` connections
    /// kept (one per upstream thread), its keys under `<name>:`. Reaching
    /// Redis is not required: a host whose store is down starts limiting
    /// locally and joins when it comes up.
    pub fn new(settings: ClusterSettings, pool_size: usize) -> Result<Arc<Cluster>, ClusterError> {
        Self::start(settings, None, pool_size)
    }

    /// [`Self::new`] for one upstream: its keys live under
    /// `<name>:<hash of the upstream URL>:`, so daemons under one name
    /// share budgets and answers only for the same upstream, and its
    /// fingerprint is published with every heartbeat; a peer that
    /// disagrees is logged at `error` (once per peer and disagreement).
    pub fn for_upstream(
        settings: ClusterSettings,
        fingerprint: Fingerprint,
        pool_size: usize,
    ) -> Result<Arc<Cluster>, ClusterError> {
        Self::start(settings, Some(fingerprint), pool_size)
    }

    fn start(
        settings: ClusterSettings,
        fingerprint: Option<Fingerprint>,
        pool_size: usize,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let client = Client::open(settings.redis_url.as_str())
            .map_err(|e| ClusterError::Url(e.to_string()))?;
        let id = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let prefix = match &fingerprint {
            Some(f) => format!("{}:{}:", settings.name, f.url_key()),
            None => format!("{}:", settings.name),
        };
        let cluster = Arc::new(Cluster {
            prefix,
            peers_key: format!("{}:peers", settings.name),
            fingerprint,
            disagreeing: Mutex::new(HashMap::new()),
            store: settings.store_name(),
            client,
            id,
            pool: Mutex::new(Vec::new()),
            pool_size: pool_size.max(1),
            up: AtomicBool::new(false),
            alive: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
            resumed: Mutex::new(HashMap::new()),
            counters: Mutex::new(Counters {
                rtt: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
                fallback_since: Some(Instant::now()),
                ..Counters::default()
            }),
            gcra: Script::new(GCRA_LUA),
            pause: Script::new(PAUSE_LUA),
            heartbeat: Script::new(HEARTBEAT_LUA),
            lookup: Script::new(LOOKUP_LUA),
            release: Script::new(RELEASE_LUA),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            settings,
        });
        // The first heartbeat decides whether we start shared; reached at
        // once, nothing was spent locally, so no bucket needs to resume.
        if cluster.beat() {
            cluster.epoch.store(0, Ordering::Release);
        }
        Ok(cluster)
    }

    /// The store as health names it (no credentials).
    pub fn store_name(&self) -> &str {
        &self.store
    }

    /// Whether the store is reached now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// What the core should be told now.
    pub fn state(&self) -> StoreState {
        if self.is_up() {
            StoreState::Shared
        } else {
            let share = self
                .settings
                .fallback_share
                .unwrap_or_else(|| 1.0 / self.alive.load(Ordering::Relaxed).max(1) as f64);
            StoreState::Fallback {
                store: self.store.clone(),
                share,
            }
        }
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.prefix)
    }

    /// Asks the store before a call leaves: a shared answer (reads), the
    /// lease (shared coalescing), then the shared buckets. With the store
    /// off, `Send` at once: the local limiter's share is the budget.
    pub fn before(&self, spend: &SharedSpend, key: Option<&str>) -> Before {
        let mut leader = None;
        if let (true, Some(key)) = (self.settings.share_answers, key) {
            match self.lookup(key) {
                Lookup::Found(answer) => return Before::Answered(answer),
                Lookup::Leased => {
                    if let Some(answer) = self.await_leader(key) {
                        return Before::Answered(answer);
                    }
                }
                Lookup::Lead => leader = Some(key.to_owned()),
                Lookup::Off => {}
            }
        }
        match self.spend(spend, None) {
            Some(refusal) => {
                if let Some(key) = &leader {
                    self.release(key);
                }
                Before::Refused(refusal)
            }
            None => Before::Send { leader },
        }
    }

    /// Writes what the core says the others should hear of. `leader`: the
    /// key this daemon leased for the call just answered (released here,
    /// stored answer or not).
    pub fn publish(&self, outputs: Vec<SharedOutput>, leader: Option<&str>) {
        let mut released = false;
        for out in outputs {
            match out {
                SharedOutput::Pause { buckets, pause } => {
                    let keys: Vec<String> = buckets
                        .iter()
                        .map(|b| self.key("pause", &rendered(b)))
                        .collect();
                    let ms = (pause.as_millis() as u64).max(1);
                    let _: Option<i64> = self.round_trip(|c| {
                        let mut inv = self.pause.prepare_invoke();
                        for k in &keys {
                            inv.key(k);
                        }
                        inv.arg(ms).invoke(c)
                    });
                }
                SharedOutput::Store { key, response, ttl } => {
                    if !self.settings.share_answers {
                        continue;
                    }
                    let ms = ttl.as_millis() as u64;
                    if ms == 0 {
                        continue;
                    }
                    let Some(value) = encode(&response, ms, self.settings.max_answer_bytes) else {
                        lock(&self.counters).answers_too_large += 1;
                        continue;
                    };
                    let answer_key = self.key("ans", &key);
                    let lease_key = self.key("lease", &key);
                    let mine = leader == Some(key.as_str());
                    released |= mine;
                    let stored: Option<()> = self.round_trip(|c| {
                        let mut p = redis::pipe();
                        p.cmd("SET")
                            .arg(&answer_key)
                            .arg(&value)
                            .arg("PX")
                            .arg(ms)
                            .ignore();
                        if mine {
                            p.del(&lease_key).ignore();
                        }
                        p.query(c)
                    });
                    if stored.is_some() {
                        lock(&self.counters).answers_stored += 1;
                    }
                }
            }
        }
        if let (false, Some(key)) = (released, leader) {
            self.release(key);
        }
    }

    /// Counters since start, for stats and metrics.
    pub fn stats(&self) -> ClusterStats {
        let k = lock(&self.counters);
        let fallback = k.fallback_total + k.fallback_since.map_or(Duration::ZERO, |s| s.elapsed());
        let q = |p: f64| {
            k.rtt
                .as_ref()
                .filter(|h| !h.is_empty())
                .map_or(0.0, |h| h.value_at_quantile(p) as f64 / 1000.0)
        };
        let share = match self.state() {
            StoreState::Fallback { share, .. } => share,
            StoreState::Shared => self
                .settings
                .fallback_share
                .unwrap_or(1.0 / self.alive.load(Ordering::Relaxed).max(1) as f64),
        };
        ClusterStats {
            store: self.store.clone(),
            connected: self.is_up(),
            daemons_alive: self.alive.load(Ordering::Relaxed),
            fallback_share: share,
            round_trips: k.round_trips,
            errors: k.errors,
            timeouts: k.timeouts,
            fallbacks: k.fallbacks,
            fallback_secs: fallback.as_secs_f64(),
            round_trip_p50_ms: q(0.5),
            round_trip_p99_ms: q(0.99),
            answers_stored: k.answers_stored,
            answers_too_large: k.answers_too_large,
            answers_found: k.answers_found,
            lease_waits: k.lease_waits,
            peers_disagreeing: lock(&self.disagreeing).len() as u64,
        }
    }
}
