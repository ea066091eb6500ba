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
//!
//! Market data and balances are refreshed ahead from spare budget
//! (`refresh_ahead`), while bots read them: prices, books, balances and
//! candles at most every 2 s (see `MIN_AGE` for why 2, and
//! `CANDLES_MIN_AGE` for why candles too); keys read fewer than
//! `MIN_READS` times an interval are fetched on demand instead.

use std::collections::BTreeMap;

use super::{
    Config, CredentialConfig, Keying, RefreshConfig, RouteDefaults, RouteRule, ScopeConfig,
};

/// Priority classes shared by both presets, highest first: orders before
/// balances before market data before analysis.
pub const PRIORITIES: [&str; 4] = ["trading", "account", "market", "analysis"];

/// How often candles are refreshed at most, in seconds. The newest candle
/// of a series changes with every trade (its close is the last price), so
/// bots that read candles to trade want them as young as a price; a
/// configuration whose bots only read closed candles can set
/// `min_age_secs = 60` (once a one-minute granule) on these routes.
const CANDLES_MIN_AGE: f64 = MIN_AGE;

/// How often refreshed market data, books, candles and balances are
/// refreshed at most, in seconds (readers asking a longer `max-age`
/// stretch it; a key is only refreshed while its answers are read).
///
/// Why 2: a refreshed key costs one call per interval for as long as it
/// is read, and its answers are served between 0 and one interval old
/// (about interval / 2 on average), so a served-age p99 under 2 s needs
/// an interval of at most 2 s, whatever else is tuned. Measured with
/// `syncoord demo` (25 bots, 20 s, 10 keys): 1 s gave 88.8% call
/// reduction and p99 1.8 s; 2 s with every read key refreshed gave 93.5%
/// and p99 1.98 s, under the reference system's 93.8%. What reaches the
/// target is `MIN_READS`, not a longer interval.
const MIN_AGE: f64 = 2.0;

/// How many reads an answer must serve before its key is refreshed rather
/// than fetched on demand (`[refresh] min_reads`, see its doc).
///
/// Why 8: a refresh every interval costs about `1/(n+1)` more calls than
/// letting the first reader past the interval fetch, for a key read `n`
/// times an interval; 8 caps that at about 11%, and spares the round trip
/// only to keys read often enough that one reader in 8 or more would pay
/// it. In the demo (25 bots, 2 s interval) tickers, books and balances
/// (17 to 50 reads an interval) are refreshed and candles (about 4) are
/// fetched on demand: 94.1% call reduction (95 calls for ~1,630
/// requests) at served age p99 1.98 s, against 93.5% when candles were
/// refreshed too; about 2% of reads wait for upstream instead of 1%.
/// With a budget that refresh contends for, no read fetches on demand
/// and this does not apply (see `RefreshConfig::min_reads`).
const MIN_READS: u32 = 8;

