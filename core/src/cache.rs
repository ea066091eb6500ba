//! The response cache: TTL per route, bounded in entries and bytes (least
//! recently used goes first), and a stale-if-error window in which an
//! expired entry may still be served, marked stale, when upstream cannot
//! give a fresh one.
//!
//! Keys are structured, not concatenated strings, so no crafted path or
//! query can collide with another credential's key.

use std::collections::BTreeMap;

use crate::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use web_time::{Duration, Instant};

use crate::config::{secs, CacheConfig};
use crate::request::{Credential, Method, Response};
use crate::vary::VariantId;

use variants::VaryRecord;
#[cfg(test)]
pub(crate) use variants::MAX_VARIANTS;

/// What identifies one cacheable (and coalescable) request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    method: Method,
    /// Normalised path, then `?` and the sorted query when there is one.
    target: String,
    /// Present for private routes: whose response this is.
    credential: Option<Credential>,
    /// For a target whose answers carry `Vary`: which variant (a digest
    /// of the request's values of the fields it names, see `crate::vary`).
    variant: Option<VariantId>,
}

impl CacheKey {
    /// Builds the key from exactly what is sent upstream: the path and
    /// the query byte for byte (`//a`, `/a` and `/a/` reach upstream as
    /// different targets, and so do `?a=1&b=2` and `?b=2&a=1`; a server
    /// may answer them differently, so they never share an entry; `/a?`
    /// is `/a` with an empty query, which is not `/a`), and the
    /// credential for private routes.
    pub(crate) fn new(
        method: &Method,
        path: &str,
        query: Option<&str>,
        credential: Option<&Credential>,
    ) -> Self {
        let mut target = String::with_capacity(path.len() + query.map_or(0, str::len) + 1);
        target.push_str(path);
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        CacheKey {
            method: method.clone(),
            target,
            credential: credential.cloned(),
            variant: None,
        }
    }

    /// This key for the variant `id` selects.
    pub(crate) fn with_variant(&self, id: VariantId) -> CacheKey {
        CacheKey {
            variant: Some(id),
            ..self.clone()
        }
    }

    /// This key without a variant: method, target and credential.
    pub(crate) fn primary(&self) -> CacheKey {
        CacheKey {
            variant: None,
            ..self.clone()
        }
    }

    /// The variant it names, if any.
    pub(crate) fn variant(&self) -> Option<VariantId> {
        self.variant
    }

    /// The key as a shared store names it: method, target and, for a
    /// private route, the credential identity, space-separated (a method
    /// and a request target hold no space, so it reads back unambiguously).
    pub(crate) fn shared_name(&self) -> String {
        match &self.credential {
            Some(c) => format!("{} {} {}", self.method.as_str(), self.target, c.as_str()),
            None => format!("{} {}", self.method.as_str(), self.target),
        }
    }

    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    /// The path and query, as sent upstream.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The path alone (what routes match).
    pub(crate) fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    pub(crate) fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    fn size_bytes(&self) -> usize {
        self.target.len()
            + self.method.as_str().len()
            + self.credential.as_ref().map_or(0, |c| c.as_str().len())
            + self.variant.map_or(0, |v| v.len())
            + 48
    }
}

/// A cache read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    Fresh {
        response: Arc<Response>,
        age: Duration,
        /// What is left of its lifetime.
        left: Duration,
        /// A refreshed entry nobody had read since it was stored (or for
        /// the idle window): if this read is served, refresh may resume.
        woke: bool,
        /// A refreshed entry whose stored request is due for renewal: the
        /// reader should lend its own (see `[refresh] resend_max_age_secs`).
        renew: bool,
    },
    /// Expired but within the stale-if-error window.
    Stale {
        response: Arc<Response>,
        age: Duration,
        /// How long ago it expired.
        past_expiry: Duration,
    },
    Miss,
}

