use super::*;

/// A fresh or stale entry, as the coordinator falls back on one.
fn fallback(c: &mut Cache, now: Instant, key: &CacheKey) -> Option<(Arc<Response>, Duration)> {
    match c.lookup(now, key) {
        Lookup::Fresh { response, age, .. } | Lookup::Stale { response, age, .. } => {
            Some((response, age))
        }
        Lookup::Miss => None,
    }
}

const IDLE: Duration = Duration::from_secs(30);

impl Store {
    /// A real call's answer, sent at `sent`, kept for `ttl`.
    fn real(sent: Instant, ttl: Duration) -> Self {
        Store {
            ttl,
            sent,
            read: true,
            renew_after: None,
            no_stale: false,
        }
    }
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn get() -> Method {
    Method::get()
}

fn cred(name: &str) -> Credential {
    Credential::new(name)
}

fn key(path: &str) -> CacheKey {
    CacheKey::new(&get(), path, None, None)
}

fn ok(body: &str) -> Arc<Response> {
    Arc::new(Response::new(200, body))
}

fn config(max_entries: usize, max_bytes: usize, stale_secs: f64) -> CacheConfig {
    CacheConfig {
        max_entries,
        max_bytes,
        stale_if_error_secs: stale_secs,
        cacheable_statuses: vec![200, 203],
        ..CacheConfig::default()
    }
}

fn is_fresh(l: &Lookup) -> bool {
    matches!(l, Lookup::Fresh { .. })
}

/// Bytes an entry of `key` and `response` is charged.
fn cost(key: &CacheKey, response: &Response) -> usize {
    response.size_bytes() + key.size_bytes()
}

#[test]
fn key_is_the_path_exactly_as_forwarded() {
    let g = get();
    let k = |p: &str| CacheKey::new(&g, p, None, None);
    // Upstream receives each of these as a different target and may
    // answer each differently: one entry each.
    assert_ne!(k("//a"), k("/a"));
    assert_ne!(k("/a/"), k("/a"));
    assert_ne!(k("//a//b/"), k("/a/b"));
    assert_eq!(k("/a/b").target, "/a/b");
    assert_eq!(k("//a/").target, "//a/");
    assert_ne!(k("/a/b"), k("/a/bb"));
    assert_ne!(k("/ab"), k("/a/b"));
    assert_eq!(k("/a/b"), k("/a/b"));
}

#[test]
fn key_is_the_query_exactly_as_forwarded() {
    let g = get();
    let k = |q: Option<&str>| CacheKey::new(&g, "/p", q, None);
    assert_eq!(k(Some("a=1&b=2")).target, "/p?a=1&b=2");
    assert_eq!(k(Some("a=1&b=2")), k(Some("a=1&b=2")));
    // Order, empty parts and a bare `?` all reach upstream as sent.
    assert_ne!(k(Some("b=2&a=1")), k(Some("a=1&b=2")));
    assert_ne!(k(Some("x=2&x=1")), k(Some("x=1&x=2")));
    assert_ne!(k(Some("a=1&&b=2&")), k(Some("a=1&b=2")));
    assert_ne!(k(Some("")), k(None));
    assert_eq!(k(Some("")).target, "/p?");
    assert_eq!(k(None).target, "/p");
    assert_ne!(k(Some("a=1")), k(Some("a=2")));
}

#[test]
fn key_distinguishes_method_and_credential() {
    let (alice, bob) = (cred("alice"), cred("bob"));
    let get = CacheKey::new(&Method::get(), "/p", None, None);
    let head = CacheKey::new(&Method::new("HEAD"), "/p", None, None);
    assert_ne!(get, head);
    assert_eq!(
        CacheKey::new(&Method::new("get"), "/p", None, None),
        get,
        "method names are upper-cased"
    );
    let a = CacheKey::new(&Method::get(), "/p", None, Some(&alice));
    let b = CacheKey::new(&Method::get(), "/p", None, Some(&bob));
    assert_ne!(a, get);
    assert_ne!(a, b);
    assert_eq!(a, CacheKey::new(&Method::get(), "/p", None, Some(&alice)));
}

#[test]
fn private_entries_are_never_returned_for_another_credential() {
    let t0 = Instant::now();
    let mut c = Cache::new(&CacheConfig::default(), IDLE);
    let (alice, bob) = (cred("alice"), cred("bob"));
    let k = |who: Option<&Credential>| CacheKey::new(&get(), "/accounts", None, who);
    assert!(c.insert(
        t0,
        k(Some(&alice)),
        ok("alice's balance"),
        Store::real(t0, s(30))
    ));
    assert_eq!(c.lookup(t0, &k(Some(&bob))), Lookup::Miss);
    assert_eq!(c.lookup(t0, &k(None)), Lookup::Miss);
    assert_eq!(fallback(&mut c, t0 + s(31), &k(Some(&bob))), None);
    match c.lookup(t0, &k(Some(&alice))) {
        Lookup::Fresh { response, .. } => assert_eq!(response.body, b"alice's balance"),
        other => panic!("{other:?}"),
    }
    // A shared (public) entry is not someone's private one either.
    assert!(c.insert(t0, k(None), ok("public"), Store::real(t0, s(30))));
    match c.lookup(t0, &k(Some(&alice))) {
        Lookup::Fresh { response, .. } => assert_eq!(response.body, b"alice's balance"),
        other => panic!("{other:?}"),
    }
    // Crafted paths and credentials cannot collide with each other.
    let crafted = CacheKey::new(&get(), "/accounts", None, Some(&cred("")));
    assert_eq!(c.lookup(t0, &crafted), Lookup::Miss);
}

#[test]
fn fresh_then_stale_then_gone() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(100, 1 << 20, 5.0), IDLE);
    let k = key("/products");
    let r = ok("x");
    assert!(c.insert(t0, k.clone(), r.clone(), Store::real(t0, s(10))));
    assert_eq!(
        c.lookup(t0, &k),
        Lookup::Fresh {
            response: r.clone(),
            age: Duration::ZERO,
            left: s(10),
            woke: false,
            renew: false
        }
    );
    let almost = t0 + s(10) - Duration::from_nanos(1);
    assert_eq!(
        c.lookup(almost, &k),
        Lookup::Fresh {
            response: r.clone(),
            age: s(10) - Duration::from_nanos(1),
            left: Duration::from_nanos(1),
            woke: false,
            renew: false
        }
    );
    // Expired: stale for the next five seconds, with its true age.
    assert_eq!(
        c.lookup(t0 + s(10), &k),
        Lookup::Stale {
            response: r.clone(),
            age: s(10),
            past_expiry: Duration::ZERO
        }
    );
    let last = t0 + s(15) - Duration::from_nanos(1);
    assert_eq!(
        c.lookup(last, &k),
        Lookup::Stale {
            response: r.clone(),
            age: s(15) - Duration::from_nanos(1),
            past_expiry: s(5) - Duration::from_nanos(1)
        }
    );
    assert_eq!(c.snapshot().entries, 1);
    // Past the stale window: a miss, and the entry is gone.
    assert_eq!(c.lookup(t0 + s(15), &k), Lookup::Miss);
    let snap = c.snapshot();
    assert_eq!((snap.entries, snap.bytes), (0, 0));
    assert_eq!(c.lookup(t0 + s(1), &k), Lookup::Miss, "removed, not hidden");
}

