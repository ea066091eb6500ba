//! Why a request is refused before (or instead of) reaching upstream: a
//! typed kind, its status, and a message for the bot. Only
//! [`crate::response`] turns a [`Rejection`] into bytes, for both hosts, so
//! every refusal looks alike whichever host gave it.

use std::fmt;

/// The status of the answer to a call that was sent upstream and whose
/// answer never came (upstream timed out or the connection broke, or the
/// host had to stop first): `422` with `X-Syncoord-Error: outcome_unknown`
/// and no `Retry-After`. Not a 5xx, a 408 or a 429, because client
/// libraries retry those on their own (urllib3's `Retry` honours
/// `Retry-After` on 413/429/503 and is commonly given
/// `status_forcelist=[429, 500, 502, 503, 504]`; ccxt maps 5xx, 408 and 409
/// to network errors that `maxRetriesOnFailure` retries), while ccxt maps
/// 422 to a plain `ExchangeError` and no retry rule lists it.
pub const OUTCOME_UNKNOWN_STATUS: u16 = 422;

/// Every reason a request is refused by us rather than answered by
/// upstream. Each has one status and one machine-readable name (what
/// `X-Syncoord-Error` and the JSON body's `error` say); bots and their
/// client libraries classify the refusal by them, so neither ever changes
/// for an existing kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// `bad_method` (400): not an HTTP method.
    BadMethod,
    /// `bad_header` (400): a header name or value HTTP does not allow.
    BadHeader,
    /// `bad_target` (400): a request-target or path we cannot forward as
    /// it means.
    BadTarget,
    /// `bad_url` (400): an absolute URL in the target that does not parse.
    BadUrl,
    /// `method_not_allowed` (405): CONNECT where it is not intercepted, or
    /// a method our own endpoints do not accept.
    MethodNotAllowed,
    /// `host_not_configured` (403): an origin no upstream answers for
    /// (never an open proxy).
    HostNotConfigured,
    /// `no_upstream` (404): no prefix matches and there is no default.
    NoUpstream,
    /// `bad_listener` (500): a listener the proxy does not know (an
    /// upstream id from another proxy).
    BadListener,
    /// `ambiguous_credential` (400): two credentials in one request.
    AmbiguousCredential,
    /// `credential_hop_by_hop` (400): `Connection` names a credential
    /// header.
    CredentialHopByHop,
    /// `credential_required` (401): the route answers only authenticated
    /// requests.
    CredentialRequired,
    /// `unknown_priority` (400): `X-Syncoord-Priority` names no class.
    UnknownPriority,
    /// `priority_not_allowed` (403): above the client's `max_priority`,
    /// which says to refuse rather than lower.
    PriorityNotAllowed,
    /// `bad_token` (401): a client token that does not parse.
    BadToken,
    /// `unknown_token` (401): a token that is no configured client's.
    UnknownToken,
    /// `token_required` (401): a signed upstream and no client token.
    TokenRequired,
    /// `mixed_credentials` (400): a client token and another identity
    /// (the bot's own `Authorization` or `CB-ACCESS-*` headers) in one
    /// request: which account the bot meant is not ours to guess.
    MixedCredentials,
    /// `credential_not_allowed` (403): the client may not use the
    /// credential it asked for.
    CredentialNotAllowed,
    /// `no_credential` (403): the client has no credential for the
    /// upstream.
    NoCredential,
    /// `choose_credential` (400): several credentials, none chosen.
    ChooseCredential,
    /// `outcome_unknown` ([`OUTCOME_UNKNOWN_STATUS`]): sent upstream, and
    /// the host had to stop before the answer came.
    OutcomeUnknown,
    /// `bad_request` (400): the host found the request unsendable before
    /// anything went upstream.
    BadRequest,
    /// `ca_unavailable` (502): the local CA cannot mint the leaf an
    /// intercepted CONNECT needs.
    CaUnavailable,
    /// `payload_too_large` (413): a request body over `max_body_bytes`
    /// (the Worker's refusal; the native server words its own alike).
    PayloadTooLarge,
}

