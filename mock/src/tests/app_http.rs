//! The App API (`/v2/...`) and the answers ccxt reads in `load_markets`,
//! over real sockets: shapes, the App API's own error shape, and the
//! budgets its calls spend.

use super::*;

/// A legacy key: the App API, like Advanced Trade, takes one without a JWT.
const LEGACY_KEY: (&str, &str) = ("CB-ACCESS-KEY", "app-key");

#[test]
fn app_api_answers_in_its_shapes_and_errors() {
    let mock = start(MockOptions::default());
    let fiat = get(&mock, "/v2/currencies", &[]).json();
    assert!(fiat["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "USD"));
    let crypto = get(&mock, "/v2/currencies/crypto", &[]).json();
    assert!(crypto["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["asset_id"].is_string() && c["type"] == "crypto"));
    let rates = get(&mock, "/v2/exchange-rates?currency=BTC", &[]).json();
    assert_eq!(rates["data"]["currency"], "BTC");
    assert!(rates["data"]["rates"]["USD"].is_string());
    let time = get(&mock, "/v2/time", &[]).json();
    assert!(time["data"]["epoch"].is_u64());

    // The App API's own error shape, for a bad value, an unknown path
    // and a missing credential.
    let bad = get(&mock, "/v2/exchange-rates?currency=XYZ", &[]);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["errors"][0]["id"], "invalid_request");
    let unknown = get(&mock, "/v2/nothing-here", &[]);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["errors"][0]["id"], "not_found");
    let anonymous = get(&mock, "/v2/accounts", &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["errors"][0]["id"], "authentication_error");

    let accounts = get(&mock, "/v2/accounts", &[LEGACY_KEY]).json();
    let data = accounts["data"].as_array().unwrap();
    assert!(data.iter().all(|a| a["mock_credential"] == "key:app-key"));
    let usd = data
        .iter()
        .find(|a| a["currency"]["code"] == "USD")
        .unwrap();
    let by_code = get(&mock, "/v2/accounts/usd", &[LEGACY_KEY]).json();
    assert_eq!(by_code["data"]["id"], usd["id"]);

    let stats = mock.stats();
    assert_eq!(stats.by_route["GET /v2/currencies"], 1);
    assert!(stats
        .max_admitted_in_1s
        .contains_key("advanced_private key:app-key"));
}

#[test]
fn load_markets_answers_spot_only_and_candles_stop_at_now() {
    let mock = start(MockOptions::default());
    let futures = get(
        &mock,
        "/api/v3/brokerage/market/products?product_type=FUTURE",
        &[],
    )
    .json();
    assert_eq!(futures["products"], json!([]));
    let spot = get(&mock, "/api/v3/brokerage/market/products", &[]).json();
    assert!(spot["num_products"].as_u64().unwrap() >= 3);

    let summary = get(
        &mock,
        "/api/v3/brokerage/transaction_summary",
        &[LEGACY_KEY],
    )
    .json();
    assert_eq!(summary["fee_tier"]["taker_fee_rate"], "0.008");

    // An end an hour ahead: no candle starts after now.
    let now = crate::market::unix_now() as u64;
    let target = format!(
        "/api/v3/brokerage/market/products/BTC-USD/candles?granularity=ONE_MINUTE&start={}&end={}",
        now - 600,
        now + 3600
    );
    let candles = get(&mock, &target, &[]).json();
    let starts: Vec<u64> = candles["candles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["start"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!starts.is_empty() && starts.len() <= 11, "{starts:?}");
    assert!(
        starts.iter().all(|&s| s + 600 >= now && s <= now),
        "{starts:?}"
    );

    let currencies = get(&mock, "/currencies", &[]).json();
    assert!(currencies
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "BTC" && c["details"]["type"] == "crypto"));
}

#[test]
fn exchange_candles_honour_iso_start_and_end() {
    let mock = start(MockOptions::default());
    let now = crate::market::unix_now() as u64;
    let (from, to) = (now - 3600, now - 1800);
    let iso = |t: u64| crate::market::rfc3339(t as f64);
    let target = format!(
        "/products/ETH-USD/candles?granularity=300&start={}&end={}",
        iso(from),
        iso(to)
    );
    let rows = get(&mock, &target, &[]).json();
    let starts: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect();
    assert!((6..=7).contains(&starts.len()), "{starts:?}");
    assert!(starts.iter().all(|&s| from <= s && s <= to && s % 300 == 0));
    // Newest first, as Exchange sends them.
    assert!(starts.windows(2).all(|w| w[0] > w[1]));
    let too_many = format!(
        "/products/ETH-USD/candles?granularity=60&start={}&end={now}",
        now - 400 * 60
    );
    assert_eq!(get(&mock, &too_many, &[]).status, 400);
    let bad = "/products/ETH-USD/candles?granularity=60&start=yesterday&end=today";
    assert_eq!(get(&mock, bad, &[]).status, 400);
}
