//! Plain TCP tunnels ([`Reply::Splice`](crate::Reply::Splice)): after the
//! `200` to a CONNECT, the loop moves bytes between the client and the
//! tunnel's destination, both sockets non-blocking and registered here,
//! so a tunnel costs two descriptors and two buffers, never a thread.
//! Nothing is parsed, cached or logged of what passes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::connection::{Conn, Phase, Splice};
use super::{EventLoop, FIRST};

/// The destination's token: the client's with the top bit set.
pub(super) const DESTINATION: usize = 1 << (usize::BITS - 1);

/// Most bytes held per direction: a side that does not read holds the
/// other back (TCP's own flow control does the rest).
const BUFFER: usize = 64 * 1024;

/// What one direction did in a turn.
enum Flow {
    /// Bytes moved.
    Moved,
    /// Nothing to do until the next readiness.
    Blocked,
    /// A socket failed: the tunnel ends.
    Broken,
}

impl EventLoop {
    /// The `200` is out: `far` joins this connection, and `early` (bytes
    /// the client sent right after its CONNECT) goes first.
    pub(super) fn start_splice(&mut self, key: usize, far: Arc<TcpStream>) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let registered = far.set_nonblocking(true).and_then(|()| {
            self.poll.registry().register(
                &mut SourceFd(&far.as_raw_fd()),
                Token((key + FIRST) | DESTINATION),
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        if let Err(e) = registered {
            tracing::debug!(error = %e, "cannot register a tunnel's destination");
            return self.close(key);
        }
        let _ = far.set_nodelay(true);
        let up = std::mem::take(&mut conn.reader.buf);
        conn.splice = Some(Box::new(Splice {
            far,
            up,
            down: Vec::new(),
            client_done: false,
            far_done: false,
        }));
        conn.phase = Phase::Spliced;
        self.pump(key);
    }

    /// Moves what can be moved both ways, until both directions would
    /// block; ends the tunnel when both sides are done or one fails.
    pub(super) fn pump(&mut self, key: usize) {
        let idle = self.limits.idle_timeout;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(s) = conn.splice.as_deref_mut() else {
            return;
        };
        let client = &*conn.stream;
        let mut moved = false;
        loop {
            let a = flow(
                client,
                &s.far,
                &mut s.up,
                &mut s.client_done,
                &mut self.scratch,
            );
            let b = flow(
                &s.far,
                client,
                &mut s.down,
                &mut s.far_done,
                &mut self.scratch,
            );
            match (a, b) {
                (Flow::Broken, _) | (_, Flow::Broken) => return self.close(key),
                (Flow::Blocked, Flow::Blocked) => break,
                _ => moved = true,
            }
        }
        if s.client_done && s.up.is_empty() {
            let _ = s.far.shutdown(Shutdown::Write);
        }
        if s.far_done && s.down.is_empty() {
            let _ = client.shutdown(Shutdown::Write);
        }
        if s.client_done && s.far_done && s.up.is_empty() && s.down.is_empty() {
            return self.close(key);
        }
        if moved {
            let now = Instant::now();
            conn.since = now;
            conn.deadline = Some(now + idle);
        }
    }

    /// Deregisters a closing connection's tunnel destination, if any.
    pub(super) fn drop_splice(&mut self, conn: &mut Conn) {
        if let Some(s) = conn.splice.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&s.far.as_raw_fd()));
            let _ = s.far.shutdown(Shutdown::Both);
        }
    }
}

/// One direction: writes what `buf` holds to `to`, then reads more from
/// `from` (while there is room), until it would block.
fn flow(
    from: &TcpStream,
    to: &TcpStream,
    buf: &mut Vec<u8>,
    done: &mut bool,
    scratch: &mut [u8],
) -> Flow {
    let mut moved = false;
    loop {
        while !buf.is_empty() {
            match (&*to).write(buf) {
                Ok(0) => return Flow::Broken,
                Ok(n) => {
                    buf.drain(..n);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if moved { Flow::Moved } else { Flow::Blocked };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flow::Broken,
            }
        }
        if *done {
            return if moved { Flow::Moved } else { Flow::Blocked };
        }
        let room = BUFFER.saturating_sub(buf.len()).min(scratch.len());
        match (&*from).read(&mut scratch[..room]) {
            Ok(0) => {
                *done = true;
                moved = true;
            }
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return if moved { Flow::Moved } else { Flow::Blocked };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Flow::Broken,
        }
    }
}
