//! The front door: one thread that accepts connections and reads requests
//! for all of them (epoll through `mio`), and hands each complete request
//! to its handler. A connection costs one file descriptor and its buffer,
//! never a thread, so idle and slow clients cannot lock anybody out:
//!
//! - a connection that has not sent a complete header section within
//!   [`Limits::header_timeout`] is closed (`408` when it sent part of one);
//! - at [`Limits::max_connections`] the connection waiting longest without
//!   a request in progress (lingering, idle, or still sending its header
//!   section) is closed to make room; only when every connection has a
//!   request being handled or answered is a new one refused (`503`);
//! - when the process runs out of file descriptors, the loop answers the
//!   waiting client `503` from a descriptor it kept in reserve and stops
//!   accepting for a moment, instead of spinning on `accept`.
//!
//! A handler first gets a look on the loop thread
//! ([`Handler::handle_nonblocking`], for answers it has at hand: a cache
//! hit, `/health`); otherwise the request goes to a pool thread
//! (`workers.rs`) where the handler may block, and the reply comes back
//! through a queue and a [`Waker`]. Replies are written by the loop.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use super::conn::{
    handler_closes, json_error, serialize_response, BodyMode, Complete, Persistence, Polled,
    Reader, Refusal, Version,
};
use super::tls::Transport;
use super::workers::{Job, Pool};
use super::{ClientProbe, Handled, Handler, HttpRequest, Limits, Reply, Response};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `key` of the slab is token `key + FIRST`.
const FIRST: usize = 2;

/// How long a closing connection reads and discards what the client still
/// sends, so the kernel does not answer unread data with a reset that
/// could destroy the response before the client reads it (the "lingering
/// close" of HTTP servers).
const LINGER: Duration = Duration::from_secs(2);
/// The same while the server stops: shorter, it counts against the
/// shutdown bound.
const LINGER_STOPPING: Duration = Duration::from_millis(300);
/// While the server stops, the longest a client may take to read its
/// last answer.
const WRITE_STOPPING: Duration = Duration::from_secs(1);
/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one "out of descriptors" warning this often.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// Most bytes read from one connection per readiness event before the
/// others get their turn (edge-triggered: its remainder is read when the
/// loop comes back to it).
const READ_BUDGET: usize = 256 * 1024;

/// What the rest of the server shares with the loop.
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) local: SocketAddr,
    pub(crate) stopping: AtomicBool,
    pub(crate) connections: AtomicUsize,
    pub(crate) waker: Waker,
    /// Replies from pool threads, for the loop to write.
    done: Mutex<VecDeque<Done>>,
    /// The connection bound in force: [`Limits::max_connections`], lowered
    /// to what the descriptor limit allows.
    pub(crate) max_connections: usize,
    /// A TLS listener: every connection starts with this handshake.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// A handler's reply to a request handled on a pool thread.
struct Done {
    key: usize,
    generation: u64,
    reply: Reply,
}

/// How the request being handled was framed: what its answer must say.
#[derive(Debug, Clone, Copy)]
struct Meta {
    version: Version,
    body_mode: BodyMode,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Part of a header section has arrived.
    Head,
    /// The header section is in; the body is arriving.
    Body,
    /// A handler has the request.
    Handling,
    /// An answer is being written; then the connection is kept or closed.
    Writing(Persistence),
    /// Closed for sending; reading and discarding until the client closes.
    Lingering,
}

struct Conn {
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    /// Tells this connection from an earlier one with the same slab key.
    generation: u64,
    reader: Reader,
    phase: Phase,
    /// When the current phase ends the connection (`None`: handling).
    deadline: Option<Instant>,
    /// When the phase began: the oldest evictable connection goes first.
    since: Instant,
    /// No request has been read yet: the header timeout runs from accept.
    fresh: bool,
    opened: Instant,
    meta: Option<Meta>,
    out: Vec<u8>,
    written: usize,
    lingered: usize,
    /// Plain or TLS (`tls.rs`).
    transport: Transport,
    /// A CONNECT answered `200`: TLS begins once that is written.
    upgrade: Option<(Arc<rustls::ServerConfig>, Arc<str>)>,
    /// The intercepted CONNECT this connection carries, for its requests.
    tunnel: Option<Arc<str>>,
}

