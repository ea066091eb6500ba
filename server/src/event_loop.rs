//! The front door: a few event-loop threads (epoll through `mio`, one per
//! core by default, [`Limits::event_loops`]) that read requests for every
//! connection and hand each complete request to its handler. Loop 0 also
//! accepts, and gives each new connection to the loop holding the fewest,
//! so a cache hit answered on a loop thread costs one core's share of the
//! work and the cores serve side by side. A connection costs one file
//! descriptor and its buffer, never a thread, so idle and slow clients
//! cannot lock anybody out:
//!
//! - a connection that has not sent a complete header section within
//!   [`Limits::header_timeout`] is closed (`408` when it sent part of one);
//! - at [`Limits::max_connections`] the connection waiting longest without
//!   a request in progress (lingering, idle, or still sending its header
//!   section) is closed to make room; only when every connection has a
//!   request being handled or answered is a new one refused (`503`). New
//!   connections go to the loop holding the fewest, so an idle flood is
//!   spread over every loop; at the bound that loop closes its own
//!   longest-waiting connection, or passes the newcomer to the next loop
//!   when it has none to give up;
//! - when the process runs out of file descriptors, the loop answers the
//!   waiting client `503` from a descriptor it kept in reserve and stops
//!   accepting for a moment, instead of spinning on `accept`.
//!
//! A handler first gets a look on the loop thread
//! ([`Handler::handle_nonblocking`], for answers it has at hand: a cache
//! hit, `/health`); otherwise the request goes to a pool thread
//! (`workers.rs`) where the handler may block, and the reply comes back
//! through its loop's queue and [`Waker`]. Replies are written by the loop
//! that owns the connection.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
use super::waiting::{Waiter, Wake};
use super::workers::{Job, Pool};
use super::{ClientProbe, Handled, Handler, HttpRequest, Limits, Reply, Response};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `key` of the slab is token `key + FIRST`.
const FIRST: usize = 2;

mod splice;

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

/// What the rest of the server shares with the loops.
pub(crate) struct Shared {
    /// The limits in force; set live by [`Shared::set_limits`]. Loops read
    /// it only when [`Shared::limits_generation`] moves, so the hot path
    /// takes no lock.
    limits: Mutex<Arc<Limits>>,
    /// Moves on every [`Shared::set_limits`]; each loop compares it with
    /// the generation of its own copy once per turn.
    limits_generation: AtomicU64,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) local: SocketAddr,
    pub(crate) stopping: AtomicBool,
    pub(crate) connections: AtomicUsize,
    /// One per loop, indexed like the loops.
    mailboxes: Vec<Mailbox>,
    /// Loops still running; the last one out stops the handler pool.
    running: AtomicUsize,
    /// The connection bound in force: [`Limits::max_connections`], lowered
    /// to what the descriptor limit allows.
    pub(crate) max_connections: AtomicUsize,
    /// A TLS listener: every connection starts with this handshake.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A waiting request's answer may be ready ([`Wake::wake`]).
    pub(crate) fn ready(&self, index: usize, key: usize, generation: u64) {
        let Some(mailbox) = self.mailboxes.get(index) else {
            return;
        };
        lock(&mailbox.ready).push((key, generation));
        if let Err(e) = mailbox.waker.wake() {
            tracing::error!(error = %e, "cannot wake an event loop");
        }
    }

    /// The limits in force now.
    pub(crate) fn limits(&self) -> Arc<Limits> {
        Arc::clone(&lock(&self.limits))
    }

    /// Puts `limits` in force: every loop picks them up on its next turn
    /// (woken here, so an idle loop does too); open connections use them
    /// from their next request or deadline. The connection bound is
    /// `max_connections` (already lowered to the descriptor limit).
    pub(crate) fn set_limits(&self, limits: Limits, max_connections: usize) {
        *lock(&self.limits) = Arc::new(limits);
        self.max_connections
            .store(max_connections, Ordering::SeqCst);
        self.limits_generation.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }

    /// Wakes every loop (to stop).
    pub(crate) fn wake_all(&self) {
        for mailbox in &self.mailboxes {
            if let Err(e) = mailbox.waker.wake() {
                tracing::error!(error = %e, "cannot wake an event loop");
            }
        }
    }
}

