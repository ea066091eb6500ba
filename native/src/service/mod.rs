//! A coordinated Coinbase Advanced Trade client for bots written in Rust.
//!
//! Every method goes through one shared [`Coordinator`], so any number of
//! bot threads holding clones of a [`CoinbaseClient`] spend one rate-limit
//! budget: orders are sent before balance checks, balance checks before
//! market data, market data before candles for analysis; identical reads
//! are answered once. Methods block until the answer and return the JSON
//! body, or a typed [`ServiceError`] that says whether (and when) trying
//! again makes sense, so a bot can fall back instead of hammering.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use syncoord_core::{Answer, Failure, Method, Request};
use syncoord_wire::Outgoing;

use crate::host::{CallError, Coordinator};
use crate::upstream::Unsendable;

/// Path prefix of the Advanced Trade REST API.
pub const BROKERAGE: &str = "/api/v3/brokerage";

/// Signs a call: the headers that authenticate it upstream (for Advanced
/// Trade, `Authorization: Bearer <JWT>` whose `uri` claim is
/// `METHOD host/path`). Called once per submitted request, just before it
/// is queued; a signature must outlive the queue deadline (25 s by
/// default, Advanced Trade JWTs live 120 s).
pub trait Signer: Send + Sync {
    fn sign(&self, method: &str, path_and_query: &str, body: &[u8]) -> Vec<(String, String)>;
}

/// The same headers on every call: tests, mocks, and upstreams that
/// authenticate with a static key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticHeaders(pub Vec<(String, String)>);

impl StaticHeaders {
    pub fn new(headers: &[(&str, &str)]) -> Self {
        StaticHeaders(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

impl Signer for StaticHeaders {
    fn sign(&self, _method: &str, _path_and_query: &str, _body: &[u8]) -> Vec<(String, String)> {
        self.0.clone()
    }
}

/// Why a service call returned no data. Each variant says what a caller
/// can do: [`ServiceError::is_retryable`] and [`ServiceError::retry_after`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// Upstream kept answering 429; its scope is paused this long.
    #[error("rate limited upstream; retry in {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// The call could not be sent before its deadline.
    #[error("the call could not be sent before its deadline")]
    Deadline,
    /// `only-if-cached`: nothing in the cache was fresh enough.
    #[error("only-if-cached: no cached answer fresh enough")]
    NotCached,
    /// The coordinator's queue was full and this call had the lowest
    /// priority.
    #[error("shed by a full queue; retry in {retry_after:?}")]
    Shed { retry_after: Duration },
    /// Upstream answered with a non-2xx status.
    #[error("upstream answered {status}: {body}")]
    UpstreamStatus { status: u16, body: String },
    /// No answer from upstream (connection refused, timeout, broken).
    #[error("upstream unreachable: {0}")]
    Transport(String),
    /// Upstream has been failing; the coordinator stops calling it for a
    /// while.
    #[error("circuit breaker open; retry in {retry_after:?}")]
    BreakerOpen { retry_after: Duration },
    /// The coordinator is shutting down.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    /// This client's own wait limit passed; the call was cancelled.
    #[error("gave up waiting after {waited:?}")]
    TimedOut { waited: Duration },
    /// The answer was not the JSON expected.
    #[error("could not decode the answer of {path}: {reason}")]
    Decode { path: String, reason: String },
    /// The request can never be sent upstream (a malformed path, say).
    #[error("the request cannot be sent upstream: {0}")]
    Invalid(Unsendable),
    /// The call was sent and the coordinator stopped before upstream
    /// answered: it may have been acted on. Never retried blindly; look it
    /// up (an order by its client order id) first.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

impl ServiceError {
    /// Whether the same call may succeed later (after [`Self::retry_after`]
    /// when given). 4xx answers, bad JSON and shutdown will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            ServiceError::RateLimited { .. }
            | ServiceError::Deadline
            | ServiceError::Shed { .. }
            | ServiceError::Transport(_)
            | ServiceError::BreakerOpen { .. }
            | ServiceError::TimedOut { .. } => true,
            ServiceError::UpstreamStatus { status, .. } => *status == 429 || *status >= 500,
            ServiceError::ShuttingDown
            | ServiceError::NotCached
            | ServiceError::Decode { .. }
            | ServiceError::Invalid(_)
            | ServiceError::OutcomeUnknown(_) => false,
        }
    }

    /// How long to wait before retrying, when the coordinator knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceError::RateLimited { retry_after }
            | ServiceError::Shed { retry_after }
            | ServiceError::BreakerOpen { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl From<Failure> for ServiceError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Shed { retry_after, .. } => ServiceError::Shed { retry_after },
            Failure::Deadline { .. } | Failure::DeadlineUnreachable { .. } => {
                ServiceError::Deadline
            }
            Failure::RateLimited { retry_after, .. }
            | Failure::ShareExceeded { retry_after, .. } => {
                ServiceError::RateLimited { retry_after }
            }
            Failure::Upstream { response, .. } => ServiceError::UpstreamStatus {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            },
            Failure::Transport { error, .. } => ServiceError::Transport(error.to_string()),
            f @ Failure::OutcomeUnknown { .. } => ServiceError::OutcomeUnknown(f.to_string()),
            Failure::BreakerOpen { retry_after, .. } => ServiceError::BreakerOpen { retry_after },
            Failure::Aborted(_) => ServiceError::ShuttingDown,
            Failure::NotCached => ServiceError::NotCached,
        }
    }
}

