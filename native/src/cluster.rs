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
//!
//! Keys, all under `<name>:<url hash>:`: `gcra:<scope>:<credential|*>`,
//! `pause:<scope>:<credential|*>`, `ans:<cache key>`, `lease:<cache key>`,
//! `alive` (a sorted set of daemon ids by last heartbeat); and
//! `<name>:peers` (a hash of fingerprints by daemon id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use redis::{Client, Connection, Script};
use serde::{Deserialize, Serialize};
use syncoord_core::stats::ClusterStats;
use syncoord_core::{Response, SharedBucket, SharedOutput, SharedRefusal, SharedSpend, StoreState};
use syncoord_wire::{ClusterSettings, Fingerprint};

/// The shared GCRA: `KEYS` = n bucket keys then their n pause keys;
/// `ARGV` = now in µs (`""`: Redis's own clock), cost, reserve, then per
/// bucket its interval in µs, its burst and a resume flag. Returns
/// `{0, 0}` (spent), `{1, wait µs}` (not enough tokens) or `{2, pause µs}`
/// (paused after a 429). Arithmetic in whole microseconds, below 2^53, so
/// Lua's doubles are exact; written back with `%.0f` for the same reason.
pub const GCRA_LUA: &str = r"
local n = #KEYS / 2
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local paused = 0
for i = 1, n do
  local p = redis.call('PTTL', KEYS[n + i])
  if p > paused then paused = p end
end
local wait = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[1 + 3 * i])
  local burst = tonumber(ARGV[2 + 3 * i])
  local tolerance = interval * burst
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if ARGV[3 + 3 * i] == '1' and tat < now + tolerance then
    tat = now + tolerance
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.floor(tolerance / 1000) + 1000)
  end
  local start = math.max(tat, now)
  local need = math.min(cost + reserve, burst)
  local reach = start + interval * need
  if reach > now + tolerance then
    wait = math.max(wait, reach - now - tolerance)
  end
  tats[i] = start + interval * cost
end
if paused > 0 then return {2, paused * 1000} end
if wait > 0 then return {1, wait} end
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1000)
end
return {0, 0}
";

/// Pauses every bucket in `KEYS` for `ARGV[1]` ms, never shortening a
/// longer pause.
const PAUSE_LUA: &str = r"
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[i], '1', 'PX', ARGV[1])
  end
end
return 0
";

/// A local miss: the shared answer `KEYS[1]` with its TTL left (`{1,
/// value, pttl}`), else the lease `KEYS[2]` taken for `ARGV[1]` for
/// `ARGV[2]` ms (`{2, '', 0}`: fetch it) or held by another (`{3, '', 0}`).
const LOOKUP_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v, redis.call('PTTL', KEYS[1])} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, '', 0} end
return {3, '', 0}
";

/// Deletes lease `KEYS[1]` if daemon `ARGV[1]` still holds it.
const RELEASE_LUA: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0";

