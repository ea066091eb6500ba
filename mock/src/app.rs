//! The Coinbase App API (`/v2/...`) on the Advanced Trade host, as far as
//! ccxt's `coinbase` calls it: `load_markets` reads `/v2/currencies`,
//! `/v2/currencies/crypto` and `/v2/exchange-rates`; `fetch_time` reads
//! `/v2/time`; `fetch_accounts`/`fetch_balance` with the v2 option read
//! `/v2/accounts`; `fetch_ticker` with `fetchTickerV2` reads
//! `/v2/prices/{pair}/spot|buy|sell`. Shapes follow the examples in ccxt
//! 4.5.90's `coinbase.py` and Coinbase's App API reference; values come
//! from the same price waves as the trading APIs, so a rate and a ticker
//! read at the same instant agree.
//!
//! Also Exchange's `/currencies` (what ccxt's `coinbaseexchange` reads in
//! `load_markets`), from the same currency tables, and the two Advanced
//! Trade answers that are not market or account
//! data: `transaction_summary` (the fee tier ccxt reads in
//! `load_markets` when it holds a key) and `/api/v3/brokerage/time`.

use serde_json::{json, Map, Value};

use super::account::{self, Orders, Status};
use super::market::{fnv64, product, rfc3339, uuid_from};

/// Fiat currencies: code, name.
const FIAT: [(&str, &str); 2] = [("USD", "US Dollar"), ("EUR", "Euro")];

/// Crypto currencies: code, name, exponent, colour.
const CRYPTO: [(&str, &str, u32, &str); 3] = [
    ("BTC", "Bitcoin", 8, "#F7931A"),
    ("ETH", "Ethereum", 8, "#627EEA"),
    ("SOL", "Solana", 9, "#9945FF"),
];

/// The fee tier every credential is on (ccxt's own default differs, so a
/// test can tell that the summary was read).
pub(crate) const TAKER_FEE_RATE: &str = "0.008";
pub(crate) const MAKER_FEE_RATE: &str = "0.006";

/// The App API's error shape: `{"errors": [{"id": ..., "message": ...}]}`.
pub(crate) fn error_body(id: &str, message: &str) -> Value {
    json!({ "errors": [{ "id": id, "message": message }] })
}

/// `GET /v2/currencies`: fiat currencies.
pub(crate) fn fiat_currencies() -> Value {
    let data: Vec<Value> = FIAT
        .iter()
        .map(|(id, name)| json!({ "id": id, "name": name, "min_size": "0.01" }))
        .collect();
    json!({ "data": data })
}

/// `GET /v2/currencies/crypto`: crypto assets (ccxt tells them from fiat
/// by `asset_id`).
pub(crate) fn crypto_currencies() -> Value {
    let data: Vec<Value> = CRYPTO
        .iter()
        .enumerate()
        .map(|(i, (code, name, exponent, color))| {
            let seed = fnv64(format!("asset:{code}").as_bytes());
            json!({
                "asset_id": uuid_from(seed, seed.rotate_left(17)),
                "code": code,
                "name": name,
                "color": color,
                "sort_index": (100 + i).to_string(),
                "exponent": exponent.to_string(),
                "type": "crypto",
                "address_regex": "^[0-9A-Za-z]{25,64}$",
            })
        })
        .collect();
    json!({ "data": data })
}

/// Exchange's `GET /currencies` entry for one currency.
fn exchange_currency(code: &str, name: &str, exponent: u32, crypto: bool) -> Value {
    let precision = format!("{:.*}", exponent as usize, 10f64.powi(-(exponent as i32)));
    json!({
        "id": code,
        "name": name,
        "min_size": precision,
        "status": "online",
        "message": "",
        "max_precision": precision,
        "convertible_to": [],
        "details": {
            "type": if crypto { "crypto" } else { "fiat" },
            "symbol": null,
            "network_confirmations": if crypto { 6 } else { 0 },
            "sort_order": 0,
            "push_payment_methods": [],
            "group_types": [],
            "display_name": null,
            "processing_time_seconds": null,
            "min_withdrawal_amount": 0.0001,
            "max_withdrawal_amount": 10000,
        },
        "supported_networks": [],
        "display_name": code,
    })
}

