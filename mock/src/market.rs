//! Market data: a few products whose price is a deterministic function of
//! wall-clock time (a sum of slow and fast waves), rendered in the JSON
//! shapes of Coinbase Advanced Trade and Coinbase Exchange.
//!
//! Deterministic so that two requests in the same instant agree and tests
//! can reason about shapes; time-dependent so that a cache serving stale
//! data is visible.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub(crate) struct Product {
    pub(crate) id: &'static str,
    pub(crate) base: &'static str,
    pub(crate) quote: &'static str,
    base_name: &'static str,
    quote_name: &'static str,
    mid: f64,
    /// Price tick as a decimal string and its number of decimals.
    quote_increment: &'static str,
    price_decimals: usize,
    base_increment: &'static str,
    base_min_size: &'static str,
    /// Phase of the price waves, so products do not move in lockstep.
    phase: f64,
}

pub(crate) const PRODUCTS: [Product; 5] = [
    Product {
        id: "BTC-USD",
        base: "BTC",
        quote: "USD",
        base_name: "Bitcoin",
        quote_name: "US Dollar",
        mid: 65_000.0,
        quote_increment: "0.01",
        price_decimals: 2,
        base_increment: "0.00000001",
        base_min_size: "0.00000001",
        phase: 0.0,
    },
    Product {
        id: "ETH-USD",
        base: "ETH",
        quote: "USD",
        base_name: "Ethereum",
        quote_name: "US Dollar",
        mid: 3_200.0,
        quote_increment: "0.01",
        price_decimals: 2,
        base_increment: "0.00000001",
        base_min_size: "0.00000001",
        phase: 1.3,
    },
    Product {
        id: "SOL-USD",
        base: "SOL",
        quote: "USD",
        base_name: "Solana",
        quote_name: "US Dollar",
        mid: 150.0,
        quote_increment: "0.01",
        price_decimals: 2,
        base_increment: "0.001",
        base_min_size: "0.001",
        phase: 2.1,
    },
    Product {
        id: "BTC-EUR",
        base: "BTC",
        quote: "EUR",
        base_name: "Bitcoin",
        quote_name: "Euro",
        mid: 60_000.0,
        quote_increment: "0.01",
        price_decimals: 2,
        base_increment: "0.00000001",
        base_min_size: "0.00000001",
        phase: 0.4,
    },
    Product {
        id: "ETH-BTC",
        base: "ETH",
        quote: "BTC",
        base_name: "Ethereum",
        quote_name: "Bitcoin",
        mid: 0.05,
        quote_increment: "0.00001",
        price_decimals: 5,
        base_increment: "0.00000001",
        base_min_size: "0.00000001",
        phase: 3.3,
    },
];

pub(crate) fn product(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id.eq_ignore_ascii_case(id))
}

