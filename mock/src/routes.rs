//! The mock's request handling: route, count, apply faults, check the
//! credential and the rate limit, answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::account::{self, Orders, Status};
use super::app;
use super::caller::{caller, Authenticates};
use super::limits::{Buckets, MockRates, WindowPeak};
use super::market::{self, product, unix_now, Product};
use super::orders_api;
use super::table::{api_of, resolve, Api, Endpoint, Route};
use super::verify::{Rejection, Scheme, Verifier};
use super::{Faults, MockOptions, MockStats};
use syncoord_server::{Handler, HttpRequest, Reply, Response};

/// Splits a request-target into path and query; an absolute-form target
/// (`http://host/path`) loses its scheme and authority.
fn split_target(target: &str) -> (&str, &str) {
    let origin = match target.find("://") {
        Some(i) if !target[..i].contains('/') => {
            let after = &target[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        _ => target,
    };
    origin.split_once('?').unwrap_or((origin, ""))
}

/// Query pairs, percent-decoded (`+` as space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `names` (repeated keys, and comma-separated values).
    fn all(&self, names: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("invalid {name}: {v:?}")),
        }
    }
}

/// Fault bookkeeping behind [`Faults`].
#[derive(Default)]
struct FaultState {
    faults: Faults,
    storm_until: Option<Instant>,
    /// Requests seen by the fraction counters.
    status_seen: u64,
    drop_seen: u64,
}

/// Deterministic fraction: the `n`th event (from 0) is hit when it carries
/// the running total of `n * fraction` past an integer.
fn fraction_hit(n: u64, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    ((n + 1) as f64 * fraction).floor() > (n as f64 * fraction).floor()
}

enum FaultAction {
    Storm,
    Drop,
    Status(u16),
}

impl FaultState {
    fn set(&mut self, faults: Faults, now: Instant) {
        self.storm_until =
            (faults.storm_ms > 0).then(|| now + Duration::from_millis(faults.storm_ms));
        self.faults = faults;
        self.status_seen = 0;
        self.drop_seen = 0;
    }

    fn decide(&mut self, now: Instant) -> (Option<FaultAction>, Duration) {
        let latency = Duration::from_millis(self.faults.latency_ms);
        if self.storm_until.is_some_and(|until| now < until) {
            return (Some(FaultAction::Storm), latency);
        }
        let f = &mut self.faults;
        if f.drop_next > 0 {
            f.drop_next -= 1;
            return (Some(FaultAction::Drop), latency);
        }
        let n = self.drop_seen;
        self.drop_seen += 1;
        if fraction_hit(n, f.drop_fraction) {
            return (Some(FaultAction::Drop), latency);
        }
        let status = f.status.unwrap_or(503);
        if f.status_next > 0 {
            f.status_next -= 1;
            return (Some(FaultAction::Status(status)), latency);
        }
        let n = self.status_seen;
        self.status_seen += 1;
        if fraction_hit(n, f.status_fraction) {
            return (Some(FaultAction::Status(status)), latency);
        }
        (None, latency)
    }

    /// The faults as they stand (counts already spent are subtracted).
    fn current(&self, now: Instant) -> Faults {
        let mut f = self.faults.clone();
        f.storm_ms = self
            .storm_until
            .map_or(0, |u| u.saturating_duration_since(now).as_millis() as u64);
        f
    }
}

#[derive(Default)]
struct Counters {
    stats: MockStats,
    all: WindowPeak,
}

/// Everything the handler shares across connections. Each piece has its
/// own lock, none held across a sleep or another lock.
pub(crate) struct State {
    rates: MockRates,
    latency: Duration,
    retry_after: Option<u64>,
    buckets: Mutex<Buckets>,
    faults: Mutex<FaultState>,
    counters: Mutex<Counters>,
    orders: Mutex<Orders>,
    in_flight: AtomicU64,
    /// Strict mode's keys.
    verify: Option<Arc<Verifier>>,
    headers: crate::HeaderStyle,
    ban: Option<crate::Ban>,
    /// Recent 429s (for the ban rule) and the ban's end.
    banned: Mutex<(std::collections::VecDeque<Instant>, Option<Instant>)>,
}

