//! The mock's request handling: route, count, apply faults, check the
//! credential and the rate limit, answer.
//!
//! This file takes a request from the front door to its answer
//! ([`MockHandler`]); the parts it uses: `query.rs` (request-target and
//! query), `faults.rs` (injected faults), `state.rs` (what is shared
//! across connections), `replies.rs` (each API's answer and error
//! shapes), `endpoints.rs` (each endpoint's answer), `control.rs` (the
//! `/__` control endpoints tests drive the mock with).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::caller::{caller, Authenticates};
use super::table::{api_of, resolve, Api, Route};
use super::verify::{Rejection, Scheme};
use endpoints::endpoint;
use faults::FaultAction;
use query::{query_pairs, split_target, Query};
use replies::{app_error, at_error, at_unauthorized, error, ex_error, json};
use state::{lock, InFlight};
use syncoord_server::{Handler, HttpRequest, Reply, Response};

mod control;
mod endpoints;
mod faults;
mod query;
pub(crate) mod replies;
pub(crate) mod state;

pub(crate) use state::State;

pub(crate) struct MockHandler {
    state: Arc<State>,
    /// Numbers `/__echo` answers, so a test can tell a cached answer
    /// (same number) from a fresh one.
    echo_seq: std::sync::atomic::AtomicU64,
}

