//! What goes into the core (a [`Request`]), what comes back out (an
//! [`Answer`] or a [`Failure`]), and the ids that tie them together.
//!
//! The core never sees sockets or raw HTTP: hosts translate a bot's HTTP
//! request into a [`Request`] (the few facts the core decides on) plus an
//! opaque payload of their own (headers, body, signature) that the core
//! carries and hands back when the call is due upstream.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use web_time::{Duration, Instant};

use crate::client_share::ClientShare;
use crate::config::ClassId;
use crate::freshness::Freshness;
use crate::vary::RequestHeaders;

/// An HTTP method. Only what the core decides on is modelled: whether a
/// method may be cached and whether it is safe to repeat.
///
/// The standard methods are held as static names, so making, cloning and
/// comparing one (every request's cache key holds one) never allocates.
#[derive(Debug, Clone)]
pub struct Method(MethodName);

#[derive(Debug, Clone)]
enum MethodName {
    /// Its place in [`STANDARD_METHODS`].
    Standard(u8),
    /// Never one of those.
    Other(Arc<str>),
}

/// The methods of RFC 9110 and PATCH.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

impl Method {
    /// The name of the GET method.
    pub const GET: &'static str = "GET";
    /// The name of the HEAD method.
    pub const HEAD: &'static str = "HEAD";