/// A poisoned lock only means a handler panicked mid-update of plain
/// counters; keep serving with what is there.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(crate) fn new(options: &MockOptions) -> Self {
        let mut faults = FaultState::default();
        faults.set(options.faults.clone(), Instant::now());
        State {
            rates: options.rates,
            latency: options.latency,
            retry_after: options.retry_after,
            buckets: Mutex::new(Buckets::default()),
            faults: Mutex::new(faults),
            counters: Mutex::new(Counters::default()),
            orders: Mutex::new(Orders::default()),
            in_flight: AtomicU64::new(0),
            verify: options.verify.clone(),
            headers: options.headers,
            ban: options.ban,
            banned: Mutex::new(Default::default()),
        }
    }

    pub(crate) fn stats(&self) -> MockStats {
        let mut stats = lock(&self.counters).stats.clone();
        stats.in_flight = self.in_flight.load(Ordering::SeqCst);
        stats.max_admitted_in_1s = lock(&self.buckets).max_admitted_in_1s().collect();
        stats
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        lock(&self.faults).set(faults, Instant::now());
    }

    pub(crate) fn reset(&self) {
        *lock(&self.counters) = Counters::default();
        *lock(&self.buckets) = Buckets::default();
    }

    fn count(&self, pattern: &str, identity: Option<&str>, now: Instant) {
        let mut c = lock(&self.counters);
        c.all.record(now);
        c.stats.max_requests_in_1s = c.all.max;
        c.stats.requests_total += 1;
        *c.stats.by_route.entry(pattern.to_owned()).or_default() += 1;
        *c.stats
            .by_credential
            .entry(identity.unwrap_or("anonymous").to_owned())
            .or_default() += 1;
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }
}

/// Tracks a request in flight for `max_concurrent`.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut c = state.counters();
        c.stats.max_concurrent = c.stats.max_concurrent.max(now);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

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

/// How [`MockStats::by_status`] counts a connection dropped unanswered.
const DROPPED_STATUS: &str = "0";

pub(crate) fn json(status: u16, value: Value) -> Response {
    Response::json(status, value.to_string())
}

/// Exchange's error shape: `{"message": ...}`.
fn ex_error(status: u16, message: &str) -> Response {
    json(status, json!({ "message": message }))
}

/// Advanced Trade's error shape.
fn at_error(status: u16, error: &str, message: &str) -> Response {
    json(
        status,
        json!({ "error": error, "error_details": message, "message": message }),
    )
}

fn error(api: Api, status: u16, code: &str, message: &str) -> Response {
    match api {
        Api::Exchange => ex_error(status, message),
        Api::Advanced => at_error(status, code, message),
        Api::App => app_error(status, &code.to_ascii_lowercase(), message),
    }
}

/// The App API's error shape.
fn app_error(status: u16, id: &str, message: &str) -> Response {
    json(status, app::error_body(id, message))
}

/// What a request's credential came to.
struct Credential<'a> {
    /// Whose it is: verified in strict mode, else as presented.
    identity: Option<&'a str>,
    /// Strict mode: why it was refused.
    rejection: Option<Rejection>,
}

/// Advanced Trade answers a missing or bad JWT with a bare text body.
fn at_unauthorized() -> Response {
    Response::new(401, "Unauthorized\n").with_header("Content-Type", "text/plain; charset=utf-8")
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

    fn control(&self, method: &str, what: &str, body: &[u8]) -> Response {
        let state = &*self.state;
        match (method, what) {
            ("GET", "stats") => match serde_json::to_value(state.stats()) {
                Ok(v) => json(200, v),
                Err(e) => json(500, json!({ "message": e.to_string() })),
            },
            ("GET", "faults") => {
                let current = lock(&state.faults).current(Instant::now());
                match serde_json::to_value(current) {
                    Ok(v) => json(200, v),
                    Err(e) => json(500, json!({ "message": e.to_string() })),
                }
            }
            ("POST", "faults") => match serde_json::from_slice::<Faults>(body) {
                Ok(faults) => {
                    let valid = (0.0..=1.0).contains(&faults.status_fraction)
                        && (0.0..=1.0).contains(&faults.drop_fraction);
                    if !valid {
                        return json(
                            400,
                            json!({ "message": "status_fraction and drop_fraction must be between 0 and 1" }),
                        );
                    }
                    state.set_faults(faults.clone());
                    match serde_json::to_value(faults) {
                        Ok(v) => json(200, v),
                        Err(e) => json(500, json!({ "message": e.to_string() })),
                    }
                }
                Err(e) => json(400, json!({ "message": format!("invalid faults: {e}") })),
            },
            ("POST", "reset") => {
                state.reset();
                Response::new(204, Vec::new())
            }
            _ => json(404, json!({ "message": "NotFound" })),
        }
    }
}