/// Exchange's `GET /currencies`: fiat (two decimals) and crypto.
pub(crate) fn exchange_currencies() -> Value {
    let fiat = FIAT
        .iter()
        .map(|(code, name)| exchange_currency(code, name, 2, false));
    let crypto = CRYPTO
        .iter()
        .map(|(code, name, exponent, _)| exchange_currency(code, name, *exponent, true));
    Value::Array(fiat.chain(crypto).collect())
}

/// Exchange's `GET /currencies/{id}`.
pub(crate) fn exchange_currency_by_id(id: &str) -> Option<Value> {
    let id = id.to_ascii_uppercase();
    match exchange_currencies() {
        Value::Array(all) => all.into_iter().find(|c| c["id"] == id.as_str()),
        _ => None,
    }
}

/// Value of one unit of `code` in US dollars at unix time `t`, from the
/// products' prices (EUR through BTC-USD / BTC-EUR).
fn usd_value(code: &str, t: f64) -> Option<f64> {
    let usd = |id: &str| product(id).map(|p| p.price(t));
    match code {
        "USD" => Some(1.0),
        "EUR" => Some(usd("BTC-USD")? / usd("BTC-EUR")?),
        _ if CRYPTO.iter().any(|(c, ..)| *c == code) => usd(&format!("{code}-USD")),
        _ => None,
    }
}

/// Every currency code the App API answers for.
fn codes() -> impl Iterator<Item = &'static str> {
    FIAT.iter()
        .map(|(c, _)| *c)
        .chain(CRYPTO.iter().map(|(c, ..)| *c))
}

/// `GET /v2/exchange-rates?currency=X` (default USD): how many units of
/// each currency one unit of X buys. `None` for an unknown currency.
pub(crate) fn exchange_rates(currency: &str, t: f64) -> Option<Value> {
    let currency = currency.to_ascii_uppercase();
    let base = usd_value(&currency, t)?;
    let mut rates = Map::new();
    for code in codes() {
        if let Some(v) = usd_value(code, t) {
            rates.insert(code.to_owned(), Value::String(significant(base / v)));
        }
    }
    Some(json!({ "data": { "currency": currency, "rates": rates } }))
}

/// A rate with twelve significant digits, as Coinbase writes small ones
/// (`0.0000153846153846`) without rounding them to zero.
fn significant(x: f64) -> String {
    let magnitude = if x > 0.0 { x.log10().floor() as i32 } else { 0 };
    let decimals = (11 - magnitude).clamp(1, 24) as usize;
    format!("{x:.decimals$}")
}

/// `GET /v2/prices/{BASE-QUOTE}/{spot|buy|sell}`: the mid, the ask (what
/// a buyer pays) or the bid. `None` for an unknown pair or kind.
pub(crate) fn price(pair: &str, kind: &str, t: f64) -> Option<Value> {
    let p = product(pair)?;
    let (bid, ask) = p.bid_ask(t);
    let amount = match kind {
        "spot" => p.price(t),
        "buy" => ask,
        "sell" => bid,
        _ => return None,
    };
    Some(json!({ "data": { "base": p.base, "currency": p.quote, "amount": p.fmt_price(amount) } }))
}

/// `GET /v2/time`: whole seconds, as Coinbase sends them.
pub(crate) fn time(t: f64) -> Value {
    json!({ "data": { "iso": iso_seconds(t), "epoch": t.floor() as u64 } })
}

/// `GET /api/v3/brokerage/time`.
pub(crate) fn advanced_time(t: f64) -> Value {
    json!({
        "iso": iso_seconds(t),
        "epochSeconds": (t.floor() as u64).to_string(),
        "epochMillis": ((t * 1000.0).floor() as u64).to_string(),
    })
}

/// `2026-01-01T00:00:00Z`: RFC 3339 without the fraction.
fn iso_seconds(t: f64) -> String {
    let full = rfc3339(t.floor());
    match full.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => full,
    }
}

