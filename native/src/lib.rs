//! syncoord's threaded host: the core driven by real threads and real
//! sockets.
//!
//! - [`host::Coordinator`]: the synchronous, thread-safe library API;
//! - [`upstream::HttpUpstream`]: the upstream HTTP client (ureq);
//! - [`service::CoinbaseClient`]: a coordinated Coinbase client for bots
//!   written in Rust;
//! - [`server`]: the HTTP/1.1 server the daemon and the mock stand on;
//! - [`daemon`]: the coordinating reverse proxy (`syncoord serve`);
//! - [`mock`]: a Coinbase-like upstream for tests (`syncoord mock-upstream`);
//! - [`demo`]: all of the above with simulated bots (`syncoord demo`).
#![forbid(unsafe_code)]

pub mod daemon;
pub mod demo;
pub mod host;
pub mod mock;
pub mod server;
pub mod service;
pub mod upstream;

pub use host::{CallError, Coordinator, HostOptions, Pending, StartError};
pub use upstream::{HttpUpstream, Upstream, UpstreamError, UpstreamOptions};
