use proptest::prelude::*;

use super::*;
use crate::config::{Preset, UpstreamConfig};
use syncoord_core::config::ClassId;

use crate::http::h;

fn proxy() -> Proxy {
    Proxy::new(ProxyConfig::default()).unwrap()
}

fn get(p: &Proxy, target: &str) -> Result<Forward, Rejection> {
    p.route(None, "GET", target, &[], Vec::new())
}

#[test]
fn proxy_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Proxy>();
    assert_send_sync::<Forward>();
}

#[test]
fn listeners_name_their_upstream() {
    let mut c = ProxyConfig::default();
    c.upstreams[1].listen = Some("127.0.0.1:8788".into());
    let p = Proxy::new(c).unwrap();
    assert_eq!(
        p.listeners(),
        [
            (None, "127.0.0.1:8787"),
            (p.upstream_id(1), "127.0.0.1:8788")
        ]
    );
}

#[test]
fn origin_form_goes_to_the_default_upstream() {
    let f = get(&proxy(), "/api/v3/brokerage/market/products/BTC-USD?x=%20a").unwrap();
    assert_eq!(f.upstream.index(), 0);
    assert_eq!(
        f.outgoing.path_and_query,
        "/api/v3/brokerage/market/products/BTC-USD?x=%20a"
    );
    assert_eq!(f.request.path, "/api/v3/brokerage/market/products/BTC-USD");
    assert_eq!(f.request.query.as_deref(), Some("x=%20a"));
    assert_eq!(f.request.client, "anonymous");
}

#[test]
fn prefix_is_stripped_on_whole_segments() {
    let p = proxy();
    let f = get(&p, "/exchange/products/BTC-USD/ticker?a=1").unwrap();
    assert_eq!(
        (f.upstream.index(), f.outgoing.path_and_query.as_str()),
        (1, "/products/BTC-USD/ticker?a=1")
    );
    assert_eq!(get(&p, "/exchange").unwrap().outgoing.path_and_query, "/");
    assert_eq!(
        get(&p, "/exchange?x").unwrap().outgoing.path_and_query,
        "/?x"
    );
    // Not a whole segment: the default upstream.
    let f = get(&p, "/exchanges/x").unwrap();
    assert_eq!(
        (f.upstream.index(), f.outgoing.path_and_query.as_str()),
        (0, "/exchanges/x")
    );
}

#[test]
fn absolute_urls_in_all_three_spellings() {
    let p = proxy();
    for target in [
        "/https://api.exchange.coinbase.com/products?limit=2",
        "/HTTPS://API.Exchange.Coinbase.com:443/products?limit=2",
        "/https%3A%2F%2Fapi.exchange.coinbase.com%2Fproducts%3Flimit%3D2",
        "https://api.exchange.coinbase.com/products?limit=2",
    ] {
        let f = get(&p, target).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(f.upstream.index(), 1, "{target}");
        assert_eq!(f.outgoing.path_and_query, "/products?limit=2", "{target}");
    }
    // Percent-encoding inside the encoded URL survives one decode.
    let f = get(
        &p,
        "/https%3A%2F%2Fapi.coinbase.com%2Fapi%2Fv3%3Fq%3Da%2520b",
    )
    .unwrap();
    assert_eq!(f.outgoing.path_and_query, "/api/v3?q=a%20b");
    let f = get(&p, "/https://api.coinbase.com").unwrap();
    assert_eq!(
        (f.upstream.index(), f.outgoing.path_and_query.as_str()),
        (0, "/")
    );
}