/// `GET /v2/accounts`: the credential's wallets, one page.
pub(crate) fn accounts(identity: &str) -> Value {
    let data: Vec<Value> = account::accounts(identity)
        .iter()
        .map(account::Account::app)
        .collect();
    json!({
        "pagination": {
            "ending_before": null,
            "starting_after": null,
            "previous_ending_before": null,
            "next_starting_after": null,
            "limit": data.len(),
            "order": "desc",
            "previous_uri": null,
            "next_uri": null,
        },
        "data": data,
    })
}

/// `GET /v2/accounts/{id}`: by uuid or currency code.
pub(crate) fn account(identity: &str, id: &str) -> Option<Value> {
    account::accounts(identity)
        .iter()
        .find(|a| a.uuid == id || a.currency().eq_ignore_ascii_case(id))
        .map(|a| json!({ "data": a.app() }))
}

/// `GET /api/v3/brokerage/transaction_summary`: the fee tier, and the
/// volume this credential's filled orders add up to (in their quote
/// currencies, summed as if all were dollars: a mock's approximation).
pub(crate) fn transaction_summary(orders: &Orders, identity: &str) -> Value {
    let volume: f64 = orders
        .list(identity)
        .iter()
        .filter(|o| o.status == Status::Filled)
        .map(|o| o.base_size * o.fill_price)
        .sum();
    let fees = volume * TAKER_FEE_RATE.parse::<f64>().unwrap_or(0.0);
    json!({
        "total_volume": volume,
        "total_fees": fees,
        "fee_tier": {
            "pricing_tier": "Advanced 1",
            "usd_from": "0",
            "usd_to": "1000",
            "taker_fee_rate": TAKER_FEE_RATE,
            "maker_fee_rate": MAKER_FEE_RATE,
            "aop_from": "",
            "aop_to": "",
        },
        "margin_rate": null,
        "goods_and_services_tax": null,
        "advanced_trade_only_volume": volume,
        "advanced_trade_only_fees": fees,
        "coinbase_pro_volume": 0,
        "coinbase_pro_fees": 0,
        "total_balance": "",
        "has_promo_fee": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_agree_with_prices_and_invert() {
        let t = 1_700_000_000.0;
        let usd = exchange_rates("usd", t).unwrap();
        let btc_per_usd: f64 = usd["data"]["rates"]["BTC"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let btc_usd = product("BTC-USD").unwrap().price(t);
        assert!((btc_per_usd * btc_usd - 1.0).abs() < 1e-9);
        let btc = exchange_rates("BTC", t).unwrap();
        let usd_per_btc: f64 = btc["data"]["rates"]["USD"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((usd_per_btc / btc_usd - 1.0).abs() < 1e-9);
        assert_eq!(btc["data"]["rates"]["BTC"], "1.00000000000");
        assert_eq!(significant(0.000015384615384615), "0.0000153846153846");
        assert!(exchange_rates("XYZ", t).is_none());
    }

    #[test]
    fn prices_are_bid_mid_ask() {
        let t = 1_700_000_000.0;
        let amount = |kind| -> f64 {
            price("ETH-USD", kind, t).unwrap()["data"]["amount"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(amount("sell") < amount("spot") && amount("spot") < amount("buy"));
        assert!(price("ETH-USD", "other", t).is_none());
        assert!(price("NOPE-USD", "spot", t).is_none());
    }

    #[test]
    fn exchange_currencies_have_their_precision() {
        let btc = exchange_currency_by_id("btc").unwrap();
        assert_eq!(btc["max_precision"], "0.00000001");
        assert_eq!(btc["details"]["type"], "crypto");
        assert_eq!(exchange_currency_by_id("USD").unwrap()["min_size"], "0.01");
        assert!(exchange_currency_by_id("XYZ").is_none());
    }

    #[test]
    fn times_are_whole_seconds() {
        assert_eq!(
            time(1_700_000_000.7),
            json!({ "data": { "iso": "2023-11-14T22:13:20Z", "epoch": 1_700_000_000u64 } })
        );
        assert_eq!(
            advanced_time(1_700_000_000.7)["epochMillis"],
            "1700000000700"
        );
    }
}