pub(crate) struct EventLoop {
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    next_generation: u64,
    pool: Arc<Pool>,
    /// Kept open so that, out of descriptors, one can be freed to accept
    /// and answer the client waiting.
    reserve: Option<File>,
    accept_paused_until: Option<Instant>,
    last_fd_warning: Option<Instant>,
    stopped: bool,
    scratch: Vec<u8>,
    /// Connections whose read budget ran out with bytes still waiting.
    rearm: VecDeque<usize>,
}

/// How often deadlines are checked: often enough for the shortest timeout
/// to be kept to within a quarter of itself.
fn sweep_interval(limits: &Limits) -> Duration {
    let shortest = [
        limits.header_timeout,
        limits.body_timeout,
        limits.idle_timeout,
        limits.write_timeout,
    ]
    .into_iter()
    .min()
    .unwrap_or(Duration::from_secs(1));
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

impl EventLoop {
    /// Binds and registers; the loop runs in [`EventLoop::run`].
    pub(crate) fn bind(
        addr: &str,
        limits: Limits,
        handler: Arc<dyn Handler>,
        max_connections: usize,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<(EventLoop, Arc<Shared>)> {
        let listener = listen(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            limits,
            handler,
            local,
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            waker,
            done: Mutex::new(VecDeque::new()),
            max_connections,
            tls,
        });
        let event_loop = EventLoop {
            shared: Arc::clone(&shared),
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            next_generation: 0,
            pool: Pool::new(format!("http-{}", local.port())),
            reserve: File::open("/dev/null").ok(),
            accept_paused_until: None,
            last_fd_warning: None,
            stopped: false,
            scratch: vec![0; 16 * 1024],
            rearm: VecDeque::new(),
        };
        Ok((event_loop, shared))
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let sweep_every = sweep_interval(&self.shared.limits);
        let mut next_sweep = Instant::now() + sweep_every;
        loop {
            let now = Instant::now();
            let mut wait = next_sweep.saturating_duration_since(now);
            if !self.rearm.is_empty() {
                wait = Duration::ZERO;
            }
            if let Some(until) = self.accept_paused_until {
                wait = wait.min(until.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "event loop poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => {
                        if self.accept_paused_until.is_none() {
                            self.accept_all();
                        }
                    }
                    WAKER => {}
                    Token(t) => {
                        let key = t - FIRST;
                        if event.is_writable() {
                            self.on_writable(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(key);
                        }
                    }
                }
            }
            self.take_done();
            self.take_rearmed();
            let now = Instant::now();
            if self.accept_paused_until.is_some_and(|until| now >= until) {
                self.accept_paused_until = None;
                self.accept_all();
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + sweep_every;
            }
            if self.shared.stopping() && !self.stopped {
                self.begin_stop();
            }
            if self.stopped && self.conns.is_empty() {
                break;
            }
        }
        self.pool.stop();
    }

    // ---- accepting ----

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_fds(&e) => {
                    self.out_of_fds();
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and the like: that client is gone.
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            }
        }
    }

    /// Out of descriptors: free the reserve, take the waiting client and
    /// answer it `503`, take the reserve back, and pause accepting so the
    /// loop does not spin while descriptors are short.
    fn out_of_fds(&mut self) {
        let now = Instant::now();
        if self
            .last_fd_warning
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            tracing::warn!(
                open = self.conns.len(),
                "out of file descriptors: answering 503 and pausing accept (raise `ulimit -n` or lower server.max_connections)"
            );
            self.last_fd_warning = Some(now);
        }
        self.reserve = None;
        if let Some(listener) = &self.listener {
            if let Ok((stream, _)) = listener.accept() {
                turn_away(stream);
            }
        }
        self.reserve = File::open("/dev/null").ok();
        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.shared.max_connections && !self.evict_one() {
            turn_away(stream);
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(self.shared.local);
        let transport = match &self.shared.tls {
            None => Transport::Plain,
            Some(config) => match Transport::tls(Arc::clone(config)) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start TLS for a connection");
                    return;
                }
            },
        };
        let now = Instant::now();
        self.next_generation += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(
                &mut SourceFd(&stream.as_raw_fd()),
                Token(key + FIRST),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        entry.insert(Conn {
            stream: Arc::new(stream),
            peer,
            local,
            generation: self.next_generation,
            reader: Reader::new(),
            phase: Phase::Idle,
            deadline: Some(now + self.shared.limits.header_timeout),
            since: now,
            fresh: true,
            opened: now,
            meta: None,
            out: Vec::new(),
            written: 0,
            lingered: 0,
            transport,
            upgrade: None,
            tunnel: None,
        });
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        // Edge-triggered: bytes that came with the connection are read now.
        self.on_readable(key);
    }

    /// At the bound: closes the connection that has waited longest without
    /// a request in progress (lingering first, then idle, then one still
    /// sending its header section). `false` when every connection has a
    /// request being handled, read or answered.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .filter_map(|(key, c)| {
                let rank = match c.phase {
                    Phase::Lingering => 0,
                    Phase::Idle => 1,
                    Phase::Head => 2,
                    _ => return None,
                };
                Some((rank, c.since, key))
            })
            .min();
        match victim {
            Some((_, _, key)) => {
                tracing::debug!("at the connection bound: closing the longest-waiting connection");
                self.close(key);
                true
            }
            None => false,
        }
    }

    // ---- reading ----

    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.phase {
            // The request is being handled or answered: what the client
            // sends next waits in the socket (a hang-up is seen by the
            // handler's ClientProbe). Reading resumes after the answer.
            Phase::Handling | Phase::Writing(_) => return,
            Phase::Lingering => return self.linger_read(key),
            Phase::Idle | Phase::Head | Phase::Body => {}
        }
        let cap = self.shared.limits.max_header_bytes
            + self.shared.limits.max_body_bytes.saturating_mul(2)
            + 64 * 1024;
        let room = cap.saturating_sub(conn.reader.buf.len());
        let turn = conn.transport.read(
            &conn.stream,
            &mut self.scratch,
            &mut conn.reader.buf,
            READ_BUDGET.min(room),
        );
        let (read, eof) = (turn.raw, turn.eof);
        self.process(key);
        if eof {
            // Whatever complete request was in the buffer is being
            // answered (the client may have half-closed after sending it);
            // otherwise the client left mid-request or between requests.
            if let Some(conn) = self.conns.get(key) {
                if matches!(conn.phase, Phase::Idle | Phase::Head | Phase::Body) {
                    self.close(key);
                }
            }
        } else if read >= READ_BUDGET {
            // More is waiting; no new edge will say so.
            self.rearm.push_back(key);
        }
    }

    /// Reads requests out of the buffer: dispatches a complete one,
    /// refuses a bad one, or sets the deadline for the rest to arrive.
    fn process(&mut self, key: usize) {
        let limits = self.shared.limits.clone();
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !matches!(conn.phase, Phase::Idle | Phase::Head | Phase::Body) {
                return;
            }
            match conn.reader.poll(&limits) {
                Ok(Polled::Incomplete) => {
                    let now = Instant::now();
                    if conn.reader.in_body() {
                        if conn.phase != Phase::Body {
                            conn.phase = Phase::Body;
                            conn.since = now;
                            conn.deadline = Some(now + limits.body_timeout);
                        }
                    } else if !conn.reader.buf.is_empty() && conn.phase == Phase::Idle {
                        conn.phase = Phase::Head;
                        conn.since = now;
                        let start = if conn.fresh { conn.opened } else { now };
                        conn.deadline = Some(start + limits.header_timeout);
                    }
                    return;
                }
                Ok(Polled::Continue) => {
                    let _ = conn
                        .transport
                        .write(&conn.stream, b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                Ok(Polled::Request(complete)) => return self.dispatch(key, complete),
                Err(refusal) => return self.refuse(key, refusal),
            }
        }
    }

    fn refuse(&mut self, key: usize, refusal: Refusal) {
        let response = refusal.response();
        self.respond(
            key,
            &response,
            Meta {
                version: Version::Http11,
                body_mode: BodyMode::Full,
                keep_alive: false,
            },
        );
    }

    // ---- handling ----

    fn dispatch(&mut self, key: usize, complete: Complete) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let meta = Meta {
            version: complete.version,
            body_mode: complete.body_mode,
            keep_alive: complete.keep_alive,
        };
        conn.phase = Phase::Handling;
        conn.fresh = false;
        conn.deadline = None;
        conn.meta = Some(meta);
        let request = HttpRequest {
            method: complete.method,
            target: complete.target,
            headers: complete.headers,
            body: complete.body,
            peer: conn.peer,
            local: conn.local,
            client: ClientProbe::new(Arc::clone(&conn.stream)),
            tunnel: conn.tunnel.clone(),
            tls: conn.transport.is_tls(),
        };
        let generation = conn.generation;
        let peer = conn.peer;
        let handler = Arc::clone(&self.shared.handler);
        let first =
            std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle_nonblocking(request)));
        let job: Job = match first {
            Ok(Handled::Now(reply)) => return self.finish(key, reply),
            Err(_) => {
                tracing::error!(%peer, "handler panicked");
                return self.finish(key, panic_reply());
            }
            Ok(Handled::Blocking(request)) => {
                let shared = Arc::clone(&self.shared);
                Box::new(move || {
                    let reply =
                        std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request)))
                            .unwrap_or_else(|_| {
                                tracing::error!(%peer, "handler panicked");
                                panic_reply()
                            });
                    deliver(&shared, key, generation, reply);
                })
            }
            Ok(Handled::Later(later)) => {
                let shared = Arc::clone(&self.shared);
                Box::new(move || {
                    let reply =
                        std::panic::catch_unwind(AssertUnwindSafe(later)).unwrap_or_else(|_| {
                            tracing::error!(%peer, "handler panicked");
                            panic_reply()
                        });
                    deliver(&shared, key, generation, reply);
                })
            }
        };
        if self.pool.run(job).is_err() {
            let response = json_error(
                503,
                "service_unavailable",
                "no thread to handle the request",
            );
            self.finish(key, Reply::Respond(response));
        }
    }

    fn take_done(&mut self) {
        loop {
            let batch: VecDeque<Done> = {
                let mut done = self
                    .shared
                    .done
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                std::mem::take(&mut *done)
            };
            if batch.is_empty() {
                break;
            }
            for done in batch {
                let current = self
                    .conns
                    .get(done.key)
                    .is_some_and(|c| c.generation == done.generation && c.phase == Phase::Handling);
                if current {
                    self.finish(done.key, done.reply);
                }
            }
        }
    }

    /// Reads the connections that may have bytes waiting without a new
    /// readiness edge (answered, or over their read budget); those that
    /// come back during this turn wait for the next one.
    fn take_rearmed(&mut self) {
        for key in std::mem::take(&mut self.rearm) {
            self.on_readable(key);
        }
    }

    /// The handler's reply: written, or the connection dropped.
    fn finish(&mut self, key: usize, reply: Reply) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let meta = conn.meta.take().unwrap_or(Meta {
            version: Version::Http11,
            body_mode: BodyMode::Full,
            keep_alive: false,
        });
        match reply {
            Reply::Respond(response) => self.respond(key, &response, meta),
            Reply::Intercept { config, tunnel } => {
                if conn.transport.is_tls() {
                    // No tunnel inside a tunnel.
                    let response =
                        json_error(400, "bad_request", "CONNECT is not accepted inside TLS");
                    return self.respond(key, &response, meta);
                }
                conn.upgrade = Some((config, tunnel));
                conn.out.clear();
                conn.out
                    .extend_from_slice(b"HTTP/1.1 200 Connection established\r\n\r\n");
                conn.written = 0;
                let now = Instant::now();
                conn.phase = Phase::Writing(Persistence::KeepAlive);
                conn.since = now;
                conn.deadline = Some(now + self.shared.limits.write_timeout);
                self.write(key);
            }
            Reply::DropConnection => {
                let _ = conn.stream.shutdown(Shutdown::Both);
                self.close(key);
            }
        }
    }

    // ---- writing ----

    fn respond(&mut self, key: usize, response: &Response, meta: Meta) {
        let stopping = self.shared.stopping();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let persistence = if meta.keep_alive && !handler_closes(response) && !stopping {
            Persistence::KeepAlive
        } else {
            Persistence::Close
        };
        conn.out.clear();
        conn.written = 0;
        serialize_response(
            &mut conn.out,
            response,
            meta.body_mode,
            persistence,
            meta.version,
        );
        let now = Instant::now();
        conn.phase = Phase::Writing(persistence);
        conn.since = now;
        // While stopping, a client that does not take its answer must not
        // hold the exit for the whole write timeout.
        let timeout = if stopping {
            self.shared.limits.write_timeout.min(WRITE_STOPPING)
        } else {
            self.shared.limits.write_timeout
        };
        conn.deadline = Some(now + timeout);
        self.write(key);
    }

    fn on_writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(conn.phase, Phase::Writing(_)) {
            self.write(key);
        } else if conn.transport.is_tls() && conn.transport.flush(&conn.stream).is_err() {
            // A handshake answer (or an alert) the socket could not take.
            self.close(key);
        }
    }

    fn write(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Writing(then) = conn.phase else {
            return;
        };
        while conn.written < conn.out.len() {
            match conn
                .transport
                .write(&conn.stream, &conn.out[conn.written..])
            {
                Ok(0) => return self.close(key),
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(key),
            }
        }
        match conn.transport.flush(&conn.stream) {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => return self.close(key),
        }
        if conn.out.capacity() > 64 * 1024 {
            conn.out = Vec::new();
        } else {
            conn.out.clear();
        }
        conn.written = 0;
        if then == Persistence::Close || self.shared.stopping() {
            return self.linger(key);
        }
        let now = Instant::now();
        conn.phase = Phase::Idle;
        conn.since = now;
        conn.deadline = Some(now + self.shared.limits.idle_timeout);
        if let Some((config, tunnel)) = conn.upgrade.take() {
            // The `200` to a CONNECT is out: TLS from here on. The
            // handshake and the first request must come within the header
            // timeout, as on a new connection.
            let early = std::mem::take(&mut conn.reader.buf);
            let started = Transport::tls(config).and_then(|mut t| {
                t.feed(&conn.stream, &early)?;
                Ok(t)
            });
            match started {
                Ok(t) => conn.transport = t,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS after CONNECT failed");
                    return self.close(key);
                }
            }
            conn.tunnel = Some(tunnel);
            conn.fresh = true;
            conn.opened = now;
            conn.deadline = Some(now + self.shared.limits.header_timeout);
        }
        conn.reader.shrink();
        // A pipelined request may be in the buffer, and more may wait in
        // the socket (no new edge will say so): read on the loop's next
        // turn, not from here, so that a client answered at once, request
        // after request, never deepens the stack.
        self.rearm.push_back(key);
    }

    // ---- closing ----

    fn linger(&mut self, key: usize) {
        let stopping = self.shared.stopping();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.transport.close_notify(&conn.stream);
        let _ = conn.stream.shutdown(Shutdown::Write);
        let now = Instant::now();
        conn.phase = Phase::Lingering;
        conn.since = now;
        conn.deadline = Some(now + if stopping { LINGER_STOPPING } else { LINGER });
        conn.reader.buf = Vec::new();
        self.linger_read(key);
    }

    fn linger_read(&mut self, key: usize) {
        let max = 2 * self.shared.limits.max_body_bytes.max(1024 * 1024);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            match (&*conn.stream).read(&mut self.scratch) {
                Ok(0) => return self.close(key),
                Ok(n) => {
                    conn.lingered += n;
                    if conn.lingered > max {
                        return self.close(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(key),
            }
        }
    }

    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let conn = self.conns.remove(key);
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&conn.stream.as_raw_fd()));
        // A ClientProbe may still hold the socket: make it see the end.
        let _ = conn.stream.shutdown(Shutdown::Both);
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
    }

    /// Ends connections whose phase ran past its deadline.
    fn sweep(&mut self, now: Instant) {
        let expired: Vec<(usize, Phase)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| now >= d))
            .map(|(key, c)| (key, c.phase))
            .collect();
        for (key, phase) in expired {
            match phase {
                Phase::Head | Phase::Body => self.refuse(
                    key,
                    Refusal::new(
                        408,
                        if phase == Phase::Head {
                            "request header section not received in time"
                        } else {
                            "request body not received in time"
                        },
                    ),
                ),
                // Idle past its timeout, a client not reading its answer,
                // or done lingering.
                _ => self.close(key),
            }
        }
    }

    /// Shutdown: the listener closes at once, and so does every connection
    /// without a complete request; one being handled or answered closes
    /// after its answer.
    fn begin_stop(&mut self) {
        self.stopped = true;
        if let Some(listener) = self.listener.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&listener.as_raw_fd()));
        }
        let waiting: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                matches!(
                    c.phase,
                    Phase::Idle | Phase::Head | Phase::Body | Phase::Lingering
                )
            })
            .map(|(key, _)| key)
            .collect();
        for key in waiting {
            self.close(key);
        }
        let cap = Instant::now() + WRITE_STOPPING;
        for (_, conn) in self.conns.iter_mut() {
            if matches!(conn.phase, Phase::Writing(_)) {
                conn.deadline = Some(conn.deadline.map_or(cap, |d| d.min(cap)));
            }
        }
    }
}

