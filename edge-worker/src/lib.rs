//! # syncoord-edge
//!
//! The Cloudflare Worker host of syncoord: the same core as the native
//! daemon, run as an edge proxy. The Worker receives a bot's request,
//! routes it with the shared proxy rules (`syncoord_proxy`), and
//! forwards it to the Durable Object that owns the request's rate-limit
//! scope instance (one object per `<upstream>/global` or
//! `<upstream>/cred/<identity>`). That object holds a `Coordinator`, calls
//! upstream with `fetch`, and answers.
//!
//! The runtime-independent parts (config loading, the Worker <-> object
//! protocol, shard reports) build and test natively with the rest of the
//! workspace; the Workers glue (`wasm` module) compiles for wasm32 only.
//! See README.md for building, running and the Workers' limits.

pub mod protocol;
pub mod report;
pub mod settings;
pub mod sign;
pub mod timer;

#[cfg(target_arch = "wasm32")]
mod wasm;
