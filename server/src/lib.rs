//! A small synchronous HTTP/1.1 server: the front door of the proxy daemon
//! and of the mock upstream.
//!
//! One accept thread and one named thread per connection, bounded by
//! [`Limits::max_connections`]. Thread-per-connection keeps the code
//! obvious and a slow handler (a call waiting for its turn upstream) costs
//! one parked thread, nothing more; the bound keeps a flood from exhausting
//! the machine (beyond it a client gets `503` and the connection closes).
//!
//! What the server guarantees to a [`Handler`]: one complete request at a
//! time per connection, in the order the client sent them (pipelining),
//! with the body already decoded (`Content-Length` or chunked), and the
//! request-target exactly as received, never normalised or decoded (an
//! absolute-form `http://host/path` target is passed through too: the
//! proxy layer decides what it means). Whatever a client sends (garbage, a
//! header that never ends, a body too large) costs at most that client's
//! connection: it gets a short JSON error and is closed, and every other
//! connection keeps being served.
//!
//! A handler answers a [`Reply`]: a core [`Response`] (the one response
//! type of every syncoord crate), or [`Reply::DropConnection`] to close
//! the connection without an answer (the mock upstream simulates broken
//! connections that way).

mod chunked;
mod conn;
#[cfg(any(test, feature = "test-client"))]
pub mod test_client;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
    /// does for other proxies. Call it from the handler's own thread: the
    /// look briefly makes the socket non-blocking, which only that thread
    /// could notice.
    pub fn gone(&self) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let seen = stream.peek(&mut byte);
        let _ = stream.set_nonblocking(false);
        match seen {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Write this response.
    Respond(Response),
    /// Close the connection without answering: a simulated network failure
    /// (the mock upstream's broken connections), or a client that has
    /// nobody left to answer.
    DropConnection,
}

/// Most handlers answer: they return a [`Response`] and write `.into()`.
impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Respond(response)
    }
}

/// Answers requests. Called from the connection's own thread, so it may
/// block (a proxy waiting for its turn upstream) without holding up any
/// other connection.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: HttpRequest) -> Reply;
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
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Stops a server: no new connections, in-flight requests still answered,
/// idle keep-alive connections closed. Cloneable, callable from any thread
/// (a signal handler thread, a test), idempotent.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

/// One tracked connection: a handle to its socket so shutdown can wake an
/// idle reader, and whether it is idle (waiting for a request to start).
struct Tracked {
    stream: TcpStream,
    idle: Arc<AtomicBool>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Tracked>,
}

pub(crate) struct Shared {
    limits: Limits,
    handler: Arc<dyn Handler>,
    local: SocketAddr,
    stopping: AtomicBool,
    registry: Mutex<Registry>,
    /// Signalled when a connection ends, for `join`.
    ended: Condvar,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A poisoned registry only means a thread panicked while holding
        // the lock; the map itself is still consistent (single inserts and
        // removes), so keep serving.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

impl Server {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and starts accepting.
    pub fn bind(addr: &str, limits: Limits, handler: Arc<dyn Handler>) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            limits,
            handler,
            local,
            stopping: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            ended: Condvar::new(),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("http-accept-{}", local.port()))
            .spawn(move || accept_loop(&accept_shared, &listener))?;
        Ok(Server {
            shared,
            accept: Some(accept),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Connections being served right now.
    pub fn connections(&self) -> usize {
        self.shared.registry().conns.len()
    }

    /// Blocks until the server has been shut down and every connection
    /// thread has ended.
    pub fn join(mut self) {
        if let Some(accept) = self.accept.take() {
            if accept.join().is_err() {
                tracing::error!("http accept thread panicked");
            }
        }
        let mut reg = self.shared.registry();
        while !reg.conns.is_empty() {
            reg = self
                .shared
                .ended
                .wait(reg)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let shared = &self.shared;
        if shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop, blocked in accept(), with a connection of
        // our own; it sees the flag and exits.
        let wake = match shared.local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), shared.local.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), shared.local.port())
            }
            _ => shared.local,
        };
        if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            tracing::warn!(error = %e, "could not wake the accept loop");
        }
        // Idle connections are blocked reading the next request: shutting
        // their read side makes that read return end-of-file at once.
        // Busy ones notice the flag after answering and close themselves.
        // A connection that becomes idle after this sweep checks the flag
        // itself (it marks itself idle before looking).
        for tracked in shared.registry().conns.values() {
            if tracked.idle.load(Ordering::SeqCst) {
                let _ = tracked.stream.shutdown(Shutdown::Read);
            }
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if shared.stopping() {
                    return;
                }
                // Out of file descriptors and the like: back off a little
                // rather than spin; the error may clear as connections end.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if shared.stopping() {
            return;
        }
        admit(shared, stream, peer);
    }
}

/// Registers and spawns the connection's thread, or turns it away.
fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let idle = Arc::new(AtomicBool::new(true));
    let id = {
        let mut reg = shared.registry();
        if reg.conns.len() >= shared.limits.max_connections {
            drop(reg);
            turn_away(stream);
            return;
        }
        let Ok(handle) = stream.try_clone() else {
            return;
        };
        let id = reg.next_id;
        reg.next_id += 1;
        reg.conns.insert(
            id,
            Tracked {
                stream: handle,
                idle: Arc::clone(&idle),
            },
        );
        id
    };
    let conn_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("http-conn-{id}"))
        .spawn(move || {
            let _guard = Deregister {
                shared: &conn_shared,
                id,
            };
            conn::serve(&conn_shared, stream, peer, &idle);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not spawn a connection thread");
        shared.registry().conns.remove(&id);
        shared.ended.notify_all();
    }
}

/// Over the connection bound: a `503` written from the accept thread (a
/// fresh socket's send buffer takes it at once) and close.
fn turn_away(mut stream: TcpStream) {
    let body = br#"{"error":"service_unavailable","message":"too many connections"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the client already sent, without blocking, so closing does
    // not reset the connection before the 503 is read.
    if stream.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 4096];
        while matches!(stream.read(&mut scratch), Ok(n) if n > 0) {}
    }
}

/// Removes a connection from the registry when its thread ends, even by
/// panic, so `join` and the connection bound stay right.
struct Deregister<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.shared.registry().conns.remove(&self.id);
        self.shared.ended.notify_all();
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
