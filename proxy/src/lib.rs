//! HTTP proxy semantics both hosts share: what a bot's HTTP request becomes
//! (which upstream, which core [`Request`](syncoord_core::Request), which bytes go
//! upstream) and what each core answer or failure becomes on the wire.
//!
//! The native daemon and the Cloudflare Worker only move bytes; every
//! decision about them is made here, once.
//!
//! - [`config`]: the configuration file (`[server]`, `[[upstreams]]`);
//! - [`route`]: which upstream a request goes to and what is sent;
//! - [`signing`]: signing mode, keys held here and each call signed at dispatch;
//! - [`response`]: what answers and failures look like to bots;
//! - [`endpoints`]: stats, health and Prometheus metrics;
//! - [`dashboard`]: the live dashboard page and its embedded assets;
//!
//! A host's request handler, in short:
//!
//! ```
//! use syncoord_proxy::{answer_response, endpoint, failure_response, Proxy, ProxyConfig};
//! use syncoord_core::{Admission, Coordinator, Instant, Outcome, Output, Response};
//!
//! let proxy = Proxy::new(ProxyConfig::default())?;
//! let now = Instant::now();
//! // One coordinator per upstream, on that upstream's coordination config.
//! let mut cores = (0..proxy.config().upstreams.len())
//!     .map(|i| Coordinator::new(proxy.coordination(i).unwrap().clone(), now, i as u64))
//!     .collect::<Vec<_>>();
//!
//! let (method, target) = ("GET", "/exchange/products/BTC-USD/ticker");
//! assert!(endpoint(method, target).is_none(), "not one of our own endpoints");
//! let forward = match proxy.route(None, method, target, &[], Vec::new()) {
//!     Ok(f) => f,
//!     Err(rejection) => panic!("answer {:?}", rejection.into_response()),
//! };
//! let core = &mut cores[forward.upstream];
//! let Admission::Waiting { ticket, .. } = core.submit(now, forward.request, forward.outgoing) else {
//!     panic!("nothing cached yet");
//! };
//! // The host sends `call.payload` (an `Outgoing`) to the upstream's base URL...
//! let Output::Dispatch(call) = core.poll_output(now) else { panic!("due") };
//! assert_eq!(call.payload.path_and_query, "/products/BTC-USD/ticker");
//! core.complete(now, call.call, Outcome::response(Response::new(200, "{}")))?;
//! // ...and answers the bot.
//! let Output::Finished(finished) = core.poll_output(now) else { panic!("ended") };
//! assert_eq!(finished.ticket, ticket);
//! let response = match &finished.result {
//!     Ok(answer) => answer_response(answer),
//!     Err(failure) => failure_response(failure),
//! };
//! assert_eq!(response.header("x-syncoord-cache"), Some("miss"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cluster;
pub mod config;
pub mod dashboard;
pub mod endpoints;
mod http;
pub mod response;
pub mod route;
pub mod signing;
mod url;

pub use cluster::ClusterSettings;
pub use config::{
    ConfigFileError, ConfigFileErrors, Preset, ProxyConfig, ServerSettings, UpstreamConfig,
};
pub use endpoints::{endpoint, Endpoint};
pub use http::{
    credential_identity, identity_of, key_name, presented, strip_hop_headers, HopHeaders, Presented,
};
pub use response::{
    answer_response, error_response, failure_response, failure_response_shaped, ErrorShape,
    OUTCOME_UNKNOWN_STATUS,
};
pub use route::{
    forwardable_headers, forwarded_headers, redact, ConnectTarget, Forward, Proxy, Rejection,
    ShardKey,
};
pub use url::{BaseUrl, BaseUrlError, Origin, UrlError};

/// Request header naming the bot (fairness, per-bot stats).
pub const CLIENT_HEADER: &str = "X-Syncoord-Client";
/// Request header choosing a priority class of the upstream's config.
pub const PRIORITY_HEADER: &str = "X-Syncoord-Priority";
/// Response header: `hit`, `stale`, `coalesced` or `miss`.
pub const CACHE_HEADER: &str = "X-Syncoord-Cache";
/// Response header on errors of our own: the failure's kind.
pub const ERROR_HEADER: &str = "X-Syncoord-Error";

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
    pub headers: Vec<(String, String)>,
    /// Request body (empty for GET and HEAD).
    pub body: Vec<u8>,
    /// Signing mode: the credential ([`signing::Keyring`]) to sign each
    /// attempt with, just before it is sent. `None`: sent as the bot
    /// signed it.
    pub sign_as: Option<std::sync::Arc<str>>,
}