/// Seconds since the Unix epoch, fractional.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Product {
    /// Mid price at unix time `t`: an hourly swing of 2 %, a 97-second
    /// wobble of 0.5 % and a fast 0.1 % jitter.
    pub(crate) fn price(&self, t: f64) -> f64 {
        use std::f64::consts::TAU;
        let wave = 0.02 * (TAU * t / 3600.0 + self.phase).sin()
            + 0.005 * (TAU * t / 97.0 + 2.0 * self.phase).sin()
            + 0.001 * (TAU * t / 7.3 + 3.0 * self.phase).sin();
        self.mid * (1.0 + wave)
    }

    pub(crate) fn fmt_price(&self, price: f64) -> String {
        format!("{price:.*}", self.price_decimals)
    }

    fn tick(&self) -> f64 {
        10f64.powi(-(self.price_decimals as i32))
    }

    /// Best bid and ask around the mid: a spread of two ticks, at least.
    pub(crate) fn bid_ask(&self, t: f64) -> (f64, f64) {
        let mid = self.price(t);
        let half = (mid * 0.00005).max(self.tick());
        (mid - half, mid + half)
    }

    /// Size at book level `i` (deterministic, grows away from the top).
    fn level_size(&self, t: f64, i: usize) -> String {
        let seed = fnv64(format!("{}{}{i}", self.id, t as u64).as_bytes());
        let unit = 1.0 / (self.mid.max(1.0)).sqrt();
        let size = unit * (1.0 + (seed % 1000) as f64 / 250.0) * (1.0 + i as f64 * 0.3);
        format!("{size:.8}")
    }

    fn volume_24h(&self, t: f64) -> f64 {
        let seed = fnv64(format!("{}{}", self.id, (t / 60.0) as u64).as_bytes());
        (10_000_000.0 / self.mid.max(1e-9).sqrt()) * (1.0 + (seed % 1000) as f64 / 1000.0)
    }

    fn change_24h_pct(&self, t: f64) -> f64 {
        let now = self.price(t);
        let then = self.price(t - 86_400.0);
        (now - then) / then * 100.0
    }

    fn level(&self, t: f64, i: usize, bid: bool) -> (String, String) {
        let (b, a) = self.bid_ask(t);
        let price = if bid {
            b - i as f64 * self.tick() * 3.0
        } else {
            a + i as f64 * self.tick() * 3.0
        };
        (self.fmt_price(price), self.level_size(t, i))
    }

    /// Open, high, low, close, volume over `[start, start + seconds)`.
    fn ohlcv(&self, start: u64, seconds: u64) -> (f64, f64, f64, f64, f64) {
        let open = self.price(start as f64);
        let close = self.price((start + seconds) as f64);
        let (mut high, mut low) = (open.max(close), open.min(close));
        for k in 1..8 {
            let p = self.price(start as f64 + seconds as f64 * k as f64 / 8.0);
            high = high.max(p);
            low = low.min(p);
        }
        let seed = fnv64(format!("{}{start}{seconds}", self.id).as_bytes());
        let volume = self.volume_24h(start as f64) / 86_400.0
            * seconds as f64
            * (0.5 + (seed % 1000) as f64 / 1000.0);
        (open, high, low, close, volume)
    }

    /// Candle start times, newest first, aligned to `granularity`.
    fn candle_starts(granularity: u64, end: u64, start: Option<u64>, max: usize) -> Vec<u64> {
        let last = end - end % granularity;
        let mut out = Vec::new();
        let mut s = last;
        while out.len() < max && start.is_none_or(|st| s >= st) {
            out.push(s);
            match s.checked_sub(granularity) {
                Some(next) => s = next,
                None => break,
            }
        }
        out
    }

    fn trade_id(t: f64) -> u64 {
        // A monotone trade counter: ten trades a second since 2020.
        ((t - 1_577_836_800.0).max(0.0) * 10.0) as u64
    }
}

/// FNV-1a, 64 bits: stable across runs and platforms (unlike the std
/// hasher), so derived values are reproducible.
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// RFC 3339 UTC with microseconds, as Coinbase writes times.
pub(crate) fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let micros = ((t - t.floor()) * 1e6) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---- Advanced Trade shapes (/api/v3/brokerage/...) ----

pub(crate) fn at_product(p: &Product, t: f64) -> Value {
    let price = p.price(t);
    json!({
        "product_id": p.id,
        "price": p.fmt_price(price),
        "price_percentage_change_24h": format!("{:.8}", p.change_24h_pct(t)),
        "volume_24h": format!("{:.8}", p.volume_24h(t)),
        "volume_percentage_change_24h": "1.25",
        "base_increment": p.base_increment,
        "quote_increment": p.quote_increment,
        "quote_min_size": "1",
        "quote_max_size": "150000000",
        "base_min_size": p.base_min_size,
        "base_max_size": "3400",
        "base_name": p.base_name,
        "quote_name": p.quote_name,
        "watched": false,
        "is_disabled": false,
        "new": false,
        "status": "online",
        "cancel_only": false,
        "limit_only": false,
        "post_only": false,
        "trading_disabled": false,
        "auction_mode": false,
        "product_type": "SPOT",
        "quote_currency_id": p.quote,
        "base_currency_id": p.base,
        "fcm_trading_session_details": null,
        "mid_market_price": "",
        "alias": "",
        "alias_to": [],
        "base_display_symbol": p.base,
        "quote_display_symbol": p.quote,
        "view_only": false,
        "price_increment": p.quote_increment,
        "display_name": p.id.replace('-', "/"),
        "product_venue": "CBE",
        "approximate_quote_24h_volume": format!("{:.2}", p.volume_24h(t) * price),
    })
}

