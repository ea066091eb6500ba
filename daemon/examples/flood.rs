//! A connection flood beside a well-behaved bot: how long the bot waits
//! for its answers while idle and slowloris clients hold connections.
//!
//! ```sh
//! cargo run --release -p syncoord-daemon --example flood -- \
//!     127.0.0.1:19101 /api/v3/brokerage/market/products/BTC-USD/ticker \
//!     --idle 2000 --slowloris 1000 --secs 20
//! ```
//!
//! - *idle*: connections that connect and send nothing; reconnected as soon
//!   as the server closes one (so the flood never thins out).
//! - *slowloris*: connections that send a request line and `Host`, then one
//!   header byte every `--drip-ms` (default 2000); reconnected when closed.
//! - *bot*: a keep-alive connection sending `GET <path>` back to back for
//!   `--secs`, replaced by a new connection every `--reuse` answers
//!   (default 100: a bot that reconnects must get in too) or when the
//!   server closes it; every answer's latency, connecting included, is
//!   recorded. A request that fails counts as an error.
//!
//! Prints the flood actually held (connections open at the end), the bot's
//! requests, errors, p50, p99 and max latency. Everything stays on the
//! address given (use loopback).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    path: String,
    idle: usize,
    slowloris: usize,
    secs: u64,
    drip: Duration,
    reuse: u64,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let addr = it
        .next()
        .ok_or("usage: flood ADDR PATH [--idle N] [--slowloris N] [--secs S] [--drip-ms MS]")?
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    let path = it.next().ok_or("PATH missing")?;
    let mut a = Args {
        addr,
        path,
        idle: 2000,
        slowloris: 1000,
        secs: 20,
        drip: Duration::from_millis(2000),
        reuse: 100,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = value.parse().map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--idle" => a.idle = n as usize,
            "--slowloris" => a.slowloris = n as usize,
            "--secs" => a.secs = n,
            "--drip-ms" => a.drip = Duration::from_millis(n),
            "--reuse" => a.reuse = n.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Whether the server closed `s` (a non-blocking look).
fn closed(s: &TcpStream) -> bool {
    let mut b = [0u8; 512];
    match (&*s).read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

fn open(addr: SocketAddr, first: &[u8]) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    if !first.is_empty() {
        s.write_all(first).ok()?;
    }
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Keeps `idle` silent and `slow` dripping connections open until `stop`.
fn flood(a: &Args, stop: Instant) -> (usize, usize, u64) {
    let slow_start = b"GET / HTTP/1.1\r\nHost: flood\r\nX-Slow: ";
    let mut idle: Vec<Option<TcpStream>> = (0..a.idle).map(|_| open(a.addr, b"")).collect();
    let mut slow: Vec<Option<TcpStream>> =
        (0..a.slowloris).map(|_| open(a.addr, slow_start)).collect();
    let mut reconnects = 0u64;
    let mut next_drip = Instant::now() + a.drip;
    while Instant::now() < stop {
        let drip = Instant::now() >= next_drip;
        if drip {
            next_drip += a.drip;
        }
        for s in idle.iter_mut() {
            if s.as_ref().is_none_or(closed) {
                *s = open(a.addr, b"");
                reconnects += 1;
            }
        }
        for s in slow.iter_mut() {
            let gone = match s {
                Some(c) => closed(c) || (drip && (&*c).write_all(b"x").is_err()),
                None => true,
            };
            if gone {
                *s = open(a.addr, slow_start);
                reconnects += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = |v: &Vec<Option<TcpStream>>| {
        v.iter()
            .filter(|s| s.as_ref().is_some_and(|c| !closed(c)))
            .count()
    };
    (held(&idle), held(&slow), reconnects)
}

/// Reads one response (Content-Length framed) off `s`: its status, and
/// whether the server said it closes the connection after it.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let closes = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    n.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
                })
            });
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| io::Error::other("no status"))?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((status, closes));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn bot(a: &Args, start: Instant, stop: Instant) -> (Vec<Duration>, u64, String) {
    let mut first_error = String::new();
    let request = format!("GET {} HTTP/1.1\r\nHost: bot\r\n\r\n", a.path);
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut buf = Vec::new();
    let mut conn: Option<TcpStream> = None;
    let mut on_this = 0u64;
    while Instant::now() < start {
        std::thread::sleep(Duration::from_millis(10));
    }
    while Instant::now() < stop {
        let began = Instant::now();
        if conn.is_none() {
            conn = TcpStream::connect_timeout(&a.addr, Duration::from_secs(5))
                .ok()
                .inspect(|s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.set_nodelay(true);
                });
        }
        let Some(s) = conn.as_mut() else {
            errors += 1;
            if first_error.is_empty() {
                first_error = "connect failed".into();
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let answer = match s.write_all(request.as_bytes()) {
            Ok(()) => read_response(s, &mut buf),
            Err(e) => Err(e),
        };
        match answer {
            Ok((200, closes)) => {
                latencies.push(began.elapsed());
                on_this += 1;
                if closes || on_this >= a.reuse {
                    on_this = 0;
                    // nginx closes after `keepalive_requests`: not an error.
                    conn = None;
                }
            }
            other => {
                errors += 1;
                if first_error.is_empty() {
                    first_error = format!("{other:?} after {on_this} answers on the connection");
                }
                on_this = 0;
                conn = None;
            }
        }
    }
    (latencies, errors, first_error)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the open file limit: {e}");
    }
    let opened = Instant::now();
    // The bot starts once the flood is in place (2 s to connect it all).
    let start = opened + Duration::from_secs(2);
    let stop = start + Duration::from_secs(a.secs);
    let ((idle, slow, reconnects), (mut lat, errors, first_error)) = std::thread::scope(|s| {
        let f = s.spawn(|| flood(&a, stop));
        let b = s.spawn(|| bot(&a, start, stop));
        (f.join().expect("flood"), b.join().expect("bot"))
    });
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "flood: {idle}/{} idle and {slow}/{} slowloris open at the end, {reconnects} reconnects",
        a.idle, a.slowloris
    );
    println!(
        "bot: {} answers, {errors} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        q(0.5),
        q(0.99),
        lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    );
    if errors > 0 {
        println!("first error: {first_error}");
    }
}
