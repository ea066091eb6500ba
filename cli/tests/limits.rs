//! `syncoord serve` under a thread limit and a low descriptor limit
//! (issue 24, defect 1): 600 bots waiting at once under
//! `RLIMIT_NPROC=48` and `RLIMIT_NOFILE=400` made the daemon of a thread
//! per waiting request panic (failed spawns), count the failures against
//! upstream and open its breaker. Now waiting costs no thread: every bot
//! is answered (`200`, or a local `503` when descriptors run out), nothing
//! panics, no breaker opens, and SIGTERM exits 0.
//!
//! Root is not held to `RLIMIT_NPROC`, so as root the daemon runs as
//! `nobody` (`setpriv`); the limits come from `prlimit` (util-linux).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncoord_mock::{MockOptions, MockUpstream};

const BOTS: usize = 600;
const NPROC: u32 = 48;
const NOFILE: u32 = 400;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills the daemon if the test fails before it exits.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn serve_under_thread_and_descriptor_limits_answers_every_bot_without_a_panic() {
    if !have("prlimit") || (is_root() && !have("setpriv")) {
        eprintln!("skipped: needs prlimit (and setpriv as root)");
        return;
    }
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("syncoord-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("syncoord.toml");
    std::fs::write(
        &file,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
drain_secs = 1.0
ca_dir = "{ca}"

[[upstreams]]
name = "mock"
url = "{url}"
preset = "coinbase-advanced"

[upstreams.coordination.scopes.held]
rate = 300.0
burst = 1
per = "global"
headroom = 1.0

[upstreams.coordination.queue]
default_deadline_secs = 60.0

[[upstreams.coordination.routes]]
name = "held"
path = "/__echo/held/**"
scopes = ["held"]
cacheable = false
coalesce = false
priority = "analysis"
"#,
            ca = dir.join("ca").display(),
            url = mock.base_url(),
        ),
    )
    .expect("write config");
    // Readable by `nobody`.
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rwX")
        .arg(&dir)
        .status();
    let mut command = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
        ]);
        c
    } else {
        Command::new("prlimit")
    };
    command
        .arg(format!("--nproc={NPROC}"))
        .arg(format!("--nofile={NOFILE}"))
        .arg("--")
        // SYNCOORD_BIN: another build to compare (main's, before the fix).
        .arg(std::env::var("SYNCOORD_BIN").unwrap_or(env!("CARGO_BIN_EXE_syncoord").into()))
        .args(["--log", "warn", "serve", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut daemon = Running(command.spawn().expect("start syncoord serve"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut bots = Vec::with_capacity(BOTS);
    for i in 0..BOTS {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            continue;
        };
        let request = format!(
            "GET /__echo/held/{i} HTTP/1.1\r\nHost: {addr}\r\nX-Syncoord-Client: bot-{i}\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            bots.push(stream);
        }
    }
    let (mut ok, mut local, mut other) = (0, 0, Vec::new());
    // One deadline for them all: a daemon that strands its bots fails
    // in 30 s, not 30 s per bot.
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut stream in bots {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        let first = reply.lines().next().unwrap_or("").to_owned();
        if first.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else if first.starts_with("HTTP/1.1 503") && !reply.contains("breaker_open") {
            local += 1;
        } else {
            other.push(format!("{first} {}", reply.lines().last().unwrap_or("")));
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = daemon.0.try_wait().expect("the daemon's status") {
            break exit;
        }
        if stopping.elapsed() > Duration::from_secs(20) {
            let _ = daemon.0.kill();
            break daemon.0.wait().expect("daemon killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = daemon.0.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{ok} answered 200, {local} refused locally (503), {other:?} otherwise");
    assert!(
        !stderr.contains("panicked"),
        "the daemon panicked:\n{stderr}"
    );
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}\n{stderr}");
    assert!(
        other.is_empty(),
        "{} bots got no proper answer: {other:?}",
        other.len()
    );
    assert!(
        ok >= BOTS / 2,
        "only {ok} of {BOTS} bots answered 200 ({local} local 503s)\n{stderr}"
    );
}
