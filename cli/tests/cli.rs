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
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("daemon exits");
    mock.shutdown();
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
}
