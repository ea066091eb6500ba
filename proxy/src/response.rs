//! What bots receive: upstream's answer as it was (minus hop-by-hop
//! headers, plus where it came from), or a JSON error of our own whose
//! status tells a bot what to do. Bots never see a 429 from us: a limit
//! upstream enforces is our problem to pace, so they get 503 and
//! `Retry-After` instead, which no client treats as "you were banned".
//!
//! Every function here returns a core [`Response`] for the host to write
//! (it adds `Content-Length`, `Connection` and `Date`).

use serde_json::json;
use syncoord_core::Duration;

use crate::http::{strip_hop_headers, HopHeaders};
use crate::rejection::Rejection;
pub use crate::rejection::OUTCOME_UNKNOWN_STATUS;
use crate::{CACHE_HEADER, ERROR_HEADER};
use syncoord_core::{Answer, Failure, Response, Source};

/// Response headers that describe one connection, not the response, and
/// those the host recomputes for its own connection; `Proxy-*`, our own
/// `X-Syncoord-*` (we set those) and whatever `Connection` names.
const HOP_BY_HOP: HopHeaders<'static> = HopHeaders {
    names: &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
    ],
    prefixes: &["proxy-", "x-syncoord-"],
    connection_listed: true,
};

/// Upstream's response as the bot should see it: its status, headers and
/// body, with `X-Syncoord-Cache` saying where it came from and, on every
/// answer from the cache (fresh or stale), `Age` in whole seconds and no
/// `x-ratelimit-*` headers (upstream's figures from when the call was
/// made; syncoord's own view of each bucket is in the stats endpoint).
pub fn answer_response(answer: &Answer) -> Response {
    let mut headers = strip_hop_headers(&answer.response.headers, &HOP_BY_HOP);
    let cached = matches!(answer.source, Source::Cache | Source::Stale);
    if cached {
        // Upstream's count of calls left was true when the call was made,
        // not now: a bot (an SDK's `rate_limit_remaining`) reading it
        // from a cached answer would pace itself on a stale figure. The
        // budget syncoord holds is in the stats endpoint, per bucket.
        headers.retain(|(n, _)| !is_rate_limit_header(n));
    }
    if cached || answer.age > Duration::ZERO {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("age"));
        headers.push(("Age".into(), answer.age.as_secs().to_string()));
    }
    headers.push((CACHE_HEADER.into(), answer.source.as_str().into()));
    headers.push(("Cache-Status".into(), cache_status(answer)));
    Response {
        status: answer.response.status,
        headers,
        body: answer.response.body.clone(),
    }
}

/// The `Cache-Status` entry syncoord adds (RFC 9211, beside
/// `X-Syncoord-Cache`): `hit` for an answer from the cache (§2.1; a stale
/// one says so in `detail`, §2.8), `fwd=miss` for one fetched for this
/// request (§2.2), and `collapsed` when it shared a call another request
/// made (§2.6). A hit says what is left of its freshness lifetime in
/// `ttl` (§2.3, negative once stale). Upstream's own entries, if any, come
/// before it, as the RFC orders caches from the origin out.
fn cache_status(answer: &Answer) -> String {
    let entry = match answer.source {
        Source::Cache => "syncoord; hit",
        Source::Stale => "syncoord; hit; detail=stale",
        Source::Coalesced => "syncoord; fwd=miss; collapsed",
        Source::Upstream => "syncoord; fwd=miss",
    };
    match answer.ttl_secs {
        Some(ttl) if matches!(answer.source, Source::Cache | Source::Stale) => {
            format!("{entry}; ttl={ttl}")
        }
        _ => entry.to_owned(),
    }
}

/// `x-ratelimit-*` and `ratelimit-*` (the IETF draft's names): upstream's
/// view of a budget at the moment it answered.
fn is_rate_limit_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-ratelimit-")
        || lower.starts_with("ratelimit")
        || lower.starts_with("x-rate-limit")
}

/// Most bytes of an upstream error body quoted in our error.
pub const SNIPPET_BYTES: usize = 512;

