//! Private data: balances derived from the credential, and the orders each
//! credential created.
//!
//! Balances are a function of the credential identity (a hash of it), and
//! every account echoes the identity in `mock_credential`: a proxy that
//! served one credential's cached private answer to another is caught by
//! comparing the two.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::market::{fnv64, product, rfc3339, uuid_from, Product};

const CURRENCIES: [(&str, &str, u64); 5] = [
    // currency, name, balance scale (smallest units per whole unit shown)
    ("BTC", "BTC Wallet", 100_000_000),
    ("ETH", "ETH Wallet", 100_000_000),
    ("SOL", "SOL Wallet", 1_000_000_000),
    ("USD", "Cash (USD)", 100),
    ("EUR", "Cash (EUR)", 100),
];

/// One account of one credential.
pub(crate) struct Account {
    pub(crate) uuid: String,
    currency: &'static str,
    name: &'static str,
    available: String,
    hold: String,
    portfolio: String,
    identity: String,
    /// Smallest units per whole unit (10^exponent).
    scale: u64,
}

/// Formats `units / scale` with the scale's number of decimals.
fn decimal(units: u64, scale: u64) -> String {
    let decimals = scale.ilog10() as usize;
    format!("{}.{:0decimals$}", units / scale, units % scale)
}

pub(crate) fn accounts(identity: &str) -> Vec<Account> {
    let portfolio_seed = fnv64(format!("portfolio:{identity}").as_bytes());
    let portfolio = uuid_from(portfolio_seed, portfolio_seed.rotate_left(29));
    CURRENCIES
        .iter()
        .map(|&(currency, name, scale)| {
            let seed = fnv64(format!("{identity}:{currency}").as_bytes());
            // Between 0 and 100 whole units (10,000 for fiat).
            let max_whole = if scale == 100 { 10_000 } else { 100 };
            let available = seed % (max_whole * scale);
            let hold = (seed >> 40) % (scale / 10).max(1);
            Account {
                uuid: uuid_from(seed, seed.rotate_left(31)),
                currency,
                name,
                available: decimal(available, scale),
                hold: decimal(hold, scale),
                portfolio: portfolio.clone(),
                identity: identity.to_owned(),
                scale,
            }
        })
        .collect()
}

impl Account {
    pub(crate) fn advanced(&self) -> Value {
        json!({
            "uuid": self.uuid,
            "name": self.name,
            "currency": self.currency,
            "available_balance": { "value": self.available, "currency": self.currency },
            "default": true,
            "active": true,
            "created_at": "2021-05-31T09:59:59.000Z",
            "updated_at": "2021-05-31T09:59:59.000Z",
            "deleted_at": null,
            "type": if self.currency == "USD" || self.currency == "EUR" { "ACCOUNT_TYPE_FIAT" } else { "ACCOUNT_TYPE_CRYPTO" },
            "ready": true,
            "hold": { "value": self.hold, "currency": self.currency },
            "retail_portfolio_id": self.portfolio,
            "platform": "ACCOUNT_PLATFORM_CONSUMER",
            "mock_credential": self.identity,
        })
    }

    pub(crate) fn currency(&self) -> &'static str {
        self.currency
    }

    /// The App API's (`/v2/accounts`) shape: the balance is the total,
    /// available and held together.
    pub(crate) fn app(&self) -> Value {
        let fiat = self.scale == 100;
        json!({
            "id": self.uuid,
            "name": self.name,
            "primary": self.currency == "BTC",
            "type": if fiat { "fiat" } else { "wallet" },
            "currency": {
                "code": self.currency,
                "name": self.currency,
                "exponent": self.scale.ilog10(),
                "type": if fiat { "fiat" } else { "crypto" },
            },
            "balance": {
                "amount": add_decimals(&self.available, &self.hold),
                "currency": self.currency,
            },
            "created_at": "2021-05-31T09:59:59Z",
            "updated_at": "2021-05-31T09:59:59Z",
            "resource": "account",
            "resource_path": format!("/v2/accounts/{}", self.uuid),
            "allow_deposits": true,
            "allow_withdrawals": true,
            "mock_credential": self.identity,
        })
    }

    pub(crate) fn exchange(&self) -> Value {
        // balance = available + hold, in the same decimals.
        let balance = add_decimals(&self.available, &self.hold);
        json!({
            "id": self.uuid,
            "currency": self.currency,
            "balance": balance,
            "hold": self.hold,
            "available": self.available,
            "profile_id": self.portfolio,
            "trading_enabled": true,
            "pending_deposit": "0",
            "display_name": self.name,
            "mock_credential": self.identity,
        })
    }
}

