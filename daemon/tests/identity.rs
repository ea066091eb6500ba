//! End-to-end tests of credential identity and the cache (issue 9, the
//! data half): the real daemon in front of the real mock upstream, which
//! authenticates what Coinbase does (Advanced Trade: the Bearer JWT;
//! Exchange: CB-ACCESS-KEY) and names the account in every private answer
//! (`mock_credential`), so a cross-account answer is visible.

use base64::Engine;
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

mod common;
use common::{agent, all_stats, get};

/// The default two upstreams (Advanced Trade, Exchange under `/exchange`),
/// both in front of `mock`, plus `extra` TOML.
fn daemon(mock: &MockUpstream, extra: &str) -> (Daemon, String) {
    let text = common::two_upstreams_toml(mock, extra);
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    (daemon, base)
}

fn mock() -> MockUpstream {
    MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .expect("mock starts")
}

/// A JWT shaped as Advanced Trade's (signature not checked by anyone).
fn bearer(sub: &str, nonce: u32) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "Bearer {}.{}.sig",
        e.encode(r#"{"alg":"ES256","typ":"JWT"}"#),
        e.encode(format!(r#"{{"sub":"{sub}","nonce":"{nonce}"}}"#))
    )
}

const ACCOUNTS: &str = "/api/v3/brokerage/accounts";
const MALLORY: &str = "organizations/o/apiKeys/mallory";
const ALICE_SUB: &str = "organizations/o/apiKeys/alice";

/// Item 3: `CB-ACCESS-KEY: alice` with mallory's JWT used to be filed as
/// `key:alice` while Advanced Trade answered for mallory; alice's next
/// request then got mallory's balances.
#[test]
fn mixed_credentials_on_a_private_route_are_refused_and_never_cross_accounts() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let a = agent();
    let mallory = bearer(MALLORY, 1);
    let both = [
        ("CB-ACCESS-KEY", "alice"),
        ("Authorization", mallory.as_str()),
    ];
    let r = get(&a, &format!("{base}{ACCOUNTS}"), &both);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error.as_deref(), Some("ambiguous_credential"));
    // Alice alone gets alice's data, never mallory's.
    let r = get(
        &a,
        &format!("{base}{ACCOUNTS}"),
        &[("CB-ACCESS-KEY", "alice")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("key:alice") && !r.body.contains("mallory"),
        "{}",
        r.body
    );
    // The same on Exchange, which reads CB-ACCESS-KEY.
    let r = get(&a, &format!("{base}/exchange/accounts"), &both);
    assert_eq!(
        (r.status, r.error.as_deref()),
        (400, Some("ambiguous_credential"))
    );
    assert_eq!(
        mock.stats().by_credential.get(&format!("jwt:{MALLORY}")),
        None
    );
}

/// Item 4: `Connection: CB-ACCESS-KEY` made the daemon strip the key it
/// had read the identity from; upstream answered for the JWT.
#[test]
fn connection_naming_a_credential_header_is_refused() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let a = agent();
    let mallory = bearer(MALLORY, 1);
    for listed in ["CB-ACCESS-KEY", "Authorization", "close, cb-access-key"] {
        let r = get(
            &a,
            &format!("{base}/exchange/accounts"),
            &[
                ("Connection", listed),
                ("CB-ACCESS-KEY", "alice"),
                ("Authorization", mallory.as_str()),
            ],
        );
        assert_eq!(r.status, 400, "{listed}: {}", r.body);
        assert_eq!(
            r.error.as_deref(),
            Some("credential_hop_by_hop"),
            "{listed}"
        );
    }
    assert_eq!(mock.stats().requests_total, 0, "nothing reached upstream");
}

/// Item 5: `BEARER`, `bearer` and `Bearer<TAB>` are one scheme, so one
/// identity: one cache entry and one limiter bucket for one key.
#[test]
fn the_bearer_scheme_is_case_insensitive_end_to_end() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let a = agent();
    let url = format!("{base}{ACCOUNTS}");
    let spellings = ["Bearer ", "BEARER ", "bearer ", "BeArEr ", "Bearer\t"];
    for (i, scheme) in spellings.iter().enumerate() {
        let token = bearer(ALICE_SUB, i as u32);
        let value = token.replacen("Bearer ", scheme, 1);
        let r = get(&a, &url, &[("Authorization", value.as_str())]);
        assert_eq!(r.status, 200, "{scheme:?}: {}", r.body);
        let want = if i == 0 { "miss" } else { "hit" };
        assert_eq!(r.cache.as_deref(), Some(want), "{scheme:?}");
    }
    assert_eq!(mock.stats().requests_total, 1);
    let stats = all_stats(&base);
    let buckets = stats["upstreams"][0]["stats"]["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter(|b| b["scope"] == "private")
        .count();
    assert_eq!(buckets, 1, "one key, one bucket: {stats}");
}

