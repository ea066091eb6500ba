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
//! ```
//! use syncoord_core::{Admission, Config, Coordinator, Duration, Instant, Outcome, Request, Response, Source};
//!
//! let t0 = Instant::now();
//! // The payload is the host's own request data; here just a name.
//! let mut core: Coordinator<&str> = Coordinator::new(Config::default(), t0, 42)?;
//! let ticker = "/api/v3/brokerage/market/products/BTC-USD/ticker";
//!
//! // A bot asks; nothing is cached yet, so the request waits for a call.
//! let Admission::Waiting { ticket, .. } = core.submit(t0, Request::get(ticker, "bot-1"), "req-1") else {
//!     panic!("expected to wait");
//! };
//! // The host sends what is due (never holding a lock across the I/O)...
//! let call = core.poll_dispatch(t0).expect("the limiter has tokens");
//! assert_eq!(call.payload, "req-1");
//! // ...and reports upstream's answer; the waiting request ends.
//! let later = t0 + Duration::from_millis(80);
//! core.complete(later, call.call, Outcome::response(Response::new(200, r#"{"price":"1"}"#)))?;
//! let finished = core.poll_finished().expect("answered");
//! assert_eq!((finished.ticket, finished.result.unwrap().source), (ticket, Source::Upstream));
//!
//! // The next bot is answered from the cache at once.
//! let Admission::Answered(answer) = core.submit(later, Request::get(ticker, "bot-2"), "req-2") else {
//!     panic!("expected a cache hit");
//! };
//! assert_eq!(answer.source, Source::Cache);
//! // The host sleeps until the core's next timer, or until a new request arrives.
//! let _wake_at: Option<Instant> = core.poll_timeout();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
pub use http::header;
pub use request::{
    Answer, CallId, Credential, Failure, Finished, Method, Outcome, Request, Response, Source,
    Ticket, TransportError,
};
pub use stats::StatsSnapshot;
pub use web_time::{Duration, Instant};
