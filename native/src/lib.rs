//! syncoord's threaded host: the core driven by real threads and real
//! sockets.
//!
//! - [`host::Coordinator`]: the synchronous, thread-safe library API;
//! - [`upstream::HttpUpstream`]: the upstream HTTP client (ureq);
//! - [`service::CoinbaseClient`]: a coordinated Coinbase client for bots
//!   written in Rust;
//! - [`Cluster`]: the shared store (Redis) daemons coordinate through, with
//!   the `cluster` feature (off by default; the daemon turns it on).
//!
//! What leaves for upstream ([`Outgoing`](syncoord_wire::Outgoing), identity,
//! signing) comes from `syncoord-wire`; this crate depends on that and on
//! the core only, not on the proxy's config file or metrics.
//!
//! This is what a Rust bot depends on. The daemon (`syncoord-daemon`),
//! the HTTP server it stands on (`syncoord-server`), the mock upstream
//! (`syncoord-mock`) and the command line (`syncoord-cli`) are crates of
//! their own.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use syncoord::{Coordinator, HostOptions, Upstream};
//! use syncoord_wire::Outgoing;
//! use syncoord_core::{Config, Outcome, Request, Response, Source};
//!
//! // Any `Fn(&Outgoing) -> Outcome` is an upstream; `HttpUpstream` is the real one.
//! let upstream: Arc<dyn Upstream> =
//!     Arc::new(|_: &Outgoing| Outcome::response(Response::new(200, r#"{"price":"1"}"#)));
//! let host = Coordinator::start(Config::default().compile()?, upstream, HostOptions::default())?;
//!
//! let path = "/api/v3/brokerage/market/products/BTC-USD/ticker";
//! let outgoing = Outgoing {
//!     method: "GET".into(),
//!     path_and_query: path.into(),
//!     headers: Default::default(),
//!     body: vec![],
//!     sign_as: None,
//! };
//! let first = host.call(Request::get(path, "bot-1"), outgoing.clone())?;
//! assert_eq!(first.source, Source::Upstream);
//! // Any thread, any clone: the second read comes from the cache.
//! let again = host.clone().call(Request::get(path, "bot-2"), outgoing)?;
//! assert_eq!(again.source, Source::Cache);
//! host.shutdown(Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(not(feature = "cluster"))]
#[path = "no_cluster.rs"]
pub mod cluster;
pub mod host;
pub mod secrets;
pub mod service;
mod store;
pub mod upstream;

pub use cluster::Cluster;
#[cfg(feature = "cluster")]
pub use cluster::ClusterError;
pub use host::{CallError, Coordinator, HostOptions, Pending, StartError};
pub use secrets::HostSecrets;
pub use upstream::{
    HttpUpstream, KeyringCell, Unsendable, Upstream, UpstreamError, UpstreamOptions,
};
