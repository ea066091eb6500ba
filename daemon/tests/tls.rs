//! Zero-code integration (issue 10), end to end: unmodified HTTPS clients
//! sending through the daemon as their `HTTPS_PROXY` (CONNECT, TLS
//! interception with the local CA) to the real host names, which
//! `origins` maps to the local mock; CONNECT to anything else refused;
//! the TLS listener; an upstream trusted through `ca_file`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use syncoord_daemon::ca::LocalCa;
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

const TICKER: &str = "https://api.coinbase.com/api/v3/brokerage/market/products/BTC-USD/ticker";

fn mock() -> MockUpstream {
    MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .expect("mock starts")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncoord-tls-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Both presets at the mock (`--upstream`), each answering for its real
/// host; the CA in `ca_dir`.
fn daemon(mock: &MockUpstream, ca_dir: &Path, tls_listen: bool) -> Daemon {
    let mut config = ProxyConfig::presets_at(&mock.base_url());
    config.server.listen = "127.0.0.1:0".into();
    config.server.drain_secs = 0.5;
    config.server.ca_dir = Some(ca_dir.display().to_string());
    if tls_listen {
        config.server.tls_listen = Some("127.0.0.1:0".into());
    }
    Daemon::start(config).expect("daemon starts")
}

fn ca_cert(ca_dir: &Path) -> ureq::tls::Certificate<'static> {
    let pem = std::fs::read(ca_dir.join("ca.pem")).expect("the CA exists after the first CONNECT");
    ureq::tls::Certificate::from_pem(&pem).unwrap()
}

/// An HTTPS client that trusts `roots` (the public ones when `None`),
/// through `proxy` when given.
fn client(proxy: Option<&str>, roots: Option<ureq::tls::Certificate<'static>>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(root) = roots {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[root]));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .proxy(proxy.map(|p| ureq::Proxy::new(p).unwrap()))
        .tls_config(tls.build())
        .build()
        .into()
}

