//! The `syncoord` command end to end: the real binary, run as a user runs
//! it (`check-config`, `serve` until SIGTERM).

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncoord_mock::{MockOptions, MockUpstream};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Where a GET's answer came from (`X-Syncoord-Cache`).
fn cache_source(agent: &ureq::Agent, url: &str) -> String {
    let response = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response
        .headers()
        .get("x-syncoord-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
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
    let base = format!("http://127.0.0.1:{port}");
    let agent = agent();
    let started = Instant::now();
    let ticker = format!("{base}/api/v3/brokerage/market/products/BTC-USD/ticker");
    let first = loop {
        match agent.get(&ticker).call() {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("daemon never answered: {e}"),
        }
    };
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(cache_source(&agent, &ticker), "hit");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("daemon exits");
    mock.shutdown();
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
}