/// Records daemon `ARGV[1]` alive in the sorted set `KEYS[1]` on Redis's
/// clock, forgets daemons silent for `ARGV[2]` ms; publishes its
/// fingerprint `ARGV[3]` in the hash `KEYS[2]` (one per cluster name, all
/// upstreams: `<ms> <fingerprint>` by daemon id) and forgets silent ones
/// there too. Returns how many are alive and the fingerprints of the
/// others, `id`, `fingerprint` in turn.
const HEARTBEAT_LUA: &str = r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - window)
redis.call('PEXPIRE', KEYS[1], window)
redis.call('HSET', KEYS[2], ARGV[1], ms .. ' ' .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], window)
local peers = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local seen, fp = string.match(all[i + 1], '^(%d+) (.*)$')
  if seen == nil or tonumber(seen) < ms - window then
    redis.call('HDEL', KEYS[2], all[i])
  elseif all[i] ~= ARGV[1] then
    peers[#peers + 1] = all[i]
    peers[#peers + 1] = fp
  end
end
return {redis.call('ZCARD', KEYS[1]), peers}
";

/// Why a cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.redis_url: {0}")]
    Url(String),
}

pub use crate::store::{Before, SharedAnswer};

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Status.
    s: u16,
    /// Headers.
    h: Vec<(String, String)>,
    /// Body, base64.
    b: String,
    /// TTL it was stored with, ms.
    t: u64,
}

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

    fn connection(&self) -> redis::RedisResult<Connection> {
        if let Some(c) = lock(&self.pool).pop() {
            return Ok(c);
        }
        let c = self
            .client
            .get_connection_with_timeout(self.settings.connect_timeout())?;
        c.set_read_timeout(Some(self.settings.call_timeout()))?;
        c.set_write_timeout(Some(self.settings.call_timeout()))?;
        Ok(c)
    }

    /// Runs one round trip with a pooled connection, timed and counted;
    /// an error turns the store off (the connection is dropped). `None`
    /// when the store is off or the call failed.
    fn round_trip<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Option<T> {
        if !self.is_up() {
            return None;
        }
        self.run(f)
    }

    fn run<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Option<T> {
        let started = Instant::now();
        let result = self
            .connection()
            .and_then(|mut c| f(&mut c).map(|v| (v, c)));
        let took = started.elapsed();
        let mut k = lock(&self.counters);
        k.round_trips += 1;
        match result {
            Ok((v, c)) => {
                if let Some(h) = k.rtt.as_mut() {
                    let _ = h.record((took.as_micros() as u64).max(1));
                }
                drop(k);
                let mut pool = lock(&self.pool);
                if pool.len() < self.pool_size {
                    pool.push(c);
                }
                Some(v)
            }
            Err(e) => {
                k.errors += 1;
                if e.is_timeout() {
                    k.timeouts += 1;
                }
                drop(k);
                // Said once when the store is lost (and once when it is
                // reached again), never per failed call.
                if self.went_down() {
                    tracing::warn!(store = %self.store, error = %e, "shared store lost; limiting locally until it answers again");
                } else {
                    tracing::debug!(store = %self.store, error = %e, "shared store call failed");
                }
                None
            }
        }
    }

    /// Marks the store down; whether it was up until now.
    fn went_down(&self) -> bool {
        lock(&self.pool).clear();
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if was_up {
            let mut k = lock(&self.counters);
            k.fallbacks += 1;
            k.fallback_since = Some(Instant::now());
            drop(k);
            // The heartbeat thread reconnects.
            self.wake.notify_all();
        }
        was_up
    }

    fn came_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            let mut k = lock(&self.counters);
            if let Some(since) = k.fallback_since.take() {
                k.fallback_total += since.elapsed();
            }
            drop(k);
            tracing::info!(store = %self.store, "shared store reached; sharing budgets");
        }
    }

    /// One heartbeat (also the reconnect probe): records this daemon alive,
    /// publishes its fingerprint, reads how many are alive and the peers'
    /// fingerprints. Returns whether the store answered.
    fn beat(&self) -> bool {
        let window = (self.settings.heartbeat().as_millis() as u64 * 3).max(1);
        let key = self.key("alive", "").trim_end_matches(':').to_owned();
        let mine = self
            .fingerprint
            .as_ref()
            .map_or(String::new(), Fingerprint::encode);
        let reply: Option<(u64, Vec<String>)> = self.run(|c| {
            self.heartbeat
                .key(&key)
                .key(&self.peers_key)
                .arg(&self.id)
                .arg(window)
                .arg(&mine)
                .invoke(c)
        });
        match reply {
            Some((n, peers)) => {
                self.alive.store(n.max(1), Ordering::Relaxed);
                self.came_up();
                self.compare(&peers);
                true
            }
            None => false,
        }
    }

    /// Logs each peer that disagrees with this daemon's fingerprint, once
    /// per peer and disagreement (and once when it agrees again).
    fn compare(&self, peers: &[String]) {
        let Some(mine) = &self.fingerprint else {
            return;
        };
        let now: HashMap<String, String> = peers
            .chunks_exact(2)
            .filter_map(|p| {
                let theirs = Fingerprint::decode(&p[1])?;
                Some((p[0].clone(), mine.disagreement(&theirs)?))
            })
            .collect();
        let mut logged = lock(&self.disagreeing);
        for (peer, why) in &now {
            if logged.get(peer) != Some(why) {
                tracing::error!(
                    cluster = %self.settings.name,
                    upstream = %mine.upstream,
                    peer = %peer,
                    "cluster peer disagrees: {why}"
                );
            }
        }
        for peer in logged.keys() {
            if !now.contains_key(peer) {
                tracing::info!(cluster = %self.settings.name, upstream = %mine.upstream, peer = %peer, "cluster peer no longer disagrees (gone or reconfigured)");
            }
        }
        *logged = now;
    }

    /// The heartbeat thread's loop: a heartbeat every `heartbeat_secs`
    /// while the store is up; while it is down, reconnect attempts with
    /// exponential backoff (50 ms doubling to the heartbeat interval).
    /// `changed` runs after every change of [`Self::is_up`] (the host
    /// tells its core). Returns after [`Self::stop`].
    pub fn run_heartbeat(&self, changed: &dyn Fn()) {
        let beat = self.settings.heartbeat();
        let mut backoff = Duration::from_millis(50);
        let mut was_up = self.is_up();
        changed();
        loop {
            let wait = if self.is_up() {
                beat
            } else {
                backoff.min(beat)
            };
            {
                let stopping = lock(&self.stopping);
                if *stopping {
                    return;
                }
                let (stopping, _) = self
                    .wake
                    .wait_timeout(stopping, wait)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stopping {
                    return;
                }
            }
            let ok = self.beat();
            backoff = if ok {
                Duration::from_millis(50)
            } else {
                (backoff * 2).min(beat)
            };
            let up = self.is_up();
            if up != was_up {
                was_up = up;
                changed();
            }
        }
    }

    /// Ends [`Self::run_heartbeat`].
    pub fn stop(&self) {
        *lock(&self.stopping) = true;
        self.wake.notify_all();
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

    /// Runs the shared GCRA for `spend`; `None` when it may go (or the
    /// store is off). `now_us` overrides Redis's clock (tests).
    pub fn spend(&self, spend: &SharedSpend, now_us: Option<u64>) -> Option<SharedRefusal> {
        if spend.buckets.is_empty() || !self.is_up() {
            return None;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let names: Vec<String> = spend.buckets.iter().map(rendered).collect();
        let resume: Vec<bool> = {
            let applied = lock(&self.resumed);
            names
                .iter()
                .map(|n| epoch > 0 && applied.get(n).copied().unwrap_or(0) < epoch)
                .collect()
        };
        let reply: Option<(u8, u64)> = self.round_trip(|c| {
            let mut inv = self.gcra.prepare_invoke();
            for n in &names {
                inv.key(self.key("gcra", n));
            }
            for n in &names {
                inv.key(self.key("pause", n));
            }
            inv.arg(now_us.map_or(String::new(), |n| n.to_string()))
                .arg(spend.cost)
                .arg(spend.reserve);
            for (b, r) in spend.buckets.iter().zip(&resume) {
                inv.arg(syncoord_core::micros_ceil(b.interval))
                    .arg(b.burst)
                    .arg(if *r { "1" } else { "0" });
            }
            inv.invoke(c)
        });
        let (kind, micros) = reply?;
        if resume.iter().any(|r| *r) {
            let mut applied = lock(&self.resumed);
            for n in names {
                applied.insert(n, epoch);
            }
        }
        let wait = Duration::from_micros(micros);
        match kind {
            0 => None,
            2 => Some(SharedRefusal::Paused(wait)),
            _ => Some(SharedRefusal::Until(wait)),
        }
    }

    fn lookup(&self, key: &str) -> Lookup {
        let answer_key = self.key("ans", key);
        let lease_key = self.key("lease", key);
        let lease_ms = (self.settings.lease().as_millis() as u64).max(1);
        // One round trip: the answer and its TTL, else the lease.
        let reply: Option<(u8, Vec<u8>, i64)> = self.round_trip(|c| {
            self.lookup
                .key(&answer_key)
                .key(&lease_key)
                .arg(&self.id)
                .arg(lease_ms)
                .invoke(c)
        });
        match reply {
            None => Lookup::Off,
            Some((1, value, pttl)) => match decode(&value, pttl) {
                Some(answer) => {
                    lock(&self.counters).answers_found += 1;
                    Lookup::Found(answer)
                }
                // Unreadable or expiring this very moment: fetch it.
                None => Lookup::Lead,
            },
            Some((2, _, _)) => Lookup::Lead,
            Some(_) => Lookup::Leased,
        }
    }

    /// Polls for the leader's answer for at most the lease.
    fn await_leader(&self, key: &str) -> Option<SharedAnswer> {
        lock(&self.counters).lease_waits += 1;
        let answer_key = self.key("ans", key);
        let lease_key = self.key("lease", key);
        let until = Instant::now() + self.settings.lease();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
            let reply: Option<(Option<Vec<u8>>, i64, bool)> = self.round_trip(|c| {
                redis::pipe()
                    .get(&answer_key)
                    .pttl(&answer_key)
                    .exists(&lease_key)
                    .query(c)
            });
            let (value, pttl, leased) = reply?;
            if let Some(answer) = value.and_then(|v| decode(&v, pttl)) {
                lock(&self.counters).answers_found += 1;
                return Some(answer);
            }
            if !leased {
                // The leader gave up (an answer not shared) or died.
                return None;
            }
        }
        None
    }

    /// Releases the lease this daemon holds on `key` (if it still does).
    fn release(&self, key: &str) {
        let lease_key = self.key("lease", key);
        let _: Option<i64> =
            self.round_trip(|c| self.release.key(&lease_key).arg(&self.id).invoke(c));
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

enum Lookup {
    Found(SharedAnswer),
    /// Nobody fetches it: this daemon holds the lease now.
    Lead,
    /// Another daemon fetches it.
    Leased,
    Off,
}

fn encode(r: &Response, ttl_ms: u64, max: usize) -> Option<Vec<u8>> {
    let size = r.body.len()
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > max {
        return None;
    }
    let stored = Stored {
        s: r.status,
        h: r.headers.clone(),
        b: base64::engine::general_purpose::STANDARD.encode(&r.body),
        t: ttl_ms,
    };
    serde_json::to_vec(&stored)
        .ok()
        .filter(|v| v.len() <= max * 2 + 1024)
}

fn decode(v: &[u8], pttl_ms: i64) -> Option<SharedAnswer> {
    let stored: Stored = serde_json::from_slice(v).ok()?;
    let left = u64::try_from(pttl_ms).ok().filter(|l| *l > 0)?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(stored.b)
        .ok()?;
    Some(SharedAnswer {
        response: Response {
            status: stored.s,
            headers: stored.h,
            body,
        },
        age: Duration::from_millis(stored.t.saturating_sub(left)),
        ttl_left: Duration::from_millis(left),
    })
}