#[test]
fn no_stale_window_means_expired_is_a_miss() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(100, 1 << 20, 0.0), IDLE);
    let k = key("/p");
    assert!(c.insert(t0, k.clone(), ok("x"), Store::real(t0, s(1))));
    assert!(is_fresh(&c.lookup(t0, &k)));
    assert_eq!(c.lookup(t0 + s(1), &k), Lookup::Miss);
    assert_eq!(c.snapshot().entries, 0);
}

#[test]
fn fallback_serves_fresh_or_stale_with_age() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(100, 1 << 20, 60.0), IDLE);
    let k = key("/p");
    let r = ok("body");
    assert_eq!(fallback(&mut c, t0, &k), None);
    c.insert(t0, k.clone(), r.clone(), Store::real(t0, s(10)));
    assert_eq!(fallback(&mut c, t0 + s(3), &k), Some((r.clone(), s(3))));
    assert_eq!(fallback(&mut c, t0 + s(40), &k), Some((r.clone(), s(40))));
    assert_eq!(fallback(&mut c, t0 + s(70), &k), None);
    assert_eq!(c.snapshot().entries, 0);
}

#[test]
fn refuses_uncacheable_statuses_and_zero_ttl() {
    let t0 = Instant::now();
    let mut c = Cache::new(&CacheConfig::default(), IDLE);
    let k = key("/p");
    assert!(c.accepts_status(200) && c.accepts_status(203));
    assert!(!c.accepts_status(404) && !c.accepts_status(500) && !c.accepts_status(429));
    for status in [500, 429, 404, 304, 201] {
        let r = Arc::new(Response::new(status, "x"));
        assert!(
            !c.insert(t0, k.clone(), r, Store::real(t0, s(10))),
            "{status}"
        );
        assert_eq!(c.lookup(t0, &k), Lookup::Miss);
    }
    assert!(!c.insert(t0, k.clone(), ok("x"), Store::real(t0, Duration::ZERO)));
    assert_eq!(c.lookup(t0, &k), Lookup::Miss);
    assert_eq!(c.snapshot().inserts, 0);
    assert!(c.insert(
        t0,
        k.clone(),
        Arc::new(Response::new(203, "x")),
        Store::real(t0, s(1))
    ));
    assert!(is_fresh(&c.lookup(t0, &k)));
    // A refused insert leaves an existing entry alone.
    assert!(!c.insert(
        t0,
        k.clone(),
        Arc::new(Response::new(503, "err")),
        Store::real(t0, s(1))
    ));
    match c.lookup(t0, &k) {
        Lookup::Fresh { response, .. } => assert_eq!(response.status, 203),
        other => panic!("{other:?}"),
    }
}

