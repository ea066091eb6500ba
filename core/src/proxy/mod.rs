//! HTTP proxy semantics both hosts share: what a bot's HTTP request becomes
//! (which upstream, which core [`Request`](crate::Request), which bytes go
//! upstream) and what each core answer or failure becomes on the wire.
//!
//! The native daemon and the Cloudflare Worker only move bytes; every
//! decision about them is made here, once.

/// The request a host sends upstream: the core's payload `P` in
/// [`Coordinator<Outgoing>`](crate::Coordinator). Method, path, query,
/// headers and body pass through byte for byte (signatures cover them),
/// minus hop-by-hop headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Upper-case method as the bot sent it.
    pub method: String,
    /// Path and query relative to the upstream's base URL, e.g.
    /// `/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1`.
    pub path_and_query: String,
    /// Headers to send, in the bot's order and spelling.
    pub headers: Vec<(String, String)>,
    /// Request body (empty for GET and HEAD).
    pub body: Vec<u8>,
}
