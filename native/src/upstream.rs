//! The upstream side of the native host: the [`Upstream`] a worker thread
//! calls with no lock held, and [`HttpUpstream`], the real one (ureq).
//!
//! An upstream never decides anything: it sends bytes and reports what
//! came back as a core [`Outcome`]. Every HTTP status (429 and 5xx
//! included) is a response the core judges; only failures below HTTP are
//! [`TransportError`]s, and which kind matters because the core retries a
//! call that never left (`Connect`) even when it is not idempotent.

use std::io;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use syncoord_core::{Outcome, Response, TransportError};
use syncoord_wire::Keyring;
use syncoord_wire::{strip_hop_headers, HopHeaders};
use syncoord_wire::{BaseUrl, Headers, Outgoing};
use ureq::http;

/// Sends one call upstream and reports the outcome. Called from a pool of
/// worker threads, never with the coordinator's lock held, so it may block
/// for as long as the call takes.
pub trait Upstream: Send + Sync + 'static {
    fn send(&self, call: &Outgoing) -> Outcome;

    /// Whether `call` can be sent at all; `Err` says why not (a target or
    /// header the HTTP client refuses to write). The host asks once, at
    /// submission: a request that can never be sent is the caller's
    /// mistake, refused at once, not an upstream failure that is retried
    /// and opens a scope's circuit breaker for every caller. By default
    /// every call can be sent.
    fn check(&self, _call: &Outgoing) -> Result<(), Unsendable> {
        Ok(())
    }

    /// Request header names (lower-case) this client sets itself, whatever
    /// the bot sent: upstream saw the same value of them for every call,
    /// so they never select a `Vary`'d answer (see
    /// `syncoord_core::Coordinator::set_replaced_request_headers`). By
    /// default none: every header a call carries reaches upstream.
    fn replaced_request_headers(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Why a call can never be sent upstream ([`Upstream::check`]): the bot's
/// request is at fault, so it is refused, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsendable {
    #[error("method `{0}` is not a valid token")]
    Method(String),
    /// A valid extension method (`M-SEARCH`, `PROPFIND`...) the HTTP
    /// client does not send: refused here, never sent, never counted
    /// against upstream.
    #[error("method `{0}` is not sent upstream (only GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE and PATCH are)")]
    ExtensionMethod(String),
    #[error("request header name `{0}` is not valid")]
    HeaderName(String),
    /// The header's name (its value may be a secret).
    #[error("request header `{0}` has an invalid value")]
    HeaderValue(String),
    /// The HTTP client refuses the request as a whole (its target, say).
    #[error("the request cannot be sent upstream: {0}")]
    Request(String),
}

/// Closures are upstreams: handy for tests and in-process fakes.
impl<F> Upstream for F
where
    F: Fn(&Outgoing) -> Outcome + Send + Sync + 'static,
{
    fn send(&self, call: &Outgoing) -> Outcome {
        self(call)
    }
}

/// Limits for [`HttpUpstream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOptions {
    /// Time to establish the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for the whole call, from connecting to the last body byte.
    /// Keep it below the core's `retry.call_timeout_secs`, so the core
    /// hears a precise error instead of failing the call on its own.
    pub timeout: Duration,
    /// A longer response body is a `Broken` transport error, never a
    /// truncated answer.
    pub max_response_bytes: u64,
    /// Sent when the bot's request carries no `User-Agent`; `None` keeps
    /// ureq's own.
    pub user_agent: Option<String>,
    /// Extra trusted roots (PEM, one or more certificates) beside the
    /// public ones (Mozilla's, as `webpki-root-certs` ships them): a
    /// sandbox's or a corporate proxy's CA. An upstream's `ca_file`.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            max_response_bytes: 16 * 1024 * 1024,
            user_agent: None,
            extra_roots_pem: None,
        }
    }
}

/// Why an [`HttpUpstream`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream base URL `{url}` is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    /// The extra roots are not PEM certificates.
    #[error("extra trusted roots: {0}")]
    BadRoots(String),
}

/// Request headers the upstream connection sets itself: forwarding a
/// bot's copy would contradict the framing or the target ureq uses, or
/// (`Accept-Encoding`) ask for a content coding ureq cannot decode, whose
/// body the cache would then serve to every bot, still encoded.
const SET_BY_CONNECTION: HopHeaders<'static> = HopHeaders {
    names: &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "accept-encoding",
    ],
    prefixes: &[],
    connection_listed: false,
};

/// Response headers that describe the hop, not the answer: the body is
/// handed over whole (and gunzipped by ureq), so they would mislead.
const HOP_RESPONSE: HopHeaders<'static> = HopHeaders {
    names: &[
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
    ],
    prefixes: &[],
    connection_listed: false,
};

