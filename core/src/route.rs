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
        Ok(PathPattern { segments })
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
        match_segments(&self.segments, parts)
    }
}

/// Path segments, ignoring empty ones (so `//a/` is `/a`).
fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
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
        let parts: Vec<&str> = split(path).collect();
        self.rules
            .iter()
            .position(|r| {
                (r.methods.is_empty() || r.methods.contains(method))
                    && r.pattern.matches_segments(&parts)
            })
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