/// What reaches a loop from other threads.
struct Mailbox {
    waker: Waker,
    /// Replies from pool threads, for the loop to write.
    done: Mutex<VecDeque<Done>>,
    /// Waiting requests whose answer may be ready: (key, generation).
    ready: Mutex<Vec<(usize, u64)>>,
    /// Connections loop 0 accepted for this loop.
    incoming: Mutex<Incoming>,
    /// Connections given to this loop and not yet closed (counted when
    /// given, so a burst of accepts spreads before any is admitted).
    assigned: AtomicUsize,
}

/// A connection accepted for a loop.
struct Arrival {
    stream: TcpStream,
    peer: SocketAddr,
    /// It arrived at the connection bound: the loop makes room for it.
    at_bound: bool,
    /// Loops that had no connection to give up for it.
    passed: usize,
}

#[derive(Default)]
struct Incoming {
    streams: Vec<Arrival>,
    /// The loop has ended: a connection given now is closed at once.
    closed: bool,
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
    /// A plain tunnel: bytes move both ways, untouched (`splice.rs`).
    Spliced,
}

/// An intercepted CONNECT's label ([`HttpRequest::tunnel`]) and the
/// headers of the CONNECT its requests inherit ([`Reply::Intercept`]).
type Tunnel = (Arc<str>, Arc<[(String, String)]>);

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
    upgrade: Option<(Arc<rustls::ServerConfig>, Tunnel)>,
    /// The intercepted CONNECT this connection carries, for its requests.
    tunnel: Option<Tunnel>,
    /// Readiness came while a request was handled or answered: what it
    /// announced is still in the socket, and no new edge will say so.
    edge_missed: bool,
    /// The request being handled waits here, on the loop (`waiting.rs`).
    waiter: Option<Box<dyn Waiter>>,
    /// A tunnel answered `200`: splicing begins once that is written.
    splice_to: Option<Arc<TcpStream>>,
    /// The tunnel this connection is (`splice.rs`).
    splice: Option<Box<splice::Splice>>,
}

