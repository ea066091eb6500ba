//! One connection's life: read a request, call the handler, write the
//! response, repeat while keep-alive lasts.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::chunked::{ChunkLimits, Decoder};
use super::{reason_phrase, ClientProbe, HttpRequest, Reply, Response, Shared};

/// Buffer capacity a connection keeps between requests.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A request the server refuses before the handler sees it; the
/// connection closes after the answer, if any.
enum Refusal {
    /// Answered with a JSON error.
    Answer { status: u16, message: String },
    /// The client went away mid-request: nobody to answer.
    ClientGone,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal::Answer {
            status,
            message: message.into(),
        }
    }

    /// The JSON error to write; `None` when nobody is left to read it.
    fn response(&self) -> Option<Response> {
        let Refusal::Answer { status, message } = self else {
            return None;
        };
        let kind = match status {
            400 => "bad_request",
            408 => "request_timeout",
            413 => "payload_too_large",
            431 => "request_header_fields_too_large",
            _ => "error",
        };
        Some(json_error(*status, kind, message))
    }
}

/// `{"error": kind, "message": message}`, the shape of every error the
/// server answers on its own.
fn json_error(status: u16, kind: &str, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({ "error": kind, "message": message }).to_string(),
    )
}

/// The HTTP/1.x version a request was sent with: what the answer's
/// `Connection` field must say and which defaults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Http10,
    Http11,
}

impl Version {
    /// From the minor version httparse reports (it accepts only 1.0 and
    /// 1.1).
    fn from_minor(minor: u8) -> Self {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }
}

/// Whether a response carries its body: a HEAD answer is the head alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyMode {
    Full,
    HeadOnly,
}

/// What becomes of the connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// Read the next request.
    KeepAlive,
    /// Close (said in the response's `Connection` field when it has one).
    Close,
}

/// Why reading stopped.
enum ReadStop {
    /// The peer closed (or shutdown woke an idle reader).
    Eof,
    /// The applicable timeout passed.
    Timeout,
    /// Any other socket error.
    Failed,
}

/// The parsed request line and header section.
struct Head {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, String)>,
    len: usize,
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

struct Conn<'a> {
    shared: &'a Shared,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    /// Bytes received and not yet consumed (a request being read, and any
    /// pipelined requests after it).
    buf: Vec<u8>,
    /// The response being written; reused so each response is one write
    /// of an already-allocated buffer.
    out: Vec<u8>,
    /// Handed to each request (one socket clone per connection).
    probe: ClientProbe,
}

pub(super) fn serve(shared: &Shared, stream: TcpStream, peer: SocketAddr, idle: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    // A client that never reads its response must not pin the thread.
    let _ = stream.set_write_timeout(Some(shared.limits.write_timeout));
    let local = stream.local_addr().unwrap_or(shared.local);
    let probe = stream
        .try_clone()
        .map(|s| ClientProbe::new(Arc::new(s)))
        .unwrap_or_default();
    let mut conn = Conn {
        shared,
        stream,
        peer,
        local,
        buf: Vec::with_capacity(4096),
        out: Vec::with_capacity(4096),
        probe,
    };
    conn.run(idle);
}

