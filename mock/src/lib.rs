//! A Coinbase-like mock upstream for testing bots and the daemon without
//! touching Coinbase: both Advanced Trade (`/api/v3/brokerage/...`) and
//! Exchange (root paths) on one server, with Coinbase's documented rate
//! limits, switchable faults and counters a test can assert on.
//!
//! What it checks and what it does not:
//! - Private endpoints need a credential (`CB-ACCESS-KEY`, or
//!   `Authorization: Bearer <JWT>` whose `sub` names the key); without one,
//!   `401`. By default signatures and JWTs are NOT verified: any value is
//!   accepted, the identity is only used to pick balances, orders and
//!   rate-limit buckets.
//! - In strict mode ([`MockOptions::verify`], `syncoord mock-upstream
//!   --verify-keys FILE`) every credential sent is verified as Coinbase
//!   does ([`verify`] lists each check): the JWT's ES256 or Ed25519
//!   signature, `kid`/`sub`, `iss`, `nbf`/`exp` and a lifetime of at most
//!   120 s, and a `uri` naming this request's method, host and path; the
//!   Exchange HMAC over timestamp, method, path with query and body, a
//!   timestamp within 30 s, the passphrase. A failure is a `401` in the
//!   API's own shape, counted in [`MockStats::signature_failures`] by
//!   reason; the identity is then the one the signature proved. Nothing
//!   guards against replay (Coinbase documents no nonce check).
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
mod app;
mod caller;
mod echo_headers;
mod limits;
mod market;
mod orders_api;
mod routes;
mod table;
#[cfg(test)]
mod tests;
pub mod verify;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use syncoord_server::{Limits, Server, ShutdownHandle};

pub use limits::{BucketSpec, MockRates};
pub use verify::{KeyError, KeysFileErrors, Rejection, Verifier};
/// The key types [`Verifier`] takes, re-exported so a test builds keys
/// with the same versions (`p256::ecdsa::SigningKey`,
/// `ed25519_dalek::SigningKey`).
pub use {ed25519_dalek, p256};

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
    /// Strict mode: verify every credential against these keys and answer
    /// `401` as Coinbase does when one fails ([`verify`]). `None`: any
    /// credential is accepted unverified.
    pub verify: Option<Arc<Verifier>>,
    /// The headers every rate-limited answer states its bucket in
    /// (Coinbase sends none).
    pub headers: HeaderStyle,
    /// Binance's rule: this many 429s within a window earn a ban during
    /// which everything is answered 418.
    pub ban: Option<Ban>,
}

/// How the mock states a bucket's limit on each answer it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// Nothing (Coinbase).
    #[default]
    None,
    /// `x-ratelimit-limit` (per second), `x-ratelimit-remaining`,
    /// `x-ratelimit-reset` (seconds until the bucket is full).
    XRateLimit,
    /// `RateLimit-Policy: "bucket";q=<per second>;w=1` and
    /// `RateLimit: "bucket";r=<left>;t=<seconds until full>` (draft 12).
    RateLimit,
    /// Binance's weights: `X-MBX-USED-WEIGHT-1M`, the calls (each of
    /// weight 1) the bucket's key made in the current minute.
    Weight,
}

/// Ban after `after` 429s within `within`, for `ban_for`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ban {
    /// 429s that trigger it.
    pub after: u32,
    /// The window they are counted in.
    pub within: Duration,
    /// How long everything is answered 418.
    pub ban_for: Duration,
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
            verify: None,
            headers: HeaderStyle::None,
            ban: None,
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
    /// The `uri` claim of each Advanced Trade JWT received (the latest
    /// [`JWT_URIS_KEPT`]), e.g. `GET api.coinbase.com/api/v3/brokerage/accounts`:
    /// what the client signed for. Coinbase checks it against the request,
    /// so a client that signed for the proxy's address would get 401.
    pub jwt_uris: Vec<String>,
    /// Strict mode: credentials that verified.
    #[serde(default)]
    pub signatures_verified: u64,
    /// Strict mode: credentials refused, by [`Rejection::reason`] (e.g.
    /// `expired`, `bad_signature`, `wrong_uri`).
    #[serde(default)]
    pub signature_failures: BTreeMap<String, u64>,
}

/// How many JWT `uri` claims [`MockStats::jwt_uris`] keeps.
pub const JWT_URIS_KEPT: usize = 256;

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
