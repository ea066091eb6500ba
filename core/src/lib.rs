//! # syncoord-core
//!
//! Many bots, one rate-limited API. This crate is the coordinator's brain:
//! a deterministic, sans-IO state machine that queues calls by priority,
//! paces them under upstream's limits, answers repeated reads from a TTL
//! cache, folds identical in-flight reads into one call, backs off on 429
//! and 5xx, and reports what it does.
//!
//! It never reads a clock, sleeps, spawns or touches a socket: time comes
//! in as an argument (`now`), randomness from a seeded generator, and the
//! hosts (the native daemon, the Cloudflare Worker) do the I/O. See
//! [`Coordinator`] for the driving loop.
//!
//! One module per concept:
//! - [`config`]: the schema, Coinbase defaults, validation;
//! - [`route`]: which rule a request falls under;
//! - [`queue`]: priority classes, fairness, shedding, aging;
//! - [`limiter`]: GCRA buckets per scope, 429 pauses;
//! - [`cache`]: TTL, bounds, stale-if-error;
//! - [`backoff`] and [`breaker`]: retries and circuit breaking;
//! - [`stats`] and [`health`]: what hosts publish;
//! - [`http`]: the HTTP semantics both hosts share;
//! - [`sim`]: a virtual-time simulation of bots and an upstream.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod breaker;
pub mod cache;
pub mod config;
mod coordinator;
pub mod health;
pub mod http;
pub mod limiter;
pub mod queue;
pub mod request;
pub mod route;
pub mod sim;
pub mod stats;

pub use config::{ClassId, Config, ConfigError, ConfigErrors};
pub use coordinator::{Admission, Coordinator, Dispatch, UnknownCall};
pub use health::{Health, Status};
pub use request::{
    Answer, CallId, Credential, Failure, Finished, Method, Outcome, Request, Response, Source,
    Ticket, TransportError,
};
pub use stats::StatsSnapshot;
pub use web_time::{Duration, Instant};
