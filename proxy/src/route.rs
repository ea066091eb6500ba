//! From a bot's HTTP request to an upstream call: which upstream, which
//! core [`Request`], which bytes go out.
//!
//! # Which upstream
//!
//! Checked in this order:
//! 1. **A dedicated listener** (`listener = Some(i)`, an upstream's own
//!    `listen` address) fronts upstream `i` only; an absolute URL sent
//!    there must name that upstream too.
//! 2. **An absolute URL**, as ccxt's `proxyUrl` sends it, raw
//!    (`/https://api.coinbase.com/api/v3/...`) or percent-encoded once
//!    (`/https%3A%2F%2Fapi.coinbase.com%2Fapi%2Fv3...`, decoded once as a
//!    whole), or an absolute-form request-target (`http://host/...`, what
//!    an HTTP proxy client sends, and what a host makes of a request inside
//!    an intercepted CONNECT). Its scheme, host and port must be one of a
//!    configured upstream's `origins` (default: its `url`; its path under
//!    that origin's base path), else the request is refused with 403:
//!    this is never an open proxy. [`Proxy::connect`] says which CONNECTs
//!    may be intercepted: those to an `https` origin, nothing else.
//! 3. **A path prefix** (`prefix = "/exchange"`): the longest configured
//!    prefix that is a whole-segment prefix of the path; it is stripped.
//! 4. **The default upstream**: the first one without a prefix.
//!
//! What remains is the path and query relative to the upstream's base URL,
//! forwarded byte for byte (signatures cover it).

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use crate::config::{CheckedUpstream, ProxyConfig};
use crate::http::{strip_hop_headers, HopHeaders};
use crate::signing::{self, Keyring, Loaded, NoSecrets, SecretSource};
use crate::url::{split_absolute, BaseUrl, Origin};
use crate::{ConfigFileErrors, Outgoing, CLIENT_HEADER, PRIORITY_HEADER};
use syncoord_core::config::{CredentialConfig, Keying};
use syncoord_core::{CompiledConfig, Credential, Duration, Method, Request};

/// A request the proxy will not forward, and why. Hosts answer it with
/// [`Rejection::into_response`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct Rejection {
    pub status: u16,
    /// Short machine-readable name, e.g. `bad_target`.
    pub kind: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            kind,
            message: message.into(),
        }
    }

    fn bad(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, kind, message)
    }
}

/// A request ready for an upstream's coordinator.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Index of the upstream in [`ProxyConfig::upstreams`].
    pub upstream: usize,
    pub request: Request,
    pub outgoing: Outgoing,
}

/// A CONNECT that may be intercepted ([`Proxy::connect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    /// The host the client's TLS must be answered for (the leaf
    /// certificate's name), lower-case, without brackets' contents changed.
    pub host: String,
    /// `https://host` (or `https://host:port` off 443): what an
    /// origin-form target inside the tunnel is prefixed with.
    pub base: String,
}

/// Names the Durable Object that owns a request's rate-limit buckets on
/// the edge: `<upstream>/global` or `<upstream>/cred/<identity>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey(pub String);

impl ShardKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The compiled proxy configuration: routes requests, pure and cheap to
/// share between threads.
#[derive(Debug)]
pub struct Proxy {
    config: Arc<ProxyConfig>,
    upstreams: Vec<CheckedUpstream>,
    default: Option<usize>,
    /// Signing mode: the keys, the clients, and what loading warned of.
    signing: Loaded,
    /// Per upstream: whether it has `[[credentials]]` (signing mode).
    signed: Vec<bool>,
}

/// Longest client name kept from `X-Syncoord-Client`.
pub const MAX_CLIENT_LEN: usize = 64;
/// Longest method accepted.
const MAX_METHOD_LEN: usize = 32;

impl Proxy {
    /// Checks the configuration and compiles its route tables.
    ///
    /// A config with `[[credentials]]` or `token_env` clients needs its
    /// secrets: use [`Self::with_secrets`].
    pub fn new(config: ProxyConfig) -> Result<Proxy, ConfigFileErrors> {
        Self::with_secrets(config, &NoSecrets)
    }