/// What refresh-ahead needs to know of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefreshView {
    pub(crate) stored: Instant,
    pub(crate) last_read: Instant,
    /// Reads this answer served since it was stored: a refresh is only
    /// worth making when the answer it replaces was read (see
    /// `Coordinator::poll_refresh`).
    pub(crate) reads: u32,
    /// Of those, the reads no refresh has been sent for yet: a refresh
    /// upstream failed spent the reads before it (see
    /// [`Cache::reads_spent`]), so the next one needs a new read.
    pub(crate) unspent: u32,
    /// The shortest refresh interval its readers asked for (from their
    /// `max-age`; zero for a reader who asked nothing, so the route's
    /// `min_age` decides); `Duration::MAX` while nobody read it.
    pub(crate) wanted: Duration,
}

/// How an answer enters the cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Store {
    /// How long it stays fresh.
    pub(crate) ttl: Duration,
    /// When the call that fetched it left: an answer to an older call
    /// never replaces one to a newer call.
    pub(crate) sent: Instant,
    /// Whether a request read it (a real call) or not (a refresh).
    pub(crate) read: bool,
    /// For refreshed routes: when a reader should lend its request.
    pub(crate) renew_after: Option<Instant>,
    /// Never served once expired (`must-revalidate`, `proxy-revalidate`,
    /// `s-maxage`): no stale-if-error, stale-while-revalidate or
    /// `max-stale` for it.
    pub(crate) no_stale: bool,
    /// Its age when it arrived: upstream's `Age` (RFC 9111 §4.2.3), the
    /// time it already spent in caches between the origin and us. It is
    /// part of the age every read sees (the `Age` sent, a reader's
    /// `max-age`), not of when it was stored.
    pub(crate) initial_age: Duration,
}

#[derive(Debug)]
struct Entry {
    response: Arc<Response>,
    stored: Instant,
    expires: Instant,
    sent: Instant,
    last_read: Instant,
    /// Reads served from this answer (see [`RefreshView::reads`]).
    reads: u32,
    /// `reads` when a refresh of this answer last failed.
    spent: u32,
    /// See [`Store::no_stale`].
    no_stale: bool,
    /// See [`Store::initial_age`].
    initial_age: Duration,
    /// See [`RefreshView::wanted`].
    wanted: Duration,
    renew_after: Option<Instant>,
    bytes: usize,
    /// When it was last used (stored or read fresh), on the cache's clock.
    touched: u64,
    /// Its place in the recency order: `touched` as of when it was last
    /// placed there. A hit only moves `touched`; eviction moves the entry
    /// to its real place when it comes up (see [`Cache::evict_oldest`]).
    placed: u64,
}

/// Cache figures for stats.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheSnapshot {
    /// Entries currently stored (fresh or within the stale-if-error window).
    pub entries: usize,
    /// Estimated bytes held: bodies, headers and keys plus fixed overheads.
    pub bytes: usize,
    /// The entry limit (`[cache] max_entries`).
    pub max_entries: usize,
    /// The byte limit (`[cache] max_bytes`).
    pub max_bytes: usize,
    /// Responses stored since start.
    pub inserts: u64,
    /// Entries evicted (least recently used first) to make room; expired
    /// entries that are dropped are not counted.
    pub evictions: u64,
    /// Entries dropped because a write changed what they held.
    #[serde(default)]
    pub invalidated: u64,
}

pub(crate) struct Cache {
    entries: HashMap<CacheKey, Entry>,
    /// Primary keys whose stored answers carry `Vary` (each of their
    /// entries is keyed by its variant).
    varies: HashMap<CacheKey, VaryRecord>,
    /// Request header names the host's upstream client sets itself: they
    /// cannot have selected an answer (see `crate::vary`).
    replaced: &'static [&'static str],
    /// Recency order, by each entry's `placed`: oldest first.
    recency: BTreeMap<u64, CacheKey>,
    clock: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    stale_window: Duration,
    revalidate_window: Duration,
    /// Refresh-ahead's idle window (`[refresh] idle_secs`).
    idle: Duration,
    statuses: Vec<u16>,
    inserts: u64,
    evictions: u64,
    invalidated: u64,
}