fn product_or_404(api: Api, id: &str) -> Result<&'static Product, Response> {
    product(id).ok_or_else(|| match api {
        Api::Exchange => ex_error(404, "NotFound"),
        Api::Advanced => at_error(404, "NOT_FOUND", "ProductID is invalid"),
        Api::App => app_error(404, "not_found", "Invalid currency pair"),
    })
}

fn endpoint(
    state: &State,
    endpoint: Endpoint<'_>,
    q: &Query,
    body: &[u8],
    identity: &str,
) -> Response {
    match answer_endpoint(state, endpoint, q, body, identity) {
        Ok(r) | Err(r) => r,
    }
}

pub(crate) fn bad_at(message: String) -> Response {
    at_error(400, "INVALID_ARGUMENT", &message)
}

pub(crate) fn bad_ex(message: String) -> Response {
    ex_error(400, &message)
}

fn answer_endpoint(
    state: &State,
    endpoint: Endpoint<'_>,
    q: &Query,
    body: &[u8],
    identity: &str,
) -> Result<Response, Response> {
    use Endpoint::*;
    let t = unix_now();
    Ok(match endpoint {
        // Only spot products: asked for futures (as ccxt's load_markets
        // does), the list is empty.
        AtProducts => match q.get("product_type") {
            Some(kind) if !kind.eq_ignore_ascii_case("SPOT") => {
                json(200, json!({ "products": [], "num_products": 0 }))
            }
            _ => json(200, market::at_products(t, &q.all(&["product_ids"]))),
        },
        AtProduct(id) => json(
            200,
            market::at_product(product_or_404(Api::Advanced, id)?, t),
        ),
        AtTicker(id) => {
            let p = product_or_404(Api::Advanced, id)?;
            let limit = q.number::<usize>("limit").map_err(bad_at)?.unwrap_or(10);
            json(200, market::at_ticker(p, t, limit))
        }
        AtCandles(id) => {
            let p = product_or_404(Api::Advanced, id)?;
            let granularity = q
                .get("granularity")
                .and_then(market::at_granularity)
                .ok_or_else(|| bad_at("granularity is required (ONE_MINUTE ... ONE_DAY)".into()))?;
            // No candle from the future: an `end` past now stops at now.
            let end = q
                .number::<u64>("end")
                .map_err(bad_at)?
                .map_or(t as u64, |e| e.min(t as u64));
            let start = q.number::<u64>("start").map_err(bad_at)?;
            let limit = q.number::<usize>("limit").map_err(bad_at)?.unwrap_or(350);
            if limit > 350 {
                return Err(bad_at("limit must be at most 350".into()));
            }
            json(200, market::at_candles(p, granularity, start, end, limit))
        }
        AtProductBook => {
            let id = q
                .get("product_id")
                .ok_or_else(|| bad_at("product_id is required".into()))?;
            let p = product_or_404(Api::Advanced, id)?;
            let depth = q.number::<usize>("limit").map_err(bad_at)?.unwrap_or(50);
            json(200, market::at_product_book(p, t, depth.clamp(1, 500)))
        }
        AtBestBidAsk => json(
            200,
            market::at_best_bid_ask(t, &q.all(&["product_ids", "product_id"])),
        ),
        AtAccounts => {
            let accounts: Vec<Value> = account::accounts(identity)
                .iter()
                .map(account::Account::advanced)
                .collect();
            json(
                200,
                json!({ "size": accounts.len(), "accounts": accounts, "has_next": false, "cursor": "" }),
            )
        }
        AtAccount(uuid) => match account::accounts(identity).iter().find(|a| a.uuid == uuid) {
            Some(a) => json(200, json!({ "account": a.advanced() })),
            None => at_error(404, "NOT_FOUND", "account not found"),
        },
        AtCreateOrder => orders_api::at_create_order(&state.orders, body, identity, t),
        AtBatchCancel => {
            let ids = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("order_ids").cloned())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                .ok_or_else(|| bad_at("body must be {\"order_ids\": [...]}".into()))?;
            let mut orders = lock(&state.orders);
            let results: Vec<Value> = ids
                .iter()
                .map(|id| match orders.cancel(identity, id) {
                    Ok(()) => json!({ "success": true, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": id }),
                    Err(reason) => json!({ "success": false, "failure_reason": reason, "order_id": id }),
                })
                .collect();
            json(200, json!({ "results": results }))
        }
        AtOrders => {
            let statuses = q.all(&["order_status"]);
            let products = q.all(&["product_ids", "product_id"]);
            let orders = lock(&state.orders);
            let list: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| products.is_empty() || products.iter().any(|p| p == o.product_id))
                .map(account::Order::advanced)
                .filter(|o| {
                    statuses.is_empty()
                        || statuses
                            .iter()
                            .any(|s| o.get("status").and_then(Value::as_str) == Some(s.as_str()))
                })
                .collect();
            json(
                200,
                json!({ "orders": list, "sequence": "0", "has_next": false, "cursor": "" }),
            )
        }
        AtOrder(id) => match lock(&state.orders).get(identity, id) {
            Some(o) => json(200, json!({ "order": o.advanced() })),
            None => at_error(404, "NOT_FOUND", "order not found"),
        },
        AtFills => {
            let ids = q.all(&["order_id", "order_ids"]);
            let products = q.all(&["product_id", "product_ids"]);
            let orders = lock(&state.orders);
            let fills: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| ids.is_empty() || ids.contains(&o.id))
                .filter(|o| products.is_empty() || products.iter().any(|p| p == o.product_id))
                .filter_map(account::Order::advanced_fill)
                .collect();
            json(200, json!({ "fills": fills, "cursor": "" }))
        }
        AtTransactionSummary => json(
            200,
            app::transaction_summary(&lock(&state.orders), identity),
        ),
        AtTime => json(200, app::advanced_time(t)),
        AppCurrencies => json(200, app::fiat_currencies()),
        AppCryptoCurrencies => json(200, app::crypto_currencies()),
        AppExchangeRates => {
            let currency = q.get("currency").unwrap_or("USD");
            app::exchange_rates(currency, t)
                .map(|v| json(200, v))
                .ok_or_else(|| app_error(400, "invalid_request", "Invalid currency"))?
        }
        AppPrice(pair, kind) => app::price(pair, kind, t)
            .map(|v| json(200, v))
            .ok_or_else(|| app_error(404, "not_found", "Invalid currency pair"))?,
        AppTime => json(200, app::time(t)),
        AppAccounts => json(200, app::accounts(identity)),
        AppAccount(id) => app::account(identity, id)
            .map(|v| json(200, v))
            .ok_or_else(|| app_error(404, "not_found", "Not found"))?,
        ExProducts => json(200, market::ex_products()),
        ExProduct(id) => json(200, market::ex_product(product_or_404(Api::Exchange, id)?)),
        ExTicker(id) => json(
            200,
            market::ex_ticker(product_or_404(Api::Exchange, id)?, t),
        ),
        ExBook(id) => {
            let p = product_or_404(Api::Exchange, id)?;
            let level = q.number::<u8>("level").map_err(bad_ex)?.unwrap_or(1);
            if !(1..=3).contains(&level) {
                return Err(ex_error(400, "Invalid level"));
            }
            json(200, market::ex_book(p, t, level))
        }
        ExCandles(id) => {
            let p = product_or_404(Api::Exchange, id)?;
            let granularity = q
                .number::<u64>("granularity")
                .map_err(bad_ex)?
                .unwrap_or(60);
            if ![60, 300, 900, 3600, 21_600, 86_400].contains(&granularity) {
                return Err(ex_error(400, "Unsupported granularity"));
            }
            // As Coinbase documents: `start` and `end` (ISO 8601, as ccxt
            // sends them, or Unix seconds) count only together; at most
            // 300 candles between them; none past now.
            let when = |name: &str| match q.get(name) {
                None | Some("") => Ok(None),
                Some(v) => unix_seconds(v)
                    .map(Some)
                    .ok_or_else(|| ex_error(400, &format!("Invalid {name}: {v:?}"))),
            };
            let (start, end) = match (when("start")?, when("end")?) {
                (Some(start), Some(end)) => {
                    if end.saturating_sub(start) / granularity > 300 {
                        return Err(ex_error(
                            400,
                            "granularity too small for the requested time range. \
                             Count of aggregations requested exceeds 300",
                        ));
                    }
                    (Some(start), end.min(t as u64))
                }
                _ => (None, t as u64),
            };
            json(200, market::ex_candles(p, granularity, start, end))
        }
        ExStats(id) => json(200, market::ex_stats(product_or_404(Api::Exchange, id)?, t)),
        ExTime => json(200, market::ex_time(t)),
        ExCurrencies => json(200, app::exchange_currencies()),
        ExCurrency(id) => app::exchange_currency_by_id(id)
            .map(|v| json(200, v))
            .ok_or_else(|| ex_error(404, "NotFound"))?,
        ExAccounts => json(
            200,
            Value::Array(
                account::accounts(identity)
                    .iter()
                    .map(account::Account::exchange)
                    .collect(),
            ),
        ),
        ExAccount(id) => match account::accounts(identity).iter().find(|a| a.uuid == id) {
            Some(a) => json(200, a.exchange()),
            None => ex_error(404, "NotFound"),
        },
        ExListOrders => {
            let statuses = q.all(&["status"]);
            let product = q.get("product_id");
            let wanted = |s: Status| {
                if statuses.is_empty() {
                    return s == Status::Open;
                }
                statuses.iter().any(|w| match w.as_str() {
                    "all" => s != Status::Cancelled,
                    "open" | "pending" | "active" => s == Status::Open,
                    "done" => s == Status::Filled,
                    _ => false,
                })
            };
            let orders = lock(&state.orders);
            let list: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| wanted(o.status))
                .filter(|o| product.is_none_or(|p| p == o.product_id))
                .map(account::Order::exchange)
                .collect();
            json(200, Value::Array(list))
        }
        ExCreateOrder => orders_api::ex_create_order(&state.orders, body, identity, t),
        ExCancelAll => {
            let product = q.get("product_id");
            let mut orders = lock(&state.orders);
            let open: Vec<String> = orders
                .list(identity)
                .iter()
                .filter(|o| o.status == Status::Open)
                .filter(|o| product.is_none_or(|p| p == o.product_id))
                .map(|o| o.id.clone())
                .collect();
            for id in &open {
                let _ = orders.cancel(identity, id);
            }
            json(200, json!(open))
        }
        ExOrder(id) => {
            let orders = lock(&state.orders);
            let found = match id.strip_prefix("client:") {
                Some(client) => orders
                    .list(identity)
                    .iter()
                    .find(|o| o.client_order_id == client),
                None => orders.list(identity).iter().find(|o| o.id == id),
            };
            match found.filter(|o| o.status != Status::Cancelled) {
                Some(o) => json(200, o.exchange()),
                None => ex_error(404, "NotFound"),
            }
        }
        ExCancelOrder(id) => match lock(&state.orders).cancel(identity, id) {
            Ok(()) => json(200, json!(id)),
            Err("UNKNOWN_CANCEL_ORDER") => ex_error(404, "order not found"),
            Err(_) => ex_error(400, "Order already done"),
        },
        ExFills => {
            let order_id = q.get("order_id");
            let product = q.get("product_id");
            if order_id.is_none() && product.is_none() {
                return Err(ex_error(400, "product_id or order_id is required"));
            }
            let orders = lock(&state.orders);
            let fills: Vec<Value> = orders
                .list(identity)
                .iter()
                .rev()
                .filter(|o| order_id.is_none_or(|id| id == o.id))
                .filter(|o| product.is_none_or(|p| p == o.product_id))
                .filter_map(account::Order::exchange_fill)
                .collect();
            json(200, Value::Array(fills))
        }
    })
}

