//! Route rules, compiled: which rule a request falls under and everything
//! that follows from it (class, cost, TTL, limiter scopes, cache policy).

use web_time::Duration;

use crate::config::{secs, ClassId, Config, RouteDefaults, RouteRule, ScopeId};
use crate::request::Method;

/// A path pattern: `/`-separated literal segments, `*` for exactly one
/// segment, `**` for any number of segments (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("`{pattern}` must start with `/`"));
        }
        let segments = split(pattern)
            .map(|s| match s {
                "*" => Ok(Segment::One),
                "**" => Ok(Segment::Any),
                s if s.contains('*') => Err(format!(
                    "`{pattern}`: `*` must stand alone in a segment (`*` or `**`), found `{s}`"
                )),
                s => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PathPattern { segments })
    }

    pub fn matches(&self, path: &str) -> bool {
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

/// How requests under one rule are handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The rule's name (or its pattern); `"default"` when no rule matched.
    pub name: String,
    pub class: ClassId,
    pub cost: u32,
    pub ttl: Duration,
    pub scopes: Vec<ScopeId>,
    pub cacheable: bool,
    pub private: bool,
    pub coalesce: bool,
    pub retry_unsafe: bool,
}

/// The compiled rule list.
#[derive(Debug, Clone)]
pub struct RouteTable {
    rules: Vec<(Vec<Method>, PathPattern)>,
    routes: Vec<Route>,
    fallback: Route,
}

/// Index into the route table (`usize::MAX` is the fallback).
pub type RouteIdx = usize;
pub(crate) const FALLBACK: RouteIdx = usize::MAX;

impl RouteTable {
    /// Compiles a config that [`Config::validate`] accepted.
    pub fn compile(config: &Config) -> Self {
        let d = &config.defaults;
        let fallback = resolve(config, d, &RouteRule::default(), "default".into());
        let mut rules = Vec::new();
        let mut routes = Vec::new();
        for r in &config.routes {
            // Validation has checked the pattern; an invalid one never matches.
            let pattern = PathPattern::parse(&r.path).unwrap_or(PathPattern {
                segments: vec![Segment::Literal(String::new())],
            });
            let methods = r.methods.iter().map(|m| Method::new(m)).collect();
            rules.push((methods, pattern));
            let name = r.name.clone().unwrap_or_else(|| r.path.clone());
            routes.push(resolve(config, d, r, name));
        }
        RouteTable {
            rules,
            routes,
            fallback,
        }
    }

    pub fn lookup(&self, method: &Method, path: &str) -> RouteIdx {
        let parts: Vec<&str> = split(path).collect();
        self.rules
            .iter()
            .position(|(methods, pattern)| {
                (methods.is_empty() || methods.contains(method)) && pattern.matches_segments(&parts)
            })
            .unwrap_or(FALLBACK)
    }

    pub fn get(&self, idx: RouteIdx) -> &Route {
        self.routes.get(idx).unwrap_or(&self.fallback)
    }
}

fn resolve(config: &Config, d: &RouteDefaults, r: &RouteRule, name: String) -> Route {
    let class = r
        .priority
        .as_deref()
        .and_then(|p| config.class_id(p))
        .or_else(|| config.class_id(&d.priority))
        .unwrap_or(ClassId(0));
    let scopes = r
        .scopes
        .as_ref()
        .unwrap_or(&d.scopes)
        .iter()
        .filter_map(|s| config.scope_id(s))
        .collect();
    let methods_cacheable =
        r.methods.is_empty() || r.methods.iter().all(|m| Method::new(m).is_cacheable());
    Route {
        name,
        class,
        cost: r.cost.unwrap_or(d.cost),
        ttl: secs(r.ttl_secs.unwrap_or(d.ttl_secs)),
        scopes,
        cacheable: r.cacheable.unwrap_or(d.cacheable) && methods_cacheable,
        private: r.private.unwrap_or(d.private),
        coalesce: r.coalesce.unwrap_or(d.coalesce),
        retry_unsafe: r.retry_unsafe.unwrap_or(d.retry_unsafe),
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
            .contains("must start"));
        assert!(PathPattern::parse("/a/b*").unwrap_err().contains("b*"));
    }

    #[test]
    fn first_matching_rule_wins_and_methods_filter() {
        let c = crate::config::coinbase::advanced_trade();
        let t = RouteTable::compile(&c);
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
        let mut c = Config {
            routes: vec![RouteRule {
                methods: vec![],
                path: "/x".into(),
                ..Default::default()
            }],
            ..Config::default()
        };
        let t = RouteTable::compile(&c);
        // A rule with no method list may still be cacheable, but only
        // cacheable methods use the cache: the coordinator checks the
        // method too.
        assert!(t.get(t.lookup(&Method::post(), "/x")).cacheable);
        c.routes[0].methods = vec!["GET".into(), "POST".into()];
        let t = RouteTable::compile(&c);
        assert!(!t.get(t.lookup(&Method::get(), "/x")).cacheable);
    }
}