#[test]
fn evicts_least_recently_looked_up_by_entry_count() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(3, 1 << 20, 0.0), IDLE);
    let (a, b, d, e, f) = (key("/a"), key("/b"), key("/d"), key("/e"), key("/f"));
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    c.insert(at(0), a.clone(), ok("a"), Store::real(at(0), s(60)));
    c.insert(at(1), b.clone(), ok("b"), Store::real(at(1), s(60)));
    c.insert(at(2), d.clone(), ok("d"), Store::real(at(2), s(60)));
    // Reading `a` makes `b` the least recently used.
    assert!(is_fresh(&c.lookup(at(3), &a)));
    assert!(c.insert(at(4), e.clone(), ok("e"), Store::real(at(4), s(60))));
    assert_eq!(c.lookup(at(5), &b), Lookup::Miss, "b was evicted");
    assert!(is_fresh(&c.lookup(at(5), &a)));
    // Now `d` is the oldest untouched.
    assert!(c.insert(at(6), f.clone(), ok("f"), Store::real(at(6), s(60))));
    assert_eq!(c.lookup(at(7), &d), Lookup::Miss);
    for k in [&a, &e, &f] {
        assert!(is_fresh(&c.lookup(at(7), k)), "{k:?}");
    }
    let snap = c.snapshot();
    assert_eq!((snap.entries, snap.inserts, snap.evictions), (3, 5, 2));
    assert_eq!(snap.max_entries, 3);
}

#[test]
fn stale_reads_do_not_count_as_use() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(2, 1 << 20, 100.0), IDLE);
    let (a, b, d) = (key("/a"), key("/b"), key("/d"));
    c.insert(t0, a.clone(), ok("a"), Store::real(t0, s(1)));
    c.insert(t0, b.clone(), ok("b"), Store::real(t0, s(60)));
    // `a` is read stale: it stays least recently used and goes first.
    assert!(matches!(c.lookup(t0 + s(2), &a), Lookup::Stale { .. }));
    c.insert(t0 + s(2), d.clone(), ok("d"), Store::real(t0 + s(2), s(60)));
    assert_eq!(c.lookup(t0 + s(2), &a), Lookup::Miss);
    assert!(is_fresh(&c.lookup(t0 + s(2), &b)));
}

#[test]
fn replacing_a_key_is_not_an_eviction() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(2, 1 << 20, 0.0), IDLE);
    let (a, b) = (key("/a"), key("/b"));
    c.insert(t0, a.clone(), ok("a1"), Store::real(t0, s(60)));
    c.insert(t0, b.clone(), ok("b"), Store::real(t0, s(60)));
    assert!(c.insert(
        t0 + s(1),
        a.clone(),
        ok("a2-longer"),
        Store::real(t0 + s(1), s(60))
    ));
    let snap = c.snapshot();
    assert_eq!((snap.entries, snap.evictions, snap.inserts), (2, 0, 3));
    assert_eq!(
        snap.bytes,
        cost(&a, &Response::new(200, "a2-longer")) + cost(&b, &Response::new(200, "b"))
    );
    match c.lookup(t0 + s(1), &a) {
        Lookup::Fresh { response, age, .. } => {
            assert_eq!(response.body, b"a2-longer");
            assert_eq!(age, Duration::ZERO, "age restarts with the new response");
        }
        other => panic!("{other:?}"),
    }
    assert!(is_fresh(&c.lookup(t0 + s(1), &b)));
}