#[test]
fn unknown_hosts_are_refused_never_proxied() {
    let p = proxy();
    for target in [
        "/https://evil.example/api",
        "/http://api.coinbase.com/api",
        "/https://api.coinbase.com:8443/api",
        "https://api.coinbase.com.evil.example/",
        "/https%3A%2F%2Fevil.example%2F",
    ] {
        let e = get(&p, target).unwrap_err();
        assert_eq!(
            (e.status(), e.kind().as_str()),
            (403, "host_not_configured"),
            "{target}: {e}"
        );
    }
    // A dedicated listener fronts its own upstream only.
    let e = p
        .route(
            p.upstream_id(1),
            "GET",
            "/https://api.coinbase.com/x",
            &[],
            vec![],
        )
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert!(e.message().contains("only upstream `exchange`"), "{e}");
    let f = p
        .route(p.upstream_id(1), "GET", "/exchange/x", &[], vec![])
        .unwrap();
    assert_eq!(
        (f.upstream.index(), f.outgoing.path_and_query.as_str()),
        (1, "/exchange/x")
    );
    assert_eq!(
        p.route(Some(UpstreamId(7)), "GET", "/", &[], vec![])
            .unwrap_err()
            .status(),
        500
    );
}

#[test]
fn base_paths_are_matched_and_stripped() {
    let mut c = ProxyConfig::single_upstream("http://127.0.0.1:9000/v1");
    c.upstreams.push(UpstreamConfig {
        prefix: Some("/other".into()),
        ..UpstreamConfig::preset("other", "http://127.0.0.1:9001", Preset::None)
    });
    let p = Proxy::new(c).unwrap();
    let f = get(&p, "/http://127.0.0.1:9000/v1/a?b").unwrap();
    assert_eq!(
        (f.upstream.index(), f.outgoing.path_and_query.as_str()),
        (0, "/a?b")
    );
    assert_eq!(
        get(&p, "/http://127.0.0.1:9000/v2/a").unwrap_err().status(),
        403
    );
    assert_eq!(
        get(&p, "/http://127.0.0.1:9000/v1x").unwrap_err().status(),
        403
    );
    let f = get(&p, "/http://127.0.0.1:9001/z").unwrap();
    assert_eq!(f.upstream.index(), 1);
}

#[test]
fn bad_targets_say_what_is_wrong() {
    let p = proxy();
    let cases = [
        ("", "empty"),
        ("api/v3", "must be a path"),
        ("*", "must be a path"),
        ("api.coinbase.com:443", "must be a path"),
        ("/a b", "a space"),
        ("/a\r\nX: y", "CR"),
        ("/a\0", "NUL"),
        ("/caf\u{e9}", "non-ASCII"),
        ("/a/../b", "`..`"),
        ("/a/%2e%2E/b", "`..`"),
        ("/exchange/../api/v3/brokerage/orders", "`..`"),
        ("/a/./b", "`.`"),
        ("/a%2Fb", "encoded `/`"),
        ("/a%5cb", "encoded `/` or `\\`"),
        ("/a\\b", "`\\`"),
        ("/a%zz", "invalid percent-encoding"),
        ("/a%4", "invalid percent-encoding"),
        ("/a#frag", "fragment"),
        ("/api/v3/brokerage/market/products<x", "`<` at byte 33"),
        ("/a`b", "``` at byte 2"),
        ("/a>b", "`>`"),
        ("/a?q=\"x\"", "`\"`"),
        ("/a?q={}", "`{`"),
        ("/a?q=|", "`|`"),
        ("/a?q=^", "`^`"),
        ("/a?q=\\", "`\\`"),
        ("/https://api.coinbase.com/a<b", "`<`"),
        (
            "/https%3A%2F%2Fapi.coinbase.com%2F%ZZ",
            "invalid percent-encoding",
        ),
        ("/https%3A%2F%2Fapi.coinbase.com%2F%0D%0A", "CR"),
        ("/https%3A%2F%2Fapi.coinbase.com%2F%FF", "UTF-8"),
        ("/https://user@api.coinbase.com/", "user info"),
        ("/https://api.coinbase.com/a/../../b", "`..`"),
    ];
    for (target, says) in cases {
        let e = get(&p, target).unwrap_err();
        assert_eq!(e.status(), 400, "{target:?}: {e}");
        assert!(e.message().contains(says), "{target:?}: {e}");
    }
}