impl Cache {
    pub(crate) fn new(config: &CacheConfig, idle: Duration) -> Self {
        Cache {
            entries: HashMap::default(),
            varies: HashMap::default(),
            replaced: &[],
            recency: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            max_entries: config.max_entries,
            max_bytes: config.max_bytes,
            stale_window: secs(config.stale_if_error_secs),
            revalidate_window: secs(config.stale_while_revalidate_secs),
            idle,
            statuses: config.cacheable_statuses.clone(),
            inserts: 0,
            evictions: 0,
            invalidated: 0,
        }
    }

    /// Reads `key`. A fresh hit counts as a use for eviction; an entry past
    /// even the stale window is dropped.
    pub(crate) fn lookup(&mut self, now: Instant, key: &CacheKey) -> Lookup {
        let Some(entry) = self.entries.get_mut(key) else {
            return Lookup::Miss;
        };
        let age = entry.initial_age + now.saturating_duration_since(entry.stored);
        let unread = now.saturating_duration_since(entry.last_read);
        entry.last_read = entry.last_read.max(now);
        if now < entry.expires {
            self.clock += 1;
            entry.touched = self.clock;
            let (woke, renew) = match entry.renew_after {
                Some(t) => (entry.reads == 0 || unread > self.idle, now >= t),
                None => (false, false),
            };
            return Lookup::Fresh {
                response: entry.response.clone(),
                age,
                left: entry.expires - now,
                woke,
                renew,
            };
        }
        if now < entry.expires + self.stale_window && !entry.no_stale {
            return Lookup::Stale {
                response: entry.response.clone(),
                age,
                past_expiry: now - entry.expires,
            };
        }
        self.remove(key);
        Lookup::Miss
    }

    /// An expired entry young enough to serve while its refresh waits
    /// (stale-while-revalidate).
    pub(crate) fn while_revalidating(
        &mut self,
        now: Instant,
        key: &CacheKey,
    ) -> Option<(Arc<Response>, Duration)> {
        let entry = self.entries.get(key)?;
        let window = now >= entry.expires && now < entry.expires + self.revalidate_window;
        (window && !entry.no_stale).then(|| {
            (
                entry.response.clone(),
                entry.initial_age + now.saturating_duration_since(entry.stored),
            )
        })
    }

