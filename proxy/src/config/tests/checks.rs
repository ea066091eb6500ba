//! What the checks refuse, each problem named by field and place.

use super::*;

#[test]
fn upstream_checks() {
    let text = r#"
[[upstreams]]
name = "a"
url = "ftp://x"
prefix = "x/"
listen = "127.0.0.1:8787"
[[upstreams]]
name = "a"
url = "https://h/base?q"
prefix = "/p"
[[upstreams]]
name = "c d"
url = "https://h"
prefix = "/p"
"#;
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "upstreams[0].url",
            "upstreams[0].prefix",
            "upstreams[0].listen",
            "upstreams[1].name",
            "upstreams[1].url",
            "upstreams[2].name",
            "upstreams[2].prefix",
        ],
        "{err}"
    );
    assert!(ProxyConfig::from_toml_str("upstreams = []").is_err());
    assert!(ProxyConfig::from_toml_str("[other]").is_err());
}

#[test]
fn origins_and_tls_settings_are_checked_and_located() {
    let text = r#"
[server]
tls_listen = "localhost:8443"
tls_key = "k.pem"

[[upstreams]]
name = "a"
url = "http://127.0.0.1:9000"
origins = ["https://api.coinbase.com", "ftp://x", "https://api.coinbase.com"]

[[upstreams]]
name = "b"
url = "http://127.0.0.1:9001"
prefix = "/b"
origins = ["https://api.coinbase.com"]
ca_file = ""
"#;
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "server.tls_listen",
            "server.tls_cert",
            "upstreams[0].origins[1]",
            "upstreams[0].origins[2]",
            "upstreams[1].origins[0]",
            "upstreams[1].ca_file",
        ],
        "{err}"
    );
    assert!(err.0.iter().all(|e| e.line.is_some()), "{err}");
    let ok = ProxyConfig::from_toml_str(
        "[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\norigins = [\"https://api.coinbase.com\"]\nca_file = \"x.pem\"\n",
    )
    .unwrap();
    assert_eq!(ok.upstreams[0].origins, ["https://api.coinbase.com"]);
    // The Worker cannot add roots to fetch().
    assert!(ok
        .validate_for_edge()
        .unwrap_err()
        .to_string()
        .contains("ca_file"));
}

#[test]
fn server_ranges() {
    let err = ProxyConfig::from_toml_str(
        "[server]\nmax_headers = 0\nrequest_timeout_secs = -1.0\ndrain_secs = 0.0\n",
    )
    .unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["server.max_headers", "server.request_timeout_secs"]
    );
    assert_eq!(err.0[0].line, Some(2));
}

#[test]
fn connection_limits_are_settings_and_bad_ones_are_located() {
    let ok = ProxyConfig::from_toml_str(
        "[server]\nmax_connections = 50\nheader_timeout_secs = 2.5\nbody_timeout_secs = 4.0\nwrite_timeout_secs = 6.0\nidle_timeout_secs = 7.0\n",
    )
    .unwrap();
    assert_eq!(ok.server.max_connections, 50);
    assert_eq!(ok.server.header_timeout(), Duration::from_millis(2500));
    assert_eq!(ok.server.body_timeout(), Duration::from_secs(4));
    assert_eq!(ok.server.write_timeout(), Duration::from_secs(6));
    assert_eq!(ok.server.idle_timeout(), Duration::from_secs(7));
    let text = "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 0\nheader_timeout_secs = 0.0\nbody_timeout_secs = -2.0\nwrite_timeout_secs = 1e9\n";
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let found: Vec<(&str, Option<usize>, Option<usize>)> = err
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.line, e.column))
        .collect();
    assert_eq!(
        found,
        [
            ("server.max_connections", Some(3), Some(1)),
            ("server.header_timeout_secs", Some(4), Some(1)),
            ("server.body_timeout_secs", Some(5), Some(1)),
            ("server.write_timeout_secs", Some(6), Some(1)),
        ],
        "{err}"
    );
    let shown = err.display_with("syncoord.toml").to_string();
    assert!(
        shown.contains(
            "syncoord.toml:3:1: server.max_connections: must be between 1 and 1000000 (got 0)"
        ),
        "{shown}"
    );
}

#[test]
fn busy_polling_is_a_setting_and_a_bad_one_is_located() {
    assert_eq!(ProxyConfig::default().server.busy_poll_us, 100);
    let off = ProxyConfig::from_toml_str("[server]\nbusy_poll_us = 0\n").unwrap();
    assert_eq!(off.server.busy_poll_us, 0);
    let err = ProxyConfig::from_toml_str("[server]\nbusy_poll_us = 20000\n").unwrap_err();
    let shown = err.display_with("syncoord.toml").to_string();
    assert_eq!(
        shown,
        "syncoord.toml:2:1: server.busy_poll_us: must be between 0 and 10000 (got 20000)"
    );
}

#[test]
fn edge_refuses_mixed_routes() {
    let text = r#"
[[upstreams]]
name = "a"
url = "https://h"
preset = "coinbase-exchange"
[[upstreams.coordination.routes]]
name = "mixed"
path = "/x"
scopes = ["public", "private"]
"#;
    let c = ProxyConfig::from_toml_str(text).unwrap();
    let err = c.validate_for_edge().unwrap_err();
    assert!(err.to_string().contains("route `mixed` mixes"), "{err}");
    let err = ProxyConfig::from_toml_str_for_edge(text).unwrap_err();
    assert_eq!(err.0[0].line, Some(9), "{err}");
}

