//! A Coinbase-like mock upstream for testing bots and the daemon without
//! touching Coinbase: both Advanced Trade (`/api/v3/brokerage/...`) and
//! Exchange (root paths) on one server, with Coinbase's documented rate
//! limits, switchable faults and counters a test can assert on.
//!
//! What it checks and what it does not:
//! - Private endpoints need a credential (`CB-ACCESS-KEY`, or
//!   `Authorization: Bearer <JWT>` whose `sub` names the key); without one,
//!   `401`. Signatures and JWTs are NOT verified: any value is accepted, the
//!   identity is only used to pick balances, orders and rate-limit buckets.
//! - Balances depend on the credential and every private answer echoes it
//!   (`mock_credential`), so a proxy leaking one credential's cached answer
//!   to another is detectable.
//! - Rate limits are lazy-fill token buckets (public per client IP,
//!   private per credential); `/__stats` reports the most calls admitted in
//!   any one-second window per bucket, so a test can prove a proxy never
//!   exceeded them.
//!
//! Control endpoints (never rate limited, never counted as requests):
//! `GET /__stats`, `GET|POST /__faults` (JSON [`Faults`]), `POST /__reset`.

mod account;
mod limits;
mod market;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::server::{Limits, Server, ShutdownHandle};

pub use limits::{BucketSpec, MockRates};

/// How to run a mock.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Address to bind, e.g. `127.0.0.1:0` (an ephemeral port).
    pub listen: String,
    pub limits: Limits,
    /// Added to every answer (a realistic upstream is not instant).
    pub latency: Duration,
    pub rates: MockRates,
    /// When set, rate-limit `429`s carry `Retry-After: <seconds>` (Coinbase
    /// sends none; this tests clients that honour it).
    pub retry_after: Option<u64>,
    /// Faults active from the start.
    pub faults: Faults,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            listen: "127.0.0.1:0".to_owned(),
            limits: Limits::default(),
            latency: Duration::ZERO,
            rates: MockRates::default(),
            retry_after: None,
            faults: Faults::default(),
        }
    }
}

/// Switchable misbehaviour. Applied to API requests only (not to the
/// `/__` control endpoints), in this order: a 429 storm, a dropped
/// connection, a status override; `latency_ms` delays every answer.
///
/// Fractions are deterministic, not random: with `status_fraction = 0.25`
/// exactly every fourth request is hit, so tests can count on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Status of overridden answers (default 503).
    pub status: Option<u16>,
    /// Fraction (0 to 1) of requests answered with `status`.
    pub status_fraction: f64,
    /// The next N requests are answered with `status`.
    pub status_next: u32,
    /// Fraction (0 to 1) of requests whose connection is closed without
    /// an answer.
    pub drop_fraction: f64,
    /// The next N requests have their connection closed without an answer.
    pub drop_next: u32,
    /// Added latency on every answer, in milliseconds.
    pub latency_ms: u64,
    /// Answer 429 to everything for this many milliseconds, counted from
    /// when these faults were set.
    pub storm_ms: u64,
}

/// Counters, as `GET /__stats` returns them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MockStats {
    /// API requests received (control endpoints excluded).
    pub requests_total: u64,
    /// By route pattern, e.g. `GET /products/{id}/ticker`; unknown paths
    /// count under `unmatched`.
    pub by_route: BTreeMap<String, u64>,
    /// By credential identity (`key:...`, `jwt:...`); requests without one
    /// count under `anonymous`.
    pub by_credential: BTreeMap<String, u64>,
    /// By status sent (`0` for dropped connections).
    pub by_status: BTreeMap<String, u64>,
    /// `401`s sent for a missing credential.
    pub unauthorized: u64,
    /// `429`s sent because a token bucket was empty.
    pub rate_limited: u64,
    /// `429`s sent by a storm fault.
    pub storm_429s: u64,
    /// Faults applied (storm 429s, drops, status overrides).
    pub faults_injected: u64,
    /// Connections dropped without an answer.
    pub dropped: u64,
    /// API requests being answered right now.
    pub in_flight: u64,
    /// Most API requests being answered at once.
    pub max_concurrent: u64,
    /// Most API requests received in any one-second window.
    pub max_requests_in_1s: u64,
    /// Per bucket (`<scope> <ip or credential>`, e.g.
    /// `exchange_private key:abc`): most calls admitted in any one-second
    /// window. A lazy-fill bucket admits at most `burst + per_second` in
    /// one second, so a test compares against that.
    pub max_admitted_in_1s: BTreeMap<String, u64>,
}