    /// [`Self::new`], reading the secrets `[[credentials]]` and
    /// `[[clients]]` point at (env vars, files) through `secrets`. Every
    /// problem at once, none quoting a secret; problems that do not stop
    /// the host (a key file others may read) are in [`Self::warnings`].
    pub fn with_secrets(
        config: ProxyConfig,
        secrets: &dyn SecretSource,
    ) -> Result<Proxy, ConfigFileErrors> {
        let upstreams = config.checked_upstreams()?;
        let default = config.upstreams.iter().position(|u| u.prefix.is_none());
        let signing = signing::load(&config.credentials, &config.clients, secrets)
            .map_err(ConfigFileErrors::unlocated)?;
        let signed = config
            .upstreams
            .iter()
            .map(|u| config.credentials.iter().any(|c| c.upstream == u.name))
            .collect();
        Ok(Proxy {
            config: Arc::new(config),
            upstreams,
            default,
            signing,
            signed,
        })
    }

    /// The credentials loaded for signing mode (empty without any).
    pub fn keyring(&self) -> &Keyring {
        &self.signing.keyring
    }

    /// Upstream `index`'s base URL, parsed: what its calls are signed for.
    pub fn base_url(&self, index: usize) -> Option<&BaseUrl> {
        self.upstreams.get(index).map(|u| &u.base)
    }