/// Sum of two decimals with the same number of decimals.
fn add_decimals(a: &str, b: &str) -> String {
    let digits = |s: &str| s.replace('.', "").parse::<u128>().unwrap_or(0);
    let decimals = a.split_once('.').map_or(0, |(_, f)| f.len());
    let sum = digits(a) + digits(b);
    let scale = 10u128.pow(decimals as u32);
    format!("{}.{:0decimals$}", sum / scale, sum % scale)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Filled,
    Cancelled,
}

#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) id: String,
    pub(crate) client_order_id: String,
    pub(crate) product_id: &'static str,
    /// `BUY` or `SELL`.
    pub(crate) side: &'static str,
    /// `None` for a market order.
    pub(crate) limit_price: Option<f64>,
    pub(crate) base_size: f64,
    /// Quote amount asked for (market buys in quote), if any.
    pub(crate) quote_size: Option<f64>,
    pub(crate) status: Status,
    pub(crate) created: f64,
    pub(crate) fill_price: f64,
    pub(crate) post_only: bool,
    pub(crate) identity: String,
}

/// What an order asks for, parsed from either API's request body.
pub(crate) struct NewOrder {
    pub(crate) client_order_id: String,
    pub(crate) product: &'static Product,
    pub(crate) side: &'static str,
    pub(crate) limit_price: Option<f64>,
    pub(crate) base_size: Option<f64>,
    pub(crate) quote_size: Option<f64>,
    pub(crate) post_only: bool,
}

/// Orders by credential identity.
#[derive(Default)]
pub(crate) struct Orders {
    by_credential: HashMap<String, Vec<Order>>,
    created: u64,
}

impl Orders {
    /// Market orders fill at once at the current price; limit orders rest
    /// (open) until cancelled.
    pub(crate) fn create(&mut self, identity: &str, new: NewOrder, t: f64) -> Order {
        self.created += 1;
        let seed = fnv64(format!("{identity}:order:{}:{t}", self.created).as_bytes());
        let price = new.product.price(t);
        let base_size = match (new.base_size, new.quote_size) {
            (Some(b), _) => b,
            (None, Some(q)) => q / new.limit_price.unwrap_or(price),
            (None, None) => 0.0,
        };
        let order = Order {
            id: uuid_from(seed, seed.rotate_left(23) ^ self.created),
            client_order_id: new.client_order_id,
            product_id: new.product.id,
            side: new.side,
            limit_price: new.limit_price,
            base_size,
            quote_size: new.quote_size,
            status: if new.limit_price.is_some() {
                Status::Open
            } else {
                Status::Filled
            },
            created: t,
            fill_price: price,
            post_only: new.post_only,
            identity: identity.to_owned(),
        };
        self.by_credential
            .entry(identity.to_owned())
            .or_default()
            .push(order.clone());
        order
    }

    pub(crate) fn list(&self, identity: &str) -> &[Order] {
        self.by_credential
            .get(identity)
            .map_or(&[], |orders| orders.as_slice())
    }

    pub(crate) fn get(&self, identity: &str, id: &str) -> Option<&Order> {
        self.list(identity)
            .iter()
            .find(|o| o.id == id || o.client_order_id == id)
    }

