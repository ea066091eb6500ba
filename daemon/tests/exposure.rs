//! Nothing reachable by accident (issue 24, defects 2 and 3): a `Host`
//! the daemon does not answer for is refused (DNS rebinding), and the
//! admin endpoints (dashboard, stats, metrics) answer on the admin
//! listener or loopback, elsewhere only with the admin token, while health
//! stays open.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;
use syncoord_wire::{SecretFile, SecretFileError, SecretSource};
use zeroize::Zeroizing;

/// Status line and body of one request sent as raw bytes.
fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, reply)
}

fn get(addr: SocketAddr, path: &str, host: &str, extra: &str) -> u16 {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
    )
    .0
}

struct Env(&'static str, &'static str);

impl SecretSource for Env {
    fn env(&self, name: &str) -> Option<Zeroizing<String>> {
        (name == self.0).then(|| Zeroizing::new(self.1.to_owned()))
    }
    fn file(&self, path: &str) -> Result<SecretFile, SecretFileError> {
        syncoord::HostSecrets::default().file(path)
    }
}

const STATS: &str = "/api/v1/sync-coordination/stats";
const METRICS: &str = "/metrics";
const HEALTH: &str = "/api/v1/sync-coordination/health";
const TICKER: &str = "/api/v3/brokerage/market/products/BTC-USD/ticker";
const TOKEN: &str = "0123456789abcdef0123456789abcdef-admin";

fn start(mock: &MockUpstream, server: &str, secrets: &dyn SecretSource) -> Daemon {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\n{server}\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Daemon::start_with_secrets(config, secrets).expect("daemon starts")
}

#[test]
fn a_rebound_host_is_refused_and_known_hosts_are_answered() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let daemon = start(
        &mock,
        "allowed_hosts = [\"bots.internal.example\"]",
        &syncoord::HostSecrets::default(),
    );
    let addr = daemon.local_addr();
    for path in [STATS, METRICS, TICKER, "/dashboard"] {
        assert_eq!(get(addr, path, "evil.example", ""), 403, "{path}");
        assert_eq!(get(addr, path, "evil.example:8787", ""), 403, "{path}");
    }
    let (_, body) = raw(
        addr,
        &format!("GET {STATS} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
    );
    assert!(body.contains("host_not_allowed"), "{body}");
    for host in [
        "localhost",
        "localhost:8787",
        "127.0.0.1",
        &addr.to_string(),
        "[::1]:8787",
        "bots.internal.example",
        "syncoord",
    ] {
        assert_eq!(get(addr, STATS, host, ""), 200, "{host}");
    }
    assert_eq!(get(addr, TICKER, "localhost", ""), 200);
    daemon.shutdown();
    mock.shutdown();
}

#[test]
fn admin_endpoints_live_on_the_admin_listener_or_behind_the_token() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    // An admin listener: the main one no longer serves stats or metrics,
    // health stays open there; the admin listener proxies nothing.
    let daemon = start(
        &mock,
        "admin_listen = \"127.0.0.1:0\"",
        &syncoord::HostSecrets::default(),
    );
    let addrs = daemon.local_addrs();
    let (main, admin) = (addrs[0], *addrs.last().expect("the admin listener"));
    assert_ne!(main, admin);
    assert_eq!(get(main, STATS, "localhost", ""), 403);
    assert_eq!(get(main, METRICS, "localhost", ""), 403);
    assert_eq!(get(main, "/dashboard", "localhost", ""), 403);
    assert_eq!(get(main, HEALTH, "localhost", ""), 200);
    assert_eq!(get(main, TICKER, "localhost", ""), 200);
    assert_eq!(get(admin, STATS, "localhost", ""), 200);
    assert_eq!(get(admin, METRICS, "localhost", ""), 200);
    assert_eq!(get(admin, TICKER, "localhost", ""), 404);
    daemon.shutdown();

    // A token: every listener serves them to requests carrying it.
    let daemon = start(&mock, "admin_token_env = \"ADMIN\"", &Env("ADMIN", TOKEN));
    let main = daemon.local_addr();
    assert_eq!(get(main, STATS, "localhost", ""), 401);
    assert_eq!(
        get(main, STATS, "localhost", "Authorization: Bearer wrong\r\n"),
        401
    );
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(get(main, STATS, "localhost", &bearer), 200);
    let header = format!("X-Syncoord-Admin-Token: {TOKEN}\r\n");
    assert_eq!(get(main, METRICS, "localhost", &header), 200);
    assert_eq!(get(main, HEALTH, "localhost", ""), 200);
    daemon.shutdown();

    // A short token is refused at start, saying how to make one.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token_env = \"ADMIN\"\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    );
    let config = ProxyConfig::from_toml_str(&text).expect("parses");
    let refused = Daemon::start_with_secrets(config, &Env("ADMIN", "short"))
        .err()
        .expect("a weak token is refused");
    assert!(
        refused.to_string().contains("openssl rand -hex 32"),
        "{refused}"
    );
    mock.shutdown();
}