    /// What loading the secrets warned of, as `field: message` lines (a
    /// key file other users may read). Hosts log them at start.
    pub fn warnings(&self) -> Vec<String> {
        self.signing
            .warnings
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect()
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Every address to listen on: the main listener (`None`, all
    /// upstreams) then each dedicated one (`Some(upstream index)`), as
    /// the `listener` argument of [`Self::route`] expects.
    pub fn listeners(&self) -> Vec<(Option<usize>, &str)> {
        let mut out = vec![(None, self.config.server.listen.as_str())];
        out.extend(
            self.config
                .upstreams
                .iter()
                .enumerate()
                .filter_map(|(i, u)| u.listen.as_deref().map(|l| (Some(i), l))),
        );
        out
    }

    /// Every upstream's compiled coordination config, in config order.
    pub fn coordinations(&self) -> impl Iterator<Item = &CompiledConfig> {
        self.upstreams.iter().map(|u| &u.coordination)
    }

    /// The compiled coordination config of upstream `index`: what its
    /// [`syncoord_core::Coordinator`] runs on.
    pub fn coordination(&self, index: usize) -> Option<&CompiledConfig> {
        self.upstreams.get(index).map(|u| &u.coordination)
    }

    /// Turns a bot's request into an upstream call, or says why not.
    ///
    /// `listener` is `Some(i)` when the request arrived on upstream `i`'s
    /// dedicated listener; `target` is the request-target exactly as sent.
    pub fn route(
        &self,
        listener: Option<usize>,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Forward, Rejection> {
        let method = check_method(method)?;
        check_headers(headers)?;
        check_target_chars(target, "request-target")?;
        if method == "CONNECT" {
            return Err(Rejection::new(
                405,
                "method_not_allowed",
                "CONNECT is not intercepted by this host: send requests to this proxy directly, or as `/https://host/path` (ccxt proxyUrl)",
            ));
        }
        if crate::endpoints::is_endpoint_path(target) && !matches!(method.as_str(), "GET" | "HEAD")
        {
            return Err(Rejection::new(
                405,
                "method_not_allowed",
                format!("{} accepts only GET and HEAD", path_of(target)),
            ));
        }
        let (upstream, path_and_query) = self.select(listener, target)?;
        check_path_and_query(&path_and_query)?;
        let config = &self.config.upstreams[upstream].coordination;

        let rules = &config.credential;
        let compiled = &self.upstreams[upstream].coordination;
        let method_id = Method::new(&method);
        let path_only = path_and_query.split('?').next().unwrap_or("");
        let rule = compiled.route(&method_id, path_only);
        let underscores = self.config.upstreams[upstream].underscores_in_headers;
        let token_client = self.authenticate(headers)?;
        let signer = self.signer_for(upstream, token_client, headers)?;
        let (forwarded, credential) = match signer {
            // Signing mode: the bot's own signature headers are dropped
            // (syncoord signs at dispatch) and the identity is the
            // credential the token proved.
            Some(signer) => {
                let mut forwarded = forwarded_headers(headers, underscores);
                forwarded.retain(|(n, _)| {
                    !(signing::SIGNATURE_HEADERS
                        .iter()
                        .any(|s| n.eq_ignore_ascii_case(s))
                        || n.eq_ignore_ascii_case(&rules.header)
                        || rules.others.iter().any(|o| n.eq_ignore_ascii_case(o)))
                });
                let identity = Credential::new(&format!("signed:{}", signer.name()));
                (forwarded, Some(identity))
            }
            None => {
                check_connection(headers, rules)?;
                // Identity is computed from exactly what upstream will
                // receive: a header a hop strips (or that is not forwarded
                // at all) cannot name the account upstream answers for.
                let forwarded = forwarded_headers(headers, underscores);
                check_credential_unambiguous(&forwarded, rules)?;
                let presented = crate::http::presented(&forwarded, rules);
                let per_credential = rule
                    .scopes
                    .iter()
                    .any(|s| compiled.keying(*s) == Some(Keying::Credential));
                if let Some((read, other)) = &presented.mixed {
                    if rule.private || per_credential || rule.credential_required {
                        return Err(Rejection::bad(
                            "ambiguous_credential",
                            format!(
                                "the request carries two credentials, `{read}` and `{other}`; upstream `{}` authenticates `{}`, and an answer must be filed under the account upstream answered for: send one",
                                self.config.upstreams[upstream].name, rules.header
                            ),
                        ));
                    }
                }
                let credential = presented
                    .key_name
                    .as_deref()
                    .map(|name| crate::http::identity_of(name, rules));
                (forwarded, credential)
            }
        };
        if credential.is_none() && rule.credential_required {
            return Err(Rejection::new(
                401,
                "credential_required",
                format!(
                    "{method} {path_only}: upstream `{}` answers only authenticated requests here (route `{}`), and this one carries no `{}`",
                    self.config.upstreams[upstream].name, rule.name, rules.header
                ),
            ));
        }
        let client = syncoord_core::header(headers, CLIENT_HEADER)
            .map(sanitize_client)
            .filter(|c| !c.is_empty())
            .or_else(|| token_client.map(|c| c.name.to_string()))
            .or_else(|| {
                credential
                    .as_ref()
                    .map(|c| c.as_str().chars().take(128).collect())
            })
            .unwrap_or_else(|| "anonymous".to_owned());
        let priority = match syncoord_core::header(headers, PRIORITY_HEADER) {
            None | Some("") => None,
            Some(name) => Some(config.class_id(name).ok_or_else(|| {
                Rejection::bad(
                    "unknown_priority",
                    format!(
                        "{PRIORITY_HEADER}: unknown class `{}` (known: {})",
                        sanitize_client(name),
                        config.priorities.join(", ")
                    ),
                )
            })?),
        };

        let mut request = Request::new(method_id, &path_and_query, &client);
        request.credential = credential;
        if signer.is_some() {
            request.max_wait = Some(Duration::from_secs_f64(
                self.config.upstreams[upstream].signing.deadline_secs,
            ));
        }
        request.priority = priority;
        request.freshness = syncoord_core::Freshness::from_headers(headers);

        let body = if matches!(method.as_str(), "GET" | "HEAD") {
            Vec::new()
        } else {
            body
        };
        let outgoing = Outgoing {
            method,
            path_and_query,
            headers: forwarded.into(),
            body,
            sign_as: signer.map(|s| Arc::from(s.name())),
        };
        Ok(Forward {
            upstream,
            request,
            outgoing,
        })
    }

    /// The `[[clients]]` entry whose token the request presents
    /// (`X-Syncoord-Token`, or the password of `Proxy-Authorization:
    /// Basic`), `None` without a token. A token that is not a client's is
    /// refused here, before anything reaches upstream. Without any
    /// `[[clients]]` configured, always `None`.
    pub fn authenticate(
        &self,
        headers: &[(String, String)],
    ) -> Result<Option<&signing::Client>, Rejection> {
        // Without `[[clients]]` nothing is authenticated here: a
        // `Proxy-Authorization` is then for no one and stops at this hop,
        // as it always has.
        if self.signing.clients.0.is_empty() {
            return Ok(None);
        }
        let token = signing::presented_token(headers)
            .map_err(|e| Rejection::new(401, "bad_token", e.to_string()))?;
        match token {
            None => Ok(None),
            Some(token) => self.signing.clients.authenticate(&token).map(Some).ok_or_else(|| {
                Rejection::new(
                    401,
                    "unknown_token",
                    format!(
                        "the token ({} or the password of Proxy-Authorization) is not a configured client's",
                        signing::TOKEN_HEADER
                    ),
                )
            }),
        }
    }

    /// The credential a request to `upstream` is signed with: `None` when
    /// the upstream has no `[[credentials]]` or lets unsigned bots pass.
    fn signer_for(
        &self,
        upstream: usize,
        client: Option<&signing::Client>,
        headers: &[(String, String)],
    ) -> Result<Option<&signing::Signer>, Rejection> {
        if !self.signed[upstream] {
            return Ok(None);
        }
        let up = &self.config.upstreams[upstream];
        let Some(client) = client else {
            if up.signing.pass_through {
                return Ok(None);
            }
            return Err(Rejection::new(
                401,
                "token_required",
                format!(
                    "upstream `{}` is signed by syncoord: present a client token as {} (or as the password of HTTPS_PROXY, http://NAME:TOKEN@host)",
                    up.name,
                    signing::TOKEN_HEADER
                ),
            ));
        };
        let usable: Vec<&signing::Signer> = client
            .credentials
            .iter()
            .filter_map(|n| self.signing.keyring.get(n))
            .filter(|s| s.upstream() == up.name)
            .collect();
        let names = || {
            usable
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match syncoord_core::header(headers, signing::CREDENTIAL_HEADER)
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            Some(asked) => usable
                .iter()
                .find(|s| s.name() == asked)
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    Rejection::new(
                        403,
                        "credential_not_allowed",
                        format!(
                            "client `{}` may not use credential `{}` on upstream `{}` (it may use: {})",
                            client.name,
                            sanitize_client(asked),
                            up.name,
                            names()
                        ),
                    )
                }),
            None => match usable.as_slice() {
                [one] => Ok(Some(*one)),
                [] => Err(Rejection::new(
                    403,
                    "no_credential",
                    format!(
                        "client `{}` has no credential for upstream `{}`",
                        client.name, up.name
                    ),
                )),
                _ => Err(Rejection::bad(
                    "choose_credential",
                    format!(
                        "client `{}` has several credentials for upstream `{}`: choose one with {}: {}",
                        client.name,
                        up.name,
                        signing::CREDENTIAL_HEADER,
                        names()
                    ),
                )),
            },
        }
    }

    /// Picks the upstream (see the module docs) and returns the path and
    /// query relative to its base URL, exactly as sent.
    fn select(&self, listener: Option<usize>, target: &str) -> Result<(usize, String), Rejection> {
        if let Some(i) = listener {
            if i >= self.upstreams.len() {
                return Err(Rejection::new(
                    500,
                    "bad_listener",
                    format!("listener {i} fronts no configured upstream"),
                ));
            }
        }
        if let Some(absolute) = absolute_url(target)? {
            let (origin, rest) = split_absolute(&absolute).map_err(|e| {
                Rejection::bad("bad_url", format!("absolute URL in the request: {e}"))
            })?;
            let candidates: Vec<usize> = match listener {
                Some(i) => vec![i],
                None => (0..self.upstreams.len()).collect(),
            };
            // Two upstreams on one origin (`/` and `/v2`, say): the longest
            // base path that matches wins, as with prefixes.
            let best = candidates
                .into_iter()
                .flat_map(|i| self.upstreams[i].origins.iter().map(move |o| (i, o)))
                .filter(|(_, o)| o.origin == origin)
                .filter_map(|(i, o)| {
                    strip_segment_prefix(rest, &o.path).map(|rel| (o.path.len(), i, rel))
                })
                .max_by_key(|&(len, i, _)| (len, std::cmp::Reverse(i)));
            if let Some((_, i, rel)) = best {
                return Ok((i, rooted(rel)));
            }
            let why = match listener {
                Some(i) => format!(
                    "this listener fronts only upstream `{}` ({})",
                    self.config.upstreams[i].name,
                    self.origins_of(i)
                ),
                None => format!(
                    "configured: {}",
                    (0..self.upstreams.len())
                        .map(|i| self.origins_of(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(Rejection::new(
                403,
                "host_not_configured",
                format!("{} is not a configured upstream; {why}", describe(&origin)),
            ));
        }
        if !target.starts_with('/') {
            return Err(Rejection::bad(
                "bad_target",
                "the request-target must be a path starting with `/`, an absolute http(s) URL, or `/` followed by one (ccxt proxyUrl)",
            ));
        }
        if let Some(i) = listener {
            return Ok((i, target.to_owned()));
        }
        let by_prefix = self
            .upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                let p = u.prefix.as_deref()?;
                strip_segment_prefix(target, p).map(|rest| (p.len(), i, rest))
            })
            .max_by_key(|(len, _, _)| *len);
        if let Some((_, i, rest)) = by_prefix {
            return Ok((i, rooted(rest)));
        }
        match self.default {
            Some(i) => Ok((i, target.to_owned())),
            None => Err(Rejection::new(
                404,
                "no_upstream",
                format!(
                    "no upstream serves `{}`; prefixes: {}",
                    path_of(target),
                    self.config
                        .upstreams
                        .iter()
                        .filter_map(|u| u.prefix.as_deref())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// How our own errors for upstream `index` are shaped (by its preset).
    pub fn error_shape(&self, index: usize) -> crate::ErrorShape {
        self.config
            .upstreams
            .get(index)
            .map_or(crate::ErrorShape::Syncoord, |u| {
                crate::ErrorShape::for_preset(u.preset)
            })
    }

    /// The error shape for a request refused before it had an upstream:
    /// that of the upstream its target would pick, if any.
    pub fn error_shape_for(&self, listener: Option<usize>, target: &str) -> crate::ErrorShape {
        match self.select(listener, target) {
            Ok((i, _)) => self.error_shape(i),
            Err(_) => crate::ErrorShape::Syncoord,
        }
    }

    /// The origins upstream `i` answers for, as written (`origins`, or its `url`).
    fn origins_of(&self, i: usize) -> String {
        let u = &self.config.upstreams[i];
        if u.origins.is_empty() {
            u.url.clone()
        } else {
            u.origins.join(", ")
        }
    }

    /// Whether a `CONNECT` to `authority` (`host:port`, as the request
    /// line names it) may be intercepted: some upstream answers for
    /// `https://host:port`. Returns the host as it will appear in the
    /// absolute URLs of the tunnel's requests (`https://host[:port]`),
    /// lower-case. Any other host or port is `403`: syncoord never opens
    /// a tunnel, and never reaches a host that is not configured.
    pub fn connect(&self, authority: &str) -> Result<ConnectTarget, Rejection> {
        check_target_chars(authority, "CONNECT authority")?;
        let bad = || {
            Rejection::bad(
                "bad_target",
                format!(
                    "CONNECT needs `host:port` (e.g. `api.coinbase.com:443`), not `{}`",
                    authority.escape_debug()
                ),
            )
        };
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let url = format!("https://{host}:{port}");
        let (origin, rest) = split_absolute(&url)
            .map_err(|e| Rejection::bad("bad_target", format!("CONNECT {authority}: {e}")))?;
        if !rest.is_empty() {
            return Err(bad());
        }
        let known = self
            .upstreams
            .iter()
            .any(|u| u.origins.iter().any(|o| o.origin == origin));
        if !known {
            let https: Vec<String> = self
                .upstreams
                .iter()
                .flat_map(|u| u.origins.iter())
                .filter(|o| o.origin.https)
                .map(|o| format!("{}:{}", o.origin.host, o.origin.port))
                .collect();
            return Err(Rejection::new(
                403,
                "host_not_configured",
                format!(
                    "CONNECT {}: not an https origin of a configured upstream (syncoord intercepts only those and never opens a tunnel); configured: {}",
                    sanitize_client(authority),
                    if https.is_empty() { "none".to_owned() } else { https.join(", ") }
                ),
            ));
        }
        Ok(ConnectTarget {
            base: describe(&origin),
            host: origin.host,
        })
    }

    /// The Durable Object owning `forward`'s buckets: `<upstream>/global`
    /// when the matched route draws only from global scopes (or none),
    /// `<upstream>/cred/<identity>` (`anonymous` without a credential) when
    /// only from per-credential ones. Routes mixing both are refused by
    /// [`ProxyConfig::validate_for_edge`]; for them this names the
    /// credential's shard.
    pub fn shard(&self, forward: &Forward) -> ShardKey {
        let name = self
            .config
            .upstreams
            .get(forward.upstream)
            .map_or("?", |u| u.name.as_str());
        let Some(compiled) = self.upstreams.get(forward.upstream) else {
            return ShardKey(format!("{name}/global"));
        };
        let req = &forward.request;
        let rules = &compiled.coordination;
        let per_credential = rules
            .route(&req.method, &req.path)
            .scopes
            .iter()
            .any(|s| rules.keying(*s) == Some(Keying::Credential));
        if per_credential {
            let who = req.credential.as_ref().map_or("anonymous", |c| c.as_str());
            ShardKey(format!("{name}/cred/{who}"))
        } else {
            ShardKey(format!("{name}/global"))
        }
    }
}

/// `https://host` or `https://host:port` when the port is not the default.
fn describe(o: &Origin) -> String {
    let scheme = if o.https { "https" } else { "http" };
    let default = if o.https { 443 } else { 80 };
    if o.port == default {
        format!("{scheme}://{}", o.host)
    } else {
        format!("{scheme}://{}:{}", o.host, o.port)
    }
}

/// The absolute URL a target carries, if any: the absolute form itself,
/// `/` + a raw URL, or `/` + a URL percent-encoded once.
fn absolute_url(target: &str) -> Result<Option<String>, Rejection> {
    let starts = |s: &str, p: &str| s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p);
    if starts(target, "http://") || starts(target, "https://") {
        return Ok(Some(target.to_owned()));
    }
    let Some(inner) = target.strip_prefix('/') else {
        return Ok(None);
    };
    if starts(inner, "http://") || starts(inner, "https://") {
        return Ok(Some(inner.to_owned()));
    }
    if starts(inner, "http%3a") || starts(inner, "https%3a") {
        check_percent_encoding(inner).map_err(|at| {
            Rejection::bad(
                "bad_url",
                format!("invalid percent-encoding at byte {at} of the encoded URL (expected `%` and two hex digits)"),
            )
        })?;
        let decoded = percent_decode_str(inner)
            .decode_utf8()
            .map_err(|_| Rejection::bad("bad_url", "the encoded URL does not decode to UTF-8"))?
            .into_owned();
        check_target_chars(&decoded, "decoded URL")?;
        return Ok(Some(decoded));
    }
    Ok(None)
}

/// `rest` with `prefix` removed when `prefix` is a whole-segment prefix
/// of its path (`/exchange` matches `/exchange`, `/exchange/x` and
/// `/exchange?q`, not `/exchanges`). An empty prefix matches everything.
fn strip_segment_prefix<'a>(rest: &'a str, prefix: &str) -> Option<&'a str> {
    let tail = rest.strip_prefix(prefix)?;
    (tail.is_empty() || tail.starts_with(['/', '?'])).then_some(tail)
}

/// A stripped remainder as an origin-form path: `""` is `/`, `?q` is `/?q`.
fn rooted(rest: &str) -> String {
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    }
}

fn path_of(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_method(method: &str) -> Result<String, Rejection> {
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.bytes().all(is_tchar) {
        return Err(Rejection::bad(
            "bad_method",
            format!(
                "`{}` is not an HTTP method (1 to {MAX_METHOD_LEN} token characters)",
                method.escape_debug()
            ),
        ));
    }
    Ok(method.to_ascii_uppercase())
}

fn check_headers(headers: &[(String, String)]) -> Result<(), Rejection> {
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(Rejection::bad(
                "bad_header",
                format!("`{}` is not a valid header name", name.escape_debug()),
            ));
        }
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(Rejection::bad(
                "bad_header",
                format!("header `{name}` contains CR, LF or NUL"),
            ));
        }
    }
    Ok(())
}

/// A credential header sent twice with different values: the cache would
/// file the answer under the first while upstream may authenticate the
/// other, and then serve one key's private data to the other key's bots.
fn check_credential_unambiguous(
    headers: &[(String, String)],
    rules: &CredentialConfig,
) -> Result<(), Rejection> {
    let names = std::iter::once(rules.header.as_str())
        .chain(rules.others.iter().map(String::as_str))
        .chain(std::iter::once("authorization"));
    for name in names {
        let mut values = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim());
        if let Some(first) = values.next() {
            if values.any(|v| v != first) {
                return Err(Rejection::bad(
                    "ambiguous_credential",
                    format!("`{name}` is sent more than once with different values"),
                ));
            }
        }
    }
    Ok(())
}

/// A `Connection` header naming a credential header (or any header that
/// may carry a secret) would have it dropped at this hop: the identity
/// would then be computed from one credential while upstream
/// authenticates another. Refused rather than guessed.
fn check_connection(
    headers: &[(String, String)],
    rules: &CredentialConfig,
) -> Result<(), Rejection> {
    let listed = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim_matches([' ', '\t']));
    for token in listed {
        let credential = token.eq_ignore_ascii_case(&rules.header)
            || token.eq_ignore_ascii_case("authorization")
            || rules.others.iter().any(|o| token.eq_ignore_ascii_case(o))
            || may_carry_secret(token);
        if credential {
            return Err(Rejection::bad(
                "credential_hop_by_hop",
                format!(
                    "`Connection` names `{}`, a header that carries a credential: it would be dropped here while the identity is read from it; credentials are end-to-end",
                    sanitize_client(token)
                ),
            ));
        }
    }
    Ok(())
}

