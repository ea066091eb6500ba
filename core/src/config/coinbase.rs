//! Coinbase's documented limits and routes, as ready configurations.
//!
//! Nothing here is special to the core: these are plain [`Config`] values
//! that a TOML file can reproduce or override field by field.
//!
//! Sources (see ARCHITECTURE.md): Coinbase Exchange documents public
//! endpoints at 10 req/s per IP (burst 15), private endpoints at 15 req/s
//! per profile (burst 30) and `/fills` at 10 req/s (burst 20), as lazy-fill
//! token buckets. Advanced Trade is reported at about 30 req/s per user for
//! private endpoints and 10 req/s per IP for public ones, burst unknown (so
//! the burst here equals one second's worth). Every scope runs at 90% of the
//! documented figure.

use std::collections::BTreeMap;

use super::{Config, CredentialConfig, Keying, RouteDefaults, RouteRule, ScopeConfig};

/// Priority classes shared by both presets, highest first: orders before
/// balances before market data before analysis.
pub const PRIORITIES: [&str; 4] = ["trading", "account", "market", "analysis"];

fn scope(rate: f64, burst: u32, per: Keying) -> ScopeConfig {
    ScopeConfig {
        rate,
        period_secs: 1.0,
        burst,
        per,
        headroom: 0.9,
    }
}

fn rule(name: &str, methods: &[&str], path: &str) -> RouteRule {
    RouteRule {
        name: Some(name.to_owned()),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        path: path.to_owned(),
        ..RouteRule::default()
    }
}

impl RouteRule {
    fn priority(mut self, class: &str) -> Self {
        self.priority = Some(class.to_owned());
        self
    }
    fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = Some(scopes.iter().map(|s| (*s).to_owned()).collect());
        self
    }
    fn ttl(mut self, secs: f64) -> Self {
        self.ttl_secs = Some(secs);
        self
    }
    /// Responses that are the same for every credential (market data),
    /// shared in the cache even when the call was authenticated.
    fn shared(mut self) -> Self {
        self.private = Some(false);
        self
    }
    /// Coinbase answers only authenticated requests here (401 otherwise):
    /// a request without a credential is refused before the cache, so a
    /// shared answer another bot paid for never reaches it.
    fn authenticated(mut self) -> Self {
        self.credential_required = Some(true);
        self
    }
    fn uncached(mut self) -> Self {
        self.cacheable = Some(false);
        self.coalesce = Some(false);
        self
    }
}

/// Which credential an upstream authenticates (`header`), and the other
/// one a Coinbase client may send along (`other`).
fn credential(header: &str, other: &str) -> CredentialConfig {
    CredentialConfig {
        header: header.to_owned(),
        others: vec![other.to_owned()],
        ..CredentialConfig::default()
    }
}

fn base(
    scopes: BTreeMap<String, ScopeConfig>,
    routes: Vec<RouteRule>,
    credential: CredentialConfig,
) -> Config {
    Config {
        priorities: PRIORITIES.iter().map(|p| (*p).to_owned()).collect(),
        scopes,
        defaults: RouteDefaults {
            priority: "market".into(),
            scopes: vec!["private".into()],
            ..RouteDefaults::default()
        },
        routes,
        queue: Default::default(),
        cache: Default::default(),
        limiter: Default::default(),
        retry: Default::default(),
        breaker: Default::default(),
        health: Default::default(),
        stats: Default::default(),
        credential,
    }
}