#[test]
fn byte_bound_refuses_oversized_and_evicts_enough() {
    let t0 = Instant::now();
    let (a, b, d, big) = (key("/a"), key("/b"), key("/d"), key("/big"));
    let body = "x".repeat(100);
    let one = cost(&a, &Response::new(200, body.as_str()));
    assert_eq!(one, cost(&d, &Response::new(200, body.as_str())));
    let max = 3 * one + 10;
    let mut c = Cache::new(&config(100, max, 0.0), IDLE);
    for k in [&a, &b, &d] {
        assert!(c.insert(t0, k.clone(), ok(&body), Store::real(t0, s(60))));
    }
    assert_eq!(c.snapshot().bytes, 3 * one);
    // Too large on its own: refused, and nothing is evicted for it.
    let huge = "x".repeat(max);
    assert!(!c.insert(t0, big.clone(), ok(&huge), Store::real(t0, s(60))));
    assert_eq!(c.snapshot().entries, 3);
    assert_eq!(c.snapshot().evictions, 0);
    // Exactly the bound fits (after evicting everything else).
    let exact_body = "y".repeat(max - cost(&big, &Response::new(200, "")));
    let exact = Response::new(200, exact_body.as_str());
    assert_eq!(cost(&big, &exact), max);
    // First read `a` so that `b` and `d` are older.
    assert!(is_fresh(&c.lookup(t0, &a)));
    // An entry of about two slots evicts the two least recently used.
    let double_body = "z".repeat(100 + one - 4);
    let double = Response::new(200, double_body.as_str());
    let double_cost = cost(&big, &double);
    assert!(double_cost > one + 10 && double_cost <= 2 * one + 10);
    assert!(c.insert(t0, big.clone(), Arc::new(double), Store::real(t0, s(60))));
    assert_eq!(c.lookup(t0, &b), Lookup::Miss);
    assert_eq!(c.lookup(t0, &d), Lookup::Miss);
    assert!(is_fresh(&c.lookup(t0, &a)));
    let snap = c.snapshot();
    assert_eq!(snap.evictions, 2);
    assert_eq!(snap.bytes, one + double_cost);
    assert!(snap.bytes <= max);
    assert!(c.insert(t0, big.clone(), Arc::new(exact), Store::real(t0, s(60))));
    let snap = c.snapshot();
    assert_eq!((snap.entries, snap.bytes), (1, max));
    assert_eq!(c.lookup(t0, &a), Lookup::Miss);
}

#[test]
fn purge_drops_only_entries_past_their_stale_window() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(100, 1 << 20, 10.0), IDLE);
    let (a, b, d) = (key("/a"), key("/b"), key("/d"));
    c.insert(t0, a.clone(), ok("a"), Store::real(t0, s(5))); // gone at 15 s
    c.insert(t0, b.clone(), ok("b"), Store::real(t0, s(20))); // stale from 20 s
    c.insert(t0, d.clone(), ok("d"), Store::real(t0, s(100)));
    c.purge(t0 + s(15) - Duration::from_nanos(1));
    assert_eq!(c.snapshot().entries, 3);
    c.purge(t0 + s(15));
    assert_eq!(c.snapshot().entries, 2);
    c.purge(t0 + s(25));
    assert_eq!(c.snapshot().entries, 2, "stale but within its window");
    assert!(matches!(c.lookup(t0 + s(25), &b), Lookup::Stale { .. }));
    c.purge(t0 + s(30));
    assert_eq!(c.snapshot().entries, 1);
    assert!(is_fresh(&c.lookup(t0 + s(30), &d)));
    c.purge(t0 + s(110));
    let snap = c.snapshot();
    assert_eq!(
        (snap.entries, snap.bytes, snap.inserts, snap.evictions),
        (0, 0, 3, 0)
    );
    // Bytes accounting survives a refill after everything went.
    assert!(c.insert(
        t0 + s(110),
        a.clone(),
        ok("a"),
        Store::real(t0 + s(110), s(5))
    ));
    assert_eq!(c.snapshot().bytes, cost(&a, &Response::new(200, "a")));
}

