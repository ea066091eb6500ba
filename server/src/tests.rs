//! The server over real loopback sockets, with raw bytes as the client.

use super::*;
use crate::test_client::{keep_alive_load, Client, GUARD};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Echoes what it received: `METHOD TARGET BODY`, and the connection
/// count seen so far in a header.
fn echo() -> Arc<dyn Handler> {
    let served = Arc::new(AtomicUsize::new(0));
    Arc::new(move |req: HttpRequest| {
        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
        let mut body = format!("{} {} ", req.method, req.target).into_bytes();
        body.extend_from_slice(&req.body);
        Response::new(200, body).with_header("X-Served", &n.to_string())
    })
}

fn start(limits: Limits, handler: Arc<dyn Handler>) -> Server {
    Server::bind("127.0.0.1:0", limits, handler).unwrap()
}

fn stop(server: Server) {
    server.shutdown_handle().shutdown();
    server.join();
}

#[test]
fn keep_alive_reuses_one_connection_and_reports_date_and_length() {
    let server = start(Limits::default(), echo());
    let mut c = Client::connect(server.local_addr());
    for i in 1..=3 {
        c.send(format!("GET /a?b=%20{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("GET /a?b=%20{i} "));
        assert_eq!(r.header("x-served"), Some(i.to_string().as_str()));
        assert!(r.header("date").is_some());
        assert!(r.header("connection").is_none());
    }
    // Connection: close is honoured.
    c.send(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    stop(server);
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let server = start(Limits::default(), echo());
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    // Transfer-Encoding in HTTP/1.0 is faulty framing: answered, then the
    // connection closes even though keep-alive was asked for.
    c.send(b"POST /te HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.text(), "POST /te z");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /y HTTP/1.0\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.text(), "GET /y ");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    stop(server);
}

#[test]
fn pipelined_requests_answer_in_order_and_targets_pass_verbatim() {
    let server = start(Limits::default(), echo());
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET http://example.test/three/../x%2F HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /four HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().text(), "GET /one ");
    assert_eq!(c.read_response().unwrap().text(), "POST /two abc");
    assert_eq!(
        c.read_response().unwrap().text(),
        "GET http://example.test/three/../x%2F "
    );
    let head = c.read_head_response().unwrap();
    // HEAD: the length of the body a GET would get, and no body.
    assert_eq!(head.header("content-length"), Some("11"));
    c.send(b"GET /five HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "GET /five ");
    stop(server);
}

#[test]
fn chunked_bodies_are_decoded_and_expect_continue_answered() {
    let server = start(Limits::default(), echo());
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n");
    c.send(b"5;x=y\r\npedia\r\n0\r\nTrailer: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "POST /c Wikipedia");

    c.send(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    // The interim answer arrives before we send the body.
    while !c.buf.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n") {
        assert!(c.buf.len() < 25, "unexpected bytes {:?}", c.buf);
        c.more().unwrap();
    }
    c.send(b"ok");
    assert_eq!(c.read_response().unwrap().text(), "PUT /e ok");
    stop(server);
}

#[test]
fn a_large_body_within_the_limit_arrives_whole() {
    let handler: Arc<dyn Handler> = Arc::new(|req: HttpRequest| {
        let sum: u64 = req.body.iter().map(|&b| u64::from(b)).sum();
        Response::new(200, format!("{} {sum}", req.body.len()))
    });
    let server = start(Limits::default(), handler);
    let mut c = Client::connect(server.local_addr());
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let expected: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer
            .write_all(
                format!(
                    "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        writer.write_all(&body).unwrap();
    });
    assert_eq!(
        c.read_response().unwrap().text(),
        format!("300000 {expected}")
    );
    sender.join().unwrap();
    // The connection is still usable after the large request.
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    stop(server);
}

/// Sends `request` on a fresh connection; the server must answer `status`
/// with a message mentioning `needle`, then close.
fn refused(addr: SocketAddr, request: &[u8], status: u16, needle: &str) {
    let mut c = Client::connect(addr);
    c.send(request);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, status, "{}", r.text());
    assert!(r.text().contains(needle), "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn bad_requests_get_400_413_431_and_the_server_keeps_serving() {
    let limits = Limits {
        max_body_bytes: 16,
        max_headers: 8,
        max_header_bytes: 1024,
        ..Limits::default()
    };
    let server = start(limits, echo());
    let a = server.local_addr();
    refused(a, b"\x00\x01garbage\r\n\r\n", 400, "malformed");
    // HTTP/1.1 needs exactly one Host (RFC 9112 3.2), as nginx enforces.
    refused(a, b"GET / HTTP/1.1\r\n\r\n", 400, "without a Host");
    refused(
        a,
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
        "more than one Host",
    );
    refused(a, b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed");
    refused(
        a,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Bin: \xff\xfe\r\n\r\n",
        400,
        "not UTF-8",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        400,
        "Content-Length",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
        400,
        "conflicting",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "both",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc",
        400,
        "empty Transfer-Encoding",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n\r\n0\r\n\r\n",
        400,
        "empty Transfer-Encoding",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
        "Transfer-Encoding",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "chunk",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n",
        413,
        "too large",
    );
    refused(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n",
        413,
        "too large",
    );
    // Tiny data behind long chunk extensions: bounded by the framing
    // allowance (max(max_body, max_header) = 1024 bytes here), not only
    // by the decoded size, or one request could make the server buffer
    // about a thousand times max_body_bytes.
    let ext = "e".repeat(600);
    refused(
        a,
        format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;{ext}\r\nx\r\n1;{ext}\r\ny\r\n0\r\n\r\n")
            .as_bytes(),
        413,
        "too much framing",
    );
    let many: String = (0..9).map(|i| format!("X-H{i}: v\r\n")).collect();
    refused(
        a,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        431,
        "too many",
    );
    refused(
        a,
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(2000)
        )
        .as_bytes(),
        431,
        "too large",
    );
    // Still serving.
    let mut c = Client::connect(a);
    c.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "GET /fine ");
    stop(server);
}

#[test]
fn a_one_mebibyte_header_line_gets_431() {
    let server = start(Limits::default(), echo());
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    let mut writer = c.stream.try_clone().unwrap();
    // Written from another thread: the server stops reading early, and the
    // client must still be able to read the answer.
    let sender = std::thread::spawn(move || {
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        req.extend_from_slice(b"\r\n\r\n");
        let _ = writer.write_all(&req);
    });
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 431);
    sender.join().unwrap();
    stop(server);
}

#[test]
fn slowloris_hits_the_read_timeout_while_others_are_served() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start(limits, echo());
    let mut slow = Client::connect(server.local_addr());
    slow.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    // Another client is served meanwhile.
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    // Trickling bytes does not extend the deadline: it is for the whole
    // request. The write may fail once the server has given up.
    for _ in 0..10 {
        if slow.stream.write_all(b"a").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = slow.read_response().unwrap();
    assert_eq!(r.status, 408);
    stop(server);
}

#[test]
fn concurrent_connections_are_served_in_parallel() {
    // Every handler call waits until all four are inside it at once: only
    // possible if connections are served concurrently.
    let inside = Arc::new(std::sync::Barrier::new(4));
    let handler_barrier = Arc::clone(&inside);
    let handler: Arc<dyn Handler> = Arc::new(move |_req: HttpRequest| {
        handler_barrier.wait();
        Response::new(204, Vec::new())
    });
    let server = start(Limits::default(), handler);
    let addr = server.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                let r = c.read_response().unwrap();
                (r.status, r.header("content-length").map(str::to_owned))
            })
        })
        .collect();
    for client in clients {
        // 204: no Content-Length, no body.
        assert_eq!(client.join().unwrap(), (204, None));
    }
    stop(server);
}