    /// Cancels an open order; `Err` says why not (unknown, not open).
    pub(crate) fn cancel(&mut self, identity: &str, id: &str) -> Result<(), &'static str> {
        let order = self
            .by_credential
            .get_mut(identity)
            .and_then(|orders| orders.iter_mut().find(|o| o.id == id))
            .ok_or("UNKNOWN_CANCEL_ORDER")?;
        if order.status != Status::Open {
            return Err("INVALID_CANCEL_REQUEST");
        }
        order.status = Status::Cancelled;
        Ok(())
    }
}

impl Order {
    fn product(&self) -> Option<&'static Product> {
        product(self.product_id)
    }

    fn fmt_price(&self, price: f64) -> String {
        self.product()
            .map_or_else(|| format!("{price:.2}"), |p| p.fmt_price(price))
    }

    fn filled(&self) -> bool {
        self.status == Status::Filled
    }

    fn filled_value(&self) -> f64 {
        if self.filled() {
            self.base_size * self.fill_price
        } else {
            0.0
        }
    }

    /// A 0.6 % taker fee on filled value.
    fn fee(&self) -> f64 {
        self.filled_value() * 0.006
    }

    pub(crate) fn advanced(&self) -> Value {
        let configuration = match self.limit_price {
            Some(limit) => json!({ "limit_limit_gtc": {
                "base_size": format!("{:.8}", self.base_size),
                "limit_price": self.fmt_price(limit),
                "post_only": self.post_only,
            }}),
            None => match self.quote_size {
                Some(q) => json!({ "market_market_ioc": { "quote_size": format!("{q:.2}") } }),
                None => json!({ "market_market_ioc": {
                    "base_size": format!("{:.8}", self.base_size)
                } }),
            },
        };
        let status = match self.status {
            Status::Open => "OPEN",
            Status::Filled => "FILLED",
            Status::Cancelled => "CANCELLED",
        };
        let filled = self.filled();
        json!({
            "order_id": self.id,
            "product_id": self.product_id,
            "user_id": user_id(&self.identity),
            "order_configuration": configuration,
            "side": self.side,
            "client_order_id": self.client_order_id,
            "status": status,
            "time_in_force": if self.limit_price.is_some() { "GOOD_UNTIL_CANCELLED" } else { "IMMEDIATE_OR_CANCEL" },
            "created_time": rfc3339(self.created),
            "completion_percentage": if filled { "100.00" } else { "0" },
            "filled_size": if filled { format!("{:.8}", self.base_size) } else { "0".to_owned() },
            "average_filled_price": if filled { self.fmt_price(self.fill_price) } else { "0".to_owned() },
            "fee": "",
            "number_of_fills": if filled { "1" } else { "0" },
            "filled_value": format!("{:.8}", self.filled_value()),
            "pending_cancel": false,
            "size_in_quote": self.quote_size.is_some(),
            "total_fees": format!("{:.8}", self.fee()),
            "size_inclusive_of_fees": false,
            "total_value_after_fees": format!("{:.8}", self.filled_value() + self.fee()),
            "trigger_status": "INVALID_ORDER_TYPE",
            "order_type": if self.limit_price.is_some() { "LIMIT" } else { "MARKET" },
            "reject_reason": "REJECT_REASON_UNSPECIFIED",
            "settled": filled,
            "product_type": "SPOT",
            "reject_message": "",
            "cancel_message": "",
            "order_placement_source": "RETAIL_ADVANCED",
            "outstanding_hold_amount": if self.status == Status::Open { format!("{:.8}", self.base_size) } else { "0".to_owned() },
            "is_liquidation": false,
            "last_fill_time": if filled { Value::String(rfc3339(self.created)) } else { Value::Null },
            "edit_history": [],
            "leverage": "",
            "margin_type": "UNKNOWN_MARGIN_TYPE",
            "retail_portfolio_id": portfolio_id(&self.identity),
        })
    }

    pub(crate) fn exchange(&self) -> Value {
        let filled = self.filled();
        let mut order = json!({
            "id": self.id,
            "size": format!("{:.8}", self.base_size),
            "product_id": self.product_id,
            "profile_id": portfolio_id(&self.identity),
            "side": self.side.to_ascii_lowercase(),
            "type": if self.limit_price.is_some() { "limit" } else { "market" },
            "post_only": self.post_only,
            "created_at": rfc3339(self.created),
            "fill_fees": format!("{:.16}", self.fee()),
            "filled_size": if filled { format!("{:.8}", self.base_size) } else { "0.00000000".to_owned() },
            "executed_value": format!("{:.16}", self.filled_value()),
            "status": match self.status { Status::Open => "open", Status::Filled | Status::Cancelled => "done" },
            "settled": filled,
            "client_oid": self.client_order_id,
            "mock_credential": self.identity,
        });
        if let (Some(limit), Some(map)) = (self.limit_price, order.as_object_mut()) {
            map.insert("price".into(), Value::String(self.fmt_price(limit)));
            map.insert("time_in_force".into(), Value::String("GTC".into()));
        }
        if let (Some(q), Some(map)) = (self.quote_size, order.as_object_mut()) {
            map.insert("funds".into(), Value::String(format!("{q:.8}")));
        }
        if filled {
            if let Some(map) = order.as_object_mut() {
                map.insert("done_at".into(), Value::String(rfc3339(self.created)));
                map.insert("done_reason".into(), Value::String("filled".into()));
            }
        }
        order
    }

    fn trade_id(&self) -> u64 {
        fnv64(self.id.as_bytes()) % 1_000_000_000
    }

    /// The one fill of a filled order, Advanced Trade shape.
    pub(crate) fn advanced_fill(&self) -> Option<Value> {
        self.filled().then(|| {
            json!({
                "entry_id": uuid_from(fnv64(self.id.as_bytes()), 7),
                "trade_id": self.trade_id().to_string(),
                "order_id": self.id,
                "trade_time": rfc3339(self.created),
                "trade_type": "FILL",
                "price": self.fmt_price(self.fill_price),
                "size": format!("{:.8}", self.base_size),
                "commission": format!("{:.8}", self.fee()),
                "product_id": self.product_id,
                "sequence_timestamp": rfc3339(self.created),
                "liquidity_indicator": "TAKER",
                "size_in_quote": false,
                "user_id": user_id(&self.identity),
                "side": self.side,
                "retail_portfolio_id": portfolio_id(&self.identity),
            })
        })
    }

    /// The one fill of a filled order, Exchange shape.
    pub(crate) fn exchange_fill(&self) -> Option<Value> {
        self.filled().then(|| {
            json!({
                "created_at": rfc3339(self.created),
                "trade_id": self.trade_id(),
                "product_id": self.product_id,
                "order_id": self.id,
                "user_id": user_id(&self.identity),
                "profile_id": portfolio_id(&self.identity),
                "liquidity": "T",
                "price": self.fmt_price(self.fill_price),
                "size": format!("{:.8}", self.base_size),
                "fee": format!("{:.16}", self.fee()),
                "side": self.side.to_ascii_lowercase(),
                "settled": true,
                "usd_volume": format!("{:.16}", self.filled_value()),
            })
        })
    }
}

fn user_id(identity: &str) -> String {
    let seed = fnv64(format!("user:{identity}").as_bytes());
    uuid_from(seed, seed.rotate_left(13))
}

fn portfolio_id(identity: &str) -> String {
    let seed = fnv64(format!("portfolio:{identity}").as_bytes());
    uuid_from(seed, seed.rotate_left(29))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_differ_by_credential_and_are_stable() {
        let a = accounts("key:alice");
        let b = accounts("key:bob");
        assert_eq!(a[0].available, accounts("key:alice")[0].available);
        assert!(a.iter().zip(&b).any(|(x, y)| x.available != y.available));
        assert_ne!(a[0].uuid, b[0].uuid);
        assert_eq!(add_decimals("1.50", "0.75"), "2.25");
        assert_eq!(decimal(123_456_789, 100_000_000), "1.23456789");
    }
}