#[test]
fn snapshot_counts_bytes_and_returns_to_zero() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(2, 1 << 20, 0.0), IDLE);
    assert_eq!(c.snapshot().bytes, 0);
    let alice = cred("alice");
    let ka = CacheKey::new(&get(), "/a", Some("x=1"), Some(&alice));
    let kb = key("/b");
    let ra = Response::new(200, "hello").with_header("Content-Type", "application/json");
    c.insert(t0, ka.clone(), Arc::new(ra.clone()), Store::real(t0, s(1)));
    c.insert(t0, kb.clone(), ok("b"), Store::real(t0, s(2)));
    let snap = c.snapshot();
    assert_eq!(
        snap.bytes,
        cost(&ka, &ra) + cost(&kb, &Response::new(200, "b"))
    );
    assert!(
        cost(&ka, &ra) > cost(&key("/a"), &ra),
        "credential bytes count"
    );
    assert_eq!(snap.max_bytes, 1 << 20);
    c.insert(t0, key("/c"), ok("c"), Store::real(t0, s(3))); // evicts `ka`
    assert_eq!(c.snapshot().evictions, 1);
    assert_eq!(c.lookup(t0 + s(2), &kb), Lookup::Miss);
    assert_eq!(c.lookup(t0 + s(3), &key("/c")), Lookup::Miss);
    let snap = c.snapshot();
    assert_eq!((snap.entries, snap.bytes), (0, 0));
    assert_eq!(
        (snap.inserts, snap.evictions),
        (3, 1),
        "expiry is not eviction"
    );
}

mod lru_model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Read(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![(0u8..12).prop_map(Op::Insert), (0u8..12).prop_map(Op::Read)]
    }

    proptest! {
        /// Whatever the mix of stores and fresh reads, the cache holds
        /// exactly the entries a textbook LRU list of the same capacity
        /// holds (reads only reorder where the entry is; eviction sorts
        /// the order out lazily).
        #[test]
        fn holds_what_a_plain_lru_list_holds(ops in proptest::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let mut c = Cache::new(&config(4, 1 << 20, 0.0), IDLE);
            // Most recently used last.
            let mut model: Vec<u8> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let now = t0 + Duration::from_millis(i as u64);
                match *op {
                    Op::Insert(k) => {
                        let path = format!("/k{k}");
                        prop_assert!(c.insert(now, key(&path), ok("x"), Store::real(now, s(3600))));
                        model.retain(|&m| m != k);
                        if model.len() == 4 {
                            model.remove(0);
                        }
                        model.push(k);
                    }
                    Op::Read(k) => {
                        let hit = is_fresh(&c.lookup(now, &key(&format!("/k{k}"))));
                        prop_assert_eq!(hit, model.contains(&k), "read of {}", k);
                        if hit {
                            model.retain(|&m| m != k);
                            model.push(k);
                        }
                    }
                }
                prop_assert_eq!(c.snapshot().entries, model.len());
            }
        }
    }
}

/// RFC 9111 §5.2.2.2: "once the response has become stale, a cache MUST
/// NOT reuse that response to satisfy another request until it has been
/// successfully validated by the origin" (must-revalidate; proxy-revalidate
/// and s-maxage say the same to a shared cache): no stale window, no
/// stale-while-revalidate.
#[test]
fn an_entry_that_must_revalidate_is_never_served_stale() {
    let t0 = Instant::now();
    let mut config = config(100, 1 << 20, 300.0);
    config.stale_while_revalidate_secs = 60.0;
    let mut c = Cache::new(&config, IDLE);
    let (strict, lax) = (key("/strict"), key("/lax"));
    let store = Store {
        no_stale: true,
        ..Store::real(t0, s(10))
    };
    assert!(c.insert(t0, strict.clone(), ok("x"), store));
    assert!(c.insert(t0, lax.clone(), ok("y"), Store::real(t0, s(10))));
    assert!(is_fresh(&c.lookup(t0 + s(5), &strict)));
    let expired = t0 + s(11);
    assert!(c.while_revalidating(expired, &strict).is_none());
    assert!(c.while_revalidating(expired, &lax).is_some());
    assert_eq!(c.lookup(expired, &strict), Lookup::Miss);
    assert!(matches!(c.lookup(expired, &lax), Lookup::Stale { .. }));
}

mod variants_model;