#[test]
fn methods_and_headers_are_checked() {
    let p = proxy();
    for m in ["", "GE T", "G\r\nET", "GET/", &"A".repeat(33)] {
        let e = p.route(None, m, "/", &[], vec![]).unwrap_err();
        assert_eq!(
            (e.status(), e.kind().as_str()),
            (400, "bad_method"),
            "{m:?}"
        );
    }
    let f = p.route(None, "get", "/", &[], vec![]).unwrap();
    assert_eq!(
        (f.outgoing.method.as_str(), f.request.method.as_str()),
        ("GET", "GET")
    );
    let e = p
        .route(None, "CONNECT", "api.coinbase.com:443", &[], vec![])
        .unwrap_err();
    assert_eq!(e.status(), 405);
    for bad in [
        h(&[("X-A", "a\r\nb")]),
        h(&[("X A", "v")]),
        h(&[("", "v")]),
        h(&[("X", "a\0")]),
    ] {
        let e = p.route(None, "GET", "/", &bad, vec![]).unwrap_err();
        assert_eq!(
            (e.status(), e.kind().as_str()),
            (400, "bad_header"),
            "{bad:?}"
        );
    }
    let e = p.route(None, "POST", "/metrics", &[], vec![]).unwrap_err();
    assert_eq!(e.status(), 405);
    // A credential header twice with different values: which one upstream
    // authenticates is unknowable, so the cache could file one key's
    // private answer under the other's identity.
    for bad in [
        h(&[("CB-ACCESS-KEY", "k1"), ("cb-access-key", "k2")]),
        h(&[("Authorization", "Bearer a"), ("authorization", "Bearer b")]),
    ] {
        let e = p
            .route(None, "GET", "/api/v3/brokerage/accounts", &bad, vec![])
            .unwrap_err();
        assert_eq!(
            (e.status(), e.kind().as_str()),
            (400, "ambiguous_credential"),
            "{bad:?}"
        );
    }
    let same = h(&[("CB-ACCESS-KEY", "k1"), ("CB-ACCESS-KEY", "k1")]);
    assert!(p
        .route(None, "GET", "/api/v3/brokerage/accounts", &same, vec![])
        .is_ok());
}

#[test]
fn client_priority_and_credential() {
    let p = proxy();
    let f = p
        .route(
            None,
            "GET",
            "/exchange/accounts",
            &h(&[
                ("X-Syncoord-Client", " bot 1\u{1}<script> "),
                ("x-syncoord-priority", "Trading"),
                ("CB-ACCESS-KEY", "k1"),
            ]),
            vec![],
        )
        .unwrap();
    assert_eq!(f.request.client, "bot_1__script_");
    assert_eq!(f.request.priority, Some(ClassId(0)));
    let k1 = crate::identity_of("key:k1", &p.config().upstreams[1].coordination.credential);
    assert_eq!(f.request.credential.as_ref(), Some(&k1));
    assert!(k1.as_str().starts_with("id:"), "never the key name: {k1:?}");
    // Without a client header the credential names the client.
    let f = p
        .route(
            None,
            "GET",
            "/exchange/accounts",
            &h(&[("CB-ACCESS-KEY", "k1")]),
            vec![],
        )
        .unwrap();
    assert_eq!(f.request.client, k1.as_str());
    let long = "x".repeat(500);
    let f = p
        .route(
            None,
            "GET",
            "/",
            &h(&[("X-Syncoord-Client", &long)]),
            vec![],
        )
        .unwrap();
    assert_eq!(f.request.client.len(), MAX_CLIENT_LEN);
    let e = p
        .route(
            None,
            "GET",
            "/",
            &h(&[("X-Syncoord-Priority", "urgent")]),
            vec![],
        )
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(
        e.message().contains("trading, account, market, analysis"),
        "{e}"
    );
}

