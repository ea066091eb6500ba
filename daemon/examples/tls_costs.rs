//! What TLS interception costs per new connection and per new host, for
//! BENCHMARKS.md ("TLS interception"). Starts the mock and a daemon in
//! front of it (both presets, real hosts as origins) on 127.0.0.1, then:
//!
//! - leaf minting: `LocalCa::server_config` for N hosts never seen (one
//!   signature each; the key pair is shared) and for one host cached;
//! - a new connection per request, cache hit: plain HTTP (connect +
//!   request), CONNECT + TLS handshake + request through the daemon as
//!   `HTTPS_PROXY`, and the same keep-alive (one connection reused).
//!
//! `cargo run --release -p syncoord-daemon --example tls_costs [N]`

use std::time::{Duration, Instant};

use syncoord_daemon::ca::LocalCa;
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

fn agent(proxy: Option<&str>, root: Option<ureq::tls::Certificate<'static>>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(root) = root {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[root]));
    }
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(proxy.map(|p| ureq::Proxy::new(p).expect("proxy URL")))
        .tls_config(tls.build())
        .build()
        .into()
}

fn per_call(n: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n as u32
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let dir = std::env::temp_dir().join(format!("syncoord-tls-costs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = LocalCa::open(&dir).expect("CA");

    let mut i = 0;
    let mint = per_call(n, || {
        i += 1;
        ca.server_config(&format!("host{i}.example")).expect("leaf");
    });
    let cached = per_call(n, || {
        ca.server_config("host1.example").expect("leaf");
    });

    let mock = MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .expect("mock");
    let mut config = ProxyConfig::presets_at(&mock.base_url());
    config.server.listen = "127.0.0.1:0".into();
    config.server.ca_dir = Some(dir.display().to_string());
    let daemon = Daemon::start(config).expect("daemon");
    let proxy = format!("http://{}", daemon.local_addr());
    let root = ureq::tls::Certificate::from_pem(&std::fs::read(ca.cert_path()).unwrap())
        .unwrap()
        .to_owned();
    let path = "/api/v3/brokerage/market/products/BTC-USD/ticker";
    let plain_url = format!("{proxy}{path}");
    let https_url = format!("https://api.coinbase.com{path}");

    let plain_new = per_call(n, || {
        agent(None, None).get(&plain_url).call().expect("plain");
    });
    let tls_new = per_call(n, || {
        agent(Some(&proxy), Some(root.clone()))
            .get(&https_url)
            .call()
            .expect("intercepted");
    });
    let kept = agent(Some(&proxy), Some(root.clone()));
    let tls_kept = per_call(n, || {
        kept.get(&https_url)
            .call()
            .expect("intercepted, kept alive");
    });
    let plain_agent = agent(None, None);
    let plain_kept = per_call(n, || {
        plain_agent
            .get(&plain_url)
            .call()
            .expect("plain, kept alive");
    });

    println!("| what (cache hit, one client thread, {n} calls) | per call |");
    println!("|---|---|");
    println!("| leaf minted for a new host (`LocalCa::server_config`) | {mint:?} |");
    println!("| leaf for a host already minted (cache) | {cached:?} |");
    println!("| plain HTTP, new connection per request | {plain_new:?} |");
    println!("| CONNECT + TLS handshake + request, new connection per request | {tls_new:?} |");
    println!("| plain HTTP, one kept-alive connection | {plain_kept:?} |");
    println!("| intercepted TLS, one kept-alive connection | {tls_kept:?} |");
    daemon.shutdown();
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
