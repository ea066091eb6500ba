//! Writing answers: a response serialized into the connection's buffer
//! and written as the socket takes it; then the connection is kept (and
//! a CONNECT's next step, TLS interception or a plain tunnel, begins) or
//! closed.

use std::io;
use std::time::{Duration, Instant};

use super::connection::{Meta, Phase};
use super::EventLoop;
use crate::conn::{handler_closes, json_error, serialize_response, Persistence};
use crate::tls::Transport;
use crate::Response;

/// While the server stops, the longest a client may take to read its
/// last answer.
pub(super) const WRITE_STOPPING: Duration = Duration::from_secs(1);

impl EventLoop {
    /// No tunnel inside a tunnel: a `CONNECT` sent over a connection that
    /// is already TLS (intercepted) is refused.
    pub(super) fn refuse_nested_connect(&mut self, key: usize, meta: Meta) {
        let response = json_error(400, "bad_request", "CONNECT is not accepted inside TLS");
        self.respond(key, &response, meta);
    }

    /// Answers a `CONNECT` whose next step (interception or a plain
    /// tunnel) is already set on the connection; that step begins once
    /// this line is written.
    pub(super) fn connect_established(&mut self, key: usize) {
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

    pub(super) fn respond(&mut self, key: usize, response: &Response, meta: Meta) {
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

    pub(super) fn on_writable(&mut self, key: usize) {
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
}