/// Item 5, as the probe measured it: 90 concurrent orders of one key, its
/// `Authorization` scheme spelled five ways, against the mock's Advanced
/// Trade private limit (30/s, burst 30). One key is one bucket, paced
/// under the limit, so upstream answers no 429 (the probe saw 54-60 when
/// each spelling was an identity of its own).
#[test]
fn ninety_concurrent_orders_of_one_key_in_five_spellings_get_no_429() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let url = format!("{base}/api/v3/brokerage/orders");
    let spellings = ["Bearer ", "BEARER ", "bearer ", "BeArEr ", "Bearer\t"];
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..90u32)
            .map(|i| {
                let url = url.as_str();
                let scheme = spellings[i as usize % spellings.len()];
                s.spawn(move || {
                    let token = bearer(ALICE_SUB, 1000 + i);
                    let value = token.replacen("Bearer ", scheme, 1);
                    let body = format!(
                        r#"{{"client_order_id":"o-{i}","product_id":"BTC-USD","side":"BUY","order_configuration":{{"market_market_ioc":{{"quote_size":"10"}}}}}}"#
                    );
                    agent()
                        .post(url)
                        .header("Authorization", &value)
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes())
                        .map(|r| r.status().as_u16())
                        .unwrap_or_else(|e| panic!("order {i}: {e}"))
                })
            })
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("caller"))
            .collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let upstream = mock.stats();
    assert_eq!(upstream.rate_limited, 0, "upstream 429s: {upstream:?}");
    assert_eq!(upstream.requests_total, 90);
}

/// Item 6: `//x`, `/x` and `/x/` reach upstream as different targets, and
/// so do reordered queries: no shared entry.
#[test]
fn cache_entries_follow_the_forwarded_target() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let a = agent();
    let p = "/api/v3/brokerage/market/products/BTC-USD/ticker";
    let first = get(&a, &format!("{base}{p}?limit=1&x=2"), &[]);
    assert_eq!((first.status, first.cache.as_deref()), (200, Some("miss")));
    let again = get(&a, &format!("{base}{p}?limit=1&x=2"), &[]);
    assert_eq!(again.cache.as_deref(), Some("hit"));
    for other in [
        format!("{p}/?limit=1&x=2"),
        format!("/{p}?limit=1&x=2"),
        format!("{p}?x=2&limit=1"),
        format!("{p}?limit=1&x=2&"),
    ] {
        let r = get(&a, &format!("{base}{other}"), &[]);
        assert_ne!(r.cache.as_deref(), Some("hit"), "{other}: shared an entry");
    }
}

/// Item 7: an anonymous request on a route Coinbase authenticates got the
/// answer another bot's JWT paid for; now it is our own 401, without an
/// upstream call.
#[test]
fn anonymous_requests_on_authenticated_routes_get_our_401() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let a = agent();
    let url = format!("{base}/api/v3/brokerage/products/BTC-USD");
    let token = bearer(ALICE_SUB, 1);
    let r = get(&a, &url, &[("Authorization", token.as_str())]);
    assert_eq!(r.status, 200, "{}", r.body);
    let calls = mock.stats().requests_total;
    let r = get(&a, &url, &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.error.as_deref(), Some("credential_required"));
    assert_eq!(r.cache, None);
    assert_eq!(mock.stats().requests_total, calls, "no upstream call");
    // Public market data stays anonymous.
    let r = get(&a, &format!("{base}/exchange/products/BTC-USD/ticker"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Item 8: stats and metrics published every bot's key name, which under
/// the trust model is all one needs to read another bot's cache.
#[test]
fn stats_and_metrics_never_show_key_names() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let shown = traffic_then_stats(&base);
    for shown in &shown {
        assert!(shown.contains("id:"), "{shown}");
    }
}

/// Item 8, with operator-configured labels.
#[test]
fn stats_and_metrics_show_configured_labels() {
    let mock = mock();
    let extra =
        format!("[upstreams.coordination.credential.aliases]\n\"{ALICE_SUB}\" = \"alice-bot\"\n");
    let (_daemon, base) = daemon(&mock, &extra);
    for shown in traffic_then_stats(&base) {
        assert!(shown.contains("name:alice-bot"), "{shown}");
        assert!(shown.contains("id:"), "the others keep their hash: {shown}");
    }
}

/// Calls by alice and mallory (JWTs) and bob (an Exchange key); the stats
/// JSON and the metrics text after them, checked to hold no key name.
fn traffic_then_stats(base: &str) -> [String; 2] {
    let a = agent();
    let alice = bearer(ALICE_SUB, 1);
    let mallory = bearer(MALLORY, 1);
    for token in [&alice, &mallory] {
        let r = get(
            &a,
            &format!("{base}{ACCOUNTS}"),
            &[("Authorization", token.as_str())],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = get(
        &a,
        &format!("{base}/exchange/accounts"),
        &[("CB-ACCESS-KEY", "bob-key-id")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let stats = get(&a, &format!("{base}/api/v1/sync-coordination/stats"), &[]).body;
    let metrics = get(&a, &format!("{base}/metrics"), &[]).body;
    for shown in [&stats, &metrics] {
        for secret in ["apiKeys", "mallory", "bob-key-id", "key:", "jwt:"] {
            assert!(!shown.contains(secret), "`{secret}` shown:\n{shown}");
        }
    }
    [stats, metrics]
}

/// Header names with `_` are not forwarded unless the upstream says so.
#[test]
fn underscored_header_names_are_not_forwarded_by_default() {
    let mock = mock();
    let (_daemon, base) = daemon(&mock, "");
    let a = agent();
    let r = get(
        &a,
        &format!("{base}/api/v3/brokerage/market/__echo/u"),
        &[("X_Custom", "1"), ("X-Custom", "2")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let echo: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let names: Vec<String> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(names.contains(&"x-custom".to_owned()), "{names:?}");
    assert!(!names.contains(&"x_custom".to_owned()), "{names:?}");
    drop(_daemon);
    let (_daemon, base) = daemon(&mock, "underscores_in_headers = true\n");
    let r = get(
        &a,
        &format!("{base}/api/v3/brokerage/market/__echo/u2"),
        &[("X_Custom", "1")],
    );
    assert!(
        r.body.to_ascii_lowercase().contains("x_custom"),
        "{}",
        r.body
    );
}