fn snippet(body: &[u8]) -> String {
    let cut = &body[..body.len().min(SNIPPET_BYTES)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if body.len() > SNIPPET_BYTES {
        s.push('…');
    }
    s
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` can say.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

/// How our own errors are shaped for the client libraries of one API, so
/// that they classify a refusal the way it should be handled: retryable
/// (a network error, a rate limit) or the bot's mistake. Chosen by the
/// upstream's preset ([`ErrorShape::for_preset`]); syncoord's own kind is
/// always in `X-Syncoord-Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorShape {
    /// `{"error": kind, "message", "retry_after_secs"}`: generic APIs, and
    /// Coinbase Exchange, whose ccxt class reads `message` on 400/404
    /// only and otherwise classifies by status (503 `ExchangeNotAvailable`,
    /// 504 `RequestTimeout`, 502 `ExchangeNotAvailable`).
    #[default]
    Syncoord,
    /// Coinbase Advanced Trade: ccxt's `coinbase.handle_errors` reads the
    /// body's `error` field before the status and turns any value it does
    /// not know into a plain `ExchangeError`, which bots treat as fatal. So
    /// there is no `error` field: the kind is in `syncoord_error`, and
    /// where ccxt has a better class than the status gives, Coinbase's own
    /// `errors: [{"id", "message"}]` names it: `rate_limit_exceeded`
    /// (`RateLimitExceeded`) for an upstream rate limit and a full queue,
    /// `unauthorized` (`AuthenticationError`) for a missing credential,
    /// `PERMISSION_DENIED` for a host that is not configured,
    /// `invalid_request` (`ExchangeError`) for the other 4xx. The rest is
    /// classified by status: 503 `ExchangeNotAvailable`, 504
    /// `RequestTimeout`, 502 `ExchangeNotAvailable` (network errors, which
    /// ccxt's `maxRetriesOnFailure` retries), 422 `ExchangeError`.
    /// coinbase-advanced-py raises `HTTPError` with the status either way.
    CoinbaseAdvanced,
}

impl ErrorShape {
    /// The shape an upstream's clients understand.
    pub fn for_preset(preset: crate::Preset) -> ErrorShape {
        match preset {
            crate::Preset::CoinbaseAdvanced => ErrorShape::CoinbaseAdvanced,
            crate::Preset::CoinbaseExchange | crate::Preset::None => ErrorShape::Syncoord,
        }
    }

    /// `body` (with `"error": kind`) reshaped; `status` picks the
    /// Coinbase error id.
    fn shape(self, status: u16, kind: &str, mut body: serde_json::Value) -> serde_json::Value {
        match self {
            ErrorShape::Syncoord => body,
            ErrorShape::CoinbaseAdvanced => {
                if let Some(map) = body.as_object_mut() {
                    map.remove("error");
                    map.insert("syncoord_error".into(), json!(kind));
                    let id = match (status, kind) {
                        (_, "rate_limited" | "shed") => Some("rate_limit_exceeded"),
                        (401, _) => Some("unauthorized"),
                        (403, _) => Some("PERMISSION_DENIED"),
                        (OUTCOME_UNKNOWN_STATUS, _) => None,
                        (400..=499, _) => Some("invalid_request"),
                        _ => None,
                    };
                    if let Some(id) = id {
                        let message = map.get("message").cloned().unwrap_or(json!(kind));
                        map.insert("errors".into(), json!([{ "id": id, "message": message }]));
                    }
                }
                body
            }
        }
    }
}

/// [`failure_response_shaped`] in the [`ErrorShape::Syncoord`] shape.
pub fn failure_response(failure: &Failure) -> Response {
    failure_response_shaped(failure, ErrorShape::Syncoord)
}

/// A failure as a JSON error: `{"error", "message", "retry_after_secs"}`
/// (reshaped for the upstream's clients, see [`ErrorShape`]) with
/// `X-Syncoord-Error: <kind>`.
///
/// Statuses: a client over its share refused (`above_share = "refuse"`) is
/// 429 `client_share_exceeded` with `Retry-After`; shed, open breaker, upstream rate limit and abort are 503
/// (try again later, with `Retry-After` where we know when); deadlines are
/// 504, and so is `only-if-cached` with nothing cached (RFC 9111
/// §5.2.1.7); syncoord's own exhaustion (threads, descriptors) is 503
/// `local_exhaustion`; upstream errors and transport failures are 502, quoting
/// upstream's status and the start of its body; an order sent without an
/// answer is [`OUTCOME_UNKNOWN_STATUS`], with no retry hint.
pub fn failure_response_shaped(failure: &Failure, shape: ErrorShape) -> Response {
    let (status, retry) = match failure {
        Failure::Shed { retry_after, .. }
        | Failure::BreakerOpen { retry_after, .. }
        | Failure::RateLimited { retry_after, .. } => (503, Some(retry_after_secs(*retry_after))),
        Failure::Aborted(_) => (503, Some(1)),
        // The bot's own client spent its share: its own doing, not
        // upstream's, hence 429 (and a kind apart from upstream's).
        Failure::ShareExceeded { retry_after, .. } => (429, Some(retry_after_secs(*retry_after))),
        Failure::Deadline { .. } | Failure::DeadlineUnreachable { .. } | Failure::NotCached => {
            (504, None)
        }
        // Out of threads or descriptors here: a local 503, upstream is
        // not at fault.
        Failure::Transport { error, .. } if error.is_local() => (503, Some(1)),
        Failure::Upstream { .. } | Failure::Transport { .. } => (502, None),
        Failure::OutcomeUnknown { .. } => (OUTCOME_UNKNOWN_STATUS, None),
    };
    let mut body = json!({
        "error": failure.kind(),
        "message": failure.to_string(),
        "retry_after_secs": retry,
    });
    match failure {
        Failure::Upstream { response, .. } | Failure::RateLimited { response, .. } => {
            body["upstream_status"] = json!(response.status);
            body["upstream_body"] = json!(snippet(&response.body));
        }
        _ => {}
    }
    let body = shape.shape(status, failure.kind(), body);
    let mut response = error_response(status, failure.kind(), &body);
    if let Some(secs) = retry {
        response
            .headers
            .push(("Retry-After".into(), secs.to_string()));
    }
    response
}

/// The answer to a request whose bot's own wait
/// (`server.request_timeout_secs`) ran out before the core answered: the
/// core's "deadline passed" failure, a 504. Both hosts end such waits
/// alike.
pub fn timed_out_response(waited: Duration, shape: ErrorShape) -> Response {
    failure_response_shaped(&Failure::Deadline { waited }, shape)
}

/// The answer to a request a host ends without the core's answer and
/// before anything of it was sent upstream (it is shutting down): `503
/// aborted` with `Retry-After`, so retrying is safe.
pub fn aborted_response(why: &str, shape: ErrorShape) -> Response {
    failure_response_shaped(&Failure::Aborted(why.into()), shape)
}

impl Rejection {
    /// `{"error": kind, "message": ...}` with the rejection's status and
    /// `X-Syncoord-Error: <kind>`.
    pub fn into_response(self) -> Response {
        self.into_response_shaped(ErrorShape::Syncoord)
    }

    /// [`Self::into_response`] shaped for an upstream's clients.
    pub fn into_response_shaped(self, shape: ErrorShape) -> Response {
        let (status, kind) = (self.status(), self.kind().as_str());
        let body = shape.shape(
            status,
            kind,
            json!({ "error": kind, "message": self.message() }),
        );
        error_response(status, kind, &body)
    }

    /// The answer to a CONNECT whose client token is refused: `407` with
    /// `Proxy-Authenticate`, what proxy clients expect (the 401 a request
    /// gets means the same), and the refusal's kind and message.
    pub fn into_proxy_auth_response(self) -> Response {
        let kind = self.kind().as_str();
        let body = json!({ "error": kind, "message": self.message() });
        let mut response = error_response(407, kind, &body);
        response.headers.push((
            "Proxy-Authenticate".into(),
            "Basic realm=\"syncoord\"".into(),
        ));
        response
    }
}

/// `X-Syncoord-Error` of [`edge_failure_response`].
pub const EDGE_FAILURE: &str = "edge_failure";

/// The bot's answer when the Worker itself fails: its call to the shard's
/// object failed (the object threw, was reset by a deployment, or could
/// not be reached) or the request could not be read. Without it the
/// runtime would answer with its own HTML error page; with it the bot gets
/// the same JSON and `X-Syncoord-Error` as every other syncoord error.
/// 502, not 503 with `Retry-After`: a request that failed inside its object
/// may already have reached upstream, so it must not look safe to retry.
pub fn edge_failure_response(what: &str, error: &str) -> Response {
    error_response(
        502,
        EDGE_FAILURE,
        &json!({
            "error": EDGE_FAILURE,
            "message": format!("{what}: {error}; the request may or may not have reached upstream"),
            "retry_after_secs": null,
        }),
    )
}

/// An error of our own: `body` as JSON, with `X-Syncoord-Error: <kind>` so
/// a bot can tell it from an answer upstream sent. Hosts use it for the
/// errors only they can have (the Worker's own failures), so every
/// syncoord error looks alike.
pub fn error_response(status: u16, kind: &str, body: &serde_json::Value) -> Response {
    Response::json(status, body.to_string()).with_header(ERROR_HEADER, kind)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rejection::RejectionKind;
    use syncoord_core::{Source, TransportError};

    fn body(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn answers_keep_upstream_but_not_hop_by_hop() {
        let upstream = Response::new(201, "{}")
            .with_header("Content-Type", "application/json")
            .with_header("Connection", "close, X-Private-Hop")
            .with_header("X-Private-Hop", "1")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("Content-Length", "2")
            .with_header("Age", "3")
            .with_header("CB-After", "abc");
        let answer = Answer {
            response: Arc::new(upstream),
            source: Source::Stale,
            age: Duration::from_millis(12_700),
            ttl_secs: Some(-3),
            timing: Default::default(),
        };
        let r = answer_response(&answer);
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"{}");
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "CB-After",
                "Age",
                "X-Syncoord-Cache",
                "Cache-Status"
            ]
        );
        assert_eq!(r.header("age"), Some("12"));
        assert_eq!(r.header("x-syncoord-cache"), Some("stale"));
        assert_eq!(
            r.header("cache-status"),
            Some("syncoord; hit; detail=stale; ttl=-3")
        );
        // RFC 9211 §2.3: a hit's remaining freshness lifetime, in seconds.
        let hit = Answer {
            response: Arc::new(Response::new(200, "x")),
            source: Source::Cache,
            age: Duration::from_secs(2),
            ttl_secs: Some(3),
            timing: Default::default(),
        };
        assert_eq!(
            answer_response(&hit).header("cache-status"),
            Some("syncoord; hit; ttl=3")
        );

        let fresh = Answer {
            response: Arc::new(Response::new(200, "x").with_header("Age", "5")),
            source: Source::Upstream,
            age: Duration::ZERO,
            ttl_secs: None,
            timing: Default::default(),
        };
        let r = answer_response(&fresh);
        assert_eq!(r.header("age"), Some("5"), "upstream's own Age stays");
        assert_eq!(r.header("x-syncoord-cache"), Some("miss"));
        assert_eq!(r.header("cache-status"), Some("syncoord; fwd=miss"));
    }

    #[test]
    fn failures_map_to_statuses_and_never_429() {
        let resp429 = Arc::new(Response::new(429, "slow down"));
        let cases = [
            (
                Failure::Shed {
                    class: "analysis".into(),
                    depth: 10,
                    retry_after: Duration::from_millis(1),
                },
                503,
                Some(1),
            ),
            (
                Failure::BreakerOpen {
                    route: "candles".into(),
                    retry_after: Duration::from_millis(2_100),
                },
                503,
                Some(3),
            ),
            (
                Failure::RateLimited {
                    scope: "public".into(),
                    attempts: 4,
                    retry_after: Duration::from_secs(7),
                    response: resp429,
                },
                503,
                Some(7),
            ),
            (
                Failure::Deadline {
                    waited: Duration::from_secs(25),
                },
                504,
                None,
            ),
            (
                Failure::DeadlineUnreachable {
                    earliest: Duration::from_secs(30),
                    deadline: Duration::from_secs(5),
                },
                504,
                None,
            ),
            (
                Failure::Transport {
                    attempts: 2,
                    error: TransportError::Connect("refused".into()),
                },
                502,
                None,
            ),
            (
                Failure::OutcomeUnknown {
                    attempts: 1,
                    error: TransportError::Timeout("30 s".into()),
                },
                422,
                None,
            ),
            (Failure::Aborted("shutting down".into()), 503, Some(1)),
        ];
        for (failure, status, retry) in cases {
            let r = failure_response(&failure);
            assert_eq!(r.status, status, "{failure}");
            assert_eq!(
                r.header("retry-after").map(|v| v.parse::<u64>().unwrap()),
                retry,
                "{failure}"
            );
            let b = body(&r);
            assert_eq!(b["error"], failure.kind());
            assert_eq!(r.header("x-syncoord-error"), Some(failure.kind()));
            assert_eq!(b["message"], failure.to_string());
            assert_eq!(b["retry_after_secs"].as_u64(), retry);
        }
    }

    /// ccxt's `coinbase.handle_errors` reads `error` first (any value it
    /// does not know is a fatal `ExchangeError`), then `errors[0].id`;
    /// with neither, the status decides (503 `ExchangeNotAvailable`, 504
    /// `RequestTimeout`). The Python test runs the real ccxt on these.
    #[test]
    fn coinbase_advanced_shape_has_no_error_field_and_coinbase_ids() {
        let shape = ErrorShape::CoinbaseAdvanced;
        let cases: [(Failure, Option<&str>); 4] = [
            (
                Failure::RateLimited {
                    scope: "private".into(),
                    attempts: 4,
                    retry_after: Duration::from_secs(2),
                    response: Arc::new(Response::new(429, "{}")),
                },
                Some("rate_limit_exceeded"),
            ),
            (
                Failure::Shed {
                    class: "market".into(),
                    depth: 3,
                    retry_after: Duration::from_secs(1),
                },
                Some("rate_limit_exceeded"),
            ),
            (
                Failure::BreakerOpen {
                    route: "candles".into(),
                    retry_after: Duration::from_secs(1),
                },
                None,
            ),
            (
                Failure::OutcomeUnknown {
                    attempts: 1,
                    error: TransportError::Timeout("20 s".into()),
                },
                None,
            ),
        ];
        for (failure, id) in cases {
            let r = failure_response_shaped(&failure, shape);
            let b = body(&r);
            assert!(b.get("error").is_none(), "{b}");
            assert_eq!(b["syncoord_error"], failure.kind());
            assert_eq!(r.header("x-syncoord-error"), Some(failure.kind()));
            assert_eq!(b["errors"][0]["id"].as_str(), id, "{b}");
            // The syncoord shape keeps `error`.
            assert_eq!(body(&failure_response(&failure))["error"], failure.kind());
        }
        for (status, kind, id) in [
            (400, RejectionKind::BadTarget, "invalid_request"),
            (401, RejectionKind::TokenRequired, "unauthorized"),
            (403, RejectionKind::HostNotConfigured, "PERMISSION_DENIED"),
            (404, RejectionKind::NoUpstream, "invalid_request"),
        ] {
            assert_eq!(kind.status(), status);
            let r = Rejection::new(kind, "m").into_response_shaped(shape);
            let b = body(&r);
            assert!(b.get("error").is_none());
            assert_eq!(
                (b["errors"][0]["id"].as_str(), b["syncoord_error"].as_str()),
                (Some(id), Some(kind.as_str()))
            );
        }
    }

    #[test]
    fn cached_answers_carry_no_stale_rate_limit_headers() {
        let upstream = Arc::new(
            Response::new(200, "{}")
                .with_header("x-ratelimit-remaining", "3")
                .with_header("X-RateLimit-Limit", "30")
                .with_header("RateLimit-Reset", "1")
                .with_header("x-rate-limit-remaining", "3")
                .with_header("CB-After", "abc"),
        );
        for (source, kept) in [
            (Source::Cache, false),
            (Source::Stale, false),
            (Source::Upstream, true),
        ] {
            let r = answer_response(&Answer {
                response: Arc::clone(&upstream),
                source,
                age: Duration::ZERO,
                ttl_secs: None,
                timing: Default::default(),
            });
            assert_eq!(
                r.header("x-ratelimit-remaining").is_some(),
                kept,
                "{source:?}"
            );
            assert_eq!(r.header("x-ratelimit-limit").is_some(), kept, "{source:?}");
            assert_eq!(r.header("ratelimit-reset").is_some(), kept, "{source:?}");
            assert_eq!(
                r.header("x-rate-limit-remaining").is_some(),
                kept,
                "{source:?}"
            );
            assert_eq!(r.header("cb-after"), Some("abc"));
        }
    }

    #[test]
    fn upstream_errors_quote_a_bounded_snippet() {
        let big = vec![b'x'; 5000];
        let failure = Failure::Upstream {
            attempts: 4,
            response: Arc::new(Response::new(503, big)),
        };
        let r = failure_response(&failure);
        assert_eq!(r.status, 502);
        let b = body(&r);
        assert_eq!(b["upstream_status"], 503);
        let quoted = b["upstream_body"].as_str().unwrap();
        assert!(quoted.len() <= SNIPPET_BYTES + 3 && quoted.ends_with('…'));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn rejections_are_json() {
        let r = Rejection::new(RejectionKind::HostNotConfigured, "no").into_response();
        assert_eq!(r.status, 403);
        assert_eq!(body(&r)["error"], "host_not_configured");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}