pub(crate) fn at_products(t: f64, ids: &[String]) -> Value {
    let list: Vec<Value> = PRODUCTS
        .iter()
        .filter(|p| ids.is_empty() || ids.iter().any(|id| id.eq_ignore_ascii_case(p.id)))
        .map(|p| at_product(p, t))
        .collect();
    json!({ "products": list, "num_products": list.len() })
}

pub(crate) fn at_ticker(p: &Product, t: f64, limit: usize) -> Value {
    let (bid, ask) = p.bid_ask(t);
    let trades: Vec<Value> = (0..limit.clamp(1, 100))
        .map(|i| {
            let at = t - i as f64 * 0.1;
            let side = if fnv64(format!("{}{i}", p.id).as_bytes()).is_multiple_of(2) {
                "BUY"
            } else {
                "SELL"
            };
            json!({
                "trade_id": Product::trade_id(at).to_string(),
                "product_id": p.id,
                "price": p.fmt_price(p.price(at)),
                "size": p.level_size(at, 0),
                "time": rfc3339(at),
                "side": side,
                "bid": "",
                "ask": "",
                "exchange": "",
            })
        })
        .collect();
    json!({
        "trades": trades,
        "best_bid": p.fmt_price(bid),
        "best_ask": p.fmt_price(ask),
    })
}

/// Advanced Trade granularity names and their length in seconds.
pub(crate) fn at_granularity(name: &str) -> Option<u64> {
    Some(match name {
        "ONE_MINUTE" => 60,
        "FIVE_MINUTE" => 300,
        "FIFTEEN_MINUTE" => 900,
        "THIRTY_MINUTE" => 1800,
        "ONE_HOUR" => 3600,
        "TWO_HOUR" => 7200,
        "SIX_HOUR" => 21_600,
        "ONE_DAY" => 86_400,
        _ => return None,
    })
}

pub(crate) fn at_candles(
    p: &Product,
    granularity: u64,
    start: Option<u64>,
    end: u64,
    limit: usize,
) -> Value {
    let candles: Vec<Value> = Product::candle_starts(granularity, end, start, limit)
        .into_iter()
        .map(|s| {
            let (o, h, l, c, v) = p.ohlcv(s, granularity);
            json!({
                "start": s.to_string(),
                "low": p.fmt_price(l),
                "high": p.fmt_price(h),
                "open": p.fmt_price(o),
                "close": p.fmt_price(c),
                "volume": format!("{v:.8}"),
            })
        })
        .collect();
    json!({ "candles": candles })
}

fn at_levels(p: &Product, t: f64, depth: usize, bid: bool) -> Vec<Value> {
    (0..depth)
        .map(|i| {
            let (price, size) = p.level(t, i, bid);
            json!({ "price": price, "size": size })
        })
        .collect()
}

pub(crate) fn at_pricebook(p: &Product, t: f64, depth: usize) -> Value {
    json!({
        "product_id": p.id,
        "bids": at_levels(p, t, depth, true),
        "asks": at_levels(p, t, depth, false),
        "time": rfc3339(t),
    })
}

pub(crate) fn at_product_book(p: &Product, t: f64, depth: usize) -> Value {
    let (bid, ask) = p.bid_ask(t);
    let mid = (bid + ask) / 2.0;
    json!({
        "pricebook": at_pricebook(p, t, depth),
        "last": p.fmt_price(p.price(t)),
        "mid_market": p.fmt_price(mid),
        "spread_bps": format!("{:.4}", (ask - bid) / mid * 10_000.0),
        "spread_absolute": p.fmt_price(ask - bid),
    })
}

pub(crate) fn at_best_bid_ask(t: f64, ids: &[String]) -> Value {
    let books: Vec<Value> = PRODUCTS
        .iter()
        .filter(|p| ids.is_empty() || ids.iter().any(|id| id.eq_ignore_ascii_case(p.id)))
        .map(|p| at_pricebook(p, t, 1))
        .collect();
    json!({ "pricebooks": books })
}

// ---- Exchange shapes (api.exchange.coinbase.com) ----

pub(crate) fn ex_product(p: &Product) -> Value {
    json!({
        "id": p.id,
        "base_currency": p.base,
        "quote_currency": p.quote,
        "quote_increment": p.quote_increment,
        "base_increment": p.base_increment,
        "display_name": p.id.replace('-', "/"),
        "min_market_funds": "1",
        "margin_enabled": false,
        "post_only": false,
        "limit_only": false,
        "cancel_only": false,
        "status": "online",
        "status_message": "",
        "trading_disabled": false,
        "fx_stablecoin": false,
        "max_slippage_percentage": "0.02000000",
        "auction_mode": false,
        "high_bid_limit_percentage": "",
    })
}

