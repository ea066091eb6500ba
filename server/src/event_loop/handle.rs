//! Handing a complete request to the handler: first a look on the loop
//! thread, then a waiter polled on the loop or a job on a pool thread; and
//! taking the reply back to the connection that asked.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use super::connection::{Meta, Phase};
use super::shared::lock;
use super::shared::{deliver, Done};
use super::EventLoop;
use crate::conn::{json_error, BodyMode, Complete, Version};
use crate::waiting::Wake;
use crate::workers::Job;
use crate::{ClientProbe, Handled, HttpRequest, Reply};

impl EventLoop {
    pub(super) fn dispatch(&mut self, key: usize, complete: Complete) {
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

    pub(super) fn take_done(&mut self) {
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
    pub(super) fn take_ready(&mut self) {
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
    pub(super) fn poll_waiter(&mut self, key: usize) {
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
}

fn panic_reply() -> Reply {
    let mut response = json_error(500, "internal", "handler failed");
    response.headers.push(("Connection".into(), "close".into()));
    Reply::Respond(response)
}