/// Unix seconds from Unix seconds or an RFC 3339 time
/// (`2026-01-01T00:00:00.000Z`); `None` if it is neither.
fn unix_seconds(v: &str) -> Option<u64> {
    if let Ok(n) = v.parse::<f64>() {
        return (n.is_finite() && n >= 0.0).then_some(n as u64);
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_decode() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", "x=1"));
        assert_eq!(split_target("http://h:1/a?q"), ("/a", "q"));
        assert_eq!(split_target("http://h:1"), ("/", ""));
        assert_eq!(percent_decode("a%2Cb+c%zz%"), "a,b c%zz%");
        let q = Query(query_pairs(
            "product_ids=BTC-USD&product_ids=ETH-USD,SOL-USD&limit=5",
        ));
        assert_eq!(q.all(&["product_ids"]), ["BTC-USD", "ETH-USD", "SOL-USD"]);
        assert_eq!(q.number::<usize>("limit"), Ok(Some(5)));
        assert!(q.number::<usize>("product_ids").is_err());
        assert_eq!(unix_seconds("1700000000"), Some(1_700_000_000));
        assert_eq!(
            unix_seconds("2023-11-14T22:13:20.000Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            unix_seconds("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(unix_seconds("yesterday"), None);
    }

    #[test]
    fn fractions_are_exact() {
        let hits = (0..100).filter(|&n| fraction_hit(n, 0.25)).count();
        assert_eq!(hits, 25);
        assert_eq!((0..10).filter(|&n| fraction_hit(n, 1.0)).count(), 10);
        assert_eq!((0..10).filter(|&n| fraction_hit(n, 0.0)).count(), 0);
    }
}
