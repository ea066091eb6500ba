//! Upstreams named by a typed id, and what a host keeps per upstream.

use std::ops::Index;

/// Names one upstream of a [`super::Proxy`]: its place in
/// [`crate::ProxyConfig::upstreams`]. Only the proxy hands ids out (from
/// [`super::Proxy::route`], its listeners and its upstream list), so an id
/// always names an upstream of the proxy that made it, and a host's
/// [`PerUpstream`] built by that proxy always has its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub(super) usize);

impl UpstreamId {
    /// The upstream's index in [`crate::ProxyConfig::upstreams`] (for
    /// logs and for seeding per-upstream state).
    pub fn index(self) -> usize {
        self.0
    }
}

/// One `T` per upstream of a proxy, keyed by [`UpstreamId`]: what a host
/// holds its coordinators in. Built only by
/// [`super::Proxy::per_upstream`], so indexing it with an id of the same
/// proxy cannot miss.
#[derive(Debug, Clone)]
pub struct PerUpstream<T> {
    items: Vec<T>,
}

impl<T> PerUpstream<T> {
    pub(super) fn new(items: Vec<T>) -> Self {
        PerUpstream { items }
    }

    /// Every upstream's entry with its id, in config order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (UpstreamId, &T)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, t)| (UpstreamId(i), t))
    }

    /// Every upstream's entry, in config order.
    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// How many upstreams there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none (a proxy always has at least one upstream).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Panics only for an id made by another proxy with more upstreams.
impl<T> Index<UpstreamId> for PerUpstream<T> {
    type Output = T;

    fn index(&self, id: UpstreamId) -> &T {
        &self.items[id.0]
    }
}