/// Coinbase Advanced Trade (`https://api.coinbase.com/api/v3/brokerage/...`).
pub fn advanced_trade() -> Config {
    let p = "/api/v3/brokerage";
    let scopes = BTreeMap::from([
        ("public".to_owned(), scope(10.0, 10, Keying::Global)),
        ("private".to_owned(), scope(30.0, 30, Keying::Credential)),
    ]);
    // Which routes Coinbase serves without a JWT: `/market/...` and
    // `/time` (the SDKs' "public" endpoints); everything else, `/products`
    // included, answers 401 without one.
    let routes = vec![
        rule("orders-write", &["POST"], &format!("{p}/orders/**"))
            .priority("trading")
            .uncached()
            .authenticated(),
        rule("orders-read", &["GET"], &format!("{p}/orders/**"))
            .priority("account")
            .ttl(5.0)
            .authenticated(),
        rule("accounts", &["GET"], &format!("{p}/accounts/**"))
            .priority("account")
            .ttl(30.0)
            .authenticated(),
        rule("portfolios", &["GET"], &format!("{p}/portfolios/**"))
            .priority("account")
            .ttl(30.0)
            .authenticated(),
        rule("fees", &["GET"], &format!("{p}/transaction_summary"))
            .priority("account")
            .ttl(300.0)
            .authenticated(),
        rule(
            "public-candles",
            &["GET"],
            &format!("{p}/market/products/*/candles"),
        )
        .priority("analysis")
        .scopes(&["public"])
        .shared(),
        rule("public-market", &["GET"], &format!("{p}/market/**"))
            .scopes(&["public"])
            .shared(),
        rule("server-time", &["GET"], &format!("{p}/time"))
            .scopes(&["public"])
            .shared()
            .ttl(1.0),
        rule("candles", &["GET"], &format!("{p}/products/*/candles"))
            .priority("analysis")
            .shared()
            .authenticated(),
        rule("products", &["GET"], &format!("{p}/products/**"))
            .shared()
            .authenticated(),
        rule("best-bid-ask", &["GET"], &format!("{p}/best_bid_ask"))
            .shared()
            .authenticated(),
        rule("product-book", &["GET"], &format!("{p}/product_book"))
            .shared()
            .authenticated(),
    ];
    // Advanced Trade authenticates the `Authorization: Bearer` JWT; a
    // legacy `CB-ACCESS-KEY` beside it is a second credential.
    base(scopes, routes, credential("Authorization", "CB-ACCESS-KEY"))
}

/// Coinbase Exchange (`https://api.exchange.coinbase.com/...`).
pub fn exchange() -> Config {
    let scopes = BTreeMap::from([
        ("public".to_owned(), scope(10.0, 15, Keying::Global)),
        ("private".to_owned(), scope(15.0, 30, Keying::Credential)),
        ("fills".to_owned(), scope(10.0, 20, Keying::Credential)),
    ]);
    // Exchange's market data (`/products`, `/currencies`, `/time`) is
    // public; orders, fills and accounts need the CB-ACCESS-* headers.
    let routes = vec![
        rule("orders-write", &["POST", "DELETE"], "/orders/**")
            .priority("trading")
            .uncached()
            .authenticated(),
        // /fills has its own limit; drawing from `private` as well keeps
        // the coordinator safe whichever way Coinbase counts it.
        rule("fills", &["GET"], "/fills")
            .priority("account")
            .scopes(&["private", "fills"])
            .ttl(5.0)
            .authenticated(),
        rule("orders-read", &["GET"], "/orders/**")
            .priority("account")
            .ttl(5.0)
            .authenticated(),
        rule("accounts", &["GET"], "/accounts/**")
            .priority("account")
            .ttl(30.0)
            .authenticated(),
        rule("candles", &["GET"], "/products/*/candles")
            .priority("analysis")
            .scopes(&["public"])
            .shared(),
        rule("products", &["GET"], "/products/**")
            .scopes(&["public"])
            .shared(),
        rule("currencies", &["GET"], "/currencies/**")
            .scopes(&["public"])
            .shared()
            .ttl(3600.0),
        rule("server-time", &["GET"], "/time")
            .scopes(&["public"])
            .shared()
            .ttl(1.0),
    ];
    // Exchange authenticates CB-ACCESS-KEY (with CB-ACCESS-SIGN,
    // -TIMESTAMP and -PASSPHRASE); an `Authorization` beside it is a
    // second credential.
    base(scopes, routes, credential("CB-ACCESS-KEY", "Authorization"))
}
