//! Route rules, compiled: which rule a request falls under and everything
//! that follows from it (class, cost, TTL, limiter scopes, cache policy).

use web_time::Duration;

use crate::config::{ClassId, PatternError, ScopeId};
use crate::request::Method;

/// A path pattern: `/`-separated literal segments, `*` for exactly one
/// segment, `**` for any number of segments (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segments: Vec<Segment>,
    /// Fewest path segments it can match (its non-`**` segments).
    min_len: usize,
    /// The number it matches when it has no `**`; `None` with one.
    max_len: Option<usize>,
    /// Its one `**` is its last segment (`/api/v3/brokerage/orders/**`):
    /// a fixed prefix of `min_len` segments, then anything.
    open_ended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

impl PathPattern {
    /// Reads a pattern such as `/api/v3/brokerage/products/*/candles`.
    pub(crate) fn parse(pattern: &str) -> Result<Self, PatternError> {
        if !pattern.starts_with('/') {
            return Err(PatternError::Relative {
                pattern: pattern.to_owned(),
            });
        }
        let segments = split(pattern)
            .map(|s| match s {
                "*" => Ok(Segment::One),
                "**" => Ok(Segment::Any),
                s if s.contains('*') => Err(PatternError::PartialWildcard {
                    pattern: pattern.to_owned(),
                    segment: s.to_owned(),
                }),
                s => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let min_len = segments.iter().filter(|s| **s != Segment::Any).count();
        let max_len = (!segments.contains(&Segment::Any)).then_some(min_len);
        let open_ended = segments.last() == Some(&Segment::Any)
            && segments.iter().filter(|s| **s == Segment::Any).count() == 1;
        Ok(PathPattern {
            segments,
            min_len,
            max_len,
            open_ended,
        })
    }

    /// Whether `path` (without its query) falls under this pattern.
    #[cfg(test)]
    fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = split(path).collect();
        self.matches_segments(&parts)
    }

    /// Matches a path already split into segments (split once, try every
    /// rule).
    fn matches_segments(&self, parts: &[&str]) -> bool {
        // One segment per part over the first `n`, compared from the end,
        // where rules under one prefix (`/api/v3/brokerage/...`) differ.
        let fixed = |n: usize| {
            self.segments[..n]
                .iter()
                .zip(&parts[..n])
                .rev()
                .all(|(seg, part)| match seg {
                    Segment::Literal(l) => l == part,
                    _ => true,
                })
        };
        // Most rules differ from a path in length: no segment compared.
        match self.max_len {
            Some(len) => parts.len() == len && fixed(len),
            None if self.open_ended => parts.len() >= self.min_len && fixed(self.min_len),
            None => parts.len() >= self.min_len && match_segments(&self.segments, parts),
        }
    }
}

/// Path segments, ignoring empty ones (so `//a/` is `/a`). A byte loop:
/// `str::split` looks for the next `/` with a general searcher, costly on
/// segments a few bytes long, and every request's path is split.
fn split(path: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut bytes = path.bytes().enumerate();
    std::iter::from_fn(move || loop {
        match bytes.next() {
            Some((i, b'/')) => {
                let part = &path[start..i];
                start = i + 1;
                if !part.is_empty() {
                    return Some(part);
                }
            }
            Some(_) => {}
            None => {
                let part = &path[start.min(path.len())..];
                start = path.len() + 1;
                return (!part.is_empty()).then_some(part);
            }
        }
    })
}

fn match_segments(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((seg, rest)) => match path.split_first() {
            Some((part, tail)) => {
                let ok = match seg {
                    Segment::Literal(l) => l == part,
                    _ => true,
                };
                ok && match_segments(rest, tail)
            }
            None => false,
        },
    }
}

/// How requests under one rule are handled: the rule with every default
/// filled in and every name resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The rule's name (or its pattern); `"default"` when no rule matched.
    pub name: String,
    /// Priority class of its calls (a request may ask for another).
    pub class: ClassId,
    /// Tokens one call spends in each of its scopes.
    pub cost: u32,
    /// How long an answer stays fresh in the cache.
    pub ttl: Duration,
    /// The limiter scopes every call spends from.
    pub scopes: Vec<ScopeId>,
    /// Whether GET/HEAD answers are cached.
    pub cacheable: bool,
    /// Whether cached answers are keyed by credential.
    pub private: bool,
    /// Whether identical in-flight reads are folded into one call.
    pub coalesce: bool,
    /// Whether non-idempotent calls are retried after a 5xx or a broken
    /// connection.
    pub retry_unsafe: bool,
    /// Whether a request needs a credential to be answered at all (hosts
    /// refuse one without, before the cache or upstream sees it).
    pub credential_required: bool,
    /// Whether the rule set its own TTL: then upstream's lifetime
    /// directives (`max-age`, `s-maxage`, `no-store`, `no-cache`) do not
    /// change it.
    pub ttl_pinned: bool,
    /// Whether answers bots keep reading are refreshed ahead from spare
    /// budget.
    pub refresh_ahead: bool,
    /// Refresh-ahead never refreshes an answer younger than this.
    pub min_age: Duration,
}