/// A running mock upstream.
pub struct MockUpstream {
    server: Option<Server>,
    stop: ShutdownHandle,
    addr: SocketAddr,
    state: Arc<routes::State>,
}

impl MockUpstream {
    pub fn start(options: MockOptions) -> io::Result<MockUpstream> {
        let state = Arc::new(routes::State::new(&options));
        let handler = Arc::new(routes::MockHandler::new(Arc::clone(&state)));
        let server = Server::bind(&options.listen, options.limits.clone(), handler)?;
        Ok(MockUpstream {
            stop: server.shutdown_handle(),
            addr: server.local_addr(),
            server: Some(server),
            state,
        })
    }

    /// `http://<addr>`, to point a client or the daemon at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> MockStats {
        self.state.stats()
    }

    /// Replaces the active faults (a storm starts now).
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Clears the counters and refills every rate-limit bucket, so a test
    /// phase starts fresh. Orders are kept.
    pub fn reset_stats(&self) {
        self.state.reset();
    }

    /// Stops accepting, lets in-flight answers finish, and returns when
    /// every connection has closed. Later connections are refused (the
    /// "upstream is down" fault).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(server) = self.server.take() {
            self.stop.shutdown();
            server.join();
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Why `mock-upstream` could not run.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("invalid --{option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot install the SIGINT/SIGTERM handler: {0}")]
    Signals(io::Error),
}

/// `syncoord mock-upstream`: a Coinbase-like upstream for local testing.
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Exchange public limit per client IP (requests per second).
    #[arg(long, default_value_t = 10.0)]
    pub exchange_public_rate: f64,
    #[arg(long, default_value_t = 15.0)]
    pub exchange_public_burst: f64,
    /// Exchange private limit per credential (requests per second).
    #[arg(long, default_value_t = 15.0)]
    pub exchange_private_rate: f64,
    #[arg(long, default_value_t = 30.0)]
    pub exchange_private_burst: f64,
    /// Exchange /fills limit per credential (requests per second).
    #[arg(long, default_value_t = 10.0)]
    pub exchange_fills_rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub exchange_fills_burst: f64,
    /// Advanced Trade public limit per client IP (requests per second).
    #[arg(long, default_value_t = 10.0)]
    pub advanced_public_rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub advanced_public_burst: f64,
    /// Advanced Trade private limit per credential (requests per second).
    #[arg(long, default_value_t = 30.0)]
    pub advanced_private_rate: f64,
    #[arg(long, default_value_t = 30.0)]
    pub advanced_private_burst: f64,
    /// Send `Retry-After: <seconds>` with rate-limit 429s.
    #[arg(long)]
    pub retry_after_secs: Option<u64>,

    /// Status of injected failures.
    #[arg(long)]
    pub fault_status: Option<u16>,
    /// Fraction (0 to 1) of requests answered with --fault-status.
    #[arg(long, default_value_t = 0.0)]
    pub fault_fraction: f64,
    /// The first N requests are answered with --fault-status.
    #[arg(long, default_value_t = 0)]
    pub fault_next: u32,
    /// Fraction (0 to 1) of requests whose connection is dropped unanswered.
    #[arg(long, default_value_t = 0.0)]
    pub drop_fraction: f64,
    /// The first N requests have their connection dropped unanswered.
    #[arg(long, default_value_t = 0)]
    pub drop_next: u32,
    /// Answer 429 to everything for this many milliseconds after start.
    #[arg(long, default_value_t = 0)]
    pub storm_ms: u64,

    /// Most simultaneous connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Enforce no rate limits at all (for load benchmarks of a proxy in
    /// front of the mock); overrides every rate and burst flag.
    #[arg(long)]
    pub unlimited: bool,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest request header section, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Keep-alive idle timeout, in seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Time a started request has to arrive completely, in seconds.
    #[arg(long, default_value_t = 30)]
    pub read_timeout_secs: u64,
}

