//! Reading requests: bytes off the socket (a bounded budget per turn),
//! parsed by `conn.rs`'s reader, and each complete request handed on, or
//! a bad one refused.

use std::sync::Arc;
use std::time::Instant;

use super::connection::{Meta, Phase};
use super::EventLoop;
use crate::conn::{BodyMode, Polled, Refusal, Version};

/// Most bytes read from one connection per readiness event before the
/// others get their turn (edge-triggered: its remainder is read when the
/// loop comes back to it).
const READ_BUDGET: usize = 256 * 1024;

impl EventLoop {
    pub(super) fn on_readable(&mut self, key: usize) {
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

    pub(super) fn refuse(&mut self, key: usize, refusal: Refusal) {
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

    /// Reads the connections that may have bytes waiting without a new
    /// readiness edge (answered, or over their read budget); those that
    /// come back during this turn wait for the next one.
    pub(super) fn take_rearmed(&mut self) {
        for key in std::mem::take(&mut self.rearm) {
            self.on_readable(key);
        }
    }
}