/// One compiled rule: which requests it matches and how they are handled.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Methods it applies to; empty means any.
    pub(crate) methods: Vec<Method>,
    pub(crate) pattern: PathPattern,
    pub(crate) route: Route,
}

/// The compiled rule list, built only from a valid configuration
/// ([`crate::Config::compile`]), so every rule it holds can match.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable {
    rules: Vec<Rule>,
    /// What applies when no rule matches.
    default: Route,
}

/// Which route a request fell under: a rule by position, or the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteId {
    Rule(usize),
    Default,
}

impl RouteTable {
    pub(crate) fn new(rules: Vec<Rule>, default: Route) -> Self {
        RouteTable { rules, default }
    }

    /// The first rule matching `method` and `path`, else the defaults.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> RouteId {
        // On the stack for the paths APIs have; a longer one spills.
        let mut stack = [""; 16];
        let mut spilled = Vec::new();
        let mut n = 0;
        for part in split(path) {
            if n < stack.len() {
                stack[n] = part;
            } else {
                if spilled.is_empty() {
                    spilled.extend_from_slice(&stack);
                }
                spilled.push(part);
            }
            n += 1;
        }
        let parts: &[&str] = if n <= stack.len() {
            &stack[..n]
        } else {
            &spilled
        };
        self.rules
            .iter()
            .position(|r| {
                (r.methods.is_empty() || r.methods.contains(method))
                    && r.pattern.matches_segments(parts)
            })
            .map_or(RouteId::Default, RouteId::Rule)
    }

    /// The rule named `name` (the first, should two share it), else the
    /// defaults: where a call admitted under another table's rule of that
    /// name goes when the configuration is swapped.
    pub(crate) fn by_name(&self, name: &str) -> RouteId {
        self.rules
            .iter()
            .position(|r| r.route.name == name)
            .map_or(RouteId::Default, RouteId::Rule)
    }

    /// The route `id` names. Ids come from [`Self::lookup`] on this same
    /// table, so a rule id is always in range.
    pub(crate) fn get(&self, id: RouteId) -> &Route {
        match id {
            RouteId::Rule(i) => &self.rules[i].route,
            RouteId::Default => &self.default,
        }
    }
}

/// The routes of GET paths seen lately: bots read the same few paths over
/// and over, and matching one against every rule costs more than the rest
/// of a cache hit. Bounded in entries and path length, emptied when full.
#[derive(Debug, Default)]
pub(crate) struct RouteMemo {
    seen: crate::HashMap<Box<str>, RouteId>,
}

impl RouteMemo {
    const MAX_ENTRIES: usize = 4096;
    const MAX_PATH: usize = 256;