impl MockArgs {
    /// The options these flags describe, validated.
    pub fn options(&self) -> Result<MockOptions, MockError> {
        let bucket = |option: &'static str, rate: f64, burst: f64| {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(MockError::InvalidOption {
                    option,
                    reason: format!("rate must be a positive number, got {rate}"),
                });
            }
            if !(burst.is_finite() && burst >= 1.0) {
                return Err(MockError::InvalidOption {
                    option,
                    reason: format!("burst must be at least 1, got {burst}"),
                });
            }
            Ok(BucketSpec::new(rate, burst))
        };
        for (option, value) in [
            ("fault-fraction", self.fault_fraction),
            ("drop-fraction", self.drop_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(MockError::InvalidOption {
                    option,
                    reason: format!("must be between 0 and 1, got {value}"),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(MockError::InvalidOption {
                option: "max-connections",
                reason: "must be at least 1".to_owned(),
            });
        }
        let rates = if self.unlimited {
            MockRates::uniform(BucketSpec::new(1e9, 1e9))
        } else {
            MockRates {
                exchange_public: bucket(
                    "exchange-public-rate",
                    self.exchange_public_rate,
                    self.exchange_public_burst,
                )?,
                exchange_private: bucket(
                    "exchange-private-rate",
                    self.exchange_private_rate,
                    self.exchange_private_burst,
                )?,
                exchange_fills: bucket(
                    "exchange-fills-rate",
                    self.exchange_fills_rate,
                    self.exchange_fills_burst,
                )?,
                advanced_public: bucket(
                    "advanced-public-rate",
                    self.advanced_public_rate,
                    self.advanced_public_burst,
                )?,
                advanced_private: bucket(
                    "advanced-private-rate",
                    self.advanced_private_rate,
                    self.advanced_private_burst,
                )?,
            }
        };
        Ok(MockOptions {
            listen: self.listen.clone(),
            limits: Limits {
                max_header_bytes: self.max_header_bytes,
                max_headers: Limits::default().max_headers,
                max_body_bytes: self.max_body_bytes,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                read_timeout: Duration::from_secs(self.read_timeout_secs),
                max_connections: self.max_connections,
            },
            latency: Duration::from_millis(self.latency_ms),
            rates,
            retry_after: self.retry_after_secs,
            faults: Faults {
                status: self.fault_status,
                status_fraction: self.fault_fraction,
                status_next: self.fault_next,
                drop_fraction: self.drop_fraction,
                drop_next: self.drop_next,
                latency_ms: 0,
                storm_ms: self.storm_ms,
            },
        })
    }
}

/// Runs a mock until SIGINT or SIGTERM, then shuts it down gracefully.
pub fn run(args: MockArgs) -> Result<(), MockError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let options = args.options()?;
    // Install the handler before binding, so a signal that arrives while
    // the server starts is not lost.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(MockError::Signals)?;
    let mock = MockUpstream::start(options).map_err(|source| MockError::Bind {
        addr: args.listen.clone(),
        source,
    })?;
    tracing::info!(url = %mock.base_url(), "mock upstream listening");
    println!("mock upstream listening on {}", mock.base_url());
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down the mock upstream");
    }
    mock.shutdown();
    Ok(())
}
