//! Name resolution for the upstream client without an unbounded thread.
//!
//! ureq's default resolver spawns a thread per lookup when a timeout is
//! set, with `std::thread::spawn`, which panics when the process is at its
//! thread limit; the panic became a transport error, counted against
//! upstream, and tripped its breaker. Here an IP literal (the usual
//! upstream in tests and on a LAN) needs no lookup at all; a name is
//! looked up on a thread of its own only when one can be had, and a
//! thread that cannot be spawned is a [`LocalExhaustion`]: a local error
//! that never counts against upstream.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// This host ran out of a resource of its own (a thread) while setting up
/// a call: carried inside an `io::Error` through ureq, recognised by
/// `classify` as [`syncoord_core::TransportError::Local`].
#[derive(Debug)]
pub(crate) struct LocalExhaustion(pub(crate) String);

impl fmt::Display for LocalExhaustion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LocalExhaustion {}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct BoundedResolver;

impl Resolver for BoundedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        let Some(host_port) = DefaultResolver::host_and_port(scheme, authority) else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let mut result = self.empty();
        if let Ok(ip) = host.parse::<IpAddr>() {
            let port = authority
                .port_u16()
                .or_else(|| (scheme.as_str() == "https").then_some(443))
                .unwrap_or(80);
            result.push(SocketAddr::new(ip, port));
            return Ok(result);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("syncoord-resolve".into())
            .spawn(move || tx.send(host_port.to_socket_addrs()).ok());
        if let Err(e) = spawned {
            return Err(ureq::Error::Io(io::Error::other(LocalExhaustion(format!(
                "no thread to resolve `{host}`: {e}"
            )))));
        }
        let found = match rx.recv_timeout(*timeout.after) {
            Ok(found) => found?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(ureq::Error::Timeout(timeout.reason))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ureq::Error::Io(io::Error::other(LocalExhaustion(format!(
                    "the lookup of `{host}` ended without an answer"
                )))))
            }
        };
        for addr in config.ip_family().keep_wanted(found).take(16) {
            result.push(addr);
        }
        if result.is_empty() {
            Err(ureq::Error::HostNotFound)
        } else {
            Ok(result)
        }
    }
}
