//! One connection's bytes, without I/O: reading requests out of what has
//! arrived (the header section, then the body, with every limit), and
//! writing answers. The event loop (`event_loop.rs`) does the I/O.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{SystemTime, UNIX_EPOCH};

use super::chunked::{ChunkLimits, Decoder};
use super::{reason_phrase, Limits, Response};

/// Buffer capacity a connection keeps between requests.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A request the server refuses before the handler sees it, with a JSON
/// error; the connection closes after the answer.
pub(crate) struct Refusal {
    pub(crate) status: u16,
    message: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// The JSON error to write.
    pub(crate) fn response(&self) -> Response {
        let kind = match self.status {
            400 => "bad_request",
            408 => "request_timeout",
            413 => "payload_too_large",
            431 => "request_header_fields_too_large",
            _ => "error",
        };
        json_error(self.status, kind, &self.message)
    }
}

/// `{"error": kind, "message": message}`, the shape of every error the
/// server answers on its own.
pub(crate) fn json_error(status: u16, kind: &str, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({ "error": kind, "message": message }).to_string(),
    )
}

/// The HTTP/1.x version a request was sent with: what the answer's
/// `Connection` field must say and which defaults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
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
pub(crate) enum Persistence {
    /// Read the next request.
    KeepAlive,
    /// Close (said in the response's `Connection` field when it has one).
    Close,
}

/// The parsed request line and header section.
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: Version,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) len: usize,
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// One complete request, read off a connection's buffer.
pub(crate) struct Complete {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: Version,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) body_mode: BodyMode,
    /// Whether the client may send another request on the connection.
    pub(crate) keep_alive: bool,
}

/// Where the request being read stands.
enum Stage {
    /// Waiting for the end of the header section; `scanned` bytes of the
    /// buffer are known not to hold it.
    Head { scanned: usize },
    /// The header section is in; the body (if any) is arriving.
    Body {
        head: Head,
        framing: Framing,
        keep_alive: bool,
        /// Chunked: the decoder, the body so far and how far the buffer has
        /// been decoded.
        chunked: Option<(Decoder, Vec<u8>, usize)>,
    },
}

/// Reads requests out of the bytes a connection has received, without
/// doing any I/O: the event loop appends what arrives to `buf` and asks
/// [`Reader::poll`] for the next complete request. The header section is
/// parsed once, when its end has arrived (never again per byte, so a
/// client trickling bytes costs no more than one that sends them at once),
/// and a chunked body is decoded as it arrives.
pub(crate) struct Reader {
    pub(crate) buf: Vec<u8>,
    stage: Stage,
}

/// What [`Reader::poll`] found.
pub(crate) enum Polled {
    /// More bytes are needed.
    Incomplete,
    /// The client wants `100 Continue` before it sends the body (said once).
    Continue,
    /// A whole request, consumed from the buffer.
    Request(Complete),
}

impl Reader {
    pub(crate) fn new() -> Self {
        Reader {
            buf: Vec::with_capacity(4096),
            stage: Stage::Head { scanned: 0 },
        }
    }

    /// Whether the header section is complete (the body may be arriving).
    pub(crate) fn in_body(&self) -> bool {
        matches!(self.stage, Stage::Body { .. })
    }

    /// Gives back the memory one large request took, between requests.
    pub(crate) fn shrink(&mut self) {
        if self.buf.capacity() > KEEP_CAPACITY && self.buf.len() < KEEP_CAPACITY {
            self.buf.shrink_to(KEEP_CAPACITY);
        }
    }

    pub(crate) fn poll(&mut self, limits: &Limits) -> Result<Polled, Refusal> {
        if let Stage::Head { scanned } = &mut self.stage {
            let Some(_end) = head_end(&self.buf, scanned) else {
                if self.buf.len() > limits.max_header_bytes {
                    return Err(header_too_large(limits.max_header_bytes));
                }
                return Ok(Polled::Incomplete);
            };
            let head = match parse_head(&self.buf, limits.max_headers)? {
                Some(head) => head,
                // The blank line ends the head, so httparse must finish; a
                // stray bare LF sequence it does not accept is malformed.
                None => return Err(Refusal::new(400, "malformed request: header section")),
            };
            if head.len > limits.max_header_bytes {
                return Err(header_too_large(limits.max_header_bytes));
            }
            check_host(&head)?;
            let framing = framing(&head.headers, limits.max_body_bytes)?;
            // HTTP/1.0 has no Transfer-Encoding: such a message's framing
            // is suspect, so the connection closes after it (RFC 9112 6.1)
            // and nothing pipelined behind it is read with our framing.
            let suspect_framing =
                head.version == Version::Http10 && matches!(framing, Framing::Chunked);
            let keep_alive = keep_alive(head.version, &head.headers) && !suspect_framing;
            let expect_continue = head.version == Version::Http11
                && header(&head.headers, "expect")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
            let body_pending = match framing {
                Framing::None => false,
                Framing::Length(n) => self.buf.len() < head.len + n,
                Framing::Chunked => self.buf.len() == head.len,
            };
            let chunked = matches!(framing, Framing::Chunked).then(|| {
                let decoder = Decoder::new(ChunkLimits {
                    max_body: limits.max_body_bytes,
                    max_trailers: limits.max_header_bytes,
                    // Framing may take as much room as the body itself (or
                    // the header section, for small bodies), never a
                    // multiple of it.
                    max_framing: limits.max_body_bytes.max(limits.max_header_bytes),
                });
                (decoder, Vec::new(), head.len)
            });
            self.stage = Stage::Body {
                head,
                framing,
                keep_alive,
                chunked,
            };
            if expect_continue && body_pending && self.buf.len() == self.head_len() {
                return Ok(Polled::Continue);
            }
        }
        self.poll_body(limits)
    }

