//! HTTP proxy semantics both hosts share: what a bot's HTTP request becomes
//! (which upstream, which core [`Request`](syncoord_core::Request), which bytes go
//! upstream) and what each core answer or failure becomes on the wire.
//!
//! The native daemon and the Cloudflare Worker only move bytes; every
//! decision about them is made here, once.
//!
//! - [`config`]: the configuration file (`[server]`, `[[upstreams]]`);
//! - [`route`]: which upstream a request goes to and what is sent;
//! - [`signing`]: signing mode's config sections and keys (re-exported from
//!   `syncoord-wire`, where the keys are loaded and each call is signed);
//! - [`response`]: what answers and failures look like to bots;
//! - [`endpoints`]: stats, health and Prometheus metrics;
//! - [`dashboard`]: the live dashboard page and its embedded assets;
//!
//! What leaves for upstream ([`Outgoing`], identity, signing, [`BaseUrl`],
//! [`ClusterSettings`]) is decided in `syncoord-wire`, below this crate, so
//! the library a Rust bot embeds needs none of the config file; it is
//! re-exported here under the names it always had.
//!
//! A host's request handler, in short:
//!
//! ```
//! use syncoord_proxy::{answer_response, endpoint, failure_response, Proxy, ProxyConfig};
//! use syncoord_core::{Admission, Coordinator, Instant, Outcome, Output, Response};
//!
//! let proxy = Proxy::new(ProxyConfig::default())?;
//! let now = Instant::now();
//! // One coordinator per upstream, on that upstream's coordination config,
//! // keyed by the upstream's id (a `RefCell` here: a host shares them).
//! let cores = proxy.per_upstream(|id, _, coordination| {
//!     let core = Coordinator::new(coordination.clone(), now, id.index() as u64);
//!     Ok::<_, std::convert::Infallible>(std::cell::RefCell::new(core))
//! })?;
//!
//! let (method, target) = ("GET", "/exchange/products/BTC-USD/ticker");
//! assert!(endpoint(method, target).is_none(), "not one of our own endpoints");
//! let forward = match proxy.route(None, method, target, &[], Vec::new()) {
//!     Ok(f) => f,
//!     Err(rejection) => panic!("answer {:?}", rejection.into_response()),
//! };
//! let mut core = cores[forward.upstream].borrow_mut();
//! let Admission::Waiting { ticket, .. } = core.submit(now, forward.request, forward.outgoing) else {
//!     panic!("nothing cached yet");
//! };
//! // The host sends `call.payload` (an `Outgoing`) to the upstream's base URL...
//! let Output::Dispatch(call) = core.poll_output(now) else { panic!("due") };
//! assert_eq!(call.payload.path_and_query, "/products/BTC-USD/ticker");
//! core.complete(now, call.call, Outcome::response(Response::new(200, "{}")))?;
//! // ...and answers the bot.
//! let Output::Finished(finished) = core.poll_output(now) else { panic!("ended") };
//! assert_eq!(finished.ticket, ticket);
//! let response = match &finished.result {
//!     Ok(answer) => answer_response(answer),
//!     Err(failure) => failure_response(failure),
//! };
//! assert_eq!(response.header("x-syncoord-cache"), Some("miss"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod dashboard;
pub mod endpoints;
mod histogram;
mod rejection;
pub mod response;
pub mod route;
pub mod tunnel;

/// Signing mode: syncoord holds the API keys and signs each call just
/// before the host sends it; bots present only a token. The pieces live
/// in `syncoord-wire`; this module keeps the paths the proxy has always
/// offered (`syncoord_proxy::signing::Keyring`, ...).
pub mod signing {
    pub(crate) use syncoord_wire::{load_signing as load, presented_token, SigningSetup as Loaded};
    pub use syncoord_wire::{
        token_sha256_hex, Client, ClientSpec, CredentialKind, CredentialSpec, KeyError, Keyring,
        NoSecrets, SecretFile, SecretFileError, SecretSource, SignError, SignTarget, Signer,
        SigningSettings, CREDENTIAL_HEADER, JWT_LIFETIME_SECS, SIGNATURE_HEADERS, TOKEN_HEADER,
    };

    /// The signing-mode sections of the config file: `[[credentials]]`,
    /// `[[clients]]` and an upstream's `[upstreams.signing]`.
    pub mod spec {
        pub(crate) use syncoord_wire::{
            check_signing_specs as check, edge_signing_issues as edge_issues,
        };
        pub use syncoord_wire::{ClientSpec, CredentialKind, CredentialSpec, SigningSettings};
    }

    #[cfg(test)]
    mod tests;
}

/// Identity and hop-by-hop headers, from `syncoord-wire`, under the paths
/// this crate's modules use.
mod http {
    pub(crate) use syncoord_wire::{identity_of, presented, strip_hop_headers, HopHeaders};

    /// Header fields from `(name, value)` pairs, for this crate's tests.
    #[cfg(test)]
    pub(crate) fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|&(n, v)| (n.into(), v.into())).collect()
    }
}

/// URL pieces from `syncoord-wire`, under the paths this crate's modules use.
mod url {
    pub(crate) use syncoord_wire::{split_absolute, BaseUrl, Origin};
}

/// `[cluster]`, from `syncoord-wire`, under the path this crate's modules use.
mod cluster {
    pub(crate) use syncoord_wire::ClusterSettings;
}

pub use config::{
    ConfigFileError, ConfigFileErrors, LogFormat, Preset, PresetRoutes, Provenance, ProxyConfig,
    ServerSettings, UpstreamConfig,
};
pub use endpoints::{endpoint, Endpoint};
pub use rejection::{Rejection, RejectionKind};
pub use response::{
    aborted_response, answer_response, edge_failure_response, error_response, failure_response,
    failure_response_shaped, timed_out_response, ErrorShape, OUTCOME_UNKNOWN_STATUS,
};
pub use route::{
    forwardable_headers, forwarded_headers, redact, ConnectTarget, Forward, PerUpstream, Proxy,
    ShardKey, UpstreamId,
};
pub use syncoord_wire::{
    credential_identity, identity_of, key_name, presented, strip_hop_headers, BaseUrl,
    BaseUrlError, ClusterSettings, HopHeaders, Origin, Outgoing, Presented, UrlError,
};

/// Request header naming the bot (fairness, per-bot stats).
pub const CLIENT_HEADER: &str = "X-Syncoord-Client";
/// Request header choosing a priority class of the upstream's config.
pub const PRIORITY_HEADER: &str = "X-Syncoord-Priority";
/// Response header: `hit`, `stale`, `coalesced` or `miss`.
pub const CACHE_HEADER: &str = "X-Syncoord-Cache";
/// Response header on errors of our own: the failure's kind.
pub const ERROR_HEADER: &str = "X-Syncoord-Error";