impl From<CallError> for ServiceError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Failed(failure) => failure.into(),
            CallError::TimedOut { waited } => ServiceError::TimedOut { waited },
            CallError::ShuttingDown => ServiceError::ShuttingDown,
            CallError::Invalid(why) => ServiceError::Invalid(why),
            CallError::OutcomeUnknown(why) => ServiceError::OutcomeUnknown(why),
        }
    }
}

/// The priority classes of the Coinbase presets
/// (`syncoord_core::config::coinbase::PRIORITIES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Trading,
    Account,
    Market,
    Analysis,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Trading => "trading",
            Class::Account => "account",
            Class::Market => "market",
            Class::Analysis => "analysis",
        }
    }
}

/// A Coinbase Advanced Trade client whose calls are coordinated. Cheap to
/// clone; clones share the coordinator and the signer.
#[derive(Clone)]
pub struct CoinbaseClient {
    coordinator: Coordinator,
    signer: Arc<dyn Signer>,
    client: String,
    credential: syncoord_core::config::CredentialConfig,
    wait_limit: Option<Duration>,
}

impl fmt::Debug for CoinbaseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinbaseClient")
            .field("client", &self.client)
            .field("wait_limit", &self.wait_limit)
            .finish_non_exhaustive()
    }
}

impl CoinbaseClient {
    /// `client` names this bot in the coordinator's fairness and stats.
    pub fn new(coordinator: Coordinator, signer: Arc<dyn Signer>, client: &str) -> Self {
        CoinbaseClient {
            coordinator,
            signer,
            client: client.to_owned(),
            credential: syncoord_core::config::coinbase::advanced_trade().credential,
            wait_limit: None,
        }
    }

    /// Gives up (and cancels) a call not answered within `limit`; without
    /// it a call waits for its coordinator deadline.
    pub fn with_wait_limit(mut self, limit: Duration) -> Self {
        self.wait_limit = Some(limit);
        self
    }

    /// What upstream authenticates, as in the coordinator config's
    /// `[credential]` table (default: Advanced Trade's, the
    /// `Authorization: Bearer` JWT), so the identity is the account
    /// upstream answers for.
    pub fn with_credential(mut self, rules: syncoord_core::config::CredentialConfig) -> Self {
        self.credential = rules;
        self
    }

    /// `GET /products/{id}`.
    pub fn product(&self, product_id: &str) -> Result<Value, ServiceError> {
        let path = format!("{BROKERAGE}/products/{}", encode(product_id));
        self.get(Class::Market, path)
    }

    /// `GET /products/{id}/ticker?limit=` (recent trades, best bid/ask).
    pub fn ticker(&self, product_id: &str, limit: u32) -> Result<Value, ServiceError> {
        let path = format!(
            "{BROKERAGE}/products/{}/ticker?limit={limit}",
            encode(product_id)
        );
        self.get(Class::Market, path)
    }

    /// `GET /best_bid_ask?product_ids=..&product_ids=..`.
    pub fn best_bid_ask(&self, product_ids: &[&str]) -> Result<Value, ServiceError> {
        let query: Vec<(&str, &str)> = product_ids.iter().map(|p| ("product_ids", *p)).collect();
        self.get(
            Class::Market,
            with_query(&format!("{BROKERAGE}/best_bid_ask"), &query),
        )
    }

    /// `GET /products/{id}/candles?start=&end=&granularity=` (Unix seconds;
    /// granularity such as `ONE_MINUTE`). Analysis: it yields to trading.
    pub fn candles(
        &self,
        product_id: &str,
        start: u64,
        end: u64,
        granularity: &str,
    ) -> Result<Value, ServiceError> {
        let base = format!("{BROKERAGE}/products/{}/candles", encode(product_id));
        let (start, end) = (start.to_string(), end.to_string());
        let query = [
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("granularity", granularity),
        ];
        self.get(Class::Analysis, with_query(&base, &query))
    }

    /// `GET /product_book?product_id=&limit=`.
    pub fn product_book(
        &self,
        product_id: &str,
        limit: Option<u32>,
    ) -> Result<Value, ServiceError> {
        let limit = limit.map(|l| l.to_string());
        let mut query = vec![("product_id", product_id)];
        if let Some(l) = &limit {
            query.push(("limit", l));
        }
        self.get(
            Class::Market,
            with_query(&format!("{BROKERAGE}/product_book"), &query),
        )
    }

