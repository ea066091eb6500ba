//! A small HTTP/1.1 server: the front door of the proxy daemon and of the
//! mock upstream.
//!
//! A few event-loop threads (one per core by default) read requests for
//! every connection (epoll through `mio`; see `event_loop.rs`); a request
//! that must wait for an answer (a call waiting for its turn upstream)
//! waits as state on the event loop ([`Waiter`], `waiting.rs`), costing no
//! thread; blocking handler work runs on a pool bounded by
//! [`Limits::handler_threads`]. An idle or slow client costs one file
//! descriptor and its buffer, never a thread. No client can lock the
//! others out: header sections must arrive within
//! [`Limits::header_timeout`], and at [`Limits::max_connections`] the
//! connection waiting longest without a request in progress gives way to
//! the new one.
//!
//! What the server guarantees to a [`Handler`]: one complete request at a
//! time per connection, in the order the client sent them (pipelining),
//! with the body already decoded (`Content-Length` or chunked), and the
//! request-target exactly as received, never normalised or decoded (an
//! absolute-form `http://host/path` target is passed through too: the
//! proxy layer decides what it means). Whatever a client sends (garbage, a
//! header that never ends, a body too large, an HTTP/1.1 request without
//! exactly one `Host`) costs at most that client's connection: it gets a
//! short JSON error and is closed, and every other connection keeps being
//! served.
//!
//! A handler answers a [`Reply`]: a core [`Response`] (the one response
//! type of every syncoord crate), [`Reply::DropConnection`] to close
//! the connection without an answer (the mock upstream simulates broken
//! connections that way), or [`Reply::Intercept`] to answer a CONNECT with
//! `200` and terminate TLS on that connection (never a blind tunnel: each
//! request inside comes to the handler, with [`HttpRequest::tunnel`]).
//!
//! TLS (rustls) is per-connection state (`tls.rs`): a listener bound with
//! [`Server::bind_tls`] starts every connection with a handshake, an
//! intercepted CONNECT switches to one; a failed handshake costs that
//! connection only.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chunked;
mod conn;
mod event_loop;
mod fds;
#[cfg(any(test, feature = "test-client"))]
#[allow(missing_docs)] // test helpers, never in a release build
pub mod test_client;
#[cfg(test)]
mod tests;
mod tls;
mod waiting;
mod workers;

pub use waiting::{Waiter, Wake};

/// The rustls this server terminates TLS with, for handlers that build a
/// [`rustls::ServerConfig`] ([`Reply::Intercept`], [`Server::bind_tls`]).
pub use rustls;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use syncoord_core::Response;

/// Bounds on what one client may cost the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request line + header section; beyond it, `431`.
    pub max_header_bytes: usize,
    /// Most header fields in one request; beyond it, `431`.
    pub max_headers: usize,
    /// Largest decoded request body; beyond it, `413`.
    pub max_body_bytes: usize,
    /// How long a keep-alive connection may sit idle between requests
    /// before it is closed.
    pub idle_timeout: Duration,
    /// A request's header section must be complete this long after its
    /// first byte (after the connection opened, for the first request);
    /// otherwise `408` and close. A slowloris client holds its connection
    /// this long at most.
    pub header_timeout: Duration,
    /// A request's body must be complete this long after its header
    /// section; otherwise `408` and close.
    pub body_timeout: Duration,
    /// A client must take its answer within this long; otherwise the
    /// connection is closed.
    pub write_timeout: Duration,
    /// Most connections open at once. At the bound the connection idle the
    /// longest is closed to make room; with none idle, `503` and close.
    pub max_connections: usize,
    /// Event-loop threads reading and writing connections (and answering
    /// what a handler has at hand, such as cache hits). One per core by
    /// default: a loop is one core's worth of answering.
    pub event_loops: NonZeroUsize,
    /// After answering, an event loop keeps polling its sockets (yielding
    /// the CPU between polls) this long before it goes to sleep, so a
    /// client that sends its next request within it is read without a
    /// thread wake-up. On a loopback client that answers at once this
    /// more than doubles the requests one connection gets through (see
    /// BENCHMARKS.md); the cost is CPU while traffic flows (at most this
    /// long per burst, per loop), and nothing when idle. Zero: sleep at
    /// once.
    pub busy_poll: Duration,
    /// Most threads running blocking handler work ([`Handled::Blocking`],
    /// [`Handled::Later`]); beyond it, such work queues until a thread is
    /// free. Requests that wait ([`Handled::Wait`]) take none.
    pub handler_threads: NonZeroUsize,
}

