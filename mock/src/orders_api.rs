//! Order entry: `POST /api/v3/brokerage/orders` and Exchange's
//! `POST /orders`, their bodies read as Coinbase reads them, the order
//! created for the caller's credential.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::account::{NewOrder, Orders};
use super::market::product;
use super::routes::replies::{bad_at, bad_ex, json};
use super::routes::state::lock;
use syncoord_server::Response;

/// A positive finite number given as a JSON string or number.
fn positive(v: Option<&Value>) -> Option<f64> {
    let n = match v? {
        Value::String(s) => s.parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (n.is_finite() && n > 0.0).then_some(n)
}

fn side(v: Option<&Value>) -> Option<&'static str> {
    match v?.as_str()?.to_ascii_uppercase().as_str() {
        "BUY" => Some("BUY"),
        "SELL" => Some("SELL"),
        _ => None,
    }
}

/// `POST /api/v3/brokerage/orders`: market (`market_market_ioc`) and limit
/// (`limit_limit_gtc`) configurations.
pub(crate) fn at_create_order(
    orders: &Mutex<Orders>,
    body: &[u8],
    identity: &str,
    t: f64,
) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_at("request body is not JSON".into());
    };
    let failure = |error: &str, message: &str| {
        json(
            200,
            json!({
                "success": false,
                "failure_reason": "UNKNOWN_FAILURE_REASON",
                "order_id": "",
                "error_response": { "error": error, "message": message, "error_details": message },
            }),
        )
    };
    let Some(side) = side(req.get("side")) else {
        return bad_at("side must be BUY or SELL".into());
    };
    let Some(p) = req
        .get("product_id")
        .and_then(Value::as_str)
        .and_then(product)
    else {
        return failure("INVALID_PRODUCT_ID", "Product ID is invalid");
    };
    let client_order_id = req
        .get("client_order_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let config = req.get("order_configuration");
    let new = if let Some(m) = config.and_then(|c| c.get("market_market_ioc")) {
        let base = positive(m.get("base_size"));
        let quote = positive(m.get("quote_size"));
        if base.is_none() && quote.is_none() {
            return failure("INVALID_SIZE", "base_size or quote_size is required");
        }
        NewOrder {
            client_order_id,
            product: p,
            side,
            limit_price: None,
            base_size: base,
            quote_size: quote,
            post_only: false,
        }
    } else if let Some(l) = config.and_then(|c| c.get("limit_limit_gtc")) {
        let (Some(base), Some(price)) =
            (positive(l.get("base_size")), positive(l.get("limit_price")))
        else {
            return failure(
                "INVALID_LIMIT_PRICE",
                "limit_limit_gtc needs base_size and limit_price",
            );
        };
        NewOrder {
            client_order_id,
            product: p,
            side,
            limit_price: Some(price),
            base_size: Some(base),
            quote_size: None,
            post_only: l.get("post_only").and_then(Value::as_bool).unwrap_or(false),
        }
    } else {
        return failure(
            "UNSUPPORTED_ORDER_CONFIGURATION",
            "order_configuration must be market_market_ioc or limit_limit_gtc",
        );
    };
    let order = lock(orders).create(identity, new, t);
    let view = order.advanced();
    json(
        200,
        json!({
            "success": true,
            "success_response": {
                "order_id": order.id,
                "product_id": order.product_id,
                "side": order.side,
                "client_order_id": order.client_order_id,
            },
            "order_configuration": view.get("order_configuration").cloned().unwrap_or(Value::Null),
        }),
    )
}

/// `POST /orders` (Exchange): `type` limit (default) or market.
pub(crate) fn ex_create_order(
    orders: &Mutex<Orders>,
    body: &[u8],
    identity: &str,
    t: f64,
) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_ex("request body is not JSON".into());
    };
    let Some(side) = side(req.get("side")) else {
        return bad_ex("side must be buy or sell".into());
    };
    let Some(p) = req
        .get("product_id")
        .and_then(Value::as_str)
        .and_then(product)
    else {
        return bad_ex("product_id is invalid".into());
    };
    let client_order_id = req
        .get("client_oid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let kind = req.get("type").and_then(Value::as_str).unwrap_or("limit");
    let size = positive(req.get("size"));
    let new = match kind {
        "limit" => {
            let (Some(size), Some(price)) = (size, positive(req.get("price"))) else {
                return bad_ex("limit orders need price and size".into());
            };
            NewOrder {
                client_order_id,
                product: p,
                side,
                limit_price: Some(price),
                base_size: Some(size),
                quote_size: None,
                post_only: req
                    .get("post_only")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }
        }
        "market" => {
            let funds = positive(req.get("funds"));
            if size.is_none() && funds.is_none() {
                return bad_ex("market orders need size or funds".into());
            }
            NewOrder {
                client_order_id,
                product: p,
                side,
                limit_price: None,
                base_size: size,
                quote_size: funds,
                post_only: false,
            }
        }
        other => return bad_ex(format!("unsupported order type {other:?}")),
    };
    let order = lock(orders).create(identity, new, t);
    json(200, order.exchange())
}
