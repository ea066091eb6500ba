//! The `syncoord` command end to end: the real binary, run as a user runs
//! it (`check-config`, `serve` until SIGTERM).

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_server::test_client::{Client, Seen};

/// One GET of `path` on a fresh connection to `addr`; `None` while
/// nothing listens there yet.
fn get(addr: SocketAddr, path: &str) -> Option<Seen> {
    let mut client = Client::try_connect(addr)?;
    client.send(format!("GET {path} HTTP/1.1\r\nHost: syncoord\r\n\r\n").as_bytes());
    client.read_response()
}

#[test]
fn check_config_names_the_line_and_field() {
    let dir = std::env::temp_dir().join(format!("syncoord-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[upstreams]]\nname = \"cb\"\nurl = \"https://api.coinbase.com\"\n\n[[upstreams.coordination.routes]]\npath = \"/x/**\"\nscopes = [\"fils\"]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["check-config"])
        .arg(&file)
        .output()
        .expect("run syncoord");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad file fails: {stderr}");
    assert!(stderr.contains("bad.toml:7:"), "names the line: {stderr}");
    assert!(stderr.contains("fils"), "names the value: {stderr}");
    std::fs::write(&file, "").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["check-config"])
        .arg(&file)
        .output()
        .expect("run syncoord");
    assert!(out.status.success(), "an empty file is the defaults");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_quick_start_and_sigterm_exit_zero() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["--log", "warn", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--upstream")
        .arg(mock.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start syncoord serve");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let ticker = "/api/v3/brokerage/market/products/BTC-USD/ticker";
    let first = loop {
        match get(addr, ticker) {
            Some(r) => break r,
            None if started.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            None => panic!("daemon never answered"),
        }
    };
    assert_eq!(first.status, 200);
    let again = get(addr, ticker).expect("an answer");
    assert_eq!(again.header("x-syncoord-cache"), Some("hit"));
    // `--upstream` keeps the Exchange preset too (at the same URL, under
    // `/exchange`), instead of silently dropping it.
    let exchange = get(addr, "/exchange/products/BTC-USD/ticker").expect("an answer");
    assert_eq!(exchange.status, 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("daemon exits");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    mock.shutdown();
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
    // ... and says what it replaced, loudly.
    assert!(
        stderr.contains("replaces the configured upstreams")
            && stderr.contains("answers for https://api.exchange.coinbase.com"),
        "{stderr}"
    );
}

/// A daemon process, killed if a test fails before it exits.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `syncoord serve` with `config` (TOML) under `sh -c 'ulimit -n LIMIT'`
/// when a limit is given; stderr piped.
fn serve(config: &str, fd_limit: Option<u32>) -> (Running, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "syncoord-serve-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("syncoord.toml");
    std::fs::write(&file, config).expect("write config");
    let limit = fd_limit.map_or(String::new(), |n| format!("ulimit -n {n} && "));
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{limit}exec \"$0\" --log warn serve --config \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_syncoord"))
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start syncoord serve");
    (Running(child), dir)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until the daemon answers `path` (hang-guarded).
fn first_answer(addr: SocketAddr, path: &str) -> Seen {
    let started = Instant::now();
    loop {
        match get(addr, path) {
            Some(r) => return r,
            None if started.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            None => panic!("daemon never answered"),
        }
    }
}

fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn under_a_low_fd_limit_the_daemon_keeps_serving_past_the_limit() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    );
    let (mut running, dir) = serve(&config, Some(256));
    let child = &mut running.0;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ticker = "/api/v3/brokerage/market/products/BTC-USD/ticker";
    assert_eq!(first_answer(addr, ticker).status, 200);
    // More silent connections than the daemon has descriptors.
    let silent: Vec<_> = (0..400)
        .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    // Everyone else is still served: the longest-silent give way.
    for path in ["/api/v1/sync-coordination/health", ticker, "/metrics"] {
        let r = get(addr, path).unwrap_or_else(|| panic!("{path} unanswered"));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    std::thread::scope(|s| {
        for _ in 0..50 {
            s.spawn(|| {
                let mut c = Client::connect(addr);
                for _ in 0..5 {
                    c.send(format!("GET {ticker} HTTP/1.1\r\nHost: bot\r\n\r\n").as_bytes());
                    assert_eq!(c.read_response().expect("an answer").status, 200);
                }
            });
        }
    });
    drop(silent);
    sigterm(child);
    let exit = child.wait().expect("daemon exits");
    let mut stderr = String::new();
    use std::io::Read as _;
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    let stderr = without_colours(&stderr);
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(exit.success(), "{exit:?}: {stderr}");
    // The bound was fitted to the limit (said once), and accept never
    // spun on EMFILE.
    assert!(stderr.contains("lowered_to=192"), "{stderr}");
    let accept_warnings = stderr.matches("accept").count();
    assert!(
        accept_warnings <= 2,
        "{accept_warnings} accept warnings: {stderr}"
    );
}

#[test]
fn sigterm_exits_within_the_drain_plus_the_in_flight_allowance() {
    // Upstream answers in 2 s. drain_secs = 1, upstream_timeout_secs = 3:
    // the documented bound is 1 + 3 s.
    let mock = MockUpstream::start(MockOptions {
        latency: Duration::from_secs(2),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndrain_secs = 1.0\nupstream_timeout_secs = 3.0\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        mock.base_url()
    );
    let (mut running, dir) = serve(&config, None);
    let child = &mut running.0;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        first_answer(addr, "/api/v1/sync-coordination/health").status,
        200
    );
    // Half a header section (the header timeout is 10 s).
    let mut half = Client::connect(addr);
    half.send(b"GET /api/v1/sync-coordination/health HTTP/1.1\r\nHost: x\r\nX-Half: ");
    // An idle keep-alive connection.
    let mut idle = Client::connect(addr);
    idle.send(b"GET /api/v1/sync-coordination/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.read_response().expect("health").status, 200);
    // An order on its way upstream.
    let body = r#"{"client_order_id":"shutdown-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"10"}}}"#;
    let mut order = Client::connect(addr);
    order.send(
        format!(
            "POST /api/v3/brokerage/orders HTTP/1.1\r\nHost: x\r\nCB-ACCESS-KEY: k\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    sigterm(child);
    // Closed at once: the half request and the idle connection.
    assert!(half.closed());
    assert!(idle.closed());
    let closed_after = signalled.elapsed();
    let answer = order.read_response().expect("the order's answer");
    let exit = child.wait().expect("daemon exits");
    let took = signalled.elapsed();
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(exit.success(), "{exit:?}");
    // Upstream's own answer (placed), never a retry hint.
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().contains("\"success\":true"),
        "{}",
        answer.text()
    );
    assert_eq!(answer.header("retry-after"), None);
    // Generous margins: behaviour, not speed.
    assert!(
        closed_after < Duration::from_secs(2),
        "connections without a request closed after {closed_after:?}"
    );
    assert!(
        took < Duration::from_secs(4 + 2),
        "exit took {took:?}, past drain_secs + upstream_timeout_secs"
    );
}

/// The log without its ANSI colour sequences.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `check-config` loads the keys a signing-mode config names (relative to
/// the file), lists each credential by name and key id, warns of a key
/// file others may read, fails naming a missing secret, and never prints
/// key material; `token` prints a token and the entry with its SHA-256.
#[test]
fn check_config_loads_signing_keys_and_shows_no_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("syncoord-check-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let seed_b64 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="; // 32 bytes: an Ed25519 seed
    std::fs::write(dir.join("ed.key"), seed_b64).expect("write");
    std::fs::set_permissions(dir.join("ed.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let token = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["token", "--name", "bot1", "--credential", "desk"])
        .output()
        .expect("run syncoord token");
    assert!(token.status.success());
    let stdout = String::from_utf8_lossy(&token.stdout).into_owned();
    let mut lines = stdout.lines();
    let minted = lines.next().unwrap_or_default().to_owned();
    assert_eq!(minted.len(), 64, "32 random bytes in hex: {minted}");
    assert_eq!(lines.next(), Some(""), "{stdout}");
    // From line 3 on, stdout is the entry, ready to append to a config.
    let entry = lines.collect::<Vec<_>>().join("\n");
    assert!(
        entry.starts_with("[[clients]]\nname = \"bot1\"\n"),
        "{entry}"
    );
    let sha = syncoord_wire::token_sha256_hex(&minted);
    assert!(
        entry.contains(&format!("token_sha256 = \"{sha}\"")),
        "{entry}"
    );
    assert!(
        !entry.contains(&minted),
        "the entry holds the hash only: {entry}"
    );
    let config = format!(
        "[[upstreams]]\nname = \"advanced\"\nurl = \"https://api.coinbase.com\"\npreset = \"coinbase-advanced\"\n\n\
         [[credentials]]\nname = \"desk\"\nupstream = \"advanced\"\nkind = \"coinbase-cdp\"\nkey_name = \"organizations/o/apiKeys/k\"\nprivate_key_file = \"ed.key\"\n\n\
         {entry}\n"
    );
    let file = dir.join("signing.toml");
    // A key file others may read is refused, as ssh refuses one...
    std::fs::write(&file, &config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["check-config"])
        .arg(&file)
        .output()
        .expect("run syncoord");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("credentials[0].private_key_file: `ed.key` may be read by other users (mode 644): `chmod 600` it, or set `allow_readable_files = true`"),
        "{stderr}"
    );
    // ...unless the credential says its access is guarded otherwise.
    let config = config.replace(
        "private_key_file = \"ed.key\"\n",
        "private_key_file = \"ed.key\"\nallow_readable_files = true\n",
    );
    std::fs::write(&file, &config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["check-config"])
        .arg(&file)
        .output()
        .expect("run syncoord");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("credential `desk`: signs for upstream `advanced` with EdDSA key `organizations/o/apiKeys/k`"),
        "{stdout}"
    );
    assert!(stderr.contains("chmod 600"), "warns of mode 644: {stderr}");
    assert!(!stdout.contains(&seed_b64[..20]) && !stderr.contains(&seed_b64[..20]));

    std::fs::write(
        &file,
        config.replace(
            "private_key_file = \"ed.key\"",
            "private_key_env = \"SYNCOORD_TEST_UNSET_KEY\"",
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_syncoord"))
        .args(["check-config"])
        .arg(&file)
        .env_remove("SYNCOORD_TEST_UNSET_KEY")
        .output()
        .expect("run syncoord");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("credentials[0].private_key_env: `SYNCOORD_TEST_UNSET_KEY` is not set"),
        "{stderr}"
    );
    // A token from the environment too weak to guard the keys is refused,
    // saying how to make one.
    let with_env_token = format!(
        "{config}\n[[clients]]\nname = \"bot2\"\ntoken_env = \"SYNCOORD_TEST_WEAK_TOKEN\"\ncredentials = [\"desk\"]\n"
    );
    std::fs::write(&file, &with_env_token).expect("write");
    for (token, ok) in [("letmein", false), (minted.as_str(), true)] {
        let out = Command::new(env!("CARGO_BIN_EXE_syncoord"))
            .args(["check-config"])
            .arg(&file)
            .env("SYNCOORD_TEST_WEAK_TOKEN", token)
            .output()
            .expect("run syncoord");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{token}: {stderr}");
        if !ok {
            assert!(
                stderr.contains(
                    "clients[1].token_env: the token in `SYNCOORD_TEST_WEAK_TOKEN` is too weak"
                ) && stderr.contains("syncoord token --name bot2"),
                "{stderr}"
            );
            assert!(!stderr.contains(token), "{stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `syncoord reload` checks the file first (a bad one is reported with its
/// place and not sent); SIGHUP with a bad file is logged and changes
/// nothing; with a good one the new rules apply at once, to the running
/// process.
#[test]
fn reload_applies_a_new_file_and_refuses_a_bad_one() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let port = free_port();
    let config = |ttl: f64| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndrain_secs = 1.0\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n\n[[upstreams.coordination.routes]]\nname = \"public-market\"\nttl_secs = {ttl:?}\n",
            mock.base_url()
        )
    };
    let dir = std::env::temp_dir().join(format!("syncoord-reload-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (file, pid_file) = (dir.join("syncoord.toml"), dir.join("syncoord.pid"));
    std::fs::write(&file, config(60.0)).expect("write");
    let mut running = Running(
        Command::new(env!("CARGO_BIN_EXE_syncoord"))
            .args(["--log", "info", "serve", "--config"])
            .arg(&file)
            .arg("--pid-file")
            .arg(&pid_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start syncoord serve"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cache = |path: &str| {
        first_answer(addr, path)
            .header("x-syncoord-cache")
            .map(str::to_owned)
    };
    let path = "/api/v3/brokerage/market/products/BTC-USD";
    assert_eq!(cache(path).as_deref(), Some("miss"));
    assert_eq!(cache(path).as_deref(), Some("hit"), "kept 60 s");
    let reload = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_syncoord"))
            .args(["reload", "--pid-file"])
            .arg(&pid_file)
            .args(extra)
            .output()
            .expect("run syncoord reload")
    };

    // A bad file: `reload --config` reports it and signals nothing.
    // Files are replaced whole (written aside, renamed), as an editor or
    // a deploy tool does: a reload never reads half a file.
    let replace = |text: String| {
        let aside = dir.join("syncoord.toml.new");
        std::fs::write(&aside, text).expect("write");
        std::fs::rename(&aside, &file).expect("rename");
    };
    replace(config(0.0).replace("ttl_secs", "ttl_sec"));
    let out = reload(&["--config", file.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "syncoord.toml:12:1: upstreams[0].coordination.routes[0].ttl_sec: unknown field"
        ),
        "{stderr}"
    );
    // Sent anyway (no --config): the daemon refuses it and keeps running.
    assert!(reload(&[]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cache(path).as_deref(),
        Some("hit"),
        "the old rules still run"
    );

    // A good file: from now on this route's answers are not kept (read
    // on a path not cached before).
    replace(config(0.0));
    assert!(reload(&["--config", file.to_str().expect("utf-8 path")])
        .status
        .success());
    // SIGHUP is handled a moment later: each attempt reads a key not read
    // before, so an answer stored under the old rules by an attempt that
    // came first cannot mask the new ones.
    let started = Instant::now();
    for attempt in 0.. {
        let other = format!("/api/v3/brokerage/market/products/ETH-USD?attempt={attempt}");
        let (first, second) = (cache(&other), cache(&other));
        if (first.as_deref(), second.as_deref()) == (Some("miss"), Some("miss")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reloaded: {first:?} {second:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&running.0);
    let status = running.0.wait().expect("wait");
    assert!(status.success());
    let mut log = String::new();
    std::io::Read::read_to_string(running.0.stderr.as_mut().expect("stderr"), &mut log)
        .expect("read log");
    assert!(
        log.contains("reload refused") && log.contains("ttl_sec"),
        "the bad file is logged with its problem: {log}"
    );
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(!pid_file.exists(), "the pid file is removed on exit");
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve` at `trace`, in signing mode: the calls it signs (a JWT each,
/// an Exchange passphrase) and the bot's token reach the log nowhere, not
/// in a header dump and not in the HTTP client's byte dumps.
#[test]
fn serve_at_trace_logs_no_secret() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let port = free_port();
    let token = "0f4e8c2a7d1b9e3f5a6c8d0e2f4a6b8c9d1e3f5a7b9c0d2e4f6a8b0c2d4e6f8a";
    let passphrase = "passphrase-that-must-not-show";
    let seed_b64 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndrain_secs = 0.5\n\n\
         [[upstreams]]\nname = \"advanced\"\nurl = \"{url}\"\npreset = \"coinbase-advanced\"\n\n\
         [[upstreams]]\nname = \"exchange\"\nurl = \"{url}\"\npreset = \"coinbase-exchange\"\nprefix = \"/exchange\"\n\n\
         [[credentials]]\nname = \"desk\"\nupstream = \"advanced\"\nkind = \"coinbase-cdp\"\nkey_name = \"organizations/o/apiKeys/k\"\nprivate_key_env = \"SYNCOORD_TEST_TRACE_KEY\"\n\n\
         [[credentials]]\nname = \"ex\"\nupstream = \"exchange\"\nkind = \"coinbase-exchange\"\nkey = \"exkey\"\nsecret_env = \"SYNCOORD_TEST_TRACE_SECRET\"\npassphrase_env = \"SYNCOORD_TEST_TRACE_PASS\"\n\n\
         [[clients]]\nname = \"bot\"\ntoken_sha256 = \"{sha}\"\ncredentials = [\"desk\", \"ex\"]\n",
        url = mock.base_url(),
        sha = syncoord_wire::token_sha256_hex(token),
    );
    let dir = std::env::temp_dir().join(format!("syncoord-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("syncoord.toml");
    std::fs::write(&file, config).expect("write");
    for format in ["text", "json"] {
        let log = dir.join(format!("stderr-{format}.log"));
        let mut running = Running(
            Command::new(env!("CARGO_BIN_EXE_syncoord"))
                .args([
                    "--log",
                    "trace",
                    "--log-format",
                    format,
                    "serve",
                    "--config",
                ])
                .arg(&file)
                .env("SYNCOORD_TEST_TRACE_KEY", seed_b64)
                .env("SYNCOORD_TEST_TRACE_SECRET", "c2VjcmV0LWtleS1ieXRlcw==")
                .env("SYNCOORD_TEST_TRACE_PASS", passphrase)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("start syncoord serve"),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        first_answer(addr, "/livez");
        for path in ["/api/v3/brokerage/accounts", "/exchange/accounts"] {
            let mut client = Client::connect(addr);
            client.send(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Syncoord-Token: {token}\r\n\r\n"
                )
                .as_bytes(),
            );
            let answer = client.read_response().expect("an answer");
            assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        }
        assert!(mock.stats().requests_total >= 2);
        let _ = running.0.kill();
        let _ = running.0.wait();
        let logged = std::fs::read_to_string(&log).expect("read the log");
        assert!(
            logged.contains("TRACE") && logged.lines().count() > 20,
            "the trace log was written: {logged}"
        );
        for secret in [token, passphrase, "eyJ", &seed_b64[..16]] {
            assert!(!logged.contains(secret), "`{secret}` in the log:\n{logged}");
        }
        // Not even a piece: the passphrase as the byte dumps would show it.
        let hex: String = passphrase
            .bytes()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!logged.replace(' ', "").contains(&hex), "{logged}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