/// [`Limits::handler_threads`] by default: enough for a mock upstream
/// whose handlers sleep to simulate latency, bounded all the same.
pub const DEFAULT_HANDLER_THREADS: NonZeroUsize = match NonZeroUsize::new(256) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// One event loop per core the process may use.
pub fn default_event_loops() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            event_loops: default_event_loops(),
            busy_poll: Duration::ZERO,
            handler_threads: DEFAULT_HANDLER_THREADS,
        }
    }
}

/// One request, as the client sent it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The method token, e.g. `GET`.
    pub method: String,
    /// The request-target exactly as sent (origin-form `/path?query`,
    /// absolute-form `http://host/path`, `*`...): never normalised.
    pub target: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The decoded body (empty when there is none).
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// Tells whether the client has hung up while its request is handled.
    pub client: ClientProbe,
    /// Set on requests that arrive inside a CONNECT the handler
    /// intercepted ([`Reply::Intercept`]): the label it gave that tunnel
    /// (the daemon's is `https://host`).
    pub tunnel: Option<Arc<str>>,
    /// Whether the request came over TLS (a TLS listener or a tunnel).
    pub tls: bool,
}

/// Looks at a request's connection without reading from it, so a handler
/// that waits long (a call queued for its turn upstream) can notice that
/// its client is gone and give the work up.
#[derive(Debug, Clone, Default)]
pub struct ClientProbe {
    stream: Option<Arc<TcpStream>>,
}

impl ClientProbe {
    pub(crate) fn new(stream: Arc<TcpStream>) -> Self {
        ClientProbe {
            stream: Some(stream),
        }
    }

    /// Whether the client closed the connection (or it broke). Pipelined
    /// bytes waiting to be read mean the client is still there; a client
    /// that half-closed after sending its request counts as gone, as it
    /// does for other proxies. Never blocks (the socket is non-blocking),
    /// callable from any thread.
    pub fn gone(&self) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        let mut byte = [0u8; 1];
        match stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }
}

impl HttpRequest {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        syncoord_core::header(&self.headers, name)
    }
}

/// What a handler answers: a response to write, or nothing at all.
///
/// For a [`Reply::Respond`] the server adds `Content-Length`, `Date`
/// (unless the handler set one) and `Connection`; a handler's own
/// `Content-Length`, `Transfer-Encoding` and `Connection` fields are not
/// copied (framing is the server's job), except that `Connection: close`
/// is honoured.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Write this response.
    Respond(Response),
    /// Answer a CONNECT with `200 Connection established`, then terminate
    /// TLS on the connection with `config` and read HTTP/1.1 requests out
    /// of it, each carrying `tunnel` ([`HttpRequest::tunnel`]). Never a
    /// blind tunnel: every request inside is the handler's to answer.
    Intercept {
        /// The TLS setup the client's session is answered with (a leaf
        /// for the CONNECT's host).
        config: Arc<rustls::ServerConfig>,
        /// What each request inside is tagged with: the tunnel's origin.
        tunnel: Arc<str>,
        /// Headers of the CONNECT that each request inside the tunnel
        /// carries too, unless it has its own: a proxy's
        /// `Proxy-Authorization` authenticates the tunnel, and the
        /// requests inside come without it.
        inherited: Arc<[(String, String)]>,
    },
    /// Answer a CONNECT with `200 Connection established`, then move
    /// bytes between the client and this stream (already connected to the
    /// tunnel's destination), untouched, on the event loop: a plain TCP
    /// tunnel the handler allowed on purpose. Not inside TLS.
    Splice(Arc<std::net::TcpStream>),
    /// Close the connection without answering: a simulated network failure
    /// (the mock upstream's broken connections), or a client that has
    /// nobody left to answer.
    DropConnection,
}

/// Intercepts are equal when they share one TLS configuration.
impl PartialEq for Reply {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Reply::Respond(a), Reply::Respond(b)) => a == b,
            (
                Reply::Intercept {
                    config,
                    tunnel,
                    inherited,
                },
                Reply::Intercept {
                    config: c,
                    tunnel: t,
                    inherited: i,
                },
            ) => Arc::ptr_eq(config, c) && tunnel == t && inherited == i,
            (Reply::DropConnection, Reply::DropConnection) => true,
            // One socket is one tunnel.
            (Reply::Splice(a), Reply::Splice(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Reply {}

/// Most handlers answer: they return a [`Response`] and write `.into()`.
impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Respond(response)
    }
}

/// What [`Handler::handle_nonblocking`] made of a request.
pub enum Handled {
    /// The answer, at once.
    Now(Reply),
    /// The request back, for [`Handler::handle`] on a pool thread.
    Blocking(HttpRequest),
    /// Work that may block, run on a pool thread; its result is the reply.
    Later(Box<dyn FnOnce() -> Reply + Send>),
    /// A request already submitted somewhere, waiting for its answer on
    /// the event loop: it costs no thread (see [`Waiter`]).
    Wait(Box<dyn Waiter>),
}

