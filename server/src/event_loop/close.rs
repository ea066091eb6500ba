//! Ending connections: the lingering close, deadlines swept, and the
//! shutdown that lets answers in progress finish.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;

use super::connection::Phase;
use super::write::WRITE_STOPPING;
use super::EventLoop;
use crate::conn::Refusal;

/// How long a closing connection reads and discards what the client still
/// sends, so the kernel does not answer unread data with a reset that
/// could destroy the response before the client reads it (the "lingering
/// close" of HTTP servers).
const LINGER: Duration = Duration::from_secs(2);
/// The same while the server stops: shorter, it counts against the
/// shutdown bound.
const LINGER_STOPPING: Duration = Duration::from_millis(300);

impl EventLoop {
    pub(super) fn linger(&mut self, key: usize) {
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

    pub(super) fn linger_read(&mut self, key: usize) {
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

    pub(super) fn close(&mut self, key: usize) {
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
    pub(super) fn sweep(&mut self, now: Instant) {
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
    pub(super) fn begin_stop(&mut self) {
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