/// The public roots plus the certificates in `pem` (at least one).
fn roots_with(pem: &[u8]) -> Result<ureq::tls::RootCerts, UpstreamError> {
    use ureq::tls::{Certificate, PemItem};
    let mut extra = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => extra.push(c),
            Ok(_) => {}
            Err(e) => return Err(UpstreamError::BadRoots(format!("not PEM: {e}"))),
        }
    }
    if extra.is_empty() {
        return Err(UpstreamError::BadRoots(
            "no `BEGIN CERTIFICATE` block in the file".into(),
        ));
    }
    let mut all: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    all.extend(extra);
    Ok(ureq::tls::RootCerts::new_with_certs(&all))
}

/// The real upstream: HTTP/1.1 over one ureq agent (pooled, reused
/// connections; rustls for https).
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    agent: ureq::Agent,
    /// `scheme://authority` plus any path prefix, without a trailing `/`.
    base: String,
    /// `base`, parsed: the host and base path a signature names.
    base_url: BaseUrl,
    max_response_bytes: u64,
    /// Signing mode: the credentials a call's `sign_as` names; a reload
    /// may swap them ([`KeyringCell`]).
    keyring: KeyringCell,
}

/// The credentials an [`HttpUpstream`] signs with, replaceable while it
/// runs (a configuration reload that rotates a key). Each attempt takes
/// the keyring current when it is signed.
#[derive(Debug, Clone, Default)]
pub struct KeyringCell(Arc<RwLock<Keyring>>);

impl KeyringCell {
    /// The credentials in effect.
    pub fn get(&self) -> Keyring {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Signs with `keyring` from the next attempt on. A call whose
    /// credential is gone is not sent (a local error, safe to retry).
    pub fn set(&self, keyring: Keyring) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = keyring;
    }
}

impl HttpUpstream {
    /// `base_url` is `http(s)://host[:port][/prefix]`; each call's
    /// `path_and_query` is appended to it, and `Host` comes from it.
    pub fn new(base_url: &str, options: UpstreamOptions) -> Result<HttpUpstream, UpstreamError> {
        let bad = |reason: &str| UpstreamError::BadUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = base_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            Some(other) => return Err(bad(&format!("scheme `{other}` is not http or https"))),
            None => return Err(bad("no scheme (expected http:// or https://)")),
        }
        if uri.authority().is_none_or(|a| a.host().is_empty()) {
            return Err(bad("no host"));
        }
        if uri.query().is_some() {
            return Err(bad("a base URL cannot carry a query"));
        }
        let base = base_url.trim_end_matches('/').to_owned();
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(options.connect_timeout))
            // Calls are signed for one URL; a redirect would replay the
            // signature elsewhere. The bot sees the 3xx instead.
            .max_redirects(0)
            .save_redirect_history(false);
        if let Some(ua) = &options.user_agent {
            config = config.user_agent(ua.as_str());
        }
        if let Some(pem) = &options.extra_roots_pem {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(roots_with(pem)?)
                    .build(),
            );
        }
        let base_url = BaseUrl::parse(&base).map_err(|e| bad(&e.to_string()))?;
        Ok(HttpUpstream {
            agent: ureq::Agent::with_parts(
                config.build(),
                ureq::unversioned::transport::DefaultConnector::default(),
                resolve::BoundedResolver,
            ),
            base,
            base_url,
            max_response_bytes: options.max_response_bytes,
            keyring: KeyringCell::default(),
        })
    }

    /// Signs each call whose `sign_as` names one of `keyring`'s
    /// credentials, just before each attempt is sent (signing mode).
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = KeyringCell(Arc::new(RwLock::new(keyring)));
        self
    }

    /// Where its credentials are held, to replace them while it runs.
    pub fn keyring_cell(&self) -> KeyringCell {
        self.keyring.clone()
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        call: &Outgoing,
        headers: &[(String, String)],
    ) -> Result<http::request::Builder, Unsendable> {
        let uri = format!("{}{}", self.base, call.path_and_query);
        let method = http::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| Unsendable::Method(call.method.clone()))?;
        // What the HTTP client writes (anything else fails inside it after
        // the call is handed over, looking like upstream's fault).
        // CONNECT is a tunnel, not a call to forward.
        use http::Method as M;
        let sendable = [
            M::GET,
            M::HEAD,
            M::POST,
            M::PUT,
            M::DELETE,
            M::OPTIONS,
            M::TRACE,
            M::PATCH,
        ];
        if !sendable.contains(&method) {
            return Err(Unsendable::ExtensionMethod(call.method.clone()));
        }
        let mut builder = http::Request::builder().method(method).uri(uri.as_str());
        for (name, value) in &strip_hop_headers(headers, &SET_BY_CONNECTION) {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Unsendable::HeaderName(name.clone()))?;
            let mut value = http::HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| Unsendable::HeaderValue(name.to_string()))?;
            // A sensitive value shows as `Sensitive` in the client's own
            // debug logs of the request, never as itself.
            if syncoord_wire::is_secret_header(name.as_str()) {
                value.set_sensitive(true);
            }
            builder = builder.header(name, value);
        }
        Ok(builder)
    }

    /// The headers of this attempt: signed now, for this attempt only,
    /// when the call is to be signed (see [`Keyring::attempt_headers`]).
    fn attempt_headers(&self, call: &Outgoing) -> Result<Headers, TransportError> {
        self.keyring
            .get()
            .attempt_headers(call, &self.base_url, || {
                let unix_now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|_| "the clock is before 1970".to_owned())?
                    .as_secs();
                let mut nonce = [0u8; 16];
                getrandom::getrandom(&mut nonce).map_err(|e| format!("no random nonce: {e}"))?;
                Ok((unix_now, nonce))
            })
    }

    fn exchange(&self, call: &Outgoing) -> Result<Response, TransportError> {
        let headers = self.attempt_headers(call)?;
        // `check` refused such a call at submission; should one get here
        // anyway, it breaks like any other call that cannot be written.
        let builder = self
            .request(call, &headers)
            .map_err(|e| TransportError::Broken(e.to_string()))?;
        let built = |e: http::Error| TransportError::Broken(format!("request not built: {e}"));
        let sent = if call.body.is_empty() && matches!(call.method.as_str(), "GET" | "HEAD") {
            self.agent.run(builder.body(()).map_err(built)?)
        } else {
            self.agent
                .run(builder.body(call.body.as_slice()).map_err(built)?)
        };
        let mut response = sent.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let gunzipped = response
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let received: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| !(gunzipped && *name == http::header::CONTENT_ENCODING))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let headers = strip_hop_headers(&received, &HOP_RESPONSE);
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => TransportError::Broken(format!(
                    "response body longer than the {limit}-byte limit"
                )),
                other => classify(&other),
            })?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