/// Every config error names its field, line and column, and says what
/// is wrong in the file's terms (issue 9: overflowing integers had no
/// position and a garbled message; `routes = []` passed silently).
#[test]
fn bad_configs_are_located_and_worded() {
    const UP: &str =
        "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n";
    let table: &[(&str, &str, usize, usize, &str)] = &[
        (
            "[server]\nmax_headers = 99999999999999999999\n",
            "server.max_headers",
            2,
            15,
            "`99999999999999999999` does not fit in a 64-bit integer",
        ),
        (
            "[server]\nmax_headers = -1\n",
            "server.max_headers",
            2,
            1,
            "`-1` is out of range: expected a whole number from 0 to 9223372036854775807",
        ),
        (
            &format!("{UP}[upstreams.coordination.scopes.private]\nburst = 5000000000\n"),
            "upstreams[0].coordination.scopes.private.burst",
            6,
            1,
            "`5000000000` is out of range: expected a whole number from 0 to 4294967295",
        ),
        (
            &format!("{UP}[upstreams.coordination.queue]\nmax_len = 0x7fffffffffffffffff\n"),
            "upstreams[0].coordination.queue.max_len",
            6,
            11,
            "does not fit in a 64-bit integer",
        ),
        (
            &format!("{UP}[[upstreams.coordination.routes]]\nname = \"orders-write\"\nscopes = [\"nope\"]\n"),
            "upstreams[0].coordination.routes[0].scopes[0]",
            7,
            11,
            "unknown scope `nope`",
        ),
        (
            &format!("{UP}[upstreams.coordination.defaults]\nscopes = \"global\"\n"),
            "upstreams[0].coordination.defaults.scopes",
            6,
            1,
            "expected an array, found string \"global\"",
        ),
        (
            &format!("{UP}[upstreams.coordination.scopes.private]\nrate = \"fast\"\n"),
            "upstreams[0].coordination.scopes.private.rate",
            6,
            1,
            "expected a number, found string \"fast\"",
        ),
        (
            &format!("{UP}[upstreams.coordination.defaults]\nprivate = 1\n"),
            "upstreams[0].coordination.defaults.private",
            6,
            1,
            "expected true or false, found integer `1`",
        ),
        (
            "[server]\nlisten = 5\n",
            "server.listen",
            2,
            1,
            "expected a string, found integer `5`",
        ),
        (
            &format!("{UP}[upstreams.coordination.credential]\nheader = \"bad header\"\n"),
            "upstreams[0].coordination.credential.header",
            6,
            1,
            "`bad header` is not a header name",
        ),
        (
            &format!("{UP}[upstreams.coordination.credential.aliases]\nk1 = \"t\"\nk2 = \"t\"\n"),
            "upstreams[0].coordination.credential.aliases.k2",
            7,
            1,
            "`t` appears more than once",
        ),
        (
            &format!("{UP}[[upstreams.coordination.routes]]\npath = \"/x\"\ncredential_required = \"yes\"\n"),
            "upstreams[0].coordination.routes[0].credential_required",
            7,
            1,
            "expected true or false",
        ),
        (
            "upstreams = []\n",
            "upstreams",
            1,
            1,
            "at least one upstream is needed",
        ),
        (
            "[cluster]\nredis_url = \"http://h:6379\"\nname = \"a\"\n",
            "cluster.redis_url",
            2,
            1,
            "scheme `http` is not supported (redis:// or rediss:// for TLS)",
        ),
        (
            "[cluster]\nredis_url = \"redis://h:6379\"\nname = \"a b\"\n",
            "cluster.name",
            3,
            1,
            "it prefixes every Redis key",
        ),
        (
            "[cluster]\nredis_url = \"redis://h\"\nname = \"a\"\nfallback_share = 1.5\n",
            "cluster.fallback_share",
            4,
            1,
            "must be more than 0 and at most 1 (got 1.5)",
        ),
        (
            "[cluster]\nredis_url = \"redis://h\"\nname = \"a\"\ncall_timeout_secs = 0\n",
            "cluster.call_timeout_secs",
            4,
            1,
            "must be more than 0",
        ),
        (
            "[cluster]\nname = \"a\"\n",
            "cluster.redis_url",
            1,
            2,
            "is required",
        ),
        (
            "[cluster]\nredis_url = \"redis://h\"\nname = \"a\"\nheartbeat = 1\n",
            "cluster.heartbeat",
            4,
            1,
            "unknown field",
        ),
    ];
    for (text, field, line, column, message) in table {
        let err = ProxyConfig::from_toml_str(text).expect_err(text);
        let e = err
            .0
            .iter()
            .find(|e| e.field == *field)
            .unwrap_or_else(|| panic!("no error for {field} in:\n{err}\n---\n{text}"));
        assert_eq!(
            (e.line, e.column),
            (Some(*line), Some(*column)),
            "{field}: {err}"
        );
        assert!(e.message.contains(message), "{field}: {}", e.message);
        assert!(e.message.len() < 300, "too long: {}", e.message);
        for e in &err.0 {
            assert!(
                !e.field.is_empty() && e.line.is_some() && e.column.is_some(),
                "{err}"
            );
        }
        let shown = err.display_with("f.toml").to_string();
        assert!(
            shown.starts_with(&format!("f.toml:{line}:{column}: ")) || err.0.len() > 1,
            "{shown}"
        );
    }
}