    /// Builds a method from its name; the name is upper-cased, because HTTP
    /// methods are case-sensitive on the wire but bots are sloppy.
    pub fn new(name: &str) -> Self {
        match STANDARD_METHODS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(name))
        {
            Some(i) => Method(MethodName::Standard(i as u8)),
            None => Method(MethodName::Other(Arc::from(name.to_ascii_uppercase()))),
        }
    }

    /// GET.
    pub fn get() -> Self {
        Method(MethodName::Standard(0))
    }

    /// POST.
    pub fn post() -> Self {
        Method(MethodName::Standard(2))
    }

    /// The method name, upper-cased.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            MethodName::Standard(i) => STANDARD_METHODS[usize::from(*i)],
            MethodName::Other(m) => m,
        }
    }

    /// GET and HEAD: the only methods whose responses the cache may keep.
    pub fn is_cacheable(&self) -> bool {
        matches!(self.as_str(), "GET" | "HEAD")
    }

    /// RFC 9110 §9.2.1 safe methods (GET, HEAD, OPTIONS, TRACE): read-only
    /// by definition. Any other method, an unknown one included, may
    /// change what the server holds (RFC 9111 §4.4 invalidates on it).
    pub fn is_safe(&self) -> bool {
        matches!(self.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE")
    }

    /// RFC 9110 idempotent methods: repeating them after a lost answer
    /// cannot do twice what was meant once.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (MethodName::Standard(a), MethodName::Standard(b)) => a == b,
            (MethodName::Other(a), MethodName::Other(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Method {}

impl std::hash::Hash for Method {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// As its name, like the string it was before.
impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Method::new(&name))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity a private response belongs to: a stable alias of the key
/// upstream authenticates (the proxy makes it `id:<hash of the key name>`
/// or an operator's `name:<label>`). Never a secret, nor a key name: it
/// shows up in stats, metrics and logs. See
/// `syncoord_wire::credential_identity`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Credential(pub Arc<str>);

impl Credential {
    /// The credential with this identity.
    pub fn new(identity: &str) -> Self {
        Credential(Arc::from(identity))
    }

    /// The identity.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One call a bot wants made. Everything else about the request (headers,
/// body, signature) is the host's payload.
#[derive(Debug, Clone)]
pub struct Request {
    /// The HTTP method: matched by route rules; decides whether the call
    /// may be cached and whether it is safe to retry.
    pub method: Method,
    /// Path without the query, e.g. `/api/v3/brokerage/products/BTC-USD`.
    pub path: String,
    /// Raw query string without the `?`, exactly as sent: `None` when the
    /// target has no `?`, `Some("")` for a bare `?` (upstream receives the
    /// two differently, so the cache keys them apart).
    pub query: Option<String>,
    /// Whose call this is, for private endpoints and per-credential limits.
    pub credential: Option<Credential>,
    /// Which bot asked: fairness within a priority class and per-bot stats.
    pub client: String,
    /// Overrides the route rule's priority class (a bot raising or lowering
    /// its own priority).
    pub priority: Option<ClassId>,
    /// Latest instant at which the call may still be sent upstream (signed
    /// requests expire). `None` takes [`Self::max_wait`] from submission.
    pub deadline: Option<Instant>,
    /// How long the call may wait to be sent, counted from submission,
    /// when it has no [`Self::deadline`]. `None` takes the config's
    /// `queue.default_deadline_secs`, sized for a signature that ages in
    /// the queue; a call signed when it is sent (signing mode) has no such
    /// clock and may wait as long as its bot does.
    pub max_wait: Option<Duration>,
    /// How fresh the answer must be (the request's `Cache-Control`).
    pub freshness: Freshness,
    /// The share of each bucket its client may spend (`[[clients]]
    /// share`); `None`: no cap but the buckets' own.
    pub share: Option<ClientShare>,
    /// The headers forwarded upstream, as the host sends them: what a
    /// `Vary`'d answer is selected by. Shared with the host's copy (no
    /// header is copied); its `Debug` shows names only.
    pub headers: RequestHeaders,
}

impl Request {
    /// A GET of `path_and_query` (split at the first `?`) for `client`.
    pub fn get(path_and_query: &str, client: &str) -> Self {
        Self::new(Method::get(), path_and_query, client)
    }

    /// A `method` request for `path_and_query` (split at the first `?`) from
    /// `client`, with no credential, priority override or deadline.
    pub fn new(method: Method, path_and_query: &str, client: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path_and_query.to_owned(), None),
        };
        Request {
            method,
            path,
            query,
            credential: None,
            client: client.to_owned(),
            priority: None,
            deadline: None,
            max_wait: None,
            freshness: Freshness::default(),
            share: None,
            headers: RequestHeaders::default(),
        }
    }

    /// Sets the credential identity (never a secret: see [`Credential`]).
    pub fn with_credential(mut self, identity: &str) -> Self {
        self.credential = Some(Credential::new(identity));
        self
    }

    /// Holds the request's calls to `share` of each bucket they draw on.
    pub fn with_share(mut self, share: ClientShare) -> Self {
        self.share = Some(share);
        self
    }

    /// Overrides the route rule's priority class.
    pub fn with_priority(mut self, class: ClassId) -> Self {
        self.priority = Some(class);
        self
    }

    /// Sets the latest instant at which the call may still be sent.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the headers forwarded upstream (see [`Request::headers`]).
    pub fn with_headers(mut self, headers: RequestHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// Sets how fresh the answer must be.
    pub fn with_freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = freshness;
        self
    }
}

/// An HTTP response: as upstream sent it (shared between the cache and
/// every waiter that receives it), and as every host writes it back to a
/// bot, so no host needs a copy of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Header names as received; lookups are case-insensitive.
    pub headers: Vec<(String, String)>,
    /// The body, as received.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and `body`, and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON answer with `Content-Type: application/json`. `json` is the
    /// already serialised text: the core has no JSON serialiser of its own,
    /// the hosts and the proxy layer that build JSON errors do.
    pub fn json(status: u16, json: impl Into<Vec<u8>>) -> Self {
        Response::new(status, json).with_header("Content-Type", "application/json")
    }

    /// Adds a header (after any already there).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }

    /// Approximate memory held, for the cache's byte bound.
    pub fn size_bytes(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 16)
                .sum::<usize>()
            + 32
    }
}

/// What the host reports for a dispatched call.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Upstream answered (any status, including 429 and 5xx).
    Response {
        /// What upstream answered.
        response: Response,
        /// Host wall clock in Unix seconds when the answer arrived; used
        /// only to read HTTP-date `Retry-After` values when upstream sent
        /// no `Date` header.
        received_unix: Option<u64>,
    },
    /// No usable answer: the call may or may not have reached upstream.
    Transport(TransportError),
}

