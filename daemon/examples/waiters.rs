//! The 10,000-waiter figure of BENCHMARKS.md (issue 24): N bots wait at
//! once in a daemon running as its own process, while a good bot's cache
//! hits are timed; the daemon's threads and RSS are read from /proc.
//!
//! ```text
//! cargo run --release -p syncoord-daemon --example waiters -- ADDR PID [N]
//! ```
//!
//! ADDR is a daemon whose `/__echo/held/**` route is held by a slow scope
//! (see BENCHMARKS.md for the configuration), PID its process. The bots'
//! sockets live in this process, so both sides stay under their own
//! descriptor limits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn field(pid: &str, name: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(pid)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: waiters ADDR PID [N]");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR is ip:port");
    let n: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let hit = format!("http://{addr}/api/v3/brokerage/market/products/BTC-USD/ticker");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let warm = agent.get(&hit).call().expect("warm-up").status();
    assert_eq!(warm.as_u16(), 200, "warm-up");
    let baseline = (field(pid, "Threads:"), field(pid, "VmRSS:"));
    let started = Instant::now();
    let mut bots = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "GET /__echo/held/{i} HTTP/1.1\r\nHost: {addr}\r\nX-Syncoord-Client: bot-{i}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        bots.push(s);
    }
    let queued = started.elapsed();
    let (mut threads, mut rss) = baseline;
    let mut hits = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let mut r = agent.get(&hit).call().expect("hit");
        let _ = r.body_mut().read_to_vec();
        hits.push(t.elapsed());
        threads = threads.max(field(pid, "Threads:"));
        rss = rss.max(field(pid, "VmRSS:"));
        std::thread::sleep(Duration::from_millis(2));
    }
    let (mut ok, mut other) = (0, 0);
    for mut s in bots {
        let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        if reply.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else {
            other += 1;
        }
        threads = threads.max(field(pid, "Threads:"));
    }
    hits.sort();
    let p = |q: f64| hits[((hits.len() as f64 * q) as usize).min(hits.len() - 1)];
    println!(
        "waiters={n} queued_in={queued:?} answered_200={ok} other={other} daemon_threads: {}->{threads} daemon_rss_kib: {}->{rss} good_bot_hits={} p50={:?} p99={:?} max={:?} all_done_in={:?}",
        baseline.0,
        baseline.1,
        hits.len(),
        p(0.5),
        p(0.99),
        hits[hits.len() - 1],
        started.elapsed()
    );
}
