//! syncoord's threaded host: the core driven by real threads and real
//! sockets.
//!
//! - [`host::Coordinator`]: the synchronous, thread-safe library API;
//! - [`upstream::HttpUpstream`]: the upstream HTTP client (ureq);
//! - [`service::CoinbaseClient`]: a coordinated Coinbase client for bots
//!   written in Rust.
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
//! use syncoord_proxy::Outgoing;
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
//!     headers: vec![],
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

pub mod cluster;
pub mod host;
pub mod secrets;
pub mod service;
pub mod upstream;

pub use cluster::{Cluster, ClusterError};
pub use host::{CallError, Coordinator, HostOptions, Pending, StartError};
pub use secrets::HostSecrets;
pub use upstream::{HttpUpstream, Unsendable, Upstream, UpstreamError, UpstreamOptions};
