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
//! hosts (the native daemon, the Cloudflare Worker) do the I/O. A host
//! feeds inputs and then asks [`Coordinator::poll_output`] what to do
//! until it says to sleep.
//!
//! ```
//! use syncoord_core::{Admission, Config, Coordinator, Duration, Instant, Outcome, Output, Request, Response, Source};
//!
//! let t0 = Instant::now();
//! // The payload is the host's own request data; here just a name.
//! let mut core: Coordinator<&str> = Coordinator::new(Config::default().compile()?, t0, 42);
//! let ticker = "/api/v3/brokerage/market/products/BTC-USD/ticker";
//!
//! // A bot asks; nothing is cached yet, so the request waits for a call.
//! let Admission::Waiting { ticket, .. } = core.submit(t0, Request::get(ticker, "bot-1"), "req-1") else {
//!     panic!("expected to wait");
//! };
//! // The host asks what to do: send this call (never holding a lock across the I/O)...
//! let Output::Dispatch(call) = core.poll_output(t0) else {
//!     panic!("the limiter has tokens");
//! };
//! assert_eq!(call.payload, "req-1");
//! // ...and reports upstream's answer; the waiting request ends.
//! let later = t0 + Duration::from_millis(80);
//! core.complete(later, call.call, Outcome::response(Response::new(200, r#"{"price":"1"}"#)))?;
//! let Output::Finished(finished) = core.poll_output(later) else {
//!     panic!("answered");
//! };
//! assert_eq!((finished.ticket, finished.result.unwrap().source), (ticket, Source::Upstream));
//!
//! // The next bot is answered from the cache at once.
//! let Admission::Answered(answer) = core.submit(later, Request::get(ticker, "bot-2"), "req-2") else {
//!     panic!("expected a cache hit");
//! };
//! assert_eq!(answer.source, Source::Cache);
//! // The host sleeps until the core's next timer, or until a new request arrives.
//! assert!(matches!(core.poll_output(later), Output::WakeAt(_) | Output::Idle));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The public surface is this page: the [`Coordinator`] and what goes in
//! and out of it, re-exported here. Two modules are public because their
//! contents are families of plain data: [`config`] (the schema hosts
//! deserialise, and the Coinbase presets) and [`stats`] (the snapshots
//! hosts publish). The virtual-time simulation of bots and an upstream is
//! tooling beside the core, in the `syncoord-sim` crate.
//!
//! Inside, one private module per concept: `compile` (checking a config
//! and compiling it), `route` (which rule a request falls under), `queue`
//! (priority classes, fairness, shedding, aging), `limiter` (GCRA buckets
//! per scope, 429 pauses), `cache` (TTL, bounds, stale windows), `backoff`
//! and `breaker` (retries and circuit breaking), `health`, `http` (the
//! upstream headers the core reads) and `coordinator` (the state machine
//! that ties them together).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod backoff;
mod breaker;
mod breakers;
mod cache;
mod client_share;
mod compile;
pub mod config;
mod coordinator;
mod freshness;
mod health;
mod http;
mod limiter;
mod queue;
mod quota;
mod request;
mod route;
mod shared;
mod signals;
pub mod stats;
mod vary;

/// The maps of the hot path (cache entries, clients, calls, buckets):
/// foldhash is several times faster than std's SipHash on the short keys
/// they hold. It is seeded per process (address-space layout, time), which
/// keeps a remote client from predicting collisions among the paths it
/// chooses, though foldhash claims no strong HashDoS resistance; the maps
/// keyed by what clients send are bounded (`[cache] max_entries`, `[stats]
/// max_clients`, the route memo), and clients are the operator's bots.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use breakers::{BreakerEvent, Transition as BreakerTransition};
pub use client_share::ClientShare;
pub use compile::CompiledConfig;
pub use config::{ClassId, Config, ConfigError, ConfigErrors};
pub use coordinator::{
    needs_restart, Admission, Coordinator, Dispatch, NeedsRestart, Output, UnknownCall,
};
pub use freshness::{Freshness, MAX_AGE_HEADER};
pub use http::header;
pub use limiter::{Budget, LearnedFrom, LearnedRate};
pub use quota::{gcra, Gcra, Quota, QuotaError};
pub use request::{
    Answer, CallId, Credential, Failure, Finished, Method, Outcome, Request, Response, Source,
    Ticket, Timing, TransportError,
};
pub use route::Route;
pub use shared::{micros_ceil, SharedBucket, SharedOutput, SharedRefusal, SharedSpend, StoreState};
pub use signals::{read_signals, Signals, Stated};
pub use stats::{Health, StatsSnapshot, Status};
pub use vary::RequestHeaders;
pub use web_time::{Duration, Instant};

#[cfg(feature = "bench")]
#[doc(hidden)]
pub use limiter::bench::LimiterBench;