    /// [`RouteTable::lookup`], remembered for GET paths.
    pub(crate) fn lookup(&mut self, table: &RouteTable, method: &Method, path: &str) -> RouteId {
        if *method != Method::get() || path.len() > Self::MAX_PATH {
            return table.lookup(method, path);
        }
        if let Some(id) = self.seen.get(path) {
            return *id;
        }
        let id = table.lookup(method, path);
        if self.seen.len() >= Self::MAX_ENTRIES {
            self.seen.clear();
        }
        self.seen.insert(path.into(), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        PathPattern::parse(p).unwrap().matches(path)
    }

    #[test]
    fn literal_and_wildcards() {
        assert!(m("/a/b", "/a/b"));
        assert!(m("/a/b", "/a/b/"));
        assert!(!m("/a/b", "/a/b/c"));
        assert!(m("/a/*/c", "/a/x/c"));
        assert!(!m("/a/*/c", "/a/c"));
        assert!(m("/a/**", "/a"));
        assert!(m("/a/**", "/a/x/y/z"));
        assert!(m("/a/**/z", "/a/x/y/z"));
        assert!(m("/a/**/z", "/a/z"));
        assert!(!m("/a/**/z", "/a/x/y"));
        assert!(!m("/a/**", "/b/a"));
    }

    #[test]
    fn lookup_matches_paths_longer_than_its_stack_buffer() {
        let rule = |pattern: &str, name: &str| Rule {
            methods: Vec::new(),
            pattern: PathPattern::parse(pattern).unwrap(),
            route: Route {
                name: name.to_owned(),
                ..crate::config::coinbase::advanced_trade()
                    .compile()
                    .expect("valid")
                    .routes()
                    .default
                    .clone()
            },
        };
        let default = rule("/", "default").route;
        let t = RouteTable::new(
            vec![rule("/a/*/*", "three"), rule("/a/**/z", "deep")],
            default,
        );
        let name = |path: &str| t.get(t.lookup(&Method::get(), path)).name.clone();
        let deep = format!("/a{}/z", "/x".repeat(30));
        assert_eq!(name(&deep), "deep");
        assert_eq!(name(&format!("{deep}/more")), "default");
        assert_eq!(name("/a/b/c"), "three");
        assert_eq!(name("//a//b/c/"), "three");
    }

    proptest::proptest! {
        #[test]
        fn the_split_is_str_split_without_empty_segments(path in "[/ab]{0,12}") {
            let fast: Vec<&str> = split(&path).collect();
            let plain: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            proptest::prop_assert_eq!(fast, plain);
        }

        /// The shortcuts (length checks, comparing from the end) decide
        /// exactly as the plain recursive matcher does.
        #[test]
        fn shortcuts_agree_with_the_plain_matcher(
            pattern in proptest::collection::vec(
                proptest::prop_oneof!["a", "b", "\\*", "\\*\\*"], 0..6),
            path in proptest::collection::vec(proptest::prop_oneof!["a", "b", "c"], 0..8),
        ) {
            let p = PathPattern::parse(&format!("/{}", pattern.join("/"))).unwrap();
            let parts: Vec<&str> = path.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(
                p.matches_segments(&parts),
                match_segments(&p.segments, &parts),
                "{:?} against {:?}", pattern, path
            );
        }
    }

    #[test]
    fn the_memo_answers_as_the_table_does() {
        let c = crate::config::coinbase::advanced_trade();
        let t = c.compile().expect("valid").routes().clone();
        let mut memo = RouteMemo::default();
        let paths = [
            "/api/v3/brokerage/orders",
            "/api/v3/brokerage/products/BTC-USD/candles",
            "/api/v3/brokerage/products/BTC-USD",
            "/nowhere",
        ];
        for _ in 0..2 {
            for method in [Method::get(), Method::post(), Method::new("DELETE")] {
                for path in paths {
                    assert_eq!(
                        memo.lookup(&t, &method, path),
                        t.lookup(&method, path),
                        "{method} {path}"
                    );
                }
            }
        }
        // Only GET paths are kept, and never more than the bound.
        assert_eq!(memo.seen.len(), paths.len());
        for i in 0..RouteMemo::MAX_ENTRIES + 10 {
            memo.lookup(&t, &Method::get(), &format!("/x/{i}"));
        }
        assert!(memo.seen.len() <= RouteMemo::MAX_ENTRIES);
        let long = format!("/{}", "a".repeat(RouteMemo::MAX_PATH));
        memo.lookup(&t, &Method::get(), &long);
        assert!(!memo.seen.contains_key(long.as_str()));
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(PathPattern::parse("a/b")
            .unwrap_err()
            .to_string()
            .contains("must start"));
        assert!(PathPattern::parse("/a/b*")
            .unwrap_err()
            .to_string()
            .contains("b*"));
    }

    #[test]
    fn first_matching_rule_wins_and_methods_filter() {
        let c = crate::config::coinbase::advanced_trade();
        let t = c.compile().expect("valid").routes().clone();
        let at =
            |method: &str, path: &str| t.get(t.lookup(&Method::new(method), path)).name.clone();
        assert_eq!(at("POST", "/api/v3/brokerage/orders"), "orders-write");
        assert_eq!(
            at("GET", "/api/v3/brokerage/orders/historical/batch"),
            "orders-read"
        );
        assert_eq!(
            at("GET", "/api/v3/brokerage/products/BTC-USD/candles"),
            "candles"
        );
        assert_eq!(at("GET", "/api/v3/brokerage/products/BTC-USD"), "products");
        assert_eq!(
            at("GET", "/api/v3/brokerage/market/products/BTC-USD/candles"),
            "public-candles"
        );
        assert_eq!(at("PUT", "/api/v3/brokerage/products/BTC-USD"), "default");
        let orders = t.get(t.lookup(&Method::post(), "/api/v3/brokerage/orders"));
        assert_eq!(orders.class, c.class_id("trading").unwrap());
        assert!(!orders.cacheable);
    }

    #[test]
    fn rules_for_writes_are_never_cacheable() {
        use crate::config::{Config, RouteRule};
        let mut c = Config {
            routes: vec![RouteRule {
                methods: vec![],
                path: "/x".into(),
                ..Default::default()
            }],
            ..Config::default()
        };
        let t = c.compile().expect("valid").routes().clone();
        // A rule with no method list may still be cacheable, but only
        // cacheable methods use the cache: the coordinator checks the
        // method too.
        assert!(t.get(t.lookup(&Method::post(), "/x")).cacheable);
        c.routes[0].methods = vec!["GET".into(), "POST".into()];
        let t = c.compile().expect("valid").routes().clone();
        assert!(!t.get(t.lookup(&Method::get(), "/x")).cacheable);
    }
}
