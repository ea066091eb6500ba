//! Test helpers shared by the server's and the mock's tests (feature
//! `test-client`, never part of a release build): a raw HTTP/1.1
//! client that reads responses off one connection, a keep-alive load
//! used by the throughput measurements, and the arbitrary-input strategy
//! of the server's property tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::conn::BodyMode;

/// Hang guard for every client read: generous, never a timing assertion.
pub const GUARD: Duration = Duration::from_secs(10);

/// A parsed response as the client saw it.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        syncoord_core::header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads responses off one connection, keeping bytes past the current one.
pub struct Client {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|| panic!("cannot connect to {addr}"))
    }

    /// A client, or `None` while nothing listens on `addr` (a server still
    /// starting).
    pub fn try_connect(addr: SocketAddr) -> Option<Client> {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(GUARD)).unwrap();
        Some(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Next response; `None` when the server closed first.
    pub fn read_response(&mut self) -> Option<Seen> {
        self.read(BodyMode::Full)
    }

    /// Next response to a HEAD request, which has no body whatever its
    /// `Content-Length` says; `None` when the server closed first.
    pub fn read_head_response(&mut self) -> Option<Seen> {
        self.read(BodyMode::HeadOnly)
    }

    fn read(&mut self, body_mode: BodyMode) -> Option<Seen> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) = resp.parse(&self.buf).unwrap() {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8(h.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
                let cl: usize = match body_mode {
                    BodyMode::HeadOnly => 0,
                    BodyMode::Full => syncoord_core::header(&headers, "content-length")
                        .map_or(0, |v| v.parse().unwrap()),
                };
                while self.buf.len() < len + cl {
                    self.more()?;
                }
                let body = self.buf[len..len + cl].to_vec();
                self.buf.drain(..len + cl);
                if status == 100 {
                    continue;
                }
                return Some(Seen {
                    status,
                    headers,
                    body,
                });
            }
            self.more()?;
        }
    }

    pub fn more(&mut self) -> Option<()> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("client read failed (hang guard?): {e}"),
        }
    }

    /// Whether the server closed the connection (after any buffered bytes).
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.more().is_none()
    }
}

/// `clients` keep-alive connections to `addr`, each sending `request`
/// `per_client` times in sequence and expecting 200 every time; returns
/// the seconds it all took (a measurement, never an assertion).
pub fn keep_alive_load(
    addr: SocketAddr,
    clients: u32,
    per_client: u32,
    request: &'static [u8],
) -> f64 {
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..per_client {
                    c.send(request);
                    assert_eq!(c.read_response().unwrap().status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// Arbitrary bytes (up to `raw` of them), or one of `plausible` requests
/// with up to `splice` arbitrary bytes spliced in somewhere, so that cases
/// reach past the request line.
pub fn arbitrary_requests(
    plausible: Vec<&'static [u8]>,
    splice: usize,
    raw: usize,
) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let spliced = (
        prop::sample::select(plausible),
        any::<usize>(),
        prop::collection::vec(any::<u8>(), 0..splice),
    )
        .prop_map(|(base, at, splice)| {
            let mut v = base.to_vec();
            let at = at % (v.len() + 1);
            v.splice(at..at, splice);
            v
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..raw), spliced]
}