    /// `GET /accounts?limit=&cursor=`.
    pub fn accounts(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Value, ServiceError> {
        let limit = limit.map(|l| l.to_string());
        let mut query = Vec::new();
        if let Some(l) = &limit {
            query.push(("limit", l.as_str()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        self.get(
            Class::Account,
            with_query(&format!("{BROKERAGE}/accounts"), &query),
        )
    }

    /// `GET /accounts/{uuid}`.
    pub fn account(&self, account_uuid: &str) -> Result<Value, ServiceError> {
        let path = format!("{BROKERAGE}/accounts/{}", encode(account_uuid));
        self.get(Class::Account, path)
    }

    /// `POST /orders` with `order` as the body (`client_order_id`,
    /// `product_id`, `side`, `order_configuration`, ...). Never cached,
    /// never coalesced, top priority.
    pub fn create_order(&self, order: &Value) -> Result<Value, ServiceError> {
        let path = format!("{BROKERAGE}/orders");
        self.send(Class::Trading, "POST", path, order.to_string().into_bytes())
    }

    /// `POST /orders/batch_cancel` with `{"order_ids": [...]}`.
    pub fn cancel_orders(&self, order_ids: &[&str]) -> Result<Value, ServiceError> {
        let path = format!("{BROKERAGE}/orders/batch_cancel");
        let body = serde_json::json!({ "order_ids": order_ids }).to_string();
        self.send(Class::Trading, "POST", path, body.into_bytes())
    }

    /// `GET /orders/historical/batch?...` (filters as query pairs, repeated
    /// keys allowed).
    pub fn list_orders(&self, query: &[(&str, &str)]) -> Result<Value, ServiceError> {
        let base = format!("{BROKERAGE}/orders/historical/batch");
        self.get(Class::Account, with_query(&base, query))
    }

    /// `GET /orders/historical/fills?...`.
    pub fn fills(&self, query: &[(&str, &str)]) -> Result<Value, ServiceError> {
        let base = format!("{BROKERAGE}/orders/historical/fills");
        self.get(Class::Account, with_query(&base, query))
    }

    /// Any call, with no priority preference: the coordinator's route rules
    /// decide. `path_and_query` is sent as given (already encoded).
    pub fn passthrough(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<Value, ServiceError> {
        let method = method.to_ascii_uppercase();
        let body = body.map(<[u8]>::to_vec).unwrap_or_default();
        self.call(None, &method, path_and_query.to_owned(), body)
    }

    fn get(&self, class: Class, path_and_query: String) -> Result<Value, ServiceError> {
        self.call(Some(class), "GET", path_and_query, Vec::new())
    }

    fn send(
        &self,
        class: Class,
        method: &str,
        path_and_query: String,
        body: Vec<u8>,
    ) -> Result<Value, ServiceError> {
        self.call(Some(class), method, path_and_query, body)
    }

    fn call(
        &self,
        class: Option<Class>,
        method: &str,
        path_and_query: String,
        body: Vec<u8>,
    ) -> Result<Value, ServiceError> {
        let mut headers = self.signer.sign(method, &path_and_query, &body);
        if !body.is_empty() && syncoord_core::header(&headers, "content-type").is_none() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let mut request = Request::new(Method::new(method), &path_and_query, &self.client);
        request.credential = syncoord_wire::credential_identity(&headers, &self.credential);
        // The preset's route rules give the same classes; saying it here
        // keeps the intent when a custom config routes differently.
        if let Some(id) = class.and_then(|c| self.coordinator.class_id(c.name())) {
            request = request.with_priority(id);
        }
        let headers = syncoord_wire::Headers::from(headers);
        // What a `Vary`'d answer is selected by: the same list, not a copy.
        request.headers = headers.shared();
        let outgoing = Outgoing {
            method: method.to_owned(),
            path_and_query: path_and_query.clone(),
            headers,
            body,
            sign_as: None,
        };
        let pending = self.coordinator.submit(request, outgoing);
        let answer = match self.wait_limit {
            Some(limit) => pending.wait_timeout(limit),
            None => pending.wait(),
        }?;
        decode(&path_and_query, &answer)
    }
}

/// A 2xx body as JSON (an empty body is `null`); anything else is an
/// [`ServiceError::UpstreamStatus`].
fn decode(path: &str, answer: &Answer) -> Result<Value, ServiceError> {
    let response = &answer.response;
    if !(200..300).contains(&response.status) {
        return Err(ServiceError::UpstreamStatus {
            status: response.status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
        });
    }
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&response.body).map_err(|e| ServiceError::Decode {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so ids
/// and cursors can never change the path or the query's structure.
fn encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for b in component.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(all(test, not(loom)))]
mod tests;
