//! One connection's state: which phase of a request it is in, what its
//! answer must say, and what it carries (TLS, a tunnel, a waiting request).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::conn::{BodyMode, Persistence, Reader, Version};
use crate::tls::Transport;
use crate::Waiter;

/// How the request being handled was framed: what its answer must say.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) version: Version,
    pub(super) body_mode: BodyMode,
    pub(super) keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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

/// An intercepted CONNECT's label
/// ([`HttpRequest::tunnel`](crate::HttpRequest::tunnel)) and the headers
/// of the CONNECT its requests inherit
/// ([`Reply::Intercept`](crate::Reply::Intercept)).
pub(super) type Tunnel = (Arc<str>, Arc<[(String, String)]>);

pub(super) struct Conn {
    pub(super) stream: Arc<TcpStream>,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    /// Tells this connection from an earlier one with the same slab key.
    pub(super) generation: u64,
    pub(super) reader: Reader,
    pub(super) phase: Phase,
    /// When the current phase ends the connection (`None`: handling).
    pub(super) deadline: Option<Instant>,
    /// When the phase began: the oldest evictable connection goes first.
    pub(super) since: Instant,
    /// No request has been read yet: the header timeout runs from accept.
    pub(super) fresh: bool,
    pub(super) opened: Instant,
    pub(super) meta: Option<Meta>,
    pub(super) out: Vec<u8>,
    pub(super) written: usize,
    pub(super) lingered: usize,
    /// Plain or TLS (`tls.rs`).
    pub(super) transport: Transport,
    /// A CONNECT answered `200`: TLS begins once that is written.
    pub(super) upgrade: Option<(Arc<rustls::ServerConfig>, Tunnel)>,
    /// The intercepted CONNECT this connection carries, for its requests.
    pub(super) tunnel: Option<Tunnel>,
    /// Readiness came while a request was handled or answered: what it
    /// announced is still in the socket, and no new edge will say so.
    pub(super) edge_missed: bool,
    /// The request being handled waits here, on the loop (`waiting.rs`).
    pub(super) waiter: Option<Box<dyn Waiter>>,
    /// A tunnel answered `200`: splicing begins once that is written.
    pub(super) splice_to: Option<Arc<TcpStream>>,
    /// The tunnel this connection is (`splice.rs`).
    pub(super) splice: Option<Box<Splice>>,
}

/// One tunnel's other end and what is in transit (moved by `splice.rs`).
pub(super) struct Splice {
    pub(super) far: Arc<TcpStream>,
    /// Client to destination, not yet written.
    pub(super) up: Vec<u8>,
    /// Destination to client, not yet written.
    pub(super) down: Vec<u8>,
    /// The client sent its last byte (the destination's write side is
    /// shut once `up` is out).
    pub(super) client_done: bool,
    /// The destination sent its last byte.
    pub(super) far_done: bool,
}
