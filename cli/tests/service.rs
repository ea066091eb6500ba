//! `syncoord serve` as a service manager runs it: the readiness protocol
//! on a notify socket the test binds (`READY=1`, then `STOPPING=1`),
//! `/livez` and `/readyz`, `SIGHUP` a reload (never fatal), the CA made at start,
//! and log lines without escape codes (JSON ones that parse).

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_server::test_client::{Client, Seen};

/// A daemon process, killed if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncoord-service-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn get(addr: SocketAddr, path: &str) -> Option<Seen> {
    let mut client = Client::try_connect(addr)?;
    client.send(format!("GET {path} HTTP/1.1\r\nHost: syncoord\r\n\r\n").as_bytes());
    client.read_response()
}

/// One GET that may wait long (a paused scope), status only.
fn get_patiently(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: syncoord\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The next datagram on `socket` (hang-guarded by its read timeout).
fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `serve` fronting `mock`, with its CA under `dir`, extra env and args.
fn serve(
    mock: &MockUpstream,
    dir: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
    args: &[&str],
) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_syncoord"));
    command
        .args(args)
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--upstream")
        .arg(mock.base_url())
        .env("XDG_DATA_HOME", dir)
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    Running(command.spawn().expect("start syncoord serve"))
}

fn stderr_of(running: &mut Running) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = running.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
    }
    text
}

#[test]
fn notify_ready_then_stopping_probes_and_sighup_is_not_fatal() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let dir = temp_dir("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let port = free_port();
    let mut daemon = serve(
        &mock,
        &dir,
        port,
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8 path"))],
        &["--log", "info"],
    );
    let ready = next_message(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // READY=1 is sent only once everything serves.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let readyz = get(addr, "/readyz").expect("an answer");
    assert_eq!(
        readyz.status,
        200,
        "{}",
        String::from_utf8_lossy(&readyz.body)
    );
    assert_eq!(get(addr, "/livez").expect("an answer").status, 200);
    // The CA exists before any CONNECT.
    assert!(dir.join("syncoord/ca/ca.pem").exists(), "CA made at start");

    // SIGHUP: a reload, not fatal; the manager hears RELOADING=1, then
    // READY=1 once the configuration serves; the daemon keeps serving.
    signal(&daemon.0, "HUP");
    let reloading = next_message(&socket);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let reloaded = next_message(&socket);
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded:?}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) {
        assert!(
            matches!(daemon.0.try_wait(), Ok(None)),
            "SIGHUP killed the daemon"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(addr, "/readyz").expect("still serving").status, 200);

    signal(&daemon.0, "TERM");
    let stopping = next_message(&socket);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let exit = daemon.0.wait().expect("exits");
    assert!(exit.success(), "SIGTERM exits 0: {exit:?}");
    let log = stderr_of(&mut daemon);
    mock.shutdown();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("NODE_EXTRA_CA_CERTS"),
        "trust settings logged: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no escape codes when stderr is not a terminal: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[server] log_format = "json"` in the file (no flag): every line is a
/// JSON object. (`--log-format` wins over the file: the other tests pass it.)
#[test]
fn json_log_lines_parse() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let dir = temp_dir("json");
    let port = free_port();
    let config = dir.join("syncoord.toml");
    std::fs::write(&config, "[server]\nlog_format = \"json\"\n").expect("config");
    let config = config.to_string_lossy().into_owned();
    let mut daemon = serve(
        &mock,
        &dir,
        port,
        &[("SYNCOORD_CONFIG", config.as_str())],
        &["--log", "info"],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while get(addr, "/livez").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&daemon.0, "TERM");
    assert!(daemon.0.wait().expect("exits").success());
    let log = stderr_of(&mut daemon);
    mock.shutdown();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("\"syncoord ready\"")),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 429 storm upstream while a dozen bots call: the log says once that
