//! Accepting (loop 0 only) and admitting: each new connection goes to the
//! loop holding the fewest; at the connection bound the longest-waiting
//! idle one makes room; out of descriptors, the client waiting is answered
//! `503` from a reserved descriptor and accepting pauses.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::connection::{Conn, Phase};
use super::shared::{lock, Arrival};
use super::{EventLoop, FIRST};
use crate::conn::Reader;
use crate::tls::Transport;

/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one "out of descriptors" warning this often.
const WARN_EVERY: Duration = Duration::from_secs(5);

impl EventLoop {
    pub(super) fn accept_all(&mut self) {
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
    pub(super) fn take_incoming(&mut self) {
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

    pub(super) fn unassign(&self) {
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
}

/// Pending connections the kernel may queue for `accept`: a burst of new
/// clients (a flood reconnecting) waits in the queue instead of having
/// its SYNs dropped and retried a second later. Linux caps it at
/// `net.core.somaxconn` (4096 by default); nginx asks for 511, std for
/// 128.
const BACKLOG: i32 = 1024;

/// Binds `addr` (the first of its addresses that binds) and listens.
pub(super) fn listen(addr: &str) -> io::Result<TcpListener> {
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
