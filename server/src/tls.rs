//! A connection's transport: plain TCP, or TLS terminated here (a TLS
//! listener, or a CONNECT the handler chose to intercept), both driven
//! without blocking by the event loop.
//!
//! TLS is per-connection state only: the loop reads and writes through a
//! [`Transport`] and never learns which kind it has, so how many loops
//! there are and how they share listeners is none of this module's
//! business. rustls does the protocol; this module only moves bytes
//! between it and a non-blocking socket (`read_tls` / `write_tls` until
//! `WouldBlock`), the way rustls' own mio example does.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// What one read turn found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadTurn {
    /// Bytes taken off the socket (ciphertext for TLS): what the read
    /// budget counts.
    pub(crate) raw: usize,
    /// The peer closed (or the connection broke, or TLS failed).
    pub(crate) eof: bool,
}

/// Plain TCP or TLS; see the module docs.
pub(crate) enum Transport {
    Plain,
    Tls(Box<ServerConnection>),
}

impl Transport {
    /// A TLS server side for a new connection (or one that has just been
    /// answered `200` to its CONNECT).
    pub(crate) fn tls(config: Arc<ServerConfig>) -> io::Result<Transport> {
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        // Answers are handed over whole; the loop keeps its own bound on
        // what a client may leave unread (the write timeout).
        conn.set_buffer_limit(None);
        Ok(Transport::Tls(Box::new(conn)))
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Bytes that arrived before TLS began (a ClientHello sent right
    /// behind the CONNECT), fed to rustls as if read from the socket.
    pub(crate) fn feed(&mut self, stream: &TcpStream, mut early: &[u8]) -> io::Result<()> {
        let Transport::Tls(tls) = self else {
            return Ok(());
        };
        while !early.is_empty() {
            if tls.read_tls(&mut early)? == 0 {
                break;
            }
            if let Err(e) = tls.process_new_packets() {
                let _ = flush_tls(tls, stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        flush_tls(tls, stream).map(|_| ())
    }

    /// Reads what the socket has (at most about `budget` bytes) and
    /// appends the plaintext to `buf`. TLS handshake answers are sent on
    /// the way; a TLS failure (a client that does not trust our
    /// certificate, garbage) ends the connection after the alert.
    pub(crate) fn read(
        &mut self,
        stream: &TcpStream,
        scratch: &mut [u8],
        buf: &mut Vec<u8>,
        budget: usize,
    ) -> ReadTurn {
        let mut turn = ReadTurn { raw: 0, eof: false };
        match self {
            Transport::Plain => loop {
                if turn.raw >= budget {
                    return turn;
                }
                match (&*stream).read(scratch) {
                    Ok(0) => {
                        turn.eof = true;
                        return turn;
                    }
                    Ok(n) => {
                        buf.extend_from_slice(&scratch[..n]);
                        turn.raw += n;
                        // Read on even after a short read: an end of input
                        // that came with these bytes shows only on the
                        // next read, and no new edge will announce it
                        // (stopping here left a client that wrote and
                        // half-closed at once waiting for its close).
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return turn,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        turn.eof = true;
                        return turn;
                    }
                }
            },
            Transport::Tls(tls) => {
                loop {
                    if turn.raw >= budget {
                        break;
                    }
                    match tls.read_tls(&mut &*stream) {
                        Ok(0) => turn.eof = true,
                        Ok(n) => turn.raw += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => turn.eof = true,
                    }
                    if let Err(e) = tls.process_new_packets() {
                        tracing::debug!(error = %e, "TLS failed; closing the connection");
                        let _ = flush_tls(tls, stream);
                        turn.eof = true;
                        return turn;
                    }
                    if drain_plaintext(tls, scratch, buf) {
                        turn.eof = true;
                    }
                    if turn.eof {
                        break;
                    }
                }
                if flush_tls(tls, stream).is_err() {
                    turn.eof = true;
                }
                turn
            }
        }
    }

    /// Writes plaintext; returns how much was taken (TLS takes it all
    /// and sends it as the socket allows: see [`Self::flush`]).
    pub(crate) fn write(&mut self, stream: &TcpStream, out: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => (&*stream).write(out),
            Transport::Tls(tls) => {
                tls.writer().write_all(out)?;
                flush_tls(tls, stream)?;
                Ok(out.len())
            }
        }
    }

    /// Sends what TLS still holds. `Ok(true)` when nothing is left,
    /// `Ok(false)` when the socket is full (a writable event resumes).
    pub(crate) fn flush(&mut self, stream: &TcpStream) -> io::Result<bool> {
        match self {
            Transport::Plain => Ok(true),
            Transport::Tls(tls) => flush_tls(tls, stream),
        }
    }

    /// Before closing for sending: TLS says so (`close_notify`), best effort.
    pub(crate) fn close_notify(&mut self, stream: &TcpStream) {
        if let Transport::Tls(tls) = self {
            tls.send_close_notify();
            let _ = flush_tls(tls, stream);
        }
    }
}

/// Moves decrypted bytes into `buf`; `true` when the peer closed TLS.
fn drain_plaintext(tls: &mut ServerConnection, scratch: &mut [u8], buf: &mut Vec<u8>) -> bool {
    loop {
        match tls.reader().read(scratch) {
            Ok(0) => return true,
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn flush_tls(tls: &mut ServerConnection, stream: &TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut &*stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
