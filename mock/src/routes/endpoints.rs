//! Each endpoint's answer, from the simulated market and accounts, with
//! the parameter checks Coinbase makes.

use serde_json::{json, Value};
use syncoord_server::Response;

use super::query::{unix_seconds, Query};
use super::replies::{app_error, at_error, bad_at, bad_ex, ex_error, json};
use super::state::{lock, State};
use crate::account::{self, Status};
use crate::app;
use crate::market::{self, product, unix_now, Product};
use crate::orders_api;
use crate::table::{Api, Endpoint};

fn product_or_404(api: Api, id: &str) -> Result<&'static Product, Response> {
    product(id).ok_or_else(|| match api {
        Api::Exchange => ex_error(404, "NotFound"),
        Api::Advanced => at_error(404, "NOT_FOUND", "ProductID is invalid"),
        Api::App => app_error(404, "not_found", "Invalid currency pair"),
    })
}

pub(super) fn endpoint(
    state: &State,
    endpoint: Endpoint<'_>,
    q: &Query,
    body: &[u8],
    identity: &str,
) -> Response {
    match answer_endpoint(state, endpoint, q, body, identity) {
        Ok(r) | Err(r) => r,
    }
}

fn answer_endpoint(
    state: &State,
    endpoint: Endpoint<'_>,
    q: &Query,
    body: &[u8],
    identity: &str,
) -> Result<Response, Response> {
    use Endpoint::*;
    let t = unix_now();
    Ok(match endpoint {
        // Only spot products: asked for futures (as ccxt's load_markets
        // does), the list is empty.
        AtProducts => match q.get("product_type") {
            Some(kind) if !kind.eq_ignore_ascii_case("SPOT") => {
                json(200, json!({ "products": [], "num_products": 0 }))
            }
            _ => json(200, market::at_products(t, &q.all(&["product_ids"]))),
        },
        AtProduct(id) => json(
            200,
            market::at_product(product_or_404(Api::Advanced, id)?, t),
        ),
        AtTicker(id) => {
            let p = product_or_404(Api::Advanced, id)?;
            let limit = q.number::<usize>("limit").map_err(bad_at)?.unwrap_or(10);
            json(200, market::at_ticker(p, t, limit))
        }
        AtCandles(id) => {
            let p = product_or_404(Api::Advanced, id)?;
            let granularity = q
                .get("granularity")
                .and_then(market::at_granularity)
                .ok_or_else(|| bad_at("granularity is required (ONE_MINUTE ... ONE_DAY)".into()))?;
            // No candle from the future: an `end` past now stops at now.
            let end = q
                .number::<u64>("end")
                .map_err(bad_at)?
                .map_or(t as u64, |e| e.min(t as u64));
            let start = q.number::<u64>("start").map_err(bad_at)?;
            let limit = q.number::<usize>("limit").map_err(bad_at)?.unwrap_or(350);
            if limit > 350 {
                return Err(bad_at("limit must be at most 350".into()));
            }
            json(200, market::at_candles(p, granularity, start, end, limit))
        }
        AtProductBook => {
            let id = q
                .get("product_id")
                .ok_or_else(|| bad_at("product_id is required".into()))?;
            let p = product_or_404(Api::Advanced, id)?;
            let depth = q.number::<usize>("limit").map_err(bad_at)?.unwrap_or(50);
            json(200, market::at_product_book(p, t, depth.clamp(1, 500)))
        }
        AtBestBidAsk => json(
            200,
            market::at_best_bid_ask(t, &q.all(&["product_ids", "product_id"])),
        ),
        AtAccounts => {
            let accounts: Vec<Value> = account::accounts(identity)
                .iter()
                .map(account::Account::advanced)
                .collect();
            json(
                200,
                json!({ "size": accounts.len(), "accounts": accounts, "has_next": false, "cursor": "" }),
            )
        }
        AtAccount(uuid) => match account::accounts(identity).iter().find(|a| a.uuid == uuid) {
            Some(a) => json(200, json!({ "account": a.advanced() })),
            None => at_error(404, "NOT_FOUND", "account not found"),
        },
        AtCreateOrder => orders_api::at_create_order(&state.orders, body, identity, t),
        AtBatchCancel => {
            let ids = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("order_ids").cloned())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                .ok_or_else(|| bad_at("body must be {\"order_ids\": [...]}".into()))?;
            let mut orders = lock(&state.orders);
            let results: Vec<Value> = ids
                .iter()
                .map(|id| match orders.cancel(identity, id) {
                    Ok(()) => json!({ "success": true, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": id }),
                    Err(reason) => json!({ "success": false, "failure_reason": reason, "order_id": id }),
                })
                .collect();
            json(200, json!({ "results": results }))
        }
        AtOrders => {
            let statuses = q.all(&["order_status"]);
            let products = q.all(&["product_ids", "product_id"]);
            let orders = lock(&state.orders);
            let list: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| products.is_empty() || products.iter().any(|p| p == o.product_id))
                .map(account::Order::advanced)
                .filter(|o| {
                    statuses.is_empty()
                        || statuses
                            .iter()
                            .any(|s| o.get("status").and_then(Value::as_str) == Some(s.as_str()))
                })
                .collect();
            json(
                200,
                json!({ "orders": list, "sequence": "0", "has_next": false, "cursor": "" }),
            )
        }
        AtOrder(id) => match lock(&state.orders).get(identity, id) {
            Some(o) => json(200, json!({ "order": o.advanced() })),
            None => at_error(404, "NOT_FOUND", "order not found"),
        },
        AtFills => {
            let ids = q.all(&["order_id", "order_ids"]);
            let products = q.all(&["product_id", "product_ids"]);
            let orders = lock(&state.orders);
            let fills: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| ids.is_empty() || ids.contains(&o.id))
                .filter(|o| products.is_empty() || products.iter().any(|p| p == o.product_id))
                .filter_map(account::Order::advanced_fill)
                .collect();
            json(200, json!({ "fills": fills, "cursor": "" }))
        }
        AtTransactionSummary => json(
            200,
            app::transaction_summary(&lock(&state.orders), identity),
        ),
        AtTime => json(200, app::advanced_time(t)),
        AppCurrencies => json(200, app::fiat_currencies()),
        AppCryptoCurrencies => json(200, app::crypto_currencies()),
        AppExchangeRates => {
            let currency = q.get("currency").unwrap_or("USD");
            app::exchange_rates(currency, t)
                .map(|v| json(200, v))
                .ok_or_else(|| app_error(400, "invalid_request", "Invalid currency"))?
        }
        AppPrice(pair, kind) => app::price(pair, kind, t)
            .map(|v| json(200, v))
            .ok_or_else(|| app_error(404, "not_found", "Invalid currency pair"))?,
        AppTime => json(200, app::time(t)),
        AppAccounts => json(200, app::accounts(identity)),
        AppAccount(id) => app::account(identity, id)
            .map(|v| json(200, v))
            .ok_or_else(|| app_error(404, "not_found", "Not found"))?,
        ExProducts => json(200, market::ex_products()),
        ExProduct(id) => json(200, market::ex_product(product_or_404(Api::Exchange, id)?)),
        ExTicker(id) => json(
            200,
            market::ex_ticker(product_or_404(Api::Exchange, id)?, t),
        ),
        ExBook(id) => {
            let p = product_or_404(Api::Exchange, id)?;
            let level = q.number::<u8>("level").map_err(bad_ex)?.unwrap_or(1);
            if !(1..=3).contains(&level) {
                return Err(ex_error(400, "Invalid level"));
            }
            json(200, market::ex_book(p, t, level))
        }
        ExCandles(id) => {
            let p = product_or_404(Api::Exchange, id)?;
            let granularity = q
                .number::<u64>("granularity")
                .map_err(bad_ex)?
                .unwrap_or(60);
            if ![60, 300, 900, 3600, 21_600, 86_400].contains(&granularity) {
                return Err(ex_error(400, "Unsupported granularity"));
            }
            // As Coinbase documents: `start` and `end` (ISO 8601, as ccxt
            // sends them, or Unix seconds) count only together; at most
            // 300 candles between them; none past now.
            let when = |name: &str| match q.get(name) {
                None | Some("") => Ok(None),
                Some(v) => unix_seconds(v)
                    .map(Some)
                    .ok_or_else(|| ex_error(400, &format!("Invalid {name}: {v:?}"))),
            };
            let (start, end) = match (when("start")?, when("end")?) {
                (Some(start), Some(end)) => {
                    if end.saturating_sub(start) / granularity > 300 {
                        return Err(ex_error(
                            400,
                            "granularity too small for the requested time range. \
                             Count of aggregations requested exceeds 300",
                        ));
                    }
                    (Some(start), end.min(t as u64))
                }
                _ => (None, t as u64),
            };
            json(200, market::ex_candles(p, granularity, start, end))
        }
        ExStats(id) => json(200, market::ex_stats(product_or_404(Api::Exchange, id)?, t)),
        ExTime => json(200, market::ex_time(t)),
        ExCurrencies => json(200, app::exchange_currencies()),
        ExCurrency(id) => app::exchange_currency_by_id(id)
            .map(|v| json(200, v))
            .ok_or_else(|| ex_error(404, "NotFound"))?,
        ExAccounts => json(
            200,
            Value::Array(
                account::accounts(identity)
                    .iter()
                    .map(account::Account::exchange)
                    .collect(),
            ),
        ),
        ExAccount(id) => match account::accounts(identity).iter().find(|a| a.uuid == id) {
            Some(a) => json(200, a.exchange()),
            None => ex_error(404, "NotFound"),
        },
        ExListOrders => {
            let statuses = q.all(&["status"]);
            let product = q.get("product_id");
            let wanted = |s: Status| {
                if statuses.is_empty() {
                    return s == Status::Open;
                }
                statuses.iter().any(|w| match w.as_str() {
                    "all" => s != Status::Cancelled,
                    "open" | "pending" | "active" => s == Status::Open,
                    "done" => s == Status::Filled,
                    _ => false,
                })
            };
            let orders = lock(&state.orders);
            let list: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| wanted(o.status))
                .filter(|o| product.is_none_or(|p| p == o.product_id))
                .map(account::Order::exchange)
                .collect();
            json(200, Value::Array(list))
        }
        ExCreateOrder => orders_api::ex_create_order(&state.orders, body, identity, t),
        ExCancelAll => {
            let product = q.get("product_id");
            let mut orders = lock(&state.orders);
            let open: Vec<String> = orders
                .list(identity)
                .iter()
                .filter(|o| o.status == Status::Open)
                .filter(|o| product.is_none_or(|p| p == o.product_id))
                .map(|o| o.id.clone())
                .collect();
            for id in &open {
                let _ = orders.cancel(identity, id);
            }
            json(200, json!(open))
        }
        ExOrder(id) => {
            let orders = lock(&state.orders);
            let found = match id.strip_prefix("client:") {
                Some(client) => orders
                    .list(identity)
                    .iter()
                    .find(|o| o.client_order_id == client),
                None => orders.list(identity).iter().find(|o| o.id == id),
            };
            match found.filter(|o| o.status != Status::Cancelled) {
                Some(o) => json(200, o.exchange()),
                None => ex_error(404, "NotFound"),
            }
        }
        ExCancelOrder(id) => match lock(&state.orders).cancel(identity, id) {
            Ok(()) => json(200, json!(id)),
            Err("UNKNOWN_CANCEL_ORDER") => ex_error(404, "order not found"),
            Err(_) => ex_error(400, "Order already done"),
        },
        ExFills => {
            let order_id = q.get("order_id");
            let product = q.get("product_id");
            if order_id.is_none() && product.is_none() {
                return Err(ex_error(400, "product_id or order_id is required"));
            }
            let orders = lock(&state.orders);
            let fills: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| order_id.is_none_or(|id| id == o.id))
                .filter(|o| product.is_none_or(|p| p == o.product_id))
                .filter_map(account::Order::exchange_fill)
                .collect();
            json(200, Value::Array(fills))
        }
    })
}
