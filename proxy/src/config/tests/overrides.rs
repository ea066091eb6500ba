//! `--set key=value`.

use super::*;

#[test]
fn overrides() {
    let mut c = ProxyConfig::default();
    c.apply_override("server.listen", "127.0.0.1:0").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:0");
    c.apply_override("upstreams.exchange.url", "http://127.0.0.1:9")
        .unwrap();
    assert_eq!(c.upstreams[1].url, "http://127.0.0.1:9");
    c.apply_override("upstreams[0].coordination.queue.max_len", "7")
        .unwrap();
    assert_eq!(c.upstreams[0].coordination.queue.max_len, 7);
    let before = c.clone();
    assert!(c.apply_override("server.max_headers", "0").is_err());
    assert!(c.apply_override("server.nope", "1").is_err());
    assert!(c.apply_override("upstreams.zzz.url", "x").is_err());
    assert_eq!(c, before);
    // A pair is checked once both are in (`--set` given one by one).
    let pair = [
        ("server.tls_listen", "127.0.0.1:0"),
        ("server.tls_cert", "c.pem"),
        ("server.tls_key", "k.pem"),
        (
            "upstreams.advanced.origins",
            r#"["https://api.coinbase.com"]"#,
        ),
    ];
    assert!(c.apply_override(pair[1].0, pair[1].1).is_err());
    c.apply_overrides(&pair).unwrap();
    assert_eq!(c.server.tls_key.as_deref(), Some("k.pem"));
    assert_eq!(c.upstreams[0].origins, ["https://api.coinbase.com"]);
}