pub(crate) fn ex_products() -> Value {
    Value::Array(PRODUCTS.iter().map(ex_product).collect())
}

pub(crate) fn ex_ticker(p: &Product, t: f64) -> Value {
    let (bid, ask) = p.bid_ask(t);
    json!({
        "ask": p.fmt_price(ask),
        "bid": p.fmt_price(bid),
        "volume": format!("{:.8}", p.volume_24h(t)),
        "trade_id": Product::trade_id(t),
        "price": p.fmt_price(p.price(t)),
        "size": p.level_size(t, 0),
        "time": rfc3339(t),
        "rfq_volume": "0.000000",
        "conversions_volume": "0.000000",
    })
}

/// Level 1: best bid and ask; level 2: 50 aggregated levels; level 3:
/// individual orders (one per level here), as Exchange's `/book`.
pub(crate) fn ex_book(p: &Product, t: f64, level: u8) -> Value {
    let depth = if level == 1 { 1 } else { 50 };
    let side = |bid: bool| -> Vec<Value> {
        (0..depth)
            .map(|i| {
                let (price, size) = p.level(t, i, bid);
                if level == 3 {
                    let id = fnv64(format!("{}{price}{bid}", p.id).as_bytes());
                    json!([price, size, uuid_from(id, id.rotate_left(17))])
                } else {
                    json!([price, size, 1 + (i % 4)])
                }
            })
            .collect()
    };
    json!({
        "bids": side(true),
        "asks": side(false),
        "sequence": Product::trade_id(t) * 3,
        "auction_mode": false,
        "auction": null,
        "time": rfc3339(t),
    })
}

/// Exchange candles: `[time, low, high, open, close, volume]`, newest first.
pub(crate) fn ex_candles(p: &Product, granularity: u64, start: Option<u64>, end: u64) -> Value {
    let rows: Vec<Value> = Product::candle_starts(granularity, end, start, 300)
        .into_iter()
        .map(|s| {
            let (o, h, l, c, v) = p.ohlcv(s, granularity);
            json!([s, l, h, o, c, v])
        })
        .collect();
    Value::Array(rows)
}

pub(crate) fn ex_stats(p: &Product, t: f64) -> Value {
    let day_start = (t as u64).saturating_sub(86_400);
    let (o, h, l, c, _) = p.ohlcv(day_start, 86_400);
    json!({
        "open": p.fmt_price(o),
        "high": p.fmt_price(h),
        "low": p.fmt_price(l),
        "last": p.fmt_price(c),
        "volume": format!("{:.8}", p.volume_24h(t)),
        "volume_30day": format!("{:.8}", p.volume_24h(t) * 30.0),
        "rfq_volume_24hour": "0.000000",
        "rfq_volume_30day": "0.000000",
        "conversions_volume_24hour": "0.000000",
        "conversions_volume_30day": "0.000000",
    })
}

pub(crate) fn ex_time(t: f64) -> Value {
    json!({ "iso": rfc3339(t), "epoch": (t * 1000.0).round() / 1000.0 })
}

/// A UUID-shaped (version 4 layout) identifier from two hashes.
pub(crate) fn uuid_from(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500000Z");
        assert_eq!(rfc3339(1_700_000_000.0), "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn prices_stay_near_mid_and_candles_are_consistent() {
        let p = product("btc-usd").unwrap();
        let t = 1_700_000_000.0;
        let price = p.price(t);
        assert!((price / 65_000.0 - 1.0).abs() < 0.03);
        let (bid, ask) = p.bid_ask(t);
        assert!(bid < price && price < ask);
        let (o, h, l, c, v) = p.ohlcv(1_700_000_000 - 1_700_000_000 % 60, 60);
        assert!(l <= o.min(c) && h >= o.max(c) && v > 0.0);
        let starts = Product::candle_starts(60, 1_000_000, Some(999_000), 300);
        assert_eq!(starts.first(), Some(&(1_000_000 - 1_000_000 % 60)));
        assert!(starts.iter().all(|s| s % 60 == 0 && *s >= 999_000));
    }
}