impl MockHandler {
    pub(crate) fn new(state: Arc<State>) -> Self {
        MockHandler {
            state,
            echo_seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `[/base]/__echo/...`: what arrived, as JSON: method, the request-target
    /// exactly as received, headers in order, the body, and a sequence
    /// number. Counted and subject to faults like an API call, never rate
    /// limited: it is how tests see what a proxy forwarded.
    fn echo(&self, req: &HttpRequest) -> Response {
        let seq = self
            .echo_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let echoed = json(
            200,
            json!({
                "method": req.method,
                "target": req.target,
                "headers": req.headers,
                "body": String::from_utf8_lossy(&req.body),
                "body_len": req.body.len(),
                "seq": seq,
            }),
        );
        super::echo_headers::answer_headers(&req.target, echoed)
    }
}

impl Handler for MockHandler {
    fn handle(&self, req: HttpRequest) -> Reply {
        let (path, query) = split_target(&req.target);
        if let Some(control) = path
            .strip_prefix("/__")
            .filter(|rest| !rest.starts_with("echo"))
        {
            return self.control(&req.method, control, &req.body).into();
        }
        let state = &*self.state;
        let _flight = InFlight::enter(state);
        let now = Instant::now();
        let route = resolve(&req.method, path);
        // Each API authenticates what Coinbase's does: Advanced Trade the
        // Bearer JWT (a legacy CB-ACCESS-KEY only without one), Exchange
        // CB-ACCESS-KEY. The key name, not an alias: this is upstream.
        let authenticates = match api_of(path) {
            Api::Advanced | Api::App => Authenticates::Jwt,
            Api::Exchange => Authenticates::Key,
        };
        // Strict mode verifies the credential of every API route (public
        // ones too, when a credential is sent); the identity is then what
        // it proved. Otherwise it is read, unverified.
        let (identity, rejection) = match (&state.verify, &route) {
            (Some(verifier), Some(_)) => {
                let scheme = match api_of(path) {
                    Api::Advanced | Api::App => Scheme::AdvancedTrade,
                    Api::Exchange => Scheme::Exchange,
                };
                let outcome =
                    verifier.verify(scheme, &req.method, &req.target, &req.headers, &req.body);
                let mut c = state.counters();
                match outcome {
                    Ok(identity) => {
                        if identity.is_some() {
                            c.stats.signatures_verified += 1;
                        }
                        (identity, None)
                    }
                    Err(rejection) => {
                        *c.stats
                            .signature_failures
                            .entry(rejection.reason().to_owned())
                            .or_default() += 1;
                        (None, Some(rejection))
                    }
                }
            }
            _ => (caller(&req.headers, authenticates), None),
        };
        if let Some(uri) = jwt_uri(&req.headers) {
            let mut c = state.counters();
            if c.stats.jwt_uris.len() >= crate::JWT_URIS_KEPT {
                c.stats.jwt_uris.remove(0);
            }
            c.stats.jwt_uris.push(uri);
        }
        state.count(
            route.as_ref().map_or("unmatched", |r| r.pattern),
            identity.as_deref(),
            now,
        );
        let reply = self.answer(
            &req,
            path,
            query,
            route,
            Credential {
                identity: identity.as_deref(),
                rejection,
            },
            now,
        );
        let status = match &reply {
            Reply::Respond(response) => response.status.to_string(),
            Reply::Intercept { .. } => "200".to_owned(),
            Reply::Splice(_) => "200".to_owned(),
            Reply::DropConnection => DROPPED_STATUS.to_owned(),
        };
        *state.counters().stats.by_status.entry(status).or_default() += 1;
        reply
    }
}

/// The `uri` claim of a `Bearer` JWT in `Authorization`, if there is one
/// (read here; strict mode verifies it in [`crate::verify`]).
fn jwt_uri(headers: &[(String, String)]) -> Option<String> {
    use base64::Engine;
    let value = syncoord_core::header(headers, "authorization")?;
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("uri")?.as_str().map(str::to_owned)
}

/// How [`MockStats::by_status`](crate::MockStats::by_status) counts a
/// connection dropped unanswered.
const DROPPED_STATUS: &str = "0";

/// What a request's credential came to.
struct Credential<'a> {
    /// Whose it is: verified in strict mode, else as presented.
    identity: Option<&'a str>,
    /// Strict mode: why it was refused.
    rejection: Option<Rejection>,
}

impl MockHandler {
    fn answer(
        &self,
        req: &HttpRequest,
        path: &str,
        query: &str,
        route: Option<Route<'_>>,
        credential: Credential<'_>,
        now: Instant,
    ) -> Reply {
        let identity = credential.identity;
        let state = &*self.state;
        let api = api_of(path);
        let (fault, fault_latency) = lock(&state.faults).decide(now);
        let delay = state.latency + fault_latency;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let Some(fault) = fault {
            let mut c = state.counters();
            c.stats.faults_injected += 1;
            match fault {
                FaultAction::Storm => {
                    c.stats.storm_429s += 1;
                    drop(c);
                    let private = route.as_ref().is_some_and(Route::private);
                    return self.too_many(api, private).into();
                }
                FaultAction::Drop => {
                    c.stats.dropped += 1;
                    return Reply::DropConnection;
                }
                FaultAction::Status(status) => {
                    let message = match status {
                        500 => "Internal server error",
                        502 => "Bad gateway",
                        503 => "Service unavailable",
                        504 => "Gateway timeout",
                        _ => "Injected failure",
                    };
                    return error(api, status, "INTERNAL", message).into();
                }
            }
        }
        // Under any base path, so a proxy's base-path handling shows too.
        if path.ends_with("/__echo") || path.contains("/__echo/") {
            return self.echo(req).into();
        }
        let Some(route) = route else {
            return error(api, 404, "NOT_FOUND", "NotFound").into();
        };
        if let Some(rejection) = credential.rejection {
            let response = match api {
                Api::Advanced => at_unauthorized(),
                Api::App => app_error(401, "authentication_error", "invalid signature"),
                Api::Exchange => ex_error(401, rejection.exchange_message()),
            };
            return response.into();
        }
        if route.private() && identity.is_none() {
            state.counters().stats.unauthorized += 1;
            let response = match api {
                Api::Advanced => at_unauthorized(),
                Api::App => app_error(401, "authentication_error", "invalid api key"),
                Api::Exchange => ex_error(401, "CB-ACCESS-KEY header is required"),
            };
            return response.into();
        }
        let key = match (route.private(), identity) {
            (true, Some(id)) => id.to_owned(),
            _ => req.peer.ip().to_string(),
        };
        let now = Instant::now();
        if state.ban.is_some() && lock(&state.banned).1.is_some_and(|until| now < until) {
            return at_error(418, "banned", "IP banned after repeated 429s").into();
        }
        let spec = state.rates.spec(route.scope);
        let admitted = lock(&state.buckets).take(route.scope, &key, spec, now);
        let (left, full_in) = lock(&state.buckets).level(route.scope, &key, spec);
        let used = lock(&state.buckets).used_this_minute(route.scope, &key, now);
        let with_level = |r: Response| match state.headers {
            crate::HeaderStyle::None => r,
            crate::HeaderStyle::XRateLimit => r
                .with_header("x-ratelimit-limit", &format!("{}", spec.per_second))
                .with_header("x-ratelimit-remaining", &left.to_string())
                .with_header("x-ratelimit-reset", &format!("{}", full_in.ceil())),
            crate::HeaderStyle::RateLimit => r
                .with_header(
                    "RateLimit-Policy",
                    &format!(r#""bucket";q={};w=1"#, spec.per_second.floor().max(1.0)),
                )
                .with_header(
                    "RateLimit",
                    &format!(r#""bucket";r={left};t={}"#, full_in.ceil()),
                ),
            crate::HeaderStyle::Weight => r.with_header("X-MBX-USED-WEIGHT-1M", &used.to_string()),
        };
        if !admitted {
            state.counters().stats.rate_limited += 1;
            self.record_429(now);
            return with_level(self.too_many(api, route.private())).into();
        }
        let identity = identity.unwrap_or("anonymous");
        let query = Query(query_pairs(query));
        let answer = endpoint(state, route.endpoint, &query, &req.body, identity);
        with_level(answer).into()
    }

    /// A 429 counts towards the ban rule.
    fn record_429(&self, now: Instant) {
        let Some(ban) = self.state.ban else {
            return;
        };
        let mut banned = lock(&self.state.banned);
        banned.0.push_back(now);
        while banned
            .0
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > ban.within)
        {
            banned.0.pop_front();
        }
        if banned.0.len() >= ban.after.max(1) as usize {
            banned.0.clear();
            banned.1 = Some(now + ban.ban_for);
        }
    }

    fn too_many(&self, api: Api, private: bool) -> Response {
        let response = match api {
            Api::Exchange if private => ex_error(429, "Private rate limit exceeded"),
            Api::Exchange => ex_error(429, "Public rate limit exceeded"),
            Api::Advanced => at_error(429, "rate_limit_exceeded", "Too many requests"),
            Api::App => app_error(429, "rate_limit_exceeded", "Too many requests"),
        };
        match self.state.retry_after {
            Some(secs) => response.with_header("Retry-After", &secs.to_string()),
            None => response,
        }
    }
}