impl Conn<'_> {
    fn run(&mut self, idle: &AtomicBool) {
        loop {
            if self.buf.is_empty() {
                // Mark idle before looking at the flag: shutdown sets the
                // flag before sweeping idle connections, so one of the two
                // always sees the other.
                idle.store(true, Ordering::SeqCst);
                if self.shared.stopping() {
                    return;
                }
                let waited = self.fill(None);
                idle.store(false, Ordering::SeqCst);
                if waited.is_err() {
                    return;
                }
            }
            match self.one_request() {
                Ok(Persistence::KeepAlive) => {
                    // One large body must not pin its buffer for the rest
                    // of a long keep-alive connection.
                    if self.buf.capacity() > KEEP_CAPACITY && self.buf.len() < KEEP_CAPACITY {
                        self.buf.shrink_to(KEEP_CAPACITY);
                    }
                    if self.out.capacity() > KEEP_CAPACITY {
                        self.out = Vec::with_capacity(4096);
                    }
                    continue;
                }
                Ok(Persistence::Close) => return self.linger(),
                Err(refusal) => {
                    if let Some(response) = refusal.response() {
                        let _ = self.write_response(
                            &response,
                            BodyMode::Full,
                            Persistence::Close,
                            Version::Http11,
                        );
                    }
                    return self.linger();
                }
            }
        }
    }

    /// Reads, answers and consumes one request, and says whether the
    /// connection stays open for the next one.
    fn one_request(&mut self) -> Result<Persistence, Refusal> {
        let limits = &self.shared.limits;
        let deadline = Instant::now() + limits.header_timeout + limits.body_timeout;
        let head = loop {
            match parse_head(&self.buf, limits.max_headers)? {
                Some(head) if head.len > limits.max_header_bytes => {
                    return Err(header_too_large(limits.max_header_bytes))
                }
                Some(head) => break head,
                None if self.buf.len() > limits.max_header_bytes => {
                    return Err(header_too_large(limits.max_header_bytes))
                }
                None => self.fill_or_refuse(deadline)?,
            }
        };
        let framing = framing(&head.headers, limits.max_body_bytes)?;
        // HTTP/1.0 has no Transfer-Encoding: such a message's framing is
        // suspect, so the connection closes after it (RFC 9112 6.1) and
        // nothing pipelined behind it is read with our framing.
        let suspect_framing =
            head.version == Version::Http10 && matches!(framing, Framing::Chunked);
        let expect_continue = head.version == Version::Http11
            && header(&head.headers, "expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        let (body, consumed) = match framing {
            Framing::None => (Vec::new(), head.len),
            Framing::Length(n) => {
                if expect_continue && n > 0 && self.buf.len() == head.len {
                    self.send_continue();
                }
                while self.buf.len() < head.len + n {
                    self.fill_or_refuse(deadline)?;
                }
                (self.buf[head.len..head.len + n].to_vec(), head.len + n)
            }
            Framing::Chunked => {
                if expect_continue && self.buf.len() == head.len {
                    self.send_continue();
                }
                // Framing may take as much room as the body itself (or the
                // header section, for small bodies), never a multiple of it.
                let mut decoder = Decoder::new(ChunkLimits {
                    max_body: limits.max_body_bytes,
                    max_trailers: limits.max_header_bytes,
                    max_framing: limits.max_body_bytes.max(limits.max_header_bytes),
                });
                let mut body = Vec::new();
                let mut pos = head.len;
                loop {
                    let (used, done) =
                        decoder
                            .feed(&self.buf[pos..], &mut body)
                            .map_err(|e| match e {
                                super::chunked::ChunkError::TooLarge => {
                                    body_too_large(limits.max_body_bytes)
                                }
                                super::chunked::ChunkError::TooMuchFraming => {
                                    Refusal::new(413, e.message())
                                }
                                other => Refusal::new(400, other.message()),
                            })?;
                    pos += used;
                    if done {
                        break;
                    }
                    self.fill_or_refuse(deadline)?;
                }
                (body, pos)
            }
        };
        self.buf.drain(..consumed);

        let wants_keep_alive = keep_alive(head.version, &head.headers) && !suspect_framing;
        let body_mode = if head.method == "HEAD" {
            BodyMode::HeadOnly
        } else {
            BodyMode::Full
        };
        let request = HttpRequest {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body,
            peer: self.peer,
            local: self.local,
            client: self.probe.clone(),
        };
        let handler = &self.shared.handler;
        let reply = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
            Ok(reply) => reply,
            Err(_) => {
                tracing::error!(peer = %self.peer, "handler panicked");
                let response = json_error(500, "internal", "handler failed");
                let _ = self.write_response(&response, body_mode, Persistence::Close, head.version);
                return Ok(Persistence::Close);
            }
        };
        let response = match reply {
            Reply::Respond(response) => response,
            Reply::DropConnection => {
                let _ = self.stream.shutdown(Shutdown::Both);
                return Ok(Persistence::Close);
            }
        };
        let handler_closes =
            header(&response.headers, "connection").is_some_and(|v| has_token(v, "close"));
        let persistence = if wants_keep_alive && !handler_closes && !self.shared.stopping() {
            Persistence::KeepAlive
        } else {
            Persistence::Close
        };
        if self
            .write_response(&response, body_mode, persistence, head.version)
            .is_err()
        {
            return Ok(Persistence::Close);
        }
        Ok(persistence)
    }

    /// Reads more bytes within the request's deadline, or refuses it.
    fn fill_or_refuse(&mut self, deadline: Instant) -> Result<(), Refusal> {
        match self.fill(Some(deadline)) {
            Ok(()) => Ok(()),
            Err(ReadStop::Timeout) => Err(Refusal::new(
                408,
                "request not received in time (headers and body must arrive within the read timeout)",
            )),
            Err(ReadStop::Eof | ReadStop::Failed) => Err(Refusal::ClientGone),
        }
    }

    /// Appends whatever arrives next to `buf`. With no deadline, waits up
    /// to the idle timeout (between requests).
    fn fill(&mut self, deadline: Option<Instant>) -> Result<(), ReadStop> {
        let timeout = match deadline {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => self.shared.limits.idle_timeout,
        };
        if timeout.is_zero() {
            return Err(ReadStop::Timeout);
        }
        if self.stream.set_read_timeout(Some(timeout)).is_err() {
            return Err(ReadStop::Failed);
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            return match self.stream.read(&mut chunk) {
                Ok(0) => Err(ReadStop::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Err(ReadStop::Timeout)
                }
                Err(_) => Err(ReadStop::Failed),
            };
        }
    }

    fn send_continue(&mut self) {
        let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    /// Serialises the response into the reused buffer and writes it in
    /// one call.
    fn write_response(
        &mut self,
        response: &Response,
        body_mode: BodyMode,
        persistence: Persistence,
        version: Version,
    ) -> io::Result<()> {
        let head_only = body_mode == BodyMode::HeadOnly;
        let out = &mut self.out;
        out.clear();
        let status = response.status;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason_phrase(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut has_date = false;
        for (name, value) in &response.headers {
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("connection")
            {
                continue;
            }
            // Never let a header value (perhaps relayed from upstream)
            // split the response.
            if name.is_empty() || [name, value].iter().any(|s| s.contains(['\r', '\n'])) {
                continue;
            }
            has_date |= name.eq_ignore_ascii_case("date");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !has_date {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let body_allowed = !(100..200).contains(&status) && status != 204 && status != 304;
        // A HEAD answer's Content-Length must be what a GET would get
        // (RFC 9110 8.6). A handler that relays upstream's HEAD answer has
        // no body to measure, so an empty one announces no length rather
        // than a false `0`.
        let length_known = !(head_only && response.body.is_empty());
        if body_allowed && length_known {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(response.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        match (persistence, version) {
            (Persistence::Close, _) => out.extend_from_slice(b"Connection: close\r\n"),
            // HTTP/1.0 closes unless told otherwise; 1.1 keeps by default.
            (Persistence::KeepAlive, Version::Http10) => {
                out.extend_from_slice(b"Connection: keep-alive\r\n")
            }
            (Persistence::KeepAlive, Version::Http11) => {}
        }
        out.extend_from_slice(b"\r\n");
        if body_allowed && !head_only {
            out.extend_from_slice(&response.body);
        }
        self.stream.write_all(&self.out)
    }

    /// Closes gracefully: stop sending, then read and discard what the
    /// client still sends for a moment, so the kernel does not answer
    /// unread data with a reset that could destroy the response before the
    /// client reads it (the "lingering close" of HTTP servers).
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let started = Instant::now();
        let budget = Duration::from_secs(2);
        let max_bytes = 2 * self.shared.limits.max_body_bytes.max(1024 * 1024);
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)));
        let mut scratch = [0u8; 16 * 1024];
        let mut drained = 0usize;
        while started.elapsed() < budget && drained < max_bytes {
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

fn header_too_large(max: usize) -> Refusal {
    Refusal::new(
        431,
        format!("request header section too large (limit {max} bytes)"),
    )
}

fn body_too_large(max: usize) -> Refusal {
    Refusal::new(413, format!("request body too large (limit {max} bytes)"))
}

/// Parses the request line and headers if they are complete.
fn parse_head(buf: &[u8], max_headers: usize) -> Result<Option<Head>, Refusal> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(
                431,
                format!("too many header fields (limit {max_headers})"),
            ))
        }
        Err(e) => return Err(Refusal::new(400, format!("malformed request: {e}"))),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Refusal::new(400, "malformed request line"));
    };
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(Refusal::new(
                400,
                format!("header {} has a value that is not UTF-8", h.name),
            ));
        };
        headers.push((h.name.to_owned(), value.to_owned()));
    }
    Ok(Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: Version::from_minor(minor),
        headers,
        len,
    }))
}