#[test]
fn outgoing_drops_hop_by_hop_and_our_headers() {
    let p = proxy();
    let headers = h(&[
        ("Host", "localhost:8787"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic x"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "2"),
        ("Upgrade", "h2c"),
        ("X-Syncoord-Client", "b"),
        ("Authorization", "Bearer t"),
        ("Content-Type", "application/json"),
        ("cb-access-sign", "s"),
    ]);
    let f = p
        .route(
            None,
            "POST",
            "/api/v3/brokerage/orders",
            &headers,
            b"{}".to_vec(),
        )
        .unwrap();
    assert_eq!(
        f.outgoing.headers,
        h(&[
            ("Authorization", "Bearer t"),
            ("Content-Type", "application/json"),
            ("cb-access-sign", "s"),
        ])
    );
    assert_eq!(f.outgoing.body, b"{}");
    // The core selects `Vary`'d answers by exactly what goes upstream.
    assert_eq!(f.request.headers.fields(), f.outgoing.headers.as_slice());
    let f = p.route(None, "GET", "/", &[], b"ignored".to_vec()).unwrap();
    assert!(f.outgoing.body.is_empty());
    let f = p
        .route(None, "HEAD", "/", &[], b"ignored".to_vec())
        .unwrap();
    assert!(f.outgoing.body.is_empty());
}

#[test]
fn redaction_hides_secrets() {
    let shown = redact(&h(&[
        ("Authorization", "Bearer secret"),
        ("CB-ACCESS-KEY", "k"),
        ("CB-ACCESS-PASSPHRASE", "p"),
        ("Cookie", "c"),
        ("X-Api-Key", "k"),
        ("X-Signature", "s"),
        ("Accept", "*/*"),
        ("X-Syncoord-Client", "bot"),
    ]));
    let visible: Vec<&str> = shown
        .iter()
        .filter(|(_, v)| v != "[redacted]")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(visible, ["Accept", "X-Syncoord-Client"]);
    assert_eq!(shown.len(), 8);
}

#[test]
fn shards_follow_route_keying() {
    let p = proxy();
    let key = |target: &str, headers: &[(&str, &str)]| {
        let f = p.route(None, "GET", target, &h(headers), vec![]).unwrap();
        p.shard(&f).0
    };
    assert_eq!(
        key("/api/v3/brokerage/market/products", &[]),
        "advanced/global"
    );
    let id =
        |i: usize| crate::identity_of("key:k", &p.config().upstreams[i].coordination.credential);
    assert_eq!(
        key("/api/v3/brokerage/accounts", &[("CB-ACCESS-KEY", "k")]),
        format!("advanced/cred/{}", id(0).as_str())
    );
    assert_eq!(
        key("/api/v3/brokerage/unknown", &[]),
        "advanced/cred/anonymous"
    );
    assert_eq!(key("/exchange/products/BTC-USD", &[]), "exchange/global");
    assert_eq!(
        key("/exchange/fills", &[("CB-ACCESS-KEY", "k")]),
        format!("exchange/cred/{}", id(1).as_str())
    );
}

#[test]
fn config_errors_stop_construction() {
    let mut c = ProxyConfig::default();
    c.upstreams[0].url = "nope".into();
    let e = Proxy::new(c).err().unwrap();
    assert_eq!(e.0[0].field, "upstreams[0].url");
    let mut c = ProxyConfig::default();
    c.upstreams[0].prefix = Some("/exchange".into());
    // No default upstream left: unprefixed paths are 404.
    c.upstreams[1].prefix = Some("/ex".into());
    let p = Proxy::new(c).unwrap();
    let e = get(&p, "/api").unwrap_err();
    assert_eq!(e.status(), 404);
    assert!(e.message().contains("/exchange, /ex"), "{e}");
}

proptest! {
    #[test]
    fn arbitrary_targets_never_panic(target in ".{0,80}", method in "[A-Za-z\\r\\n ]{0,8}") {
        let p = proxy();
        if let Ok(f) = p.route(None, &method, &target, &[], vec![]) {
            // Whatever is forwarded is a clean origin-form path.
            prop_assert!(f.outgoing.path_and_query.starts_with('/'));
            prop_assert!(f.outgoing.path_and_query.bytes().all(|b| b.is_ascii_graphic()));
        }
    }

    #[test]
    fn url_like_targets_never_panic(
        scheme in "(https?|HTTP)(://|%3A%2F%2F|%3a%2f%2f)",
        host in "[a-z.:\\[\\]0-9%@]{0,20}",
        rest in "[/?#%a-z0-9.]{0,20}",
        lead in proptest::bool::ANY,
    ) {
        let target = format!("{}{scheme}{host}{rest}", if lead { "/" } else { "" });
        let p = proxy();
        let _ = p.route(None, "GET", &target, &[], vec![]);
        let _ = p.route(p.upstream_id(0), "GET", &target, &[], vec![]);
    }

    #[test]
    fn arbitrary_headers_never_panic(
        names in proptest::collection::vec(".{0,12}", 0..6),
        values in proptest::collection::vec(".{0,24}", 0..6),
    ) {
        let headers: Vec<(String, String)> = names.into_iter().zip(values).collect();
        let p = proxy();
        let _ = p.route(None, "POST", "/exchange/orders", &headers, b"x".to_vec());
        let _ = redact(&headers);
    }
}

fn jwt(sub: &str) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        e.encode(r#"{"alg":"ES256"}"#),
        e.encode(format!(r#"{{"sub":"{sub}"}}"#))
    )
}

/// Issue 9, item 3: `CB-ACCESS-KEY: alice` with mallory's JWT was filed as
/// `key:alice` while Advanced Trade answers for the JWT.
#[test]
fn two_credentials_on_a_private_route_are_refused() {
    let p = proxy();
    let mallory = format!("Bearer {}", jwt("organizations/o/apiKeys/mallory"));
    let both = h(&[("CB-ACCESS-KEY", "alice"), ("Authorization", &mallory)]);
    for target in ["/api/v3/brokerage/accounts", "/exchange/accounts"] {
        let err = p.route(None, "GET", target, &both, vec![]).unwrap_err();
        assert_eq!(
            (err.status(), err.kind().as_str()),
            (400, "ambiguous_credential"),
            "{target}"
        );
        assert!(err.message().contains("send one"), "{}", err.message());
    }
    // On a public, shared route with a global budget, the identity does
    // not count: forwarded as sent.
    assert!(p
        .route(
            None,
            "GET",
            "/api/v3/brokerage/market/products",
            &both,
            vec![]
        )
        .is_ok());
    // Each credential alone is identified by what the upstream reads.
    let at = &p.config().upstreams[0].coordination.credential;
    let f = p
        .route(
            None,
            "GET",
            "/api/v3/brokerage/accounts",
            &h(&[("authorization", &mallory)]),
            vec![],
        )
        .unwrap();
    assert_eq!(
        f.request.credential,
        Some(crate::identity_of(
            "jwt:organizations/o/apiKeys/mallory",
            at
        ))
    );
}

/// Issue 9, item 4: a credential header listed in `Connection` was read
/// for the identity and then stripped as hop-by-hop.
#[test]
fn connection_naming_a_credential_header_is_refused() {
    let p = proxy();
    let t = format!("Bearer {}", jwt("organizations/o/apiKeys/k"));
    for listed in [
        "CB-ACCESS-KEY",
        "close, cb-access-key",
        "Authorization",
        "keep-alive,\tAUTHORIZATION",
        "CB-ACCESS-SIGN",
        "X-Api-Token",
    ] {
        let headers = h(&[
            ("Connection", listed),
            ("CB-ACCESS-KEY", "alice"),
            ("Authorization", &t),
        ]);
        for target in [
            "/api/v3/brokerage/accounts",
            "/exchange/accounts",
            "/api/v3/brokerage/market/products",
        ] {
            let err = p.route(None, "GET", target, &headers, vec![]).unwrap_err();
            assert_eq!(
                (err.status(), err.kind().as_str()),
                (400, "credential_hop_by_hop"),
                "{listed} {target}"
            );
        }
    }
    // Ordinary hop-by-hop names are fine.
    let ok = h(&[
        ("Connection", "close, X-Trace"),
        ("X-Trace", "1"),
        ("Authorization", &t),
    ]);
    let f = p
        .route(None, "GET", "/api/v3/brokerage/accounts", &ok, vec![])
        .unwrap();
    assert!(f.outgoing.headers.iter().all(|(n, _)| n != "X-Trace"));
}

/// The identity is read from the headers as forwarded: a credential
/// header that is not forwarded cannot name the account.
#[test]
fn identity_comes_from_forwarded_headers_only() {
    let p = proxy();
    let f = p
        .route(
            None,
            "GET",
            "/api/v3/brokerage/unknown",
            &h(&[
                ("CB_ACCESS_KEY", "alice"),
                ("Proxy-Authorization", "Bearer x"),
            ]),
            vec![],
        )
        .unwrap();
    assert_eq!(f.request.credential, None);
    assert!(f.outgoing.headers.is_empty(), "{:?}", f.outgoing.headers);
}

/// Underscored names are dropped unless the upstream allows them (nginx's
/// `underscores_in_headers`).
#[test]
fn underscored_header_names_are_not_forwarded_by_default() {
    let headers = h(&[
        ("X_Custom", "1"),
        ("X-Custom", "2"),
        ("CB_ACCESS_KEY", "alice"),
    ]);
    let f = get_with(&proxy(), "/api/v3/brokerage/market/products", &headers);
    assert_eq!(f.outgoing.headers, h(&[("X-Custom", "2")]));
    let mut c = ProxyConfig::default();
    c.upstreams[0].underscores_in_headers = true;
    let f = get_with(
        &Proxy::new(c).unwrap(),
        "/api/v3/brokerage/market/products",
        &headers,
    );
    assert_eq!(f.outgoing.headers, headers);
}

fn get_with(p: &Proxy, target: &str, headers: &[(String, String)]) -> Forward {
    p.route(None, "GET", target, headers, vec![]).unwrap()
}

/// Issue 9, item 7: a route upstream authenticates answers an anonymous
/// request 401 itself, even when its cache is shared.
#[test]
fn anonymous_requests_on_authenticated_routes_get_401() {
    let p = proxy();
    for target in [
        "/api/v3/brokerage/products",
        "/api/v3/brokerage/products/BTC-USD",
        "/api/v3/brokerage/best_bid_ask?product_ids=BTC-USD",
        "/api/v3/brokerage/accounts",
        "/exchange/accounts",
        "/exchange/fills",
    ] {
        let err = get(&p, target).unwrap_err();
        assert_eq!(
            (err.status(), err.kind().as_str()),
            (401, "credential_required"),
            "{target}"
        );
        let r = err.into_response();
        assert_eq!(r.status, 401);
        assert_eq!(r.header("x-syncoord-error"), Some("credential_required"));
    }
    for target in [
        "/api/v3/brokerage/market/products",
        "/api/v3/brokerage/time",
        "/exchange/products/BTC-USD/ticker",
        "/exchange/time",
    ] {
        assert!(get(&p, target).is_ok(), "{target}");
    }
    let t = format!("Bearer {}", jwt("organizations/o/apiKeys/k"));
    assert!(p
        .route(
            None,
            "GET",
            "/api/v3/brokerage/products",
            &h(&[("Authorization", &t)]),
            vec![]
        )
        .is_ok());
}

/// Issue 9, item 6: what the core keys on is what is forwarded.
#[test]
fn the_request_the_core_keys_is_the_target_forwarded() {
    let p = proxy();
    for target in [
        "/api/v3/brokerage/market/products",
        "//api/v3/brokerage/market/products",
        "/api/v3/brokerage/market/products/",
        "/api/v3/brokerage/market/products?",
        "/api/v3/brokerage/market/products?b=1&a=2",
    ] {
        let f = get(&p, target).unwrap();
        let keyed = match &f.request.query {
            Some(q) => format!("{}?{q}", f.request.path),
            None => f.request.path.clone(),
        };
        assert_eq!(keyed, f.outgoing.path_and_query, "{target}");
        assert_eq!(f.outgoing.path_and_query, target);
    }
}

/// `--upstream URL`: both presets at the mock, each answering for its real
/// host, so clients signing for the real hosts reach the mock.
fn mocked() -> Proxy {
    Proxy::new(ProxyConfig::presets_at("http://127.0.0.1:9000")).unwrap()
}

#[test]
fn origins_route_the_real_hosts_to_the_configured_url() {
    let p = mocked();
    for target in [
        "https://api.coinbase.com/api/v3/brokerage/market/products?limit=1",
        "/https://api.coinbase.com/api/v3/brokerage/market/products?limit=1",
        "/https%3A%2F%2Fapi.coinbase.com%2Fapi%2Fv3%2Fbrokerage%2Fmarket%2Fproducts%3Flimit%3D1",
        "https://API.Coinbase.com:443/api/v3/brokerage/market/products?limit=1",
    ] {
        let f = get(&p, target).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(
            (f.upstream.index(), f.outgoing.path_and_query.as_str()),
            (0, "/api/v3/brokerage/market/products?limit=1"),
            "{target}"
        );
    }
    let f = get(
        &p,
        "https://api.exchange.coinbase.com/products/BTC-USD/ticker",
    )
    .unwrap();
    assert_eq!(
        (f.upstream.index(), f.outgoing.path_and_query.as_str()),
        (1, "/products/BTC-USD/ticker")
    );
    // The prefix still works; the mock's own address is not an origin
    // any more (origins replace the url as what absolute URLs must name).
    assert_eq!(get(&p, "/exchange/products").unwrap().upstream.index(), 1);
    let e = get(&p, "http://127.0.0.1:9000/api/v3/brokerage/accounts").unwrap_err();
    assert_eq!(
        (e.status(), e.kind().as_str()),
        (403, "host_not_configured")
    );
    assert!(e.message().contains("https://api.coinbase.com"), "{e}");
    let e = get(&p, "https://evil.example/api/v3/brokerage/accounts").unwrap_err();
    assert_eq!(e.status(), 403);
    // http:// of a host that is only configured as https:// is another origin.
    assert_eq!(
        get(&p, "http://api.coinbase.com/api/v3/brokerage/accounts")
            .unwrap_err()
            .status(),
        403
    );
}

#[test]
fn connect_is_allowed_only_to_https_origins() {
    let p = mocked();
    let t = p.connect("api.coinbase.com:443").unwrap();
    assert_eq!(t.host, "api.coinbase.com");
    assert_eq!(t.base, "https://api.coinbase.com");
    assert_eq!(
        p.connect("API.EXCHANGE.coinbase.com:443").unwrap().base,
        "https://api.exchange.coinbase.com"
    );
    for refused in [
        "api.coinbase.com:444",
        "api.coinbase.com:80",
        "example.com:443",
        "127.0.0.1:9000",
    ] {
        let e = p.connect(refused).unwrap_err();
        assert_eq!(
            (e.status(), e.kind().as_str()),
            (403, "host_not_configured"),
            "{refused}"
        );
    }
    for bad in [
        "api.coinbase.com",
        "api.coinbase.com:",
        ":443",
        "a b:443",
        "h:44x3",
    ] {
        assert_eq!(p.connect(bad).unwrap_err().status(), 400, "{bad}");
    }
    // Default config: the real hosts are the urls themselves.
    assert!(proxy().connect("api.coinbase.com:443").is_ok());
    // A plain-http upstream is not something a CONNECT can reach.
    let plain = Proxy::new(ProxyConfig::single_upstream("http://127.0.0.1:9000")).unwrap();
    assert_eq!(plain.connect("127.0.0.1:9000").unwrap_err().status(), 403);
    // CONNECT through route() (a host that does not intercept): 405.
    assert_eq!(
        p.route(None, "CONNECT", "api.coinbase.com:443", &[], vec![])
            .unwrap_err()
            .status(),
        405
    );
}

#[test]
fn origins_are_checked() {
    let mut c = ProxyConfig::presets_at("http://127.0.0.1:9000");
    c.upstreams[1].origins = vec!["https://api.coinbase.com".into(), "ftp://x".into()];
    let e = Proxy::new(c).unwrap_err().to_string();
    assert!(
        e.contains("upstreams[1].origins[0]")
            && e.contains("also an origin of upstream `advanced`"),
        "{e}"
    );
    assert!(e.contains("upstreams[1].origins[1]"), "{e}");
}
