//! What the daemon's end-to-end test files share: an HTTP client that
//! treats every status as an answer, and a GET that keeps the headers the
//! tests read.

use std::time::Duration;

use syncoord_daemon::Daemon;
use syncoord_mock::MockUpstream;
use syncoord_proxy::ProxyConfig;

/// A daemon with `extra` TOML appended to a one-upstream configuration in
/// front of `mock`, and its base URL.
#[allow(dead_code)] // not every test file starts this one
pub fn daemon(mock: &MockUpstream, extra: &str) -> (Daemon, String) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n{extra}",
        mock.base_url()
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    (daemon, base)
}

/// The TOML of both Coinbase upstreams (Advanced Trade, Exchange under
/// `/exchange`) in front of `mock`, `extra` in the first one's table.
#[allow(dead_code)] // not every test file starts this one
pub fn two_upstreams_toml(mock: &MockUpstream, extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
drain_secs = 1.0

[[upstreams]]
name = "advanced"
url = "{url}"
preset = "coinbase-advanced"
{extra}

[[upstreams]]
name = "exchange"
url = "{url}"
preset = "coinbase-exchange"
prefix = "/exchange"
"#,
        url = mock.base_url()
    )
}

/// A client that returns 4xx and 5xx as answers, not errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// An answer with the headers the tests look at.
#[allow(dead_code)] // each test file reads its own subset
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub cache: Option<String>,
    pub error: Option<String>,
    pub body: String,
}

/// `GET url` with `headers`; panics only if no answer came at all.
pub fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent.get(url);
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, cache, error) = (
        header("retry-after"),
        header("x-syncoord-cache"),
        header("x-syncoord-error"),
    );
    Reply {
        status: response.status().as_u16(),
        retry_after,
        cache,
        error,
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// The `public` bucket (scope) in a daemon's stats, `Null` if absent.
#[allow(dead_code)] // read by the learning and cluster tests
pub fn public_bucket(base: &str) -> serde_json::Value {
    let stats = all_stats(base);
    let scopes = stats["upstreams"][0]["stats"]["scopes"]
        .as_array()
        .or_else(|| stats["scopes"].as_array())
        .cloned()
        .unwrap_or_default();
    scopes
        .into_iter()
        .find(|b| b["scope"] == "public")
        .unwrap_or(serde_json::Value::Null)
}

/// The daemon's whole stats document.
pub fn all_stats(base: &str) -> serde_json::Value {
    let reply = get(
        &agent(),
        &format!("{base}/api/v1/sync-coordination/stats"),
        &[],
    );
    serde_json::from_str(&reply.body).expect("stats are JSON")
}

/// The first upstream's stats.
#[allow(dead_code)] // not every test file reads them
pub fn stats(base: &str) -> serde_json::Value {
    all_stats(base)["upstreams"][0]["stats"].take()
}

/// Writes `bytes` on a fresh connection and reads until the daemon
/// closes it (20 s at most), as text.
#[allow(dead_code)] // for the tests of framing and methods
pub fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