fn cache_of(agent: &ureq::Agent, url: &str) -> (u16, String) {
    let response = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let cache = response
        .headers()
        .get("x-syncoord-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status().as_u16(), cache)
}

/// Raw CONNECT: the status line and head the daemon answered.
fn raw_connect(addr: std::net::SocketAddr, authority: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A Rust client (ureq, the CA as its only root) sends through the daemon
/// as its proxy to `https://api.coinbase.com/...`: the CONNECT is
/// intercepted, the request reaches the mock through `origins`, and the
/// second call is answered from the cache.
#[test]
fn ureq_through_connect_reaches_the_mock_and_the_cache() {
    let mock = mock();
    let dir = temp_dir("ureq");
    let d = daemon(&mock, &dir, false);
    let proxy = format!("http://{}", d.local_addr());
    // The CA is created on the first CONNECT; trigger it with a raw one.
    assert!(raw_connect(d.local_addr(), "api.coinbase.com:443").starts_with("HTTP/1.1 200"));
    let agent = client(Some(&proxy), Some(ca_cert(&dir)));
    assert_eq!(cache_of(&agent, TICKER), (200, "miss".into()));
    assert_eq!(cache_of(&agent, TICKER), (200, "hit".into()));
    assert_eq!(mock.stats().requests_total, 1);
    // Exchange's real host reaches the Exchange preset (no prefix needed).
    let (status, _) = cache_of(
        &agent,
        "https://api.exchange.coinbase.com/products/BTC-USD/ticker",
    );
    assert_eq!(status, 200);
    assert_eq!(mock.stats().requests_total, 2);
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// curl, unmodified: `--proxy` and `--cacert`.
#[test]
fn curl_through_connect_with_the_ca() {
    let mock = mock();
    let dir = temp_dir("curl");
    let d = daemon(&mock, &dir, false);
    assert!(raw_connect(d.local_addr(), "api.coinbase.com:443").starts_with("HTTP/1.1 200"));
    let curl = |url: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "--max-time", "20"])
            .arg("--proxy")
            .arg(format!("http://{}", d.local_addr()))
            .arg("--cacert")
            .arg(dir.join("ca.pem"))
            .arg(url)
            .output()
            .expect("curl runs (scripts/install-curl.sh)");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let url = "https://api.coinbase.com/api/v3/brokerage/market/products/ETH-USD/ticker";
    let first = curl(url);
    assert!(first.contains("200 connection established"), "{first}");
    assert!(first.contains("x-syncoord-cache: miss"), "{first}");
    let second = curl(url);
    assert!(second.contains("x-syncoord-cache: hit"), "{second}");
    assert_eq!(mock.stats().requests_total, 1);
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// CONNECT to a host no upstream answers for, or to another port of one
/// that does: 403, no tunnel, nothing reaches any upstream. (The CA
/// itself exists from start: this daemon can intercept CONNECT.)
#[test]
fn connect_to_an_unconfigured_host_or_port_is_403_and_opens_nothing() {
    let mock = mock();
    let dir = temp_dir("refused");
    let d = daemon(&mock, &dir, false);
    for authority in [
        "example.com:443",
        "api.coinbase.com:8443",
        "api.coinbase.com:80",
        &mock.addr().to_string(),
        "127.0.0.1:22",
    ] {
        let head = raw_connect(d.local_addr(), authority);
        assert!(head.starts_with("HTTP/1.1 403"), "{authority}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-syncoord-error: host_not_configured"),
            "{head}"
        );
    }
    assert_eq!(mock.stats().requests_total, 0);
    assert!(
        dir.join("ca.pem").exists(),
        "a daemon that can intercept makes its CA at start"
    );
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that does not trust the CA fails its handshake; the daemon
/// goes on serving everyone else.
#[test]
fn an_untrusting_client_fails_its_handshake_and_the_daemon_keeps_serving() {
    let mock = mock();
    let dir = temp_dir("untrusting");
    let d = daemon(&mock, &dir, false);
    let proxy = format!("http://{}", d.local_addr());
    let untrusting = client(Some(&proxy), None);
    for _ in 0..3 {
        let err = untrusting
            .get(TICKER)
            .call()
            .expect_err("public roots do not include syncoord's CA");
        let text = err.to_string().to_ascii_lowercase();
        assert!(
            text.contains("certificate") || text.contains("issuer") || text.contains("tls"),
            "{text}"
        );
    }
    assert_eq!(mock.stats().requests_total, 0);
    let trusting = client(Some(&proxy), Some(ca_cert(&dir)));
    assert_eq!(cache_of(&trusting, TICKER).0, 200);
    let plain = client(None, None);
    let health = format!("http://{}/api/v1/sync-coordination/health", d.local_addr());
    assert_eq!(cache_of(&plain, &health).0, 200);
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[server] tls_listen` without a certificate: the CA's leaf for the
/// loopback names; requests are routed as on the plain listener.
#[test]
fn the_tls_listener_serves_with_the_local_leaf() {
    let mock = mock();
    let dir = temp_dir("listener");
    let d = daemon(&mock, &dir, true);
    let tls_addr = *d.local_addrs().last().unwrap();
    let agent = client(None, Some(ca_cert(&dir)));
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "https://{host}:{}/api/v3/brokerage/market/products/BTC-USD/ticker",
            tls_addr.port()
        );
        let (status, _) = cache_of(&agent, &url);
        assert_eq!(status, 200, "{url}");
    }
    assert_eq!(mock.stats().requests_total, 1, "second one a hit");
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ca_file`: an upstream whose certificate chains to a private root is
/// reached when that root is named, and is a transport failure otherwise.
#[test]
fn ca_file_adds_a_trusted_root_for_an_upstream() {
    let dir = temp_dir("cafile");
    let ca = LocalCa::open(&dir).unwrap();
    let tls = ca.mint(&["127.0.0.1"]).unwrap();
    let handler = Arc::new(|_req: syncoord_server::HttpRequest| {
        syncoord_server::Response::json(200, r#"{"ok":true}"#)
    });
    let upstream = syncoord_server::Server::bind_tls(
        "127.0.0.1:0",
        syncoord_server::Limits::default(),
        handler,
        tls,
    )
    .unwrap();
    let url = format!("https://127.0.0.1:{}", upstream.local_addr().port());
    let status = |ca_file: Option<&Path>| {
        let mut config = ProxyConfig::single_upstream(&url);
        config.upstreams[0].preset = syncoord_proxy::Preset::None;
        config.upstreams[0].coordination = syncoord_proxy::Preset::None.config();
        config.upstreams[0].ca_file = ca_file.map(|p| p.display().to_string());
        config.server.listen = "127.0.0.1:0".into();
        config.server.drain_secs = 0.2;
        config.upstreams[0].coordination.retry.max_attempts = 1;
        let d = Daemon::start(config).unwrap();
        let (status, _) = cache_of(&client(None, None), &format!("http://{}/x", d.local_addr()));
        d.shutdown();
        status
    };
    assert_eq!(status(Some(&dir.join("ca.pem"))), 200);
    assert_eq!(status(None), 502);
    upstream.shutdown_handle().shutdown();
    upstream.join();
    let _ = std::fs::remove_dir_all(&dir);
}

fn get_status(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let agent = client(None, None);
    let response = agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        response.into_body().read_to_string().unwrap_or_default(),
    )
}

/// A `ca_dir` others may write is refused: every CONNECT is `502
/// ca_unavailable`, and `/readyz` and the health endpoint say so instead
/// of ready and healthy. Fixing the folder needs no restart: a reload
/// (or the next CONNECT after the backoff) finds the CA usable.
#[test]
fn a_world_writable_ca_dir_is_refused_reported_and_retried_without_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let mock = mock();
    let dir = temp_dir("open");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = daemon(&mock, &dir, false);
    let addr = d.local_addr();
    assert!(
        !dir.join("ca.key").exists(),
        "no key written into an open folder"
    );
    let connect = raw_connect(addr, "api.coinbase.com:443");
    assert!(connect.starts_with("HTTP/1.1 502"), "{connect}");
    assert!(connect.contains("ca_unavailable"), "{connect}");
    let (status, body) = get_status(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("writable by group or others"), "{body}");
    let (status, body) = get_status(addr, "/api/v1/sync-coordination/health");
    assert_eq!(status, 200, "plain requests still work: {body}");
    assert!(
        body.contains("\"degraded\"") && body.contains("ca_unavailable"),
        "{body}"
    );
    // Fixed, then a reload: usable at once.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut config = ProxyConfig::presets_at(&mock.base_url());
    config.server.listen = "127.0.0.1:0".into();
    config.server.drain_secs = 0.5;
    config.server.ca_dir = Some(dir.display().to_string());
    d.reload(config, &syncoord_daemon::HostSecrets::default())
        .expect("reloads");
    assert_eq!(get_status(addr, "/readyz").0, 200);
    let (_, body) = get_status(addr, "/api/v1/sync-coordination/health");
    assert!(!body.contains("ca_unavailable"), "{body}");
    assert!(raw_connect(addr, "api.coinbase.com:443").starts_with("HTTP/1.1 200"));
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