/// How the body is delimited, per RFC 9112 section 6.
fn framing(headers: &[(String, String)], max_body: usize) -> Result<Framing, Refusal> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            let v = value.trim();
            let parsed = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| Refusal::new(400, format!("invalid Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(Refusal::new(400, "conflicting Content-Length headers"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // A Transfer-Encoding field without `chunked` as its final
            // coding leaves the length undeterminable (RFC 9112 6.3): an
            // empty one too, or another parser in the path could frame the
            // body differently from us.
            if value.split(',').all(|c| c.trim().is_empty()) {
                return Err(Refusal::new(400, "empty Transfer-Encoding"));
            }
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if !coding.eq_ignore_ascii_case("chunked") || chunked {
                    return Err(Refusal::new(
                        400,
                        format!("unsupported Transfer-Encoding {value:?} (only chunked)"),
                    ));
                }
                chunked = true;
            }
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(Refusal::new(
            400,
            "both Content-Length and Transfer-Encoding present",
        )),
        (None, true) => Ok(Framing::Chunked),
        (Some(n), false) if n > max_body as u64 => Err(body_too_large(max_body)),
        (Some(0) | None, false) => Ok(Framing::None),
        // Fits in usize: bounded by max_body above.
        (Some(n), false) => Ok(Framing::Length(n as usize)),
    }
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only when
/// asked `keep-alive`.
fn keep_alive(version: Version, headers: &[(String, String)]) -> bool {
    let mut close = false;
    let mut keep = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("connection") {
            close |= has_token(value, "close");
            keep |= has_token(value, "keep-alive");
        }
    }
    !close && (version == Version::Http11 || keep)
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    syncoord_core::header(headers, name)
}

