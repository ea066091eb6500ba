//! `[server] tunnel`: a CONNECT to a listed host opens a plain TCP tunnel
//! (the far server's own certificate reaches the client: nothing is
//! intercepted or cached), while configured upstreams are still
//! intercepted; unlisted hosts stay `403`; open tunnels cost no thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use syncoord_daemon::ca::LocalCa;
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;
use syncoord_server::{HttpRequest, Limits, Reply, Response, Server};

const TICKER: &str = "https://api.coinbase.com/api/v3/brokerage/market/products/BTC-USD/ticker";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncoord-tunnel-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An HTTPS server of its own (another CA's leaf for `localhost`), on
/// 127.0.0.1: what a bot's notification API would be.
fn far_server(dir: &Path) -> (Server, PathBuf) {
    let ca = LocalCa::open(&dir.join("far-ca")).unwrap();
    let config = ca.mint(&["localhost"]).unwrap();
    let handler = |req: HttpRequest| -> Reply {
        // Nothing of syncoord's reaches it: no interception.
        let ours = req
            .headers
            .iter()
            .any(|(n, _)| n.to_ascii_lowercase().starts_with("x-syncoord"));
        Response::new(
            200,
            if ours {
                "intercepted"
            } else {
                "far-and-untouched"
            },
        )
        .into()
    };
    let server =
        Server::bind_tls("127.0.0.1:0", Limits::default(), Arc::new(handler), config).unwrap();
    (server, ca.cert_path())
}

/// Echoes each line back, a thread per connection (the test's side).
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if writeln!(out, "{line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn daemon(mock: &MockUpstream, dir: &Path, tunnel: Vec<String>) -> Daemon {
    let mut config = ProxyConfig::presets_at(&mock.base_url());
    config.server.listen = "127.0.0.1:0".into();
    config.server.drain_secs = 0.5;
    config.server.ca_dir = Some(dir.join("ca").display().to_string());
    config.server.tunnel = tunnel;
    Daemon::start(config).expect("daemon starts")
}

/// Both CAs in one bundle: the daemon's (interception) and the far
/// server's (the tunnel passes its own certificate through).
fn bundle(dir: &Path, far_ca: &Path) -> PathBuf {
    let mut pem = std::fs::read(dir.join("ca/ca.pem")).unwrap();
    pem.extend(std::fs::read(far_ca).unwrap());
    let path = dir.join("bundle.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// `command` with only the proxy variables the test sets.
fn through_proxy(mut command: Command, proxy: &str, bundle: &Path) -> Command {
    for var in ["NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"] {
        command.env_remove(var);
    }
    command
        .env("HTTPS_PROXY", proxy)
        .env("https_proxy", proxy)
        .env("REQUESTS_CA_BUNDLE", bundle)
        .env("CURL_CA_BUNDLE", bundle);
    command
}

#[test]
fn a_tunnelled_host_works_with_curl_and_requests_while_upstreams_are_intercepted() {
    let mock = MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .unwrap();
    let dir = temp_dir("clients");
    let (far, far_ca) = far_server(&dir);
    let far_url = format!("https://localhost:{}/hello", far.local_addr().port());
    let d = daemon(
        &mock,
        &dir,
        vec![format!("localhost:{}", far.local_addr().port())],
    );
    let proxy = format!("http://{}", d.local_addr());
    let bundle = bundle(&dir, &far_ca);

    let curl = |url: &str| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-i", "--max-time", "20", url]);
        let out = through_proxy(c, &proxy, &bundle)
            .output()
            .expect("curl runs (scripts/install-curl.sh)");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let tunnelled = curl(&far_url);
    assert!(tunnelled.contains("far-and-untouched"), "{tunnelled}");
    assert!(!tunnelled.contains("x-syncoord-cache"), "{tunnelled}");
    let intercepted = curl(TICKER);
    assert!(
        intercepted.contains("x-syncoord-cache: miss"),
        "{intercepted}"
    );

    let python = repo().join(".toolchain/python/bin/python");
    if std::env::var_os("SYNCOORD_SKIP_PYTHON").is_some_and(|v| v == "1") {
        eprintln!("SYNCOORD_SKIP_PYTHON=1: the requests half is skipped");
    } else {
        assert!(
            python.exists(),
            "{} is missing: run scripts/install-python-venv.sh (or SYNCOORD_SKIP_PYTHON=1)",
            python.display()
        );
        let script = format!(
            "import requests\n\
             r = requests.get({far_url:?}, timeout=20)\n\
             assert r.status_code == 200 and r.text == 'far-and-untouched', (r.status_code, r.text)\n\
             assert 'x-syncoord-cache' not in r.headers, r.headers\n\
             t = requests.get({TICKER:?}, timeout=20)\n\
             assert t.status_code == 200 and t.headers.get('x-syncoord-cache') == 'hit', t.headers\n\
             print('requests: tunnelled and intercepted')\n"
        );
        let mut c = Command::new(&python);
        c.arg("-c").arg(script);
        let out = through_proxy(c, &proxy, &bundle).output().unwrap();
        assert!(
            out.status.success(),
            "python: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // One upstream call for the two ticker reads; the tunnels counted.
    assert_eq!(mock.stats().requests_total, 1);
    let stats = curl_local(d.local_addr(), syncoord_proxy::endpoints::STATS_PATH);
    let v: serde_json::Value =
        serde_json::from_str(&stats).unwrap_or_else(|e| panic!("{e}: {stats}"));
    assert!(v["tunnels"]["opened"].as_u64().unwrap_or(0) >= 1, "{stats}");
    d.shutdown();
    far.shutdown_handle().shutdown();
    far.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET `path` on the daemon, plainly.
fn curl_local(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A CONNECT, and the head of its answer; the stream stays open.
fn connect(addr: SocketAddr, authority: &str) -> (BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    (reader, head)
}

#[test]
fn tunnels_hold_no_thread_and_unlisted_hosts_stay_refused() {
    let mock = MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .unwrap();
    let dir = temp_dir("threads");
    let echo = echo_server();
    let d = daemon(&mock, &dir, vec![format!("127.0.0.1:{}", echo.port())]);
    // Three times the daemon's eight handler threads, all open at once.
    let mut open: Vec<BufReader<TcpStream>> = (0..24)
        .map(|i| {
            let (reader, head) = connect(d.local_addr(), &echo.to_string());
            assert!(head.starts_with("HTTP/1.1 200"), "tunnel {i}: {head}");
            reader
        })
        .collect();
    for (i, r) in open.iter_mut().enumerate() {
        writeln!(r.get_mut(), "ping {i}").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, format!("ping {i}\n"));
    }
    // The same host on another port, and any other host: 403.
    for authority in ["127.0.0.1:22", "example.com:443"] {
        let (_, head) = connect(d.local_addr(), authority);
        assert!(head.starts_with("HTTP/1.1 403"), "{authority}: {head}");
    }
    // A listed host that does not answer: 502, counted.
    drop(open);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    d.shutdown();
    let d = daemon(&mock, &dir, vec![closed.to_string()]);
    let (_, head) = connect(d.local_addr(), &closed.to_string());
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let metrics = curl_local(d.local_addr(), "/metrics");
    assert!(
        metrics.contains("syncoord_tunnels_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert_eq!(mock.stats().requests_total, 0);
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_star_on_a_listener_beyond_loopback_is_refused_with_its_place() {
    let text = "[server]\nlisten = \"0.0.0.0:8787\"\ntunnel = [\"hooks.slack.com:443\", \"*\"]\n\n[[upstreams]]\nname = \"advanced\"\nurl = \"https://api.coinbase.com\"\npreset = \"coinbase-advanced\"\n";
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    let e = &err.0[0];
    assert_eq!(e.field, "server.tunnel[1]", "{err}");
    assert_eq!((e.line, e.column.is_some()), (Some(3), true), "{err}");
    assert!(e.message.contains("0.0.0.0:8787"), "{err}");
    // On loopback only, `*` is allowed.
    let local = text.replace("0.0.0.0", "127.0.0.1");
    assert!(ProxyConfig::from_toml_str(&local).is_ok());
}
