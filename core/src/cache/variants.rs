//! `Vary` in the cache (RFC 9111 §4.1): a primary key (method, target,
//! credential) whose answers vary keeps the names they vary on and up to
//! [`MAX_VARIANTS`] entries, each keyed by the digest of the selecting
//! values (see `crate::vary`).

use std::collections::VecDeque;
use std::sync::Arc;

use web_time::Instant;

use super::{Cache, CacheKey, Store};
use crate::request::Response;
use crate::vary::{variant, VariantId, Vary};

/// Variants kept per primary key (method, target, credential): a ninth
/// pushes out the oldest, so a header that takes many values (a `Vary:
/// Cookie` with a session per bot) cannot fill the cache with one URL.
pub(crate) const MAX_VARIANTS: usize = 8;

/// A primary key whose answers vary: the fields they vary on, and the
/// variants stored (oldest first).
#[derive(Debug)]
pub(super) struct VaryRecord {
    pub(super) names: Arc<[Box<str>]>,
    pub(super) variants: VecDeque<VariantId>,
}

impl Cache {
    /// Request header names the host's client replaces with its own.
    pub(crate) fn set_replaced(&mut self, names: &'static [&'static str]) {
        self.replaced = names;
    }

    /// `key` (a primary key) as the request with `headers` reads it: the
    /// variant it selects, if answers for it are known to vary. Costs
    /// nothing while no stored answer varies.
    pub(crate) fn select(&self, key: CacheKey, headers: &[(String, String)]) -> CacheKey {
        if self.varies.is_empty() {
            return key;
        }
        match self.varies.get(&key) {
            Some(rec) => {
                let id = variant(&rec.names, headers, self.replaced);
                key.with_variant(id)
            }
            None => key,
        }
    }

    /// The variant the request with `headers` selects among answers that
    /// vary as `vary` says (`None`: they do not, or `Vary: *`).
    pub(crate) fn variant_of(
        &self,
        vary: &Vary,
        headers: &[(String, String)],
    ) -> Option<VariantId> {
        match vary {
            Vary::Names(names) => Some(variant(names, headers, self.replaced)),
            Vary::None | Vary::Star => None,
        }
    }

    /// Stores an upstream answer to a request with `headers` under
    /// `key`'s primary key: as the variant those headers select when the
    /// answer carries `Vary`, not at all for `Vary: *` (RFC 9111 §4.1).
    /// Returns the key it is stored under.
    pub(crate) fn store_answer(
        &mut self,
        now: Instant,
        key: &CacheKey,
        response: Arc<Response>,
        store: Store,
        headers: &[(String, String)],
    ) -> Option<CacheKey> {
        let (key, names) = match Vary::of(&response.headers) {
            Vary::Star => return None,
            Vary::None => (key.primary(), None),
            Vary::Names(names) => {
                let id = variant(&names, headers, self.replaced);
                (key.primary().with_variant(id), Some(names))
            }
        };
        self.insert_variant(now, key.clone(), names, response, store)
            .then_some(key)
    }

    /// Keeps the record of `key`'s primary key in step with an answer
    /// about to be stored under `key` (see [`Self::insert_variant`]).
    pub(super) fn file_variant(&mut self, key: &CacheKey, names: Option<Arc<[Box<str>]>>) {
        let (Some(names), Some(id)) = (names, key.variant) else {
            if let Some(rec) = self.varies.remove(key) {
                for old in rec.variants {
                    self.remove(&key.with_variant(old));
                }
            }
            return;
        };
        let primary = key.primary();
        self.remove(&primary);
        let changed = self
            .varies
            .get(&primary)
            .filter(|rec| rec.names != names)
            .map(|rec| rec.variants.clone());
        for old in changed.into_iter().flatten() {
            self.remove(&primary.with_variant(old));
        }
        let rec = self
            .varies
            .entry(primary.clone())
            .or_insert_with(|| VaryRecord {
                names: names.clone(),
                variants: VecDeque::new(),
            });
        rec.names = names;
        if !rec.variants.contains(&id) {
            rec.variants.push_back(id);
        }
        let oldest = (rec.variants.len() > MAX_VARIANTS)
            .then(|| rec.variants.pop_front())
            .flatten();
        if let Some(old) = oldest {
            self.remove(&primary.with_variant(old));
            self.evictions += 1;
        }
    }

    /// An entry of `key` is gone: its variant leaves its record (and the
    /// record goes with its last variant).
    pub(super) fn forget_variant(&mut self, key: &CacheKey) {
        let Some(id) = key.variant else {
            return;
        };
        let primary = key.primary();
        if let Some(rec) = self.varies.get_mut(&primary) {
            rec.variants.retain(|v| *v != id);
            if rec.variants.is_empty() {
                self.varies.remove(&primary);
            }
        }
    }
}
