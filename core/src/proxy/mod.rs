//! HTTP proxy semantics both hosts share: what a bot's HTTP request becomes
//! (which upstream, which core [`Request`](crate::Request), which bytes go
//! upstream) and what each core answer or failure becomes on the wire.
//!
//! The native daemon and the Cloudflare Worker only move bytes; every
//! decision about them is made here, once.
//!
//! - [`config`]: the configuration file (`[server]`, `[[upstreams]]`);
//! - [`route`]: which upstream a request goes to and what is sent;
//! - [`response`]: what answers and failures look like to bots;
//! - [`endpoints`]: stats, health and Prometheus metrics.

pub mod config;
pub mod endpoints;
pub mod response;
pub mod route;
mod url;

pub use config::{
    ConfigFileError, ConfigFileErrors, Preset, ProxyConfig, ServerSettings, UpstreamConfig,
};
pub use endpoints::{endpoint, Endpoint};
pub use response::{answer_response, failure_response, ProxyResponse};
pub use route::{forwardable_headers, redact, Forward, Proxy, Rejection, ShardKey};
pub use url::{BaseUrl, Origin};

/// Request header naming the bot (fairness, per-bot stats).
pub const CLIENT_HEADER: &str = "X-Syncoord-Client";
/// Request header choosing a priority class of the upstream's config.
pub const PRIORITY_HEADER: &str = "X-Syncoord-Priority";
/// Response header: `hit`, `stale`, `coalesced` or `miss`.
pub const CACHE_HEADER: &str = "X-Syncoord-Cache";
/// Response header on errors of our own: the failure's kind.
pub const ERROR_HEADER: &str = "X-Syncoord-Error";

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