impl RejectionKind {
    /// The machine-readable name, e.g. `bad_target`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionKind::BadMethod => "bad_method",
            RejectionKind::BadHeader => "bad_header",
            RejectionKind::BadTarget => "bad_target",
            RejectionKind::BadUrl => "bad_url",
            RejectionKind::MethodNotAllowed => "method_not_allowed",
            RejectionKind::HostNotConfigured => "host_not_configured",
            RejectionKind::NoUpstream => "no_upstream",
            RejectionKind::BadListener => "bad_listener",
            RejectionKind::AmbiguousCredential => "ambiguous_credential",
            RejectionKind::CredentialHopByHop => "credential_hop_by_hop",
            RejectionKind::CredentialRequired => "credential_required",
            RejectionKind::UnknownPriority => "unknown_priority",
            RejectionKind::PriorityNotAllowed => "priority_not_allowed",
            RejectionKind::BadToken => "bad_token",
            RejectionKind::UnknownToken => "unknown_token",
            RejectionKind::TokenRequired => "token_required",
            RejectionKind::MixedCredentials => "mixed_credentials",
            RejectionKind::CredentialNotAllowed => "credential_not_allowed",
            RejectionKind::NoCredential => "no_credential",
            RejectionKind::ChooseCredential => "choose_credential",
            RejectionKind::OutcomeUnknown => "outcome_unknown",
            RejectionKind::BadRequest => "bad_request",
            RejectionKind::CaUnavailable => "ca_unavailable",
            RejectionKind::PayloadTooLarge => "payload_too_large",
        }
    }

    /// The HTTP status a bot gets for it.
    pub const fn status(self) -> u16 {
        match self {
            RejectionKind::BadMethod
            | RejectionKind::BadHeader
            | RejectionKind::BadTarget
            | RejectionKind::BadUrl
            | RejectionKind::AmbiguousCredential
            | RejectionKind::CredentialHopByHop
            | RejectionKind::UnknownPriority
            | RejectionKind::ChooseCredential
            | RejectionKind::MixedCredentials
            | RejectionKind::BadRequest => 400,
            RejectionKind::CredentialRequired
            | RejectionKind::BadToken
            | RejectionKind::UnknownToken
            | RejectionKind::TokenRequired => 401,
            RejectionKind::HostNotConfigured
            | RejectionKind::CredentialNotAllowed
            | RejectionKind::PriorityNotAllowed
            | RejectionKind::NoCredential => 403,
            RejectionKind::NoUpstream => 404,
            RejectionKind::PayloadTooLarge => 413,
            RejectionKind::MethodNotAllowed => 405,
            RejectionKind::OutcomeUnknown => OUTCOME_UNKNOWN_STATUS,
            RejectionKind::BadListener => 500,
            RejectionKind::CaUnavailable => 502,
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the proxy will not forward, and why. Hosts answer it with
/// [`Rejection::into_response`] (or its shaped form); the status follows
/// from the kind, so a host cannot answer a refusal with a status of its
/// own making.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {message}", kind.status(), kind.as_str())]
pub struct Rejection {
    kind: RejectionKind,
    message: String,
}

impl Rejection {
    /// A refusal of `kind`, explained to the bot by `message`.
    pub(crate) fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Rejection {
            kind,
            message: message.into(),
        }
    }

    /// Why the request is refused.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The HTTP status of the answer ([`RejectionKind::status`]).
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// What the bot is told, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A call that was sent upstream whose answer the host could not wait
    /// for (it was forced to stop): the bot must check its outcome before
    /// sending it again.
    pub fn outcome_unknown(why: impl fmt::Display) -> Self {
        Self::new(
            RejectionKind::OutcomeUnknown,
            format!(
                "{why}; check its outcome (an order by its client order id) before sending it again"
            ),
        )
    }

    /// A request the host found unsendable before anything went upstream:
    /// the bot's request is at fault.
    pub fn bad_request(why: impl fmt::Display) -> Self {
        Self::new(RejectionKind::BadRequest, why.to_string())
    }

    /// A request body over `max_body` bytes.
    pub fn payload_too_large(max_body: usize) -> Self {
        Self::new(
            RejectionKind::PayloadTooLarge,
            format!("request body too large (limit {max_body} bytes)"),
        )
    }

    /// An intercepted CONNECT whose leaf certificate cannot be minted.
    pub fn ca_unavailable(why: impl fmt::Display) -> Self {
        Self::new(
            RejectionKind::CaUnavailable,
            format!("the local CA is not usable: {why}"),
        )
    }
}
