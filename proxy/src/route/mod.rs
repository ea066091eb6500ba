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

mod credentials;
mod headers;
mod identity;
mod select;
mod upstreams;
mod validate;

use std::sync::Arc;

use crate::config::{CheckedUpstream, ProxyConfig, UpstreamConfig};
use crate::rejection::{Rejection, RejectionKind};
use crate::signing::{self, Keyring, Loaded, NoSecrets, SecretSource};
use crate::url::BaseUrl;
use crate::{ConfigFileErrors, ErrorShape, Outgoing};
use syncoord_core::config::Keying;
use syncoord_core::{CompiledConfig, Duration, Method, Request};

pub use headers::{forwardable_headers, forwarded_headers, redact};
use identity::{client_name, client_share, priority, within_ceiling};
use select::path_of;
pub use upstreams::{PerUpstream, UpstreamId};
pub use validate::MAX_CLIENT_LEN;
use validate::{check_headers, check_method, check_path_and_query, check_target_chars};

/// A request ready for an upstream's coordinator.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The upstream it goes to: the key of that upstream's coordinator in
    /// the host's [`PerUpstream`].
    pub upstream: UpstreamId,
    /// What the upstream's coordinator decides on.
    pub request: Request,
    /// What is sent upstream if a call is made.
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
    /// The Durable Object's name.
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
    default: Option<UpstreamId>,
    /// Signing mode: the keys, the clients, and what loading warned of.
    signing: Loaded,
    /// Per upstream: whether it has `[[credentials]]` (signing mode).
    signed: Vec<bool>,
    /// Per upstream: whether any of its routes (or its defaults) answers
    /// only authenticated requests; without one, an anonymous request
    /// needs no route lookup here.
    may_require_credential: Vec<bool>,
    /// `[server] tunnel`: where a `CONNECT` not intercepted may go.
    tunnels: crate::tunnel::TunnelRules,
}

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
        let default = config
            .upstreams
            .iter()
            .position(|u| u.prefix.is_none())
            .map(UpstreamId);
        let signing = signing::load(&config.credentials, &config.clients, secrets)
            .map_err(ConfigFileErrors::unlocated)?;
        let signed = config
            .upstreams
            .iter()
            .map(|u| config.credentials.iter().any(|c| c.upstream == u.name))
            .collect();
        let may_require_credential = config
            .upstreams
            .iter()
            .map(|u| {
                let c = &u.coordination;
                c.defaults.credential_required
                    || c.routes.iter().any(|r| r.credential_required == Some(true))
            })
            .collect();
        let tunnels = crate::tunnel::TunnelRules::new(&config.server.tunnel);
        Ok(Proxy {
            tunnels,
            config: Arc::new(config),
            upstreams,
            default,
            signing,
            signed,
            may_require_credential,
        })
    }

    /// Where `CONNECT authority` may open a plain tunnel (`[server]
    /// tunnel`), when it is not a configured upstream's origin (those are
    /// intercepted: ask [`Self::connect`] first).
    pub fn tunnel(&self, authority: &str) -> Option<crate::tunnel::TunnelTarget> {
        self.tunnels.allows(authority)
    }

    /// The credentials loaded for signing mode (empty without any).
    pub fn keyring(&self) -> &Keyring {
        &self.signing.keyring
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

    /// The configuration it was built from.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Every upstream's id, in config order.
    pub fn upstream_ids(&self) -> impl ExactSizeIterator<Item = UpstreamId> {
        (0..self.upstreams.len()).map(UpstreamId)
    }

    /// The id of the upstream at `index` in [`ProxyConfig::upstreams`].
    pub fn upstream_id(&self, index: usize) -> Option<UpstreamId> {
        (index < self.upstreams.len()).then_some(UpstreamId(index))
    }

    /// One `T` per upstream, made by `make` in config order; the first
    /// error stops it. What a host keys its coordinators by, so that a
    /// routed request always finds its own.
    pub fn per_upstream<T, E>(
        &self,
        mut make: impl FnMut(UpstreamId, &UpstreamConfig, &CompiledConfig) -> Result<T, E>,
    ) -> Result<PerUpstream<T>, E> {
        self.config
            .upstreams
            .iter()
            .zip(&self.upstreams)
            .enumerate()
            .map(|(i, (config, checked))| make(UpstreamId(i), config, &checked.coordination))
            .collect::<Result<Vec<T>, E>>()
            .map(PerUpstream::new)
    }

    /// Upstream `id` as configured.
    pub fn upstream(&self, id: UpstreamId) -> &UpstreamConfig {
        &self.config.upstreams[id.0]
    }

    /// Upstream `id`'s base URL, parsed: what its calls are signed for.
    pub fn base_url(&self, id: UpstreamId) -> &BaseUrl {
        &self.upstreams[id.0].base
    }

    /// Every address to listen on: the main listener (`None`, all
    /// upstreams) then each dedicated one (`Some(upstream)`), as the
    /// `listener` argument of [`Self::route`] expects.
    pub fn listeners(&self) -> Vec<(Option<UpstreamId>, &str)> {
        let mut out = vec![(None, self.config.server.listen.as_str())];
        out.extend(
            self.config
                .upstreams
                .iter()
                .enumerate()
                .filter_map(|(i, u)| u.listen.as_deref().map(|l| (Some(UpstreamId(i)), l))),
        );
        out
    }

    /// Every upstream's compiled coordination config, in config order.
    pub fn coordinations(&self) -> impl Iterator<Item = &CompiledConfig> {
        self.upstreams.iter().map(|u| &u.coordination)
    }

    /// The compiled coordination config of upstream `id`: what its
    /// [`syncoord_core::Coordinator`] runs on.
    pub fn coordination(&self, id: UpstreamId) -> &CompiledConfig {
        &self.upstreams[id.0].coordination
    }

    /// How our own errors for upstream `id` are shaped (by its preset).
    pub fn error_shape(&self, id: UpstreamId) -> ErrorShape {
        ErrorShape::for_preset(self.upstream(id).preset)
    }

    /// Turns a bot's request into an upstream call, or says why not.
    ///
    /// `listener` is `Some(id)` when the request arrived on upstream `id`'s
    /// dedicated listener; `target` is the request-target exactly as sent.
    pub fn route(
        &self,
        listener: Option<UpstreamId>,
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
                RejectionKind::MethodNotAllowed,
                "CONNECT is not intercepted by this host: send requests to this proxy directly, or as `/https://host/path` (ccxt proxyUrl)",
            ));
        }
        if crate::endpoints::is_endpoint_path(target) && !matches!(method.as_str(), "GET" | "HEAD")
        {
            return Err(Rejection::new(
                RejectionKind::MethodNotAllowed,
                format!("{} accepts only GET and HEAD", path_of(target)),
            ));
        }
        let (upstream, path_and_query) = self.select(listener, target)?;
        check_path_and_query(&path_and_query)?;
        let up = self.upstream(upstream);
        let compiled = self.coordination(upstream);
        let method_id = Method::new(&method);
        let path_only = path_and_query.split('?').next().unwrap_or("");
        // The route is looked up here only when its answer decides (two
        // credentials at once, or none where one may be required): the
        // coordinator looks it up anyway, remembered, and that is the one
        // lookup a hit pays.
        let rule = || compiled.route(&method_id, path_only);
        let token_client = self.authenticate(headers)?;
        let signer = self.signer_for(upstream, token_client, headers)?;
        let (forwarded, credential) = self.identify(upstream, signer, headers, &rule)?;
        self.check_credential_present(upstream, credential.as_ref(), (&method, path_only), &rule)?;
        let client = client_name(headers, token_client, credential.as_ref());
        let policy = match (token_client, signer) {
            (Some(c), _) => Some(c),
            (None, Some(_)) => None,
            (None, None) => self.client_by_api_key(upstream, &forwarded),
        };
        let priority = within_ceiling(
            &up.coordination,
            policy,
            priority(&up.coordination, headers)?,
            || rule().class,
        )?;

        let mut request = Request::new(method_id, &path_and_query, &client);
        request.credential = credential;
        if signer.is_some() {
            request.max_wait = Some(Duration::from_secs_f64(up.signing.deadline_secs));
        }
        request.priority = priority;
        request.freshness = syncoord_core::Freshness::from_headers(headers);
        request.share = policy.and_then(client_share);

        let body = if matches!(method.as_str(), "GET" | "HEAD") {
            Vec::new()
        } else {
            body
        };
        let headers = syncoord_wire::Headers::from(forwarded);
        // What a `Vary`'d answer is selected by: exactly what goes
        // upstream, shared with the outgoing call (no header is copied).
        request.headers = headers.shared();
        let outgoing = Outgoing {
            method,
            path_and_query,
            headers,
            body,
            sign_as: signer.map(|s| Arc::from(s.name())),
        };
        Ok(Forward {
            upstream,
            request,
            outgoing,
        })
    }

    /// The Durable Object owning `forward`'s buckets: `<upstream>/global`
    /// when the matched route draws only from global scopes (or none),
    /// `<upstream>/cred/<identity>` (`anonymous` without a credential) when
    /// only from per-credential ones. Routes mixing both are refused by
    /// [`ProxyConfig::validate_for_edge`]; for them this names the
    /// credential's shard.
    pub fn shard(&self, forward: &Forward) -> ShardKey {
        let name = &self.upstream(forward.upstream).name;
        let req = &forward.request;
        let rules = self.coordination(forward.upstream);
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

#[cfg(test)]
mod tests;