    /// Whether a response with this status may be stored at all.
    pub(crate) fn accepts_status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }

    /// Stores `response` as `store` says if its status is cacheable, the
    /// TTL is positive, it fits, and no answer to a newer call is held;
    /// evicts least recently used entries to make room. Returns whether
    /// it was stored.
    #[cfg(test)]
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        key: CacheKey,
        response: Arc<Response>,
        store: Store,
    ) -> bool {
        self.insert_variant(now, key, None, response, store)
    }

    /// [`Self::insert`] for an answer that varies on `names` (`key` then
    /// names its variant) or does not (`None`; `key` is primary). An
    /// answer that does not vary replaces every variant of its key, and
    /// one that varies replaces the one that did not, and every variant
    /// that varied on other names.
    fn insert_variant(
        &mut self,
        now: Instant,
        key: CacheKey,
        names: Option<std::sync::Arc<[Box<str>]>>,
        response: Arc<Response>,
        store: Store,
    ) -> bool {
        if store.ttl.is_zero() || !self.accepts_status(response.status) {
            return false;
        }
        let names_len = names
            .as_ref()
            .map_or(0, |n| n.iter().map(|n| n.len() + 16).sum());
        let bytes = response.size_bytes() + key.size_bytes() + names_len;
        if bytes > self.max_bytes {
            return false;
        }
        let last_read = match self.entries.get(&key) {
            Some(e) if e.sent > store.sent => return false,
            Some(e) if !store.read => e.last_read,
            // A refresh of an entry evicted meanwhile: nobody has read it.
            None if !store.read => now.checked_sub(self.idle).unwrap_or(now),
            _ => now,
        };
        self.remove(&key);
        self.file_variant(&key, names);
        while self.entries.len() >= self.max_entries || self.bytes + bytes > self.max_bytes {
            if !self.evict_oldest() {
                break;
            }
        }
        self.clock += 1;
        self.recency.insert(self.clock, key.clone());
        self.bytes += bytes;
        self.inserts += 1;
        self.entries.insert(
            key,
            Entry {
                response,
                stored: now,
                expires: now + store.ttl,
                sent: store.sent,
                last_read,
                reads: 0,
                spent: 0,
                no_stale: store.no_stale,
                initial_age: store.initial_age,
                wanted: Duration::MAX,
                renew_after: store.renew_after,
                bytes,
                touched: self.clock,
                placed: self.clock,
            },
        );
        true
    }

    /// Evicts the least recently used entry. The first in the recency
    /// order may have been read since it was placed: it moves to its real
    /// place, and the next is looked at. The one whose place is current
    /// is the least recently used: every other entry was placed later and
    /// used no earlier than placed. Each hit costs one such move at most,
    /// here, instead of two tree operations and a key copy when it
    /// happens. `false` when the cache is empty.
    fn evict_oldest(&mut self) -> bool {
        while let Some((place, key)) = self.recency.pop_first() {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            if entry.touched > place {
                entry.placed = entry.touched;
                self.recency.insert(entry.touched, key);
                continue;
            }
            let bytes = entry.bytes;
            self.entries.remove(&key);
            self.bytes -= bytes;
            self.evictions += 1;
            self.forget_variant(&key);
            return true;
        }
        false
    }

    /// The entry's times, for refresh-ahead.
    pub(crate) fn refresh_view(&self, key: &CacheKey) -> Option<RefreshView> {
        self.entries.get(key).map(|e| RefreshView {
            stored: e.stored,
            last_read: e.last_read,
            reads: e.reads,
            unspent: e.reads - e.spent,
            wanted: e.wanted,
        })
    }

    /// A fresh read of `key` was served from its entry. `wanted`: the
    /// refresh interval that reader's freshness asks for (see
    /// [`RefreshView::wanted`]).
    pub(crate) fn served(&mut self, key: &CacheKey, wanted: Duration) {
        if let Some(e) = self.entries.get_mut(key) {
            e.reads = e.reads.saturating_add(1);
            e.wanted = e.wanted.min(wanted);
        }
    }

    /// A refresh of `key` failed: the reads its entry served paid for that
    /// call, so the next refresh waits for a new one (without this, one
    /// read would buy a refresh after every failure, back to back). The
    /// count itself stays: the key is still read as often as it was.
    pub(crate) fn reads_spent(&mut self, key: &CacheKey) {
        if let Some(e) = self.entries.get_mut(key) {
            e.spent = e.reads;
        }
    }

    /// When a reader of `key` should next lend its request.
    pub(crate) fn set_renew_after(&mut self, key: &CacheKey, at: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.renew_after = Some(at);
        }
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(e) = self.entries.remove(key) {
            self.recency.remove(&e.placed);
            self.bytes -= e.bytes;
            self.forget_variant(key);
        }
    }

    /// Drops every entry `doomed` picks (a write changed what it holds);
    /// returns how many.
    pub(crate) fn invalidate_where(&mut self, mut doomed: impl FnMut(&CacheKey) -> bool) -> usize {
        let dead: Vec<CacheKey> = self.entries.keys().filter(|k| doomed(k)).cloned().collect();
        for k in &dead {
            self.remove(k);
        }
        self.invalidated += dead.len() as u64;
        dead.len()
    }

    /// Drops every entry past its stale window.
    pub(crate) fn purge(&mut self, now: Instant) {
        let window = self.stale_window;
        let dead: Vec<CacheKey> = self
            .entries
            .iter()
            .filter(|(_, e)| now >= e.expires + window)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            self.remove(&k);
        }
    }

    pub(crate) fn snapshot(&self) -> CacheSnapshot {
        CacheSnapshot {
            entries: self.entries.len(),
            bytes: self.bytes,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            inserts: self.inserts,
            evictions: self.evictions,
            invalidated: self.invalidated,
        }
    }
}

mod variants;

#[cfg(test)]
mod tests;