/// Answers requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Called on a pool thread, so it may block (a
    /// proxy waiting for its turn upstream) without holding up any other
    /// connection.
    fn handle(&self, req: HttpRequest) -> Reply;

    /// A first look at the request on the event-loop thread, which must
    /// not block there: the answer if it is at hand (a cache hit, a health
    /// check), otherwise the request back ([`Handled::Blocking`]) or the
    /// rest of the work ([`Handled::Later`]) for a pool thread. The
    /// default hands every request to [`Handler::handle`].
    fn handle_nonblocking(&self, req: HttpRequest) -> Handled {
        Handled::Blocking(req)
    }
}

/// Closures are handlers, answering a [`Response`] or a [`Reply`].
impl<F, R> Handler for F
where
    F: Fn(HttpRequest) -> R + Send + Sync + 'static,
    R: Into<Reply>,
{
    fn handle(&self, req: HttpRequest) -> Reply {
        self(req).into()
    }
}

/// A running server. Dropping it does not stop it: call
/// [`ShutdownHandle::shutdown`] then [`Server::join`].
pub struct Server {
    shared: Arc<event_loop::Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Stops a server: the listener closes at once, and so does every
/// connection without a complete request; requests being handled are
/// still answered, then their connections close. Cloneable, callable from
/// any thread (a signal handler thread, a test), idempotent.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<event_loop::Shared>,
}

impl Server {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and starts accepting. The first
    /// server of the process raises its soft limit of open files to the
    /// hard limit; [`Limits::max_connections`] is lowered to what that
    /// limit leaves room for (one descriptor per connection).
    pub fn bind(addr: &str, limits: Limits, handler: Arc<dyn Handler>) -> io::Result<Server> {
        Self::bind_with(addr, limits, handler, None)
    }

    /// [`Self::bind`] for a TLS listener: every connection begins with a
    /// handshake answered with `tls` (a failed one costs that connection
    /// only), then carries HTTP/1.1 as on a plain listener.
    pub fn bind_tls(
        addr: &str,
        limits: Limits,
        handler: Arc<dyn Handler>,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Server> {
        Self::bind_with(addr, limits, handler, Some(tls))
    }

    fn bind_with(
        addr: &str,
        limits: Limits,
        handler: Arc<dyn Handler>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Server> {
        let max_connections = fds::connection_bound(limits.max_connections);
        let (loops, shared) =
            event_loop::EventLoop::bind(addr, limits, handler, max_connections, tls)?;
        let port = shared.local.port();
        let mut server = Server {
            shared,
            threads: Vec::with_capacity(loops.len()),
        };
        for (i, event_loop) in loops.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("http-loop-{port}-{i}"))
                .spawn(move || event_loop.run());
            match spawned {
                Ok(thread) => server.threads.push(thread),
                Err(e) => {
                    // Loops already running stop; so would the rest.
                    server.shutdown_handle().shutdown();
                    server.join();
                    return Err(e);
                }
            }
        }
        Ok(server)
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Connections open right now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The connection bound in force ([`Limits::max_connections`], or
    /// less when the descriptor limit is lower).
    pub fn max_connections(&self) -> usize {
        self.shared.max_connections.load(Ordering::SeqCst)
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        Limits::clone(&self.shared.limits())
    }

    /// Puts new limits in force without a restart (a configuration
    /// reload): every loop takes them on its next turn, and connections
    /// already open use them from their next request or deadline.
    /// [`Limits::max_connections`] is lowered to the descriptor limit as at
    /// bind. [`Limits::event_loops`] and [`Limits::handler_threads`] are
    /// fixed when the server starts: their values in `limits` are ignored
    /// and the running ones kept. Returns the connection bound in force.
    pub fn set_limits(&self, limits: Limits) -> usize {
        let running = self.shared.limits();
        let limits = Limits {
            event_loops: running.event_loops,
            handler_threads: running.handler_threads,
            ..limits
        };
        let max_connections = fds::connection_bound(limits.max_connections);
        self.shared.set_limits(limits, max_connections);
        max_connections
    }

    /// Blocks until the server has been shut down and every connection has
    /// ended.
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("http event loop panicked");
            }
        }
    }
}

impl ShutdownHandle {
    /// Closes the listener and every connection without a complete
    /// request; requests being handled are still answered.
    pub fn shutdown(&self) {
        let shared = &self.shared;
        if shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        shared.wake_all();
    }
}

/// The reason phrase of a status code (empty for unknown codes, which the
/// status line allows).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        425 => "Too Early",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