/// Pending connections the kernel may queue for `accept`: a burst of new
/// clients (a flood reconnecting) waits in the queue instead of having
/// its SYNs dropped and retried a second later. Linux caps it at
/// `net.core.somaxconn` (4096 by default); nginx asks for 511, std for
/// 128.
const BACKLOG: i32 = 1024;

/// Binds `addr` (the first of its addresses that binds) and listens.
fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        let bound = (|| {
            let socket = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&a.into())?;
            socket.listen(BACKLOG)?;
            Ok::<TcpListener, io::Error>(socket.into())
        })();
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}: no address to bind"),
        )
    }))
}

fn deliver(shared: &Shared, key: usize, generation: u64, reply: Reply) {
    shared
        .done
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back(Done {
            key,
            generation,
            reply,
        });
    if let Err(e) = shared.waker.wake() {
        tracing::error!(error = %e, "cannot wake the event loop");
    }
}

fn panic_reply() -> Reply {
    let mut response = json_error(500, "internal", "handler failed");
    response.headers.push(("Connection".into(), "close".into()));
    Reply::Respond(response)
}

fn is_out_of_fds(e: &io::Error) -> bool {
    // EMFILE (24): the process's limit; ENFILE (23): the system's.
    matches!(e.raw_os_error(), Some(24 | 23))
}

/// Over the connection bound or out of descriptors: a `503` written at
/// once (a fresh socket's send buffer takes it) and close.
fn turn_away(stream: TcpStream) {
    let body = br#"{"error":"service_unavailable","message":"too many connections"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(&out);
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the client already sent, without blocking, so closing does
    // not reset the connection before the 503 is read.
    let mut scratch = [0u8; 4096];
    while matches!((&stream).read(&mut scratch), Ok(n) if n > 0) {}
}