/// How long a refreshed answer is served, in seconds. Refresh keeps a key
/// young only while bots read it (it stops within one interval of the
/// last read), so the TTL decides what a bot that comes back later gets:
/// candle-close bots reading once a minute got answers 58 s old with the
/// 90 s of `[defaults]`, and get a fresh (coalesced) answer with 5 s.
/// Keys read all the time are refreshed every `MIN_AGE` and never reach
/// it; when upstream cannot be asked, `stale_if_error_secs` still serves
/// what is held.
const REFRESHED_TTL: f64 = 5.0;

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
    /// Refreshed ahead from spare budget, at most every `min_age` seconds,
    /// while bots read it; kept `REFRESHED_TTL` unless the rule says
    /// otherwise.
    fn refreshed(mut self, min_age: f64) -> Self {
        self.refresh_ahead = Some(true);
        self.min_age_secs = Some(min_age);
        self.ttl_secs.get_or_insert(REFRESHED_TTL);
        self
    }
    /// What a successful call changes: those routes' answers for the
    /// same credential are dropped (see `RouteRule::invalidates`).
    fn invalidates(mut self, routes: &[&str]) -> Self {
        self.invalidates = routes.iter().map(|r| (*r).to_owned()).collect();
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
        refresh: RefreshConfig {
            min_reads: MIN_READS,
            ..RefreshConfig::default()
        },
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
        // Placing, cancelling (`orders/batch_cancel`) and editing orders
        // change the open orders and the balances: a bot that checks them
        // right after must see the change, or it may place it again.
        rule("orders-write", &["POST"], &format!("{p}/orders/**"))
            .priority("trading")
            .uncached()
            .authenticated()
            .invalidates(&["orders-read", "accounts", "portfolios", "v2-accounts"]),
        // Converting moves funds between accounts.
        rule("convert-write", &["POST"], &format!("{p}/convert/**"))
            .priority("trading")
            .uncached()
            .authenticated()
            .invalidates(&["accounts", "portfolios", "v2-accounts"]),
        // Creating, editing, deleting portfolios and moving funds between
        // them (`portfolios/move_funds`).
        rule(
            "portfolios-write",
            &["POST", "PUT", "DELETE"],
            &format!("{p}/portfolios/**"),
        )
        .priority("trading")
        .uncached()
        .authenticated()
        .invalidates(&["accounts", "portfolios", "v2-accounts"]),
        rule("orders-read", &["GET"], &format!("{p}/orders/**"))
            .priority("account")
            .ttl(5.0)
            .authenticated(),
        rule("accounts", &["GET"], &format!("{p}/accounts/**"))
            .priority("account")
            .ttl(30.0)
            .authenticated()
            .refreshed(MIN_AGE),
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
        .shared()
        .refreshed(CANDLES_MIN_AGE),
        rule("public-market", &["GET"], &format!("{p}/market/**"))
            .scopes(&["public"])
            .shared()
            .refreshed(MIN_AGE),
        rule("server-time", &["GET"], &format!("{p}/time"))
            .scopes(&["public"])
            .shared()
            .ttl(1.0),
        rule("candles", &["GET"], &format!("{p}/products/*/candles"))
            .priority("analysis")
            .shared()
            .authenticated()
            .refreshed(CANDLES_MIN_AGE),
        rule("products", &["GET"], &format!("{p}/products/**"))
            .shared()
            .authenticated()
            .refreshed(MIN_AGE),
        rule("best-bid-ask", &["GET"], &format!("{p}/best_bid_ask"))
            .shared()
            .authenticated()
            .refreshed(MIN_AGE),
        rule("product-book", &["GET"], &format!("{p}/product_book"))
            .shared()
            .authenticated()
            .refreshed(MIN_AGE),
        // The v2 App API on the same host, which ccxt's `coinbase` calls
        // in `load_markets` (currencies, exchange rates), in
        // `fetch_ticker` with `fetchTickerV2` (prices) and in
        // `fetch_balance` with `v2PrivateGetAccounts`. Its documented
        // limit is 10,000 calls an hour per key; the public ones are
        // paced on the `public` budget, the accounts on `private`.
        rule("v2-currencies", &["GET"], "/v2/currencies/**")
            .scopes(&["public"])
            .shared()
            .ttl(3600.0),
        rule("v2-exchange-rates", &["GET"], "/v2/exchange-rates")
            .scopes(&["public"])
            .shared()
            .refreshed(MIN_AGE),
        rule("v2-prices", &["GET"], "/v2/prices/**")
            .scopes(&["public"])
            .shared()
            .refreshed(MIN_AGE),
        rule("v2-time", &["GET"], "/v2/time")
            .scopes(&["public"])
            .shared()
            .ttl(1.0),
        rule("v2-accounts", &["GET"], "/v2/accounts/**")
            .priority("account")
            .ttl(30.0)
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
        // Placing and cancelling orders change the open orders, the
        // fills and the balances (see Advanced Trade's `orders-write`).
        rule("orders-write", &["POST", "DELETE"], "/orders/**")
            .priority("trading")
            .uncached()
            .authenticated()
            .invalidates(&["orders-read", "fills", "accounts"]),
        // Stablecoin conversions and transfers between profiles move
        // funds.
        rule("conversions-write", &["POST"], "/conversions")
            .priority("trading")
            .uncached()
            .authenticated()
            .invalidates(&["accounts"]),
        rule("profiles-write", &["POST"], "/profiles/transfer")
            .priority("trading")
            .uncached()
            .authenticated()
            .invalidates(&["accounts"]),
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
            .authenticated()
            .refreshed(MIN_AGE),
        rule("candles", &["GET"], "/products/*/candles")
            .priority("analysis")
            .scopes(&["public"])
            .shared()
            .refreshed(CANDLES_MIN_AGE),
        rule("products", &["GET"], "/products/**")
            .scopes(&["public"])
            .shared()
            .refreshed(MIN_AGE),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    /// Every call ccxt 4.5.90 makes with its default options in
    /// `load_markets`, `fetch_ticker`, `fetch_balance`, `create_order` and
    /// `fetch_my_trades` (read from `ccxt/coinbase.py` and
    /// `ccxt/coinbaseexchange.py`; the Python test in
    /// `daemon/tests/python_clients.rs` records what the real library sends
    /// and checks it against this list), plus the v2 variants ccxt's
    /// options select. Each must fall under a rule chosen for it, never the
    /// defaults, and under the rule named here.
    pub(crate) const CCXT_COINBASE: &[(&str, &str, &str)] = &[
        ("GET", "/api/v3/brokerage/market/products", "public-market"),
        ("GET", "/api/v3/brokerage/products", "products"),
        ("GET", "/api/v3/brokerage/transaction_summary", "fees"),
        ("GET", "/v2/currencies", "v2-currencies"),
        ("GET", "/v2/currencies/crypto", "v2-currencies"),
        ("GET", "/v2/exchange-rates", "v2-exchange-rates"),
        (
            "GET",
            "/api/v3/brokerage/market/products/BTC-USD/ticker",
            "public-market",
        ),
        (
            "GET",
            "/api/v3/brokerage/products/BTC-USD/ticker",
            "products",
        ),
        ("GET", "/v2/prices/BTC-USD/spot", "v2-prices"),
        ("GET", "/v2/prices/BTC-USD/buy", "v2-prices"),
        ("GET", "/v2/prices/BTC-USD/sell", "v2-prices"),
        ("GET", "/api/v3/brokerage/accounts", "accounts"),
        ("GET", "/v2/accounts", "v2-accounts"),
        ("POST", "/api/v3/brokerage/orders", "orders-write"),
        (
            "GET",
            "/api/v3/brokerage/orders/historical/fills",
            "orders-read",
        ),
        (
            "GET",
            "/api/v3/brokerage/orders/historical/abc-123",
            "orders-read",
        ),
        ("GET", "/api/v3/brokerage/time", "server-time"),
        ("GET", "/v2/time", "v2-time"),
    ];

    /// The same for ccxt's `coinbaseexchange`.
    pub(crate) const CCXT_COINBASE_EXCHANGE: &[(&str, &str, &str)] = &[
        ("GET", "/products", "products"),
        ("GET", "/currencies", "currencies"),
        ("GET", "/products/BTC-USD/ticker", "products"),
        ("GET", "/accounts", "accounts"),
        ("POST", "/orders", "orders-write"),
        ("GET", "/fills", "fills"),
        ("GET", "/time", "server-time"),
    ];

    #[test]
    fn every_path_ccxt_calls_falls_under_a_deliberate_rule() {
        for (config, paths) in [
            (advanced_trade(), CCXT_COINBASE),
            (exchange(), CCXT_COINBASE_EXCHANGE),
        ] {
            let compiled = config.compile().expect("preset compiles");
            for (method, path, want) in paths {
                let route = compiled.route(&Method::new(method), path);
                assert_eq!(route.name, *want, "{method} {path}");
            }
        }
    }
}