pub(crate) struct EventLoop {
    shared: Arc<Shared>,
    /// This loop's copy of [`Shared::limits`], and the generation it is.
    limits: Arc<Limits>,
    limits_seen: u64,
    /// This loop's place in [`Shared::mailboxes`]; loop 0 accepts.
    index: usize,
    poll: Poll,
    /// Loop 0's only.
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
    /// Binds and registers; each loop runs in [`EventLoop::run`], on a
    /// thread of its own.
    pub(crate) fn bind(
        addr: &str,
        limits: Limits,
        handler: Arc<dyn Handler>,
        max_connections: usize,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<(Vec<EventLoop>, Arc<Shared>)> {
        let listener = listen(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let count = limits.event_loops.get();
        let polls = (0..count)
            .map(|_| Poll::new())
            .collect::<io::Result<Vec<Poll>>>()?;
        polls[0].registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let mailboxes = polls
            .iter()
            .map(|poll| {
                Ok(Mailbox {
                    waker: Waker::new(poll.registry(), WAKER)?,
                    done: Mutex::new(VecDeque::new()),
                    ready: Mutex::new(Vec::new()),
                    incoming: Mutex::new(Incoming::default()),
                    assigned: AtomicUsize::new(0),
                })
            })
            .collect::<io::Result<Vec<Mailbox>>>()?;
        let pool = Pool::new(format!("http-{}", local.port()), limits.handler_threads);
        let limits = Arc::new(limits);
        let shared = Arc::new(Shared {
            limits: Mutex::new(Arc::clone(&limits)),
            limits_generation: AtomicU64::new(0),
            handler,
            local,
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            mailboxes,
            running: AtomicUsize::new(count),
            max_connections: AtomicUsize::new(max_connections),
            tls,
        });
        let mut listener = Some(listener);
        let loops = polls
            .into_iter()
            .enumerate()
            .map(|(index, poll)| EventLoop {
                shared: Arc::clone(&shared),
                limits: Arc::clone(&limits),
                limits_seen: 0,
                index,
                poll,
                listener: listener.take(),
                conns: Slab::new(),
                next_generation: 0,
                pool: Arc::clone(&pool),
                reserve: if index == 0 {
                    File::open("/dev/null").ok()
                } else {
                    None
                },
                accept_paused_until: None,
                last_fd_warning: None,
                stopped: false,
                scratch: vec![0; 16 * 1024],
                rearm: VecDeque::new(),
            })
            .collect();
        Ok((loops, shared))
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut sweep_every = sweep_interval(&self.limits);
        let mut next_sweep = Instant::now() + sweep_every;
        let mut busy_poll = self.limits.busy_poll;
        let mut busy_until = Instant::now();
        loop {
            let now = Instant::now();
            let mut wait = next_sweep.saturating_duration_since(now);
            if !self.rearm.is_empty() {
                wait = Duration::ZERO;
            }
            if let Some(until) = self.accept_paused_until {
                wait = wait.min(until.saturating_duration_since(now));
            }
            // Busy polling (see `Limits::busy_poll`): shortly after an
            // event, look again instead of sleeping.
            let polling = now < busy_until;
            if polling {
                wait = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "event loop poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            // New limits (`Server::set_limits`): one atomic load per turn,
            // after the wait, so a request sent after the change is read
            // under the new limits.
            let generation = self.shared.limits_generation.load(Ordering::SeqCst);
            if generation != self.limits_seen {
                self.limits_seen = generation;
                self.limits = self.shared.limits();
                sweep_every = sweep_interval(&self.limits);
                next_sweep = next_sweep.min(Instant::now() + sweep_every);
                busy_poll = self.limits.busy_poll;
            }
            if !events.is_empty() {
                busy_until = Instant::now() + busy_poll;
            } else if polling {
                std::thread::yield_now();
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => {
                        if self.accept_paused_until.is_none() {
                            self.accept_all();
                        }
                    }
                    WAKER => {}
                    Token(t) if t & splice::DESTINATION != 0 => {
                        self.pump((t & !splice::DESTINATION) - FIRST);
                    }
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
            self.take_incoming();
            self.take_done();
            self.take_ready();
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
    }
}

impl Drop for EventLoop {
    /// The loop is done (or never ran: its thread could not start):
    /// connections still handed to it are closed, and the last loop out
    /// stops the handler pool.
    fn drop(&mut self) {
        let mailbox = &self.shared.mailboxes[self.index];
        let late = {
            let mut incoming = lock(&mailbox.incoming);
            incoming.closed = true;
            std::mem::take(&mut incoming.streams)
        };
        mailbox.assigned.fetch_sub(late.len(), Ordering::SeqCst);
        drop(late);
        if self.shared.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.pool.stop();
        }
    }
}

impl EventLoop {
    // ---- accepting ----

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.hand_over(stream, peer),
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

    /// Gives a new connection to the loop holding the fewest (this one
    /// on a tie), telling it whether the connection arrived at the bound.
    /// Only this loop accepts, so the count it reads includes every
    /// connection given and not yet closed.
    fn hand_over(&mut self, stream: TcpStream, peer: SocketAddr) {
        let mut open = 0;
        // (connections, not this loop, index): the fewest, this loop first.
        let mut target = (usize::MAX, true, self.index);
        for (i, mailbox) in self.shared.mailboxes.iter().enumerate() {
            let assigned = mailbox.assigned.load(Ordering::SeqCst);
            open += assigned;
            target = target.min((assigned, i != self.index, i));
        }
        let arrival = Arrival {
            stream,
            peer,
            at_bound: open >= self.shared.max_connections.load(Ordering::Relaxed),
            passed: 0,
        };
        self.give(target.2, arrival);
    }

    /// Gives a connection to loop `target` (this one, or through its
    /// mailbox), counting it there.
    fn give(&mut self, target: usize, arrival: Arrival) {
        let mailbox = &self.shared.mailboxes[target];
        mailbox.assigned.fetch_add(1, Ordering::SeqCst);
        if target == self.index {
            return self.admit(arrival);
        }
        {
            let mut incoming = lock(&mailbox.incoming);
            if incoming.closed {
                drop(incoming);
                mailbox.assigned.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            incoming.streams.push(arrival);
        }
        if let Err(e) = mailbox.waker.wake() {
            tracing::error!(error = %e, "cannot wake an event loop");
        }
    }

    /// Admits the connections other loops handed to this one.
    fn take_incoming(&mut self) {
        let streams =
            std::mem::take(&mut lock(&self.shared.mailboxes[self.index].incoming).streams);
        for arrival in streams {
            if self.stopped {
                self.unassign();
                continue;
            }
            self.admit(arrival);
        }
    }

    fn unassign(&self) {
        self.shared.mailboxes[self.index]
            .assigned
            .fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes a connection given to this loop (counted in its `assigned`).
    fn admit(&mut self, arrival: Arrival) {
        if arrival.at_bound && !self.evict_one() {
            self.unassign();
            let loops = self.shared.mailboxes.len();
            if arrival.passed + 1 < loops {
                let next = (self.index + 1) % loops;
                let passed = arrival.passed + 1;
                return self.give(next, Arrival { passed, ..arrival });
            }
            turn_away(arrival.stream);
            return;
        }
        let Arrival { stream, peer, .. } = arrival;
        if stream.set_nonblocking(true).is_err() {
            self.unassign();
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
                    self.unassign();
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
            self.unassign();
            return;
        }
        entry.insert(Conn {
            stream: Arc::new(stream),
            peer,
            local,
            generation: self.next_generation,
            reader: Reader::new(),
            phase: Phase::Idle,
            deadline: Some(now + self.limits.header_timeout),
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
            edge_missed: false,
            waiter: None,
            splice_to: None,
            splice: None,
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
            Phase::Handling | Phase::Writing(_) => {
                conn.edge_missed = true;
                // A waiting request looks whether its client hung up.
                if conn.waiter.is_some() {
                    self.poll_waiter(key);
                }
                return;
            }
            Phase::Lingering => return self.linger_read(key),
            Phase::Spliced => return self.pump(key),
            Phase::Idle | Phase::Head | Phase::Body => {}
        }
        let cap =
            self.limits.max_header_bytes + self.limits.max_body_bytes.saturating_mul(2) + 64 * 1024;
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
            if let Some(conn) = self.conns.get_mut(key) {
                if matches!(conn.phase, Phase::Idle | Phase::Head | Phase::Body) {
                    self.close(key);
                } else {
                    // The end of input came in the same read as the
                    // request: no new edge will announce it, so read again
                    // after the answer (and find the end there), or the
                    // connection would wait out its idle timeout.
                    conn.edge_missed = true;
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
        let limits = Arc::clone(&self.limits);
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
        let mut headers = complete.headers;
        if let Some((_, inherited)) = &conn.tunnel {
            for (name, value) in inherited.iter() {
                if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    headers.push((name.clone(), value.clone()));
                }
            }
        }
        let request = HttpRequest {
            method: complete.method,
            target: complete.target,
            headers,
            body: complete.body,
            peer: conn.peer,
            local: conn.local,
            client: ClientProbe::new(Arc::clone(&conn.stream)),
            tunnel: conn.tunnel.as_ref().map(|(label, _)| Arc::clone(label)),
            tls: conn.transport.is_tls(),
        };
        let generation = conn.generation;
        let peer = conn.peer;
        let index = self.index;
        let handler = Arc::clone(&self.shared.handler);
        let first =
            std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle_nonblocking(request)));
        let job: Job = match first {
            Ok(Handled::Now(reply)) => return self.finish(key, reply),
            Ok(Handled::Wait(mut waiter)) => {
                let wake = Wake::new(&self.shared, index, key, generation);
                let started = std::panic::catch_unwind(AssertUnwindSafe(|| waiter.start(wake)));
                if started.is_err() {
                    tracing::error!(%peer, "handler panicked");
                    return self.finish(key, panic_reply());
                }
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.waiter = Some(waiter);
                }
                return self.poll_waiter(key);
            }
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
                    deliver(&shared, index, key, generation, reply);
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
                    deliver(&shared, index, key, generation, reply);
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
            let batch: VecDeque<Done> =
                std::mem::take(&mut *lock(&self.shared.mailboxes[self.index].done));
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

    /// Asks the waiters woken since the last turn for their replies.
    fn take_ready(&mut self) {
        loop {
            let batch = std::mem::take(&mut *lock(&self.shared.mailboxes[self.index].ready));
            if batch.is_empty() {
                break;
            }
            for (key, generation) in batch {
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.generation == generation)
                {
                    self.poll_waiter(key);
                }
            }
        }
    }

    /// Asks a connection's waiter for its reply, and writes it if it has
    /// one.
    fn poll_waiter(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase != Phase::Handling {
            return;
        }
        let Some(waiter) = conn.waiter.as_mut() else {
            return;
        };
        let peer = conn.peer;
        let reply = match std::panic::catch_unwind(AssertUnwindSafe(|| waiter.poll())) {
            Ok(None) => return,
            Ok(Some(reply)) => reply,
            Err(_) => {
                tracing::error!(%peer, "handler panicked");
                panic_reply()
            }
        };
        conn.waiter = None;
        self.finish(key, reply);
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
            Reply::Intercept {
                config,
                tunnel,
                inherited,
            } => {
                if conn.transport.is_tls() {
                    return self.refuse_nested_connect(key, meta);
                }
                conn.upgrade = Some((config, (tunnel, inherited)));
                self.connect_established(key);
            }
            Reply::Splice(far) => {
                if conn.transport.is_tls() {
                    return self.refuse_nested_connect(key, meta);
                }
                conn.splice_to = Some(far);
                self.connect_established(key);
            }
            Reply::DropConnection => {
                let _ = conn.stream.shutdown(Shutdown::Both);
                self.close(key);
            }
        }
    }

    // ---- writing ----

    /// No tunnel inside a tunnel: a `CONNECT` sent over a connection that
    /// is already TLS (intercepted) is refused.
    fn refuse_nested_connect(&mut self, key: usize, meta: Meta) {
        let response = json_error(400, "bad_request", "CONNECT is not accepted inside TLS");
        self.respond(key, &response, meta);
    }

    /// Answers a `CONNECT` whose next step (interception or a plain
    /// tunnel) is already set on the connection; that step begins once
    /// this line is written.
    fn connect_established(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.out.clear();
        conn.out
            .extend_from_slice(b"HTTP/1.1 200 Connection established\r\n\r\n");
        conn.written = 0;
        let now = Instant::now();
        conn.phase = Phase::Writing(Persistence::KeepAlive);
        conn.since = now;
        conn.deadline = Some(now + self.limits.write_timeout);
        self.write(key);
    }

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
            self.limits.write_timeout.min(WRITE_STOPPING)
        } else {
            self.limits.write_timeout
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
        } else if conn.phase == Phase::Spliced {
            self.pump(key);
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
        conn.deadline = Some(now + self.limits.idle_timeout);
        if let Some(far) = conn.splice_to.take() {
            return self.start_splice(key, far);
        }
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
            conn.deadline = Some(now + self.limits.header_timeout);
        }
        conn.reader.shrink();
        // A pipelined request may be in the buffer, or more may wait in
        // the socket with no new edge to say so (it came while the request
        // was handled; TLS may hold records already read): read on the
        // loop's next turn, not from here, so that a client answered at
        // once, request after request, never deepens the stack. Otherwise
        // the socket was drained by the last read, and the next bytes
        // bring an edge: no read that would only say `EAGAIN`.
        if std::mem::take(&mut conn.edge_missed)
            || !conn.reader.buf.is_empty()
            || conn.transport.is_tls()
        {
            self.rearm.push_back(key);
        }
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
        let max = 2 * self.limits.max_body_bytes.max(1024 * 1024);
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
        let mut conn = self.conns.remove(key);
        self.drop_splice(&mut conn);
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&conn.stream.as_raw_fd()));
        // A ClientProbe may still hold the socket: make it see the end.
        let _ = conn.stream.shutdown(Shutdown::Both);
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        self.unassign();
    }

    /// Ends connections whose phase ran past its deadline.
    fn sweep(&mut self, now: Instant) {
        // Waiters give up here when their time runs out.
        let waiting: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.waiter.is_some())
            .map(|(key, _)| key)
            .collect();
        for key in waiting {
            self.poll_waiter(key);
        }
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
                    Phase::Idle | Phase::Head | Phase::Body | Phase::Lingering | Phase::Spliced
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

/// A reply from a pool thread, to the loop that owns its connection.
fn deliver(shared: &Shared, index: usize, key: usize, generation: u64, reply: Reply) {
    let mailbox = &shared.mailboxes[index];
    lock(&mailbox.done).push_back(Done {
        key,
        generation,
        reply,
    });
    if let Err(e) = mailbox.waker.wake() {
        tracing::error!(error = %e, "cannot wake the event loop");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
