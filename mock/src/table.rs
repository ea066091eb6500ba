//! The mock's route table: which API a path belongs to, which endpoint a
//! method and path name, the pattern stats count it under and the rate
//! limit it spends.

use super::limits::Scope;

/// Which Coinbase API a path belongs to: it decides the credential read
/// and the error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Exchange,
    Advanced,
    /// The Coinbase App API (`/v2/...`) on the Advanced Trade host: its
    /// JWTs, its own error shape.
    App,
}

/// Every endpoint the mock answers; ids borrow from the path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint<'a> {
    AtProducts,
    AtProduct(&'a str),
    AtTicker(&'a str),
    AtCandles(&'a str),
    AtProductBook,
    AtBestBidAsk,
    AtAccounts,
    AtAccount(&'a str),
    AtCreateOrder,
    AtBatchCancel,
    AtOrders,
    AtOrder(&'a str),
    AtFills,
    AtTransactionSummary,
    AtTime,
    AppCurrencies,
    AppCryptoCurrencies,
    AppExchangeRates,
    /// Pair and kind (`spot`, `buy`, `sell`).
    AppPrice(&'a str, &'a str),
    AppTime,
    AppAccounts,
    AppAccount(&'a str),
    ExProducts,
    ExProduct(&'a str),
    ExTicker(&'a str),
    ExBook(&'a str),
    ExCandles(&'a str),
    ExStats(&'a str),
    ExCurrencies,
    ExCurrency(&'a str),
    ExTime,
    ExAccounts,
    ExAccount(&'a str),
    ExListOrders,
    ExCreateOrder,
    ExCancelAll,
    ExOrder(&'a str),
    ExCancelOrder(&'a str),
    ExFills,
}

pub(crate) struct Route<'a> {
    pub(crate) endpoint: Endpoint<'a>,
    /// For stats, e.g. `GET /products/{id}/ticker`.
    pub(crate) pattern: &'static str,
    pub(crate) scope: Scope,
}

impl Route<'_> {
    pub(crate) fn private(&self) -> bool {
        !matches!(self.scope, Scope::ExchangePublic | Scope::AdvancedPublic)
    }
}

pub(crate) fn api_of(path: &str) -> Api {
    if path.starts_with("/api/v3/brokerage") {
        Api::Advanced
    } else if path == "/v2" || path.starts_with("/v2/") {
        Api::App
    } else {
        Api::Exchange
    }
}

pub(crate) fn resolve<'a>(method: &str, path: &'a str) -> Option<Route<'a>> {
    use Endpoint::*;
    use Scope::*;
    // HEAD is answered as GET (the server sends no body).
    let method = if method == "HEAD" { "GET" } else { method };
    let trimmed = path.strip_prefix('/')?;
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segs: Vec<&'a str> = trimmed.split('/').collect();
    let (endpoint, pattern, scope) = match (method, segs.as_slice()) {
        ("GET", ["api", "v3", "brokerage", rest @ ..]) => match rest {
            ["market", "products"] => (
                AtProducts,
                "GET /api/v3/brokerage/market/products",
                AdvancedPublic,
            ),
            ["market", "products", id] => (
                AtProduct(id),
                "GET /api/v3/brokerage/market/products/{id}",
                AdvancedPublic,
            ),
            ["market", "products", id, "ticker"] => (
                AtTicker(id),
                "GET /api/v3/brokerage/market/products/{id}/ticker",
                AdvancedPublic,
            ),
            ["market", "products", id, "candles"] => (
                AtCandles(id),
                "GET /api/v3/brokerage/market/products/{id}/candles",
                AdvancedPublic,
            ),
            ["market", "product_book"] => (
                AtProductBook,
                "GET /api/v3/brokerage/market/product_book",
                AdvancedPublic,
            ),
            ["products"] => (
                AtProducts,
                "GET /api/v3/brokerage/products",
                AdvancedPrivate,
            ),
            ["products", id] => (
                AtProduct(id),
                "GET /api/v3/brokerage/products/{id}",
                AdvancedPrivate,
            ),
            ["products", id, "ticker"] => (
                AtTicker(id),
                "GET /api/v3/brokerage/products/{id}/ticker",
                AdvancedPrivate,
            ),
            ["products", id, "candles"] => (
                AtCandles(id),
                "GET /api/v3/brokerage/products/{id}/candles",
                AdvancedPrivate,
            ),
            ["product_book"] => (
                AtProductBook,
                "GET /api/v3/brokerage/product_book",
                AdvancedPrivate,
            ),
            ["best_bid_ask"] => (
                AtBestBidAsk,
                "GET /api/v3/brokerage/best_bid_ask",
                AdvancedPrivate,
            ),
            ["accounts"] => (
                AtAccounts,
                "GET /api/v3/brokerage/accounts",
                AdvancedPrivate,
            ),
            ["accounts", id] => (
                AtAccount(id),
                "GET /api/v3/brokerage/accounts/{uuid}",
                AdvancedPrivate,
            ),
            ["orders", "historical", "batch"] => (
                AtOrders,
                "GET /api/v3/brokerage/orders/historical/batch",
                AdvancedPrivate,
            ),
            ["orders", "historical", "fills"] => (
                AtFills,
                "GET /api/v3/brokerage/orders/historical/fills",
                AdvancedPrivate,
            ),
            ["orders", "historical", id] => (
                AtOrder(id),
                "GET /api/v3/brokerage/orders/historical/{id}",
                AdvancedPrivate,
            ),
            ["transaction_summary"] => (
                AtTransactionSummary,
                "GET /api/v3/brokerage/transaction_summary",
                AdvancedPrivate,
            ),
            ["time"] => (AtTime, "GET /api/v3/brokerage/time", AdvancedPublic),
            _ => return None,
        },
        // The App API is paced as syncoord's preset paces it: public data
        // on Advanced Trade's public budget, accounts on the key's.
        ("GET", ["v2", rest @ ..]) => match rest {
            ["currencies"] => (AppCurrencies, "GET /v2/currencies", AdvancedPublic),
            ["currencies", "crypto"] => (
                AppCryptoCurrencies,
                "GET /v2/currencies/crypto",
                AdvancedPublic,
            ),
            ["exchange-rates"] => (AppExchangeRates, "GET /v2/exchange-rates", AdvancedPublic),
            ["prices", pair, kind] => (
                AppPrice(pair, kind),
                "GET /v2/prices/{pair}/{kind}",
                AdvancedPublic,
            ),
            ["time"] => (AppTime, "GET /v2/time", AdvancedPublic),
            ["accounts"] => (AppAccounts, "GET /v2/accounts", AdvancedPrivate),
            ["accounts", id] => (AppAccount(id), "GET /v2/accounts/{id}", AdvancedPrivate),
            _ => return None,
        },
        ("POST", ["api", "v3", "brokerage", "orders"]) => (
            AtCreateOrder,
            "POST /api/v3/brokerage/orders",
            AdvancedPrivate,
        ),
        ("POST", ["api", "v3", "brokerage", "orders", "batch_cancel"]) => (
            AtBatchCancel,
            "POST /api/v3/brokerage/orders/batch_cancel",
            AdvancedPrivate,
        ),
        ("GET", ["products"]) => (ExProducts, "GET /products", ExchangePublic),
        ("GET", ["products", id]) => (ExProduct(id), "GET /products/{id}", ExchangePublic),
        ("GET", ["products", id, "ticker"]) => {
            (ExTicker(id), "GET /products/{id}/ticker", ExchangePublic)
        }
        ("GET", ["products", id, "book"]) => {
            (ExBook(id), "GET /products/{id}/book", ExchangePublic)
        }
        ("GET", ["products", id, "candles"]) => {
            (ExCandles(id), "GET /products/{id}/candles", ExchangePublic)
        }
        ("GET", ["products", id, "stats"]) => {
            (ExStats(id), "GET /products/{id}/stats", ExchangePublic)
        }
        ("GET", ["time"]) => (ExTime, "GET /time", ExchangePublic),
        ("GET", ["currencies"]) => (ExCurrencies, "GET /currencies", ExchangePublic),
        ("GET", ["currencies", id]) => (ExCurrency(id), "GET /currencies/{id}", ExchangePublic),
        ("GET", ["accounts"]) => (ExAccounts, "GET /accounts", ExchangePrivate),
        ("GET", ["accounts", id]) => (ExAccount(id), "GET /accounts/{id}", ExchangePrivate),
        ("GET", ["orders"]) => (ExListOrders, "GET /orders", ExchangePrivate),
        ("POST", ["orders"]) => (ExCreateOrder, "POST /orders", ExchangePrivate),
        ("DELETE", ["orders"]) => (ExCancelAll, "DELETE /orders", ExchangePrivate),
        ("GET", ["orders", id]) => (ExOrder(id), "GET /orders/{id}", ExchangePrivate),
        ("DELETE", ["orders", id]) => (ExCancelOrder(id), "DELETE /orders/{id}", ExchangePrivate),
        ("GET", ["fills"]) => (ExFills, "GET /fills", ExchangeFills),
        _ => return None,
    };
    Some(Route {
        endpoint,
        pattern,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_to_scopes() {
        let r = resolve("GET", "/api/v3/brokerage/orders/historical/batch").unwrap();
        assert!(matches!(r.endpoint, Endpoint::AtOrders));
        let r = resolve("GET", "/api/v3/brokerage/orders/historical/abc").unwrap();
        assert!(matches!(r.endpoint, Endpoint::AtOrder("abc")));
        assert_eq!(
            resolve("GET", "/api/v3/brokerage/market/products/BTC-USD/ticker")
                .unwrap()
                .scope,
            Scope::AdvancedPublic
        );
        assert_eq!(
            resolve("GET", "/fills").unwrap().scope,
            Scope::ExchangeFills
        );
        assert_eq!(resolve("HEAD", "/time").unwrap().pattern, "GET /time");
        // The App API: public data on the public budget, accounts on the key's.
        let r = resolve("GET", "/v2/prices/BTC-USD/spot").unwrap();
        assert!(matches!(r.endpoint, Endpoint::AppPrice("BTC-USD", "spot")));
        assert_eq!(r.scope, Scope::AdvancedPublic);
        assert_eq!(
            resolve("GET", "/v2/accounts").unwrap().scope,
            Scope::AdvancedPrivate
        );
        assert_eq!(
            resolve("GET", "/api/v3/brokerage/transaction_summary")
                .unwrap()
                .scope,
            Scope::AdvancedPrivate
        );
        assert!(matches!(api_of("/v2/time"), Api::App));
        assert!(matches!(api_of("/v2x"), Api::Exchange));
        assert!(resolve("POST", "/v2/accounts").is_none());
        assert!(resolve("PATCH", "/orders").is_none());
        assert!(resolve("GET", "/nope").is_none());
    }
}