#[test]
fn many_keep_alive_connections_each_get_their_own_answers() {
    let server = start(Limits::default(), echo());
    let addr = server.local_addr();
    let clients: Vec<_> = (0..48)
        .map(|n| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..20 {
                    c.send(format!("GET /c{n}/r{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
                    let r = c.read_response().unwrap();
                    assert_eq!(r.text(), format!("GET /c{n}/r{i} "));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    stop(server);
}

fn loops(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

#[test]
fn at_the_bound_the_longest_idle_connection_gives_way() {
    for n in [1, 2, 3] {
        longest_idle_gives_way(loops(n));
    }
}

/// With several loops, the newcomer goes to the loop with the fewest
/// connections, which may hold none that can give way: it is passed on
/// to one that does.
fn longest_idle_gives_way(event_loops: NonZeroUsize) {
    let limits = Limits {
        max_connections: 2,
        event_loops,
        ..Limits::default()
    };
    let server = start(limits, echo());
    let addr = server.local_addr();
    let mut oldest = Client::connect(addr);
    oldest.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(oldest.read_response().unwrap().status, 200);
    // Silent since it connected, after `oldest` went idle.
    let mut silent = Client::connect(addr);
    // Arrives at the bound: `oldest` has been idle longest and is closed.
    let mut newcomer = Client::connect(addr);
    newcomer.send(b"GET /new HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(newcomer.read_response().unwrap().text(), "GET /new ");
    assert!(oldest.closed());
    silent.send(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(silent.read_response().unwrap().text(), "GET /silent ");
    stop(server);
}

#[test]
fn at_the_bound_with_every_connection_busy_a_new_one_gets_503() {
    for n in [1, 3] {
        every_connection_busy_gets_503(loops(n));
    }
}

fn every_connection_busy_gets_503(event_loops: NonZeroUsize) {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let handler: Arc<dyn Handler> = Arc::new(move |_req: HttpRequest| {
        let gate = gate.lock().unwrap();
        let _ = gate.0.send(());
        let _ = gate.1.recv_timeout(GUARD);
        Response::new(200, "slow")
    });
    let limits = Limits {
        max_connections: 1,
        event_loops,
        ..Limits::default()
    };
    let server = start(limits, handler);
    let mut busy = Client::connect(server.local_addr());
    busy.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    entered_rx.recv_timeout(GUARD).unwrap();
    let mut second = Client::connect(server.local_addr());
    let r = second.read_response().unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(second.closed());
    release_tx.send(()).unwrap();
    assert_eq!(busy.read_response().unwrap().text(), "slow");
    stop(server);
}

/// Answers on the loop thread, naming it.
struct LoopName;

impl Handler for LoopName {
    fn handle(&self, _req: HttpRequest) -> Reply {
        Response::new(500, "not on a loop").into()
    }
    fn handle_nonblocking(&self, _req: HttpRequest) -> Handled {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        Handled::Now(Response::new(200, name).into())
    }
}

#[test]
fn connections_are_spread_over_every_event_loop() {
    let server = start(
        Limits {
            event_loops: loops(3),
            ..Limits::default()
        },
        Arc::new(LoopName),
    );
    let mut clients: Vec<Client> = (0..6)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let mut per_loop = std::collections::BTreeMap::<String, usize>::new();
    for c in &mut clients {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        *per_loop.entry(r.text()).or_default() += 1;
    }
    // Two connections on each of the three loops, whichever order the
    // accepts and hand-overs happened in.
    assert_eq!(per_loop.len(), 3, "{per_loop:?}");
    assert!(per_loop.values().all(|&n| n == 2), "{per_loop:?}");
    assert!(
        per_loop.keys().all(|k| k.starts_with("http-loop-")),
        "{per_loop:?}"
    );
    stop(server);
}

#[test]
fn a_bodiless_head_answer_announces_no_false_length() {
    // What the proxy answers a HEAD with: upstream's headers, no body.
    let server = start(
        Limits::default(),
        Arc::new(|_req: HttpRequest| Response::new(200, Vec::new())),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_head_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    // The connection stays usable: a HEAD answer never has a body.
    c.send(b"HEAD /y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_head_response().unwrap().status, 200);
    stop(server);
}

#[test]
fn drop_connection_closes_without_an_answer() {
    let handler: Arc<dyn Handler> = Arc::new(|_req: HttpRequest| Reply::DropConnection);
    let server = start(Limits::default(), handler);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.read_response().is_none());
    stop(server);
}

#[test]
fn shutdown_lets_a_slow_handler_answer_and_closes_idle_connections() {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let handler: Arc<dyn Handler> = Arc::new(move |req: HttpRequest| {
        if req.target == "/slow" {
            let _ = entered_tx.lock().unwrap().send(());
            std::thread::sleep(Duration::from_millis(300));
        }
        Response::new(200, "done")
    });
    let server = start(Limits::default(), handler);
    let addr = server.local_addr();

    // An idle keep-alive connection (one request answered, then quiet).
    let mut idle = Client::connect(addr);
    idle.send(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.read_response().unwrap().status, 200);
    // A connection accepted but that never sent anything.
    let mut silent = Client::connect(addr);
    // One that sent half a header section (the header timeout is 10 s:
    // shutdown must not wait for it).
    let mut partial = Client::connect(addr);
    partial.send(b"GET /half HTTP/1.1\r\nHost: x\r\nX-Half: ");

    let mut slow = Client::connect(addr);
    slow.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    entered_rx.recv_timeout(GUARD).unwrap();

    let handle = server.shutdown_handle();
    let joiner = std::thread::spawn(move || server.join());
    handle.shutdown();
    handle.shutdown(); // idempotent

    let r = slow.read_response().unwrap();
    assert_eq!(r.text(), "done");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(slow.closed());
    assert!(idle.closed());
    assert!(silent.closed());
    assert!(partial.closed());

    let started = Instant::now();
    while !joiner.is_finished() {
        assert!(started.elapsed() < GUARD, "join did not return");
        std::thread::sleep(Duration::from_millis(10));
    }
    joiner.join().unwrap();
    // No longer accepting.
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn a_panicking_handler_costs_only_its_request() {
    let handler: Arc<dyn Handler> = Arc::new(|req: HttpRequest| {
        assert!(req.target != "/panic", "handler panic on purpose");
        Response::new(200, Vec::new())
    });
    let server = start(Limits::default(), handler);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 500);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    stop(server);
}

/// Throughput of keep-alive requests against a trivial handler; a
/// measurement, not an assertion. Run with
/// `cargo test -p syncoord-server --release --lib tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run by hand in release mode"]
fn throughput_keep_alive() {
    let handler: Arc<dyn Handler> = Arc::new(|_req: HttpRequest| Response::new(200, "ok"));
    let server = start(Limits::default(), handler);
    let addr = server.local_addr();
    let (clients, per_client) = (4, 20_000);
    let secs = keep_alive_load(
        addr,
        clients,
        per_client,
        b"GET /bench HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let total = f64::from(clients * per_client);
    println!(
        "{total} sequential keep-alive requests over {clients} connections in {secs:.2} s: {:.0} req/s, {:.1} us per request-response round trip per connection",
        total / secs,
        secs * 1e6 / f64::from(per_client)
    );
    stop(server);
}

mod arbitrary_input {
    //! Whatever bytes a client sends, it gets well-formed answers or a
    //! closed connection, and the server keeps serving everyone else.

    use super::*;
    use proptest::prelude::*;
    use std::net::Shutdown;
    use std::sync::OnceLock;

    fn server() -> SocketAddr {
        static SERVER: OnceLock<SocketAddr> = OnceLock::new();
        *SERVER.get_or_init(|| {
            let limits = Limits {
                max_body_bytes: 64,
                max_header_bytes: 512,
                max_headers: 8,
                header_timeout: Duration::from_secs(5),
                body_timeout: Duration::from_secs(5),
                ..Limits::default()
            };
            // Echoes, and names the method so a HEAD answer (announced
            // length, no body) is told apart. Never stopped: it lives as
            // long as the test binary.
            let server = start(
                limits,
                Arc::new(|req: HttpRequest| {
                    let mut body = format!("{} {} ", req.method, req.target).into_bytes();
                    body.extend_from_slice(&req.body);
                    Response::new(200, body).with_header("X-Method", &req.method)
                }),
            );
            let addr = server.local_addr();
            std::mem::forget(server);
            addr
        })
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        crate::test_client::arbitrary_requests(
            vec![
                &b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n"[..],
                    b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\n\r\n",
                    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcHEAD /h HTTP/1.1\r\n\r\n",
                    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            ],
            12,
            200,
        )
    }

    /// Every response in `out` starts with a status line `HTTP/1.1 NNN `
    /// and is framed by its Content-Length (a HEAD answer announces the
    /// length and sends no body; a 100 has neither).
    fn well_formed(mut out: &[u8]) -> Result<usize, String> {
        let mut n = 0;
        while !out.is_empty() {
            let end = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or("a header section that never ends")?;
            let head = std::str::from_utf8(&out[..end]).map_err(|e| e.to_string())?;
            let status = head.strip_prefix("HTTP/1.1 ").ok_or("no status line")?;
            let code: u16 = status
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or("no status code")?;
            if !(100..600).contains(&code) || status.as_bytes().get(3) != Some(&b' ') {
                return Err(format!("bad status line {status:?}"));
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let body_len = if code == 100 || head.contains("\r\nX-Method: HEAD\r\n") {
                0
            } else {
                length
            };
            let total = end + 4 + body_len;
            if out.len() < total {
                return Err(format!("body shorter than Content-Length {length}"));
            }
            out = &out[total..];
            n += 1;
        }
        Ok(n)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_get_well_formed_answers_or_a_close(bytes in input()) {
            let addr = server();
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(GUARD)).unwrap();
            // The server may close before reading everything: that is fine.
            let _ = stream.write_all(&bytes);
            let _ = stream.shutdown(Shutdown::Write);
            let mut out = Vec::new();
            let read = stream.read_to_end(&mut out);
            // A reset after a refusal is a close too; a hang is not.
            if let Err(e) = &read {
                prop_assert!(e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut, "no answer and no close: {e}");
            }
            if let Err(why) = well_formed(&out) {
                prop_assert!(false, "{why}: {:?}", String::from_utf8_lossy(&out));
            }
            // Still serving.
            let mut c = Client::connect(addr);
            c.send(b"GET /alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            prop_assert_eq!(c.read_response().unwrap().text(), "GET /alive ");
        }
    }
}

/// Answers every request on the event loop itself.
struct AtOnce;

impl Handler for AtOnce {
    fn handle(&self, _req: HttpRequest) -> Reply {
        Response::new(500, "never on a pool thread").into()
    }
    fn handle_nonblocking(&self, req: HttpRequest) -> Handled {
        Handled::Now(Response::new(200, req.target.into_bytes()).into())
    }
}

#[test]
fn thousands_of_pipelined_requests_answered_at_once_all_get_answers_in_order() {
    let server = start(Limits::default(), Arc::new(AtOnce));
    let mut c = Client::connect(server.local_addr());
    let n = 20_000;
    let writer = {
        let mut stream = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            for i in 0..n {
                all.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            }
            stream.write_all(&all).unwrap();
        })
    };
    for i in 0..n {
        let r = c.read_response().expect("an answer");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("/{i}"));
    }
    writer.join().unwrap();
    stop(server);
}

#[test]
fn set_limits_applies_to_the_next_request_on_an_open_connection() {
    let server = start(Limits::default(), echo());
    let mut c = Client::connect(server.local_addr());
    let big = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(600)
    );
    c.send(big.as_bytes());
    assert_eq!(c.read_response().unwrap().status, 200);
    let bound = server.set_limits(Limits {
        max_header_bytes: 256,
        max_connections: 7,
        // Fixed at start: ignored.
        event_loops: NonZeroUsize::new(9).unwrap(),
        ..Limits::default()
    });
    assert_eq!(bound, 7);
    assert_eq!(server.max_connections(), 7);
    assert_eq!(server.limits().max_header_bytes, 256);
    assert_eq!(server.limits().event_loops, Limits::default().event_loops);
    // The same keep-alive connection: its next request meets the new bound.
    c.send(big.as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 431, "{}", r.text());
    stop(server);
}