impl Outcome {
    /// Upstream answered `response`, arrival time unknown (`received_unix`
    /// is `None`).
    pub fn response(response: Response) -> Self {
        Outcome::Response {
            response,
            received_unix: None,
        }
    }
}

/// How a call failed below HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The connection was never made: nothing reached upstream, so even a
    /// non-idempotent call is safe to retry.
    #[error("could not connect to upstream: {0}")]
    Connect(String),
    /// No answer in time; upstream may have acted on the call.
    #[error("upstream did not answer in time: {0}")]
    Timeout(String),
    /// The connection broke or upstream sent something that is not HTTP.
    #[error("upstream connection failed: {0}")]
    Broken(String),
    /// This host ran out of something of its own before the call could
    /// leave (threads, file descriptors, memory): nothing reached
    /// upstream, and upstream is not to blame, so it never counts against
    /// upstream's health (no breaker, no transport-error count).
    #[error("syncoord is out of a local resource, nothing was sent: {0}")]
    Local(String),
}

impl TransportError {
    /// Whether upstream can be sure not to have seen the call.
    pub fn never_sent(&self) -> bool {
        matches!(self, TransportError::Connect(_) | TransportError::Local(_))
    }

    /// Whether the failure is this host's own, not upstream's.
    pub fn is_local(&self) -> bool {
        matches!(self, TransportError::Local(_))
    }
}

/// Identifies one submitted request until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ticket(pub u64);

/// Identifies one upstream call (which may answer many tickets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId(pub u64);

/// Where an answer came from; hosts report it (e.g. `X-Syncoord-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A fresh cache entry.
    Cache,
    /// An expired entry within the stale-if-error window, served because
    /// upstream could not be asked or failed.
    Stale,
    /// Joined an identical call that was already queued or in flight.
    Coalesced,
    /// This request's own upstream call.
    Upstream,
}

impl Source {
    /// The name hosts report: `hit`, `stale`, `coalesced` or `miss`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "hit",
            Source::Stale => "stale",
            Source::Coalesced => "coalesced",
            Source::Upstream => "miss",
        }
    }
}

/// A successful end: upstream's response (any status upstream chose to
/// answer with, 4xx included) and how it was obtained.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response, shared with the cache and every other waiter.
    pub response: Arc<Response>,
    /// Where the response came from.
    pub source: Source,
    /// How old the response is (zero when it comes straight from upstream).
    pub age: Duration,
    /// For an answer from a cache: its remaining freshness lifetime in
    /// whole seconds, negative once stale (RFC 9211 `ttl`); `None` for
    /// one fetched for this request, or served while it is revalidated.
    pub ttl_secs: Option<i64>,
    /// How this request's call went, for the access log (empty for an
    /// answer from the cache).
    pub timing: Timing,
}

/// RFC 9211's `ttl` of an entry with `left` of its lifetime, or `past` its
/// expiry: whole seconds, rounded towards zero.
pub(crate) fn ttl_secs(left: Duration, past: Duration) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if past > Duration::ZERO {
        -secs(past)
    } else {
        secs(left)
    }
}

/// How long an answered request waited for its call, and the call for
/// upstream: what an access log line shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// From the request's submission to its call's first dispatch (zero
    /// for a request that joined a call already sent); `None` when no
    /// call answered it.
    pub queue_wait: Option<Duration>,
    /// From the answering call's dispatch to upstream's answer; `None`
    /// when upstream did not answer it just now (cache, shared store).
    pub upstream_latency: Option<Duration>,
}

