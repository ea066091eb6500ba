//! [`Outgoing`]: the request as it leaves for upstream.

use std::sync::Arc;

use crate::Headers;

/// The request a host sends upstream: the core's payload `P` in
/// [`Coordinator<Outgoing>`](syncoord_core::Coordinator). Method, path, query,
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
    pub headers: Headers,
    /// Request body (empty for GET and HEAD).
    pub body: Vec<u8>,
    /// Signing mode: the credential ([`Keyring`](crate::Keyring)) to sign
    /// each attempt with, just before it is sent. `None`: sent as the bot
    /// signed it.
    pub sign_as: Option<Arc<str>>,
}
