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
//!
//! One file per step a connection goes through, in order: `accept.rs`
//! (accepting and admitting), `read.rs` (reading and parsing),
//! `handle.rs` (the hand-off to the handler and its reply), `write.rs`
//! (writing answers, a CONNECT's next step), `close.rs` (lingering close,
//! deadlines, shutdown); `splice.rs` moves plain tunnels. What they work
//! on: `connection.rs` (one connection's state) and `shared.rs` (what
//! crosses threads). This file binds the loops and runs their turns.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::workers::Pool;
use super::{Handler, Limits};
use accept::listen;
use connection::Conn;
use shared::{lock, Incoming, Mailbox};

mod accept;
mod close;
mod connection;
mod handle;
mod read;
pub(crate) mod shared;
mod splice;
mod write;

pub(crate) use shared::Shared;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `key` of the slab is token `key + FIRST`.
const FIRST: usize = 2;

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
