//! syncoord's threaded host: the core driven by real threads and real
//! sockets, as a synchronous library ([`host::Coordinator`]), an upstream
//! HTTP client ([`upstream::HttpUpstream`]) and a coordinated Coinbase
//! client for bots written in Rust ([`service::CoinbaseClient`]).
#![forbid(unsafe_code)]

pub mod host;
pub mod service;
pub mod upstream;

pub use host::{CallError, Coordinator, HostOptions, Pending, StartError};
pub use upstream::{HttpUpstream, Upstream, UpstreamError, UpstreamOptions};