/// the scope paused, not once per 429 or per request. (The bots' own wait
/// is cut to 3 s: what they are answered is not this test's subject.)
#[test]
fn a_429_storm_logs_one_pause_not_one_per_request() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let dir = temp_dir("storm");
    let port = free_port();
    let mut daemon = serve(
        &mock,
        &dir,
        port,
        &[("SYNCOORD_SET", "server.request_timeout_secs=3")],
        &["--log", "info"],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while get(addr, "/readyz").is_none_or(|r| r.status != 200) {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every answer slow, so several calls are in flight when the storm
    // begins; each comes back 429.
    mock.set_faults(syncoord_mock::Faults {
        storm_ms: 300,
        ..Default::default()
    });
    let bots: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                get_patiently(
                    addr,
                    &format!("/api/v3/brokerage/market/products/BTC-USD/ticker?limit={i}"),
                )
            })
        })
        .collect();
    let statuses: Vec<_> = bots.into_iter().map(|b| b.join().expect("bot")).collect();
    let storm_429s = mock.stats().storm_429s;
    signal(&daemon.0, "TERM");
    assert!(daemon.0.wait().expect("exits").success());
    let log = stderr_of(&mut daemon);
    mock.shutdown();
    let pauses = log.matches("upstream 429: scope paused").count();
    assert!(storm_429s >= 1, "the storm hit a call: {statuses:?}\n{log}");
    assert_eq!(
        pauses,
        1,
        "one pause event for {} requests and {storm_429s} upstream 429(s):\n{log}",
        statuses.len()
    );
    let line = log
        .lines()
        .find(|l| l.contains("scope paused"))
        .expect("the line");
    assert!(
        line.contains("scope=") && line.contains("pause_secs="),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Upstream starts failing while a bot keeps reading refreshed keys of one
/// route: their refreshes are stopped one after another (until the route's
/// breaker opens), and the log says so once, with the route and the
/// reason, not once per stop; the stats and `/metrics` count every stop.
#[test]
fn a_refresh_upstream_keeps_stopping_is_logged_once() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let dir = temp_dir("refresh-stop");
    let port = free_port();
    let mut daemon = serve(&mock, &dir, port, &[], &["--log", "info"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while get(addr, "/readyz").is_none_or(|r| r.status != 200) {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Four keys of one route: each refresh that fails spends the reads
    // that earned it, so the stops come from several keys, logged as one.
    let tickers: Vec<String> = ["BTC-USD", "ETH-USD", "SOL-USD", "BTC-EUR"]
        .iter()
        .map(|p| format!("/api/v3/brokerage/market/products/{p}/ticker"))
        .collect();
    for ticker in &tickers {
        assert_eq!(get(addr, ticker).map(|r| r.status), Some(200), "filled");
    }
    // From now on upstream answers 503 to everything; the bot reads from
    // cache (a hit each time), often enough that the key is refreshed.
    mock.set_faults(syncoord_mock::Faults {
        status: Some(503),
        status_fraction: 1.0,
        ..Default::default()
    });
    let stats = |addr| -> serde_json::Value {
        get(addr, "/api/v1/sync-coordination/stats")
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .map(|mut v| v["upstreams"][0]["stats"].take())
            .unwrap_or_default()
    };
    let stopped = |addr| {
        stats(addr)["refresh_stops"]["server_error"]
            .as_u64()
            .unwrap_or(0)
    };
    let reading = Instant::now();
    while stopped(addr) < 3 {
        if reading.elapsed() > Duration::from_secs(20) {
            let last = stats(addr);
            signal(&daemon.0, "TERM");
            let _ = daemon.0.wait();
            panic!(
                "refreshes never stopped: {last}\n{}",
                stderr_of(&mut daemon)
            );
        }
        // Often enough (25 reads a second) that the key earns refreshes:
        // the preset's `[refresh] min_reads` (8) within its 1 s interval.
        // A key read less is fetched on demand by its next reader instead.
        for _ in 0..5 {
            for ticker in &tickers {
                let _ = get(addr, ticker);
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    let stops = stopped(addr);
    let metrics = get(addr, "/metrics").expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    signal(&daemon.0, "TERM");
    assert!(daemon.0.wait().expect("exits").success());
    let log = stderr_of(&mut daemon);
    mock.shutdown();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refresh stopped by upstream"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line for {stops} stopped refreshes:\n{log}"
    );
    for field in ["route=public-market", "reason=server_error", "status=503"] {
        assert!(lines[0].contains(field), "{field} in {}", lines[0]);
    }
    // Summed over the upstreams (the preset has two; one was read).
    let counted: Option<u64> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("syncoord_upstream_refreshes_stopped_total{")
                && l.contains("reason=\"server_error\"")
        })
        .map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()))
        .sum();
    assert!(
        counted.is_some_and(|n| n >= stops),
        "{counted:?} < {stops}:\n{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `syncoord ca` prints the CA's path on stdout and, on stderr, the
/// settings of every client family (the list the recipe tests run).
#[test]
fn ca_prints_each_client_familys_settings() {
    let dir = temp_dir("ca");
    let out = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["ca", "--ca-dir"])
        .arg(dir.join("ca"))
        .output()
        .expect("run syncoord ca");
    assert!(out.status.success());
    let pem = dir.join("ca/ca.pem");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        pem.display().to_string()
    );
    let text = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "Python ccxt (sync)",
        "'requests_trust_env': True",
        "aiohttp_trust_env",
        "'cafile': '",
        "ccxt_async_config",
        "NODE_EXTRA_CA_CERTS=",
        "httpsProxy: 'http://127.0.0.1:8787'",
        "REQUESTS_CA_BUNDLE=",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--access-log FILE`: one line per request with its fields, secrets in
/// the query redacted; after logrotate's move, SIGUSR1 opens a new file.
#[test]
fn access_log_has_one_line_per_request_and_reopens_on_sigusr1() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let dir = temp_dir("access");
    let file = dir.join("access.log");
    let port = free_port();
    // `--access-log` is a flag of `serve` itself: started by hand.
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_syncoord"))
            .args(["--log", "warn", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(mock.base_url())
            .arg("--access-log")
            .arg(&file)
            .env("XDG_DATA_HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while get(addr, "/livez").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ticker = "/api/v3/brokerage/market/products/BTC-USD/ticker?api_key=s3cret";
    assert_eq!(get(addr, ticker).expect("answer").status, 200);
    assert_eq!(get(addr, ticker).expect("answer").status, 200);
    assert_eq!(get(addr, "/nowhere").expect("answer").status, 404);
    let text = std::fs::read_to_string(&file).expect("access log");
    let lines: Vec<&str> = text.lines().collect();
    // /livez polls, two tickers, one refusal.
    let tickers: Vec<&&str> = lines.iter().filter(|l| l.contains("ticker")).collect();
    assert_eq!(tickers.len(), 2, "{text}");
    for field in [
        "time=",
        "client=",
        "method=GET",
        "upstream=advanced",
        "route=\"",
        "class=\"",
        "status=200",
        "wait_ms=",
        "upstream_status=200",
        "upstream_ms=",
        " ms=",
        "bytes=",
        "error=-",
    ] {
        assert!(tickers[0].contains(field), "{field}: {text}");
    }
    // The miss went upstream: a queue wait and a latency, both numbers;
    // the hit had no call: neither.
    for field in ["wait_ms=", "upstream_ms="] {
        let value = tickers[0]
            .split(field)
            .nth(1)
            .and_then(|v| v.split(' ').next());
        assert!(
            value.is_some_and(|v| v.parse::<f64>().is_ok()),
            "{field}: {text}"
        );
        assert!(tickers[1].contains(&format!("{field}- ")), "{text}");
    }
    assert!(!tickers[0].contains("route=\"-\""), "{text}");
    assert!(
        tickers[0].contains("cache=miss") && tickers[1].contains("cache=hit"),
        "{text}"
    );
    assert!(
        !text.contains("s3cret") && text.contains("api_key=REDACTED"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/nowhere") && l.contains("status=404")),
        "{text}"
    );

    // logrotate: move, then SIGUSR1; the next line goes to a new file.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&file, &rotated).expect("rotate");
    signal(&child.0, "USR1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(Instant::now() < deadline, "no new file after SIGUSR1");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(addr, ticker).expect("answer").status, 200);
    signal(&child.0, "TERM");
    assert!(child.0.wait().expect("exits").success());
    mock.shutdown();
    let fresh = std::fs::read_to_string(&file).expect("new file");
    assert_eq!(
        fresh.lines().filter(|l| l.contains("ticker")).count(),
        1,
        "{fresh}"
    );
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    assert_eq!(
        old.lines().filter(|l| l.contains("ticker")).count(),
        2,
        "{old}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