impl Upstream for HttpUpstream {
    /// `Accept-Encoding` above all: ureq asks for gzip and decodes, so an
    /// answer that varies on it is the same for every bot.
    fn replaced_request_headers(&self) -> &'static [&'static str] {
        SET_BY_CONNECTION.names
    }

    /// Builds the request as [`Upstream::send`] would, without sending it.
    fn check(&self, call: &Outgoing) -> Result<(), Unsendable> {
        if let Some(name) = call.sign_as.as_deref() {
            if self.keyring.get().get(name).is_none() {
                return Err(Unsendable::Request(format!(
                    "no credential named `{name}` is loaded"
                )));
            }
        }
        self.request(call, &call.headers)?
            .body(())
            .map(drop)
            .map_err(|e| Unsendable::Request(e.to_string()))
    }

    fn send(&self, call: &Outgoing) -> Outcome {
        match self.exchange(call) {
            Ok(response) => Outcome::Response {
                response,
                received_unix: unix_now(),
            },
            Err(error) => {
                tracing::debug!(method = %call.method, path = %call.path_and_query, %error, "upstream call failed");
                Outcome::Transport(error)
            }
        }
    }
}

/// Wall-clock seconds, for HTTP-date `Retry-After` values.
pub(crate) fn unix_now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Sorts a ureq error into what the core needs to know: did the call
/// leave (`Connect` = certainly not), did time run out, or did the
/// exchange break.
fn classify(error: &ureq::Error) -> TransportError {
    use ureq::Error as E;
    use ureq::Timeout as T;
    match error {
        E::HostNotFound => TransportError::Connect("host name not found".into()),
        E::ConnectionFailed => TransportError::Connect("connection failed".into()),
        // Nothing was written before the connection existed: as safe to
        // retry as a refused connection.
        E::Timeout(T::Resolve | T::Connect) => {
            TransportError::Connect(format!("timed out connecting ({error})"))
        }
        E::Timeout(_) => TransportError::Timeout(format!("{error}")),
        E::Io(io) => classify_io(io),
        E::Protocol(e) => TransportError::Broken(format!("upstream sent invalid HTTP: {e}")),
        E::BodyExceedsLimit(limit) => {
            TransportError::Broken(format!("body longer than the {limit}-byte limit"))
        }
        E::LargeResponseHeader(got, max) => TransportError::Broken(format!(
            "response header of {got} bytes exceeds the {max}-byte limit"
        )),
        other => TransportError::Broken(format!("{other}")),
    }
}

fn classify_io(error: &io::Error) -> TransportError {
    use io::ErrorKind as K;
    if let Some(local) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<resolve::LocalExhaustion>())
    {
        return TransportError::Local(local.to_string());
    }
    // EMFILE, ENFILE (descriptors), ENOMEM, ENOBUFS: ours, not upstream's;
    // the socket was never made, so nothing left.
    if matches!(error.raw_os_error(), Some(24 | 23 | 12 | 105)) {
        return TransportError::Local(format!("cannot open a connection: {error}"));
    }
    match error.kind() {
        K::ConnectionRefused | K::AddrNotAvailable | K::NotFound => {
            TransportError::Connect(format!("connection refused: {error}"))
        }
        K::TimedOut | K::WouldBlock => {
            TransportError::Timeout(format!("socket timed out: {error}"))
        }
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            TransportError::Broken(format!("connection closed mid-exchange: {error}"))
        }
        _ => TransportError::Broken(format!("i/o error: {error}")),
    }
}

mod resolve;

#[cfg(all(test, not(loom)))]
mod tests;
