//! `[server] tunnel`: a CONNECT to a listed host (not a configured
//! upstream, which is intercepted) opens a plain TCP tunnel. The
//! connection is made here, on a handler pool thread (name lookup and
//! connect block; the pool is bounded, and a full pool is the server's
//! `503`), then handed to the event loop, which moves the bytes: an open
//! tunnel costs no thread.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use syncoord_core::Response;
use syncoord_proxy::tunnel::TunnelTarget;
use syncoord_proxy::Endpoint;
use syncoord_server::Reply;

use crate::exposure;

/// Tunnels opened and failed since start, for `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Tunnels {
    opened: AtomicU64,
    failed: AtomicU64,
}

impl Tunnels {
    /// Connects to `target` within `timeout` per address and answers the
    /// CONNECT: the tunnel, or `502 tunnel_failed`.
    pub(crate) fn open(&self, target: &TunnelTarget, timeout: Duration, peer: SocketAddr) -> Reply {
        match connect(target, timeout) {
            Ok(stream) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, host = %target.host, port = target.port, "CONNECT tunnelled (server.tunnel)");
                Reply::Splice(Arc::new(stream))
            }
            Err(why) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, host = %target.host, port = target.port, error = %why, "CONNECT tunnel failed");
                exposure::refusal(
                    502,
                    "tunnel_failed",
                    &format!("cannot reach {}:{}: {why}", target.host, target.port),
                )
                .into()
            }
        }
    }

    /// (opened, failed) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.opened.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// `/stats` with `"tunnels": {"opened", "failed"}`, and `/metrics` with
    /// `syncoord_tunnels_total{outcome}`; other endpoints as they are.
    /// The counts are the daemon's, not an upstream's: added here.
    pub(crate) fn add_to(&self, endpoint: Endpoint, mut response: Response) -> Response {
        let (opened, failed) = self.counts();
        match endpoint {
            Endpoint::Stats if response.status == 200 => {
                if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&response.body) {
                    if let Some(map) = v.as_object_mut() {
                        map.insert(
                            "tunnels".into(),
                            serde_json::json!({ "opened": opened, "failed": failed }),
                        );
                        if let Ok(body) = serde_json::to_vec(&v) {
                            response.body = body;
                        }
                    }
                }
            }
            Endpoint::Metrics if response.status == 200 => {
                let text = format!(
                    "# HELP syncoord_tunnels CONNECT tunnels to [server] tunnel hosts, by outcome.\n# TYPE syncoord_tunnels counter\nsyncoord_tunnels_total{{outcome=\"opened\"}} {opened}\nsyncoord_tunnels_total{{outcome=\"failed\"}} {failed}\n"
                );
                // Before OpenMetrics' closing `# EOF`.
                let body = String::from_utf8_lossy(&response.body);
                let at = body.rfind("# EOF").unwrap_or(body.len());
                let mut out = body[..at].to_owned();
                out.push_str(&text);
                out.push_str(&body[at..]);
                response.body = out.into_bytes();
            }
            _ => {}
        }
        response
    }
}

/// The first of `target`'s addresses that accepts within `timeout`.
fn connect(target: &TunnelTarget, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the name has no address")))
}