#[cfg(test)]
mod proptests {
    //! The parsing steps on arbitrary bytes: never a panic, whatever
    //! arrives and however it is split across reads.

    use super::*;
    use proptest::prelude::*;

    /// Arbitrary bytes, or a plausible request with bytes spliced in, so
    /// the cases reach past the request line.
    fn input() -> impl Strategy<Value = Vec<u8>> {
        crate::test_client::arbitrary_requests(
            vec![
                &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                    b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
                    b"POST /a HTTP/1.0\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                    b"PUT /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
            ],
            16,
            256,
        )
    }

    proptest! {
        #[test]
        fn head_framing_and_chunks_never_panic(bytes in input(), split in 1usize..64) {
            let mut buf = Vec::new();
            for piece in bytes.chunks(split) {
                buf.extend_from_slice(piece);
                match parse_head(&buf, 8) {
                    Ok(Some(head)) => {
                        prop_assert!(head.len <= buf.len());
                        if let Ok(Framing::Chunked) = framing(&head.headers, 64) {
                            let mut d = Decoder::new(ChunkLimits {
                                max_body: 64,
                                max_trailers: 64,
                                max_framing: 64,
                            });
                            let mut body = Vec::new();
                            let mut pos = head.len;
                            while let Ok((used, done)) = d.feed(&buf[pos..], &mut body) {
                                prop_assert!(pos + used <= buf.len());
                                prop_assert!(body.len() <= 64);
                                pos += used;
                                if done || used == 0 {
                                    break;
                                }
                            }
                        }
                        break;
                    }
                    Ok(None) => {}
                    Err(refusal) => {
                        prop_assert!(
                            matches!(refusal, Refusal::Answer { status: 400 | 431, .. }),
                            "refused with {:?}",
                            refusal.response().map(|r| r.status)
                        );
                        break;
                    }
                }
            }
        }
    }
}