/// Request-targets are printable ASCII without spaces (RFC 9112 3.2).
fn check_target_chars(target: &str, what: &str) -> Result<(), Rejection> {
    if target.is_empty() {
        return Err(Rejection::bad("bad_target", format!("empty {what}")));
    }
    if let Some((at, b)) = target
        .bytes()
        .enumerate()
        .find(|(_, b)| !b.is_ascii_graphic())
    {
        let what_char = match b {
            b'\r' => "CR".to_owned(),
            b'\n' => "LF".to_owned(),
            0 => "NUL".to_owned(),
            b' ' => "a space".to_owned(),
            b if b >= 0x80 => "a non-ASCII byte (percent-encode it)".to_owned(),
            b => format!("control byte 0x{b:02x}"),
        };
        return Err(Rejection::bad(
            "bad_target",
            format!("{what} contains {what_char} at byte {at}"),
        ));
    }
    Ok(())
}

/// The byte offset of the first `%` not followed by two hex digits.
fn check_percent_encoding(s: &str) -> Result<(), usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(i);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Bytes outside RFC 3986's URI characters among printable ASCII.
const NOT_IN_URI: &[u8] = b"\"<>\\^`{|}";

/// The path the route rules and upstream will see must mean the same to
/// both: no `.`/`..` segments (raw or encoded) that upstream would
/// resolve to a different route than ours (say, from a shared market
/// route's cache into a private one), no encoded `/` or `\`, no fragment,
/// valid percent-encoding.
fn check_path_and_query(pq: &str) -> Result<(), Rejection> {
    check_target_chars(pq, "path")?;
    // Printable ASCII that RFC 3986 never allows in a URI. An HTTP client
    // refuses to send such a target (ureq fails to build it), and that
    // local failure must not be retried and counted as an upstream failure
    // that opens a whole scope's circuit breaker for every bot.
    if let Some((at, b)) = pq.bytes().enumerate().find(|(_, b)| NOT_IN_URI.contains(b)) {
        return Err(Rejection::bad(
            "bad_target",
            format!(
                "the target contains `{}` at byte {at}, which a URI never holds (percent-encode it)",
                b as char
            ),
        ));
    }
    if pq.contains('#') {
        return Err(Rejection::bad(
            "bad_target",
            "a fragment (`#...`) is never sent in a request",
        ));
    }
    let path = pq.split('?').next().unwrap_or(pq);
    if !path.starts_with('/') {
        return Err(Rejection::bad("bad_target", "the path must start with `/`"));
    }
    check_percent_encoding(path).map_err(|at| {
        Rejection::bad(
            "bad_target",
            format!("invalid percent-encoding at byte {at} of the path `{path}`"),
        )
    })?;
    for seg in path.split('/') {
        let decoded = percent_decode_str(seg).collect::<Vec<u8>>();
        if decoded == b"." || decoded == b".." {
            return Err(Rejection::bad(
                "bad_target",
                format!("the path `{path}` contains a `.` or `..` segment"),
            ));
        }
        if decoded.len() != seg.len() && decoded.iter().any(|b| matches!(b, b'/' | b'\\')) {
            return Err(Rejection::bad(
                "bad_target",
                format!("the path `{path}` contains an encoded `/` or `\\`"),
            ));
        }
    }
    if path.contains('\\') {
        return Err(Rejection::bad(
            "bad_target",
            format!("the path `{path}` contains `\\`"),
        ));
    }
    Ok(())
}