    fn head_len(&self) -> usize {
        match &self.stage {
            Stage::Body { head, .. } => head.len,
            Stage::Head { .. } => 0,
        }
    }

    fn poll_body(&mut self, limits: &Limits) -> Result<Polled, Refusal> {
        let Stage::Body {
            head,
            framing,
            chunked,
            ..
        } = &mut self.stage
        else {
            return Ok(Polled::Incomplete);
        };
        let (body, consumed) = match framing {
            Framing::None => (Vec::new(), head.len),
            Framing::Length(n) => {
                if self.buf.len() < head.len + *n {
                    return Ok(Polled::Incomplete);
                }
                (self.buf[head.len..head.len + *n].to_vec(), head.len + *n)
            }
            Framing::Chunked => {
                let Some((decoder, body, pos)) = chunked.as_mut() else {
                    return Err(Refusal::new(500, "chunked body without a decoder"));
                };
                let (used, done) = decoder.feed(&self.buf[*pos..], body).map_err(|e| match e {
                    super::chunked::ChunkError::TooLarge => body_too_large(limits.max_body_bytes),
                    super::chunked::ChunkError::TooMuchFraming => Refusal::new(413, e.message()),
                    other => Refusal::new(400, other.message()),
                })?;
                *pos += used;
                if !done {
                    return Ok(Polled::Incomplete);
                }
                (std::mem::take(body), *pos)
            }
        };
        let Stage::Body {
            head, keep_alive, ..
        } = std::mem::replace(&mut self.stage, Stage::Head { scanned: 0 })
        else {
            return Ok(Polled::Incomplete);
        };
        self.buf.drain(..consumed);
        let body_mode = if head.method == "HEAD" {
            BodyMode::HeadOnly
        } else {
            BodyMode::Full
        };
        Ok(Polled::Request(Complete {
            method: head.method,
            target: head.target,
            version: head.version,
            headers: head.headers,
            body,
            body_mode,
            keep_alive,
        }))
    }
}

/// Where the header section ends, if it has arrived: the blank line
/// (CRLF CRLF, or bare LF LF which httparse also accepts). `scanned`
/// remembers how far the search got, so it resumes there.
fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    // Leading blank lines before a request line are allowed (RFC 9112
    // 2.2); httparse skips them, so the search starts after them.
    let start = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let from = (*scanned).max(start).saturating_sub(3).max(start);
    let mut i = from;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let at = i + off;
        let rest = &buf[at + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(at + 2);
        }
        if rest.len() >= 2 && rest[0] == b'\r' && rest[1] == b'\n' {
            return Some(at + 3);
        }
        if rest.is_empty() || (rest.len() == 1 && rest[0] == b'\r') {
            break;
        }
        i = at + 1;
    }
    *scanned = buf.len();
    None
}

/// HTTP/1.1 requires exactly one `Host` field (RFC 9112 3.2); nginx
/// answers 400 without one or with two, and so do we.
fn check_host(head: &Head) -> Result<(), Refusal> {
    if head.version != Version::Http11 {
        return Ok(());
    }
    let hosts = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    match hosts {
        1 => Ok(()),
        0 => Err(Refusal::new(400, "HTTP/1.1 request without a Host header")),
        _ => Err(Refusal::new(400, "more than one Host header")),
    }
}

/// Serialises a response: status line, the handler's fields (framing
/// fields left out: they are the server's job), `Date`,
/// `Content-Length` and `Connection` as `persistence` says.
pub(crate) fn serialize_response(
    out: &mut Vec<u8>,
    response: &Response,
    body_mode: BodyMode,
    persistence: Persistence,
    version: Version,
) {
    let head_only = body_mode == BodyMode::HeadOnly;
    let status = response.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
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
        // Never let a header value (perhaps relayed from upstream) split
        // the response.
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
        with_http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    let body_allowed = !(100..200).contains(&status) && status != 204 && status != 304;
    // A HEAD answer's Content-Length must be what a GET would get (RFC
    // 9110 8.6). A handler that relays upstream's HEAD answer has no body
    // to measure, so an empty one announces no length rather than a false
    // `0`.
    let length_known = !(head_only && response.body.is_empty());
    if body_allowed && length_known {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(response.body.len()).as_bytes());
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
}

/// Calls `f` with the current time as an HTTP-date (`Date` field value).
/// The text only changes once a second, so each thread formats it once a
/// second rather than once per response.
fn with_http_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|cached| {
        let date = match cached {
            Some((at, text)) if *at == second => text,
            _ => &mut cached.insert((second, httpdate::fmt_http_date(now))).1,
        };
        f(date.as_bytes());
    });
}

/// Whether the handler asked for the connection to close after this
/// response.
pub(crate) fn handler_closes(response: &Response) -> bool {
    header(&response.headers, "connection").is_some_and(|v| has_token(v, "close"))
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

/// Header slots kept on the stack while parsing (the default limit is 100);
/// a larger [`Limits::max_headers`] parses into a vector instead.
const STACK_HEADERS: usize = 128;

/// Parses the request line and headers if they are complete.
fn parse_head(buf: &[u8], max_headers: usize) -> Result<Option<Head>, Refusal> {
    // The header slots live on the stack for the usual limits: the parse
    // of every request on the hit path allocates nothing for them.
    let mut on_stack = [const { MaybeUninit::<httparse::Header>::uninit() }; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let slots = if max_headers <= STACK_HEADERS {
        &mut on_stack[..max_headers]
    } else {
        on_heap.resize_with(max_headers, MaybeUninit::uninit);
        &mut on_heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
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
                            matches!(refusal.status, 400 | 431),
                            "refused with {}",
                            refusal.status
                        );
                        break;
                    }
                }
            }
        }
    }
}