/// Why a request ended without an answer. Every variant says what a caller
/// can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The queue was full and this request had the lowest priority.
    #[error(
        "shed: queue full ({depth} waiting), class `{class}` is lowest; retry in {retry_after:?}"
    )]
    Shed {
        /// Name of the priority class of the request shed.
        class: String,
        /// Calls queued at the time.
        depth: usize,
        /// A suggested wait before trying again (1 s).
        retry_after: Duration,
    },
    /// The request could not be sent before its deadline.
    #[error("deadline passed after waiting {waited:?} without being sent upstream")]
    Deadline {
        /// How long the request waited.
        waited: Duration,
    },
    /// The limiter cannot admit the call before its deadline.
    #[error(
        "deadline unreachable: the earliest send is in {earliest:?}, the deadline in {deadline:?}"
    )]
    DeadlineUnreachable {
        /// Time from submission until the limiter could admit the call
        /// (zero when the deadline had already passed).
        earliest: Duration,
        /// Time from submission until the deadline (zero if already past).
        deadline: Duration,
    },
    /// Upstream kept answering 429 until retries ran out.
    #[error("upstream rate limit: still 429 after {attempts} attempt(s); scope `{scope}` paused for {retry_after:?}")]
    RateLimited {
        /// The scope holding the call back: the first of its scopes that
        /// refuses a call now.
        scope: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// How long the last 429 paused the call's buckets.
        retry_after: Duration,
        /// Upstream's last 429 response.
        response: Arc<Response>,
    },
    /// Upstream answered with a retryable error status until retries ran
    /// out (or the call was not safe to retry).
    #[error("upstream answered {} after {attempts} attempt(s)", response.status)]
    Upstream {
        /// Attempts made, the first included.
        attempts: u32,
        /// Upstream's last response.
        response: Arc<Response>,
    },
    /// No answer from upstream at all.
    #[error("{error} (after {attempts} attempt(s))")]
    Transport {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's error.
        error: TransportError,
    },
    /// A call that is not idempotent (an order) reached upstream, and no
    /// answer came back (a timeout, a broken connection). Upstream may
    /// have acted on it, so it is never retried and never answered with a
    /// retry hint: the caller must check (an order by its client order id)
    /// before sending it again.
    #[error(
        "outcome unknown: {error} (after {attempts} attempt(s)); upstream may have acted on it"
    )]
    OutcomeUnknown {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's error.
        error: TransportError,
    },
    /// The route's circuit breaker is open: upstream has been failing
    /// calls on this route (other routes are not affected).
    #[error("circuit breaker for route `{route}` is open; next probe in {retry_after:?}")]
    BreakerOpen {
        /// The route (for a request no rule matched, `default <path>`).
        route: String,
        /// Time until the breaker lets a probe through (a second while
        /// the probe is in flight).
        retry_after: Duration,
    },
    /// The client's share of a bucket is spent, and its `[[clients]]`
    /// entry says to refuse rather than wait (`above_share = "refuse"`).
    #[error("client `{holder}` has spent its share of the budget; retry in {retry_after:?}")]
    ShareExceeded {
        /// Whose share.
        holder: String,
        /// When the share admits a call again.
        retry_after: Duration,
    },
    /// The host is shutting down and aborted the request.
    #[error("aborted: {0}")]
    Aborted(String),
    /// `only-if-cached`: the cache holds no answer the request accepts, and
    /// it asked not to wait for one.
    #[error("only-if-cached: no cached answer fresh enough for this request")]
    NotCached,
}

impl Failure {
    /// A hint for callers (and for a `Retry-After` header).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Shed { retry_after, .. }
            | Failure::RateLimited { retry_after, .. }
            | Failure::BreakerOpen { retry_after, .. }
            | Failure::ShareExceeded { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Short machine-readable name, used in stats and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Shed { .. } => "shed",
            Failure::Deadline { .. } | Failure::DeadlineUnreachable { .. } => "deadline",
            Failure::RateLimited { .. } => "rate_limited",
            Failure::Upstream { .. } => "upstream",
            Failure::Transport { error, .. } if error.is_local() => "local_exhaustion",
            Failure::Transport { .. } => "transport",
            Failure::OutcomeUnknown { .. } => "outcome_unknown",
            Failure::BreakerOpen { .. } => "breaker_open",
            Failure::Aborted(_) => "aborted",
            Failure::NotCached => "not_cached",
            Failure::ShareExceeded { .. } => "client_share_exceeded",
        }
    }
}

/// A request that ended after `submit` returned.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The request that ended.
    pub ticket: Ticket,
    /// Its answer, or why it got none.
    pub result: Result<Answer, Failure>,
}