/// Keeps a client name printable and short: letters, digits and
/// `-_.:@/+` stay, anything else becomes `_`.
fn sanitize_client(raw: &str) -> String {
    raw.trim()
        .chars()
        .take(MAX_CLIENT_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:@/+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Hop-by-hop headers (RFC 9110 7.6.1), the ones the host sets itself,
/// `Proxy-*` and our own `X-Syncoord-*`, plus whatever `Connection` names.
const NOT_FORWARDED: HopHeaders<'static> = HopHeaders {
    names: &[
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        // The host reads the whole body before forwarding; it answers
        // `Expect: 100-continue` itself.
        "expect",
        "proxy-connection",
    ],
    prefixes: &["proxy-", "x-syncoord-"],
    connection_listed: true,
};

/// The bot's headers as they go upstream: without hop-by-hop headers
/// (and those `Connection` names), `Proxy-*`, `Host` and `Content-Length`
/// (the host sets both), our own `X-Syncoord-*`, and names with an
/// underscore (see [`forwarded_headers`]).
pub fn forwardable_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    forwarded_headers(headers, false)
}

/// [`forwardable_headers`], keeping names with an underscore when
/// `underscores` (an upstream's `underscores_in_headers`). By default they
/// are dropped, as nginx does (`underscores_in_headers off`): CGI-style
/// servers map `-` and `_` to the same name, so `CB_ACCESS_KEY` could be
/// what upstream authenticates while the identity is read from
/// `CB-ACCESS-KEY`.
pub fn forwarded_headers(headers: &[(String, String)], underscores: bool) -> Vec<(String, String)> {
    let mut out = strip_hop_headers(headers, &NOT_FORWARDED);
    if !underscores {
        out.retain(|(n, _)| !n.contains('_'));
    }
    out
}

/// Whether a header of this name may carry a secret: `Authorization`,
/// cookies, `CB-ACCESS-*`, names with key, secret, sign, token,
/// passphrase, password, auth or session in them.
fn may_carry_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("cb-access-")
        || lower.contains("cookie")
        || [
            "auth",
            "key",
            "secret",
            "sign",
            "token",
            "passphrase",
            "password",
            "session",
        ]
        .iter()
        .any(|w| lower.contains(w))
}

/// Headers safe to log: values of anything that may carry a secret
/// (`Authorization`, cookies, `CB-ACCESS-*`, names with key, secret, sign,
/// token, passphrase, password, auth or session in them) are replaced.
pub fn redact(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let shown = if may_carry_secret(n) {
                "[redacted]".to_owned()
            } else {
                v.clone()
            };
            (n.clone(), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests;
