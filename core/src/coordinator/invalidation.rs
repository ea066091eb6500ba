//! Writes invalidate what they change: a successful (2xx/3xx) answer to
//! an unsafe method drops the cached answers for its target URI and for
//! the same-origin `Location` / `Content-Location` it names (RFC 9111
//! §4.4), and those of the routes its rule names in `invalidates`, for
//! the same credential.
//!
//! Dropping entries is not enough: a read (or a refresh) that left before
//! the write may answer after it, with what upstream held before. So each
//! write leaves a mark, the instant its answer arrived, on what it
//! changed; a call that left before the mark neither stores its answer
//! nor takes reads that arrive after it. A mark lives as long as a call
//! that left before it could still answer (the call timeout).

use super::*;

use crate::request::Credential;

/// What writes changed lately, and when their answers arrived.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// A route's answers for one credential (`None`: a shared route's).
    routes: HashMap<(RouteId, Option<Credential>), Instant>,
    /// Answers for one target (path and query), whoever's.
    targets: HashMap<String, Instant>,
}

impl Marks {
    /// When the latest write that changed `key` (of route `route`) was
    /// answered, if one was lately.
    pub(super) fn since(&self, key: &CacheKey, route: RouteId) -> Option<Instant> {
        if self.routes.is_empty() && self.targets.is_empty() {
            return None;
        }
        let by_route = self
            .routes
            .get(&(route, key.credential().cloned()))
            .copied();
        let by_target = self.targets.get(key.target()).copied();
        by_route.max(by_target)
    }

    /// The routes were renumbered (a reload): each mark follows its rule.
    pub(super) fn remap(&mut self, remap: impl Fn(RouteId) -> RouteId) {
        self.routes = std::mem::take(&mut self.routes)
            .into_iter()
            .map(|((r, c), at)| ((remap(r), c), at))
            .collect();
    }

    /// Forgets marks no call still in flight can predate.
    pub(super) fn forget_before(&mut self, t: Instant) {
        self.routes.retain(|_, at| *at >= t);
        self.targets.retain(|_, at| *at >= t);
    }
}

/// What an unsafe call writes to: its target, and whose it is.
#[derive(Debug, Clone)]
pub(super) struct WriteTarget {
    /// Path and query, as sent.
    pub(super) target: String,
    pub(super) credential: Option<Credential>,
}

impl WriteTarget {
    /// The write a request makes, if its method is unsafe.
    pub(super) fn of(request: &Request) -> Option<Self> {
        if request.method.is_safe() {
            return None;
        }
        let mut target = request.path.clone();
        if let Some(q) = &request.query {
            target.push('?');
            target.push_str(q);
        }
        Some(WriteTarget {
            target,
            credential: request.credential.clone(),
        })
    }
}

impl<P: Clone> Coordinator<P> {
    /// A write of route `route` was answered `response`: if the status
    /// says it happened (2xx, 3xx), drop and mark what it changed.
    pub(super) fn invalidate(
        &mut self,
        now: Instant,
        route: RouteId,
        write: &WriteTarget,
        response: &crate::request::Response,
    ) {
        if !(200..400).contains(&response.status) {
            return;
        }
        let routes = self.config.routes();
        let mut targets = vec![write.target.clone()];
        for (name, value) in &response.headers {
            if name.eq_ignore_ascii_case("location")
                || name.eq_ignore_ascii_case("content-location")
            {
                if let Some(t) = same_origin_target(value) {
                    targets.push(t);
                }
            }
        }
        for t in &targets {
            self.marks.targets.insert(t.clone(), now);
        }
        let mut named = Vec::new();
        for &r in &routes.get(route).invalidates {
            let credential = routes
                .get(r)
                .private
                .then(|| write.credential.clone())
                .flatten();
            self.marks.routes.insert((r, credential.clone()), now);
            named.push((r, credential));
        }
        let memo = &mut self.route_memo;
        let removed = self.cache.invalidate_where(|k| {
            if targets.iter().any(|t| t == k.target()) {
                return true;
            }
            if named.is_empty() {
                return false;
            }
            let r = memo.lookup(routes, k.method(), k.path());
            named
                .iter()
                .any(|(n, c)| *n == r && c.as_ref() == k.credential())
        });
        if removed > 0 {
            self.refresh_dirty = true;
        }
    }
}

/// The target a `Location` / `Content-Location` value names, if it is a
/// path on the same origin: an absolute path (`/orders/1?x=y`). A value
/// with a scheme or a network path (`//host/...`) may name another origin,
/// which RFC 9111 §4.4 forbids invalidating; the core does not know the
/// upstream's origin, so it leaves those alone. A fragment is not part of
/// the target.
fn same_origin_target(value: &str) -> Option<String> {
    let v = value.trim_matches([' ', '\t']);
    if !v.starts_with('/') || v.starts_with("//") {
        return None;
    }
    let v = v.split_once('#').map_or(v, |(t, _)| t);
    Some(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::same_origin_target;

    #[test]
    fn only_absolute_paths_name_the_same_origin() {
        assert_eq!(same_origin_target("/orders/1"), Some("/orders/1".into()));
        assert_eq!(same_origin_target(" /a?b=c#frag"), Some("/a?b=c".into()));
        assert_eq!(same_origin_target("//evil.example/a"), None);
        assert_eq!(same_origin_target("https://evil.example/a"), None);
        assert_eq!(same_origin_target("orders/1"), None);
    }
}
