//! The proxy daemon: bots point their base URL here.
//!
//! This module only joins parts that each have one job: the HTTP server
//! ([`syncoord_server`]) reads and writes bytes, the shared proxy semantics
//! ([`syncoord_proxy`]) decide what a request means and what each
//! answer looks like on the wire, and one threaded [`Coordinator`] per
//! upstream paces, caches and retries. A connection thread waits for its
//! own answer; no lock is held while it does.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
mod auth_guard;
pub mod ca;
mod exposure;
mod learned;
mod orders;

pub use exposure::{ExposureError, MIN_ADMIN_TOKEN_CHARS};
pub mod notify;
mod probes;
mod reload;
pub mod trust;
mod tunnels;

pub use probes::{LIVEZ_PATH, READYZ_PATH};
use reload::Current;
pub use reload::{ReloadError, Reloaded};

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncoord_core::{CompiledConfig, Response, Timing};
use syncoord_proxy::{
    self as proxy, Endpoint, PerUpstream, Proxy, ProxyConfig, Rejection, RejectionKind, UpstreamId,
};
use syncoord_wire::{Keyring, SecretSource};

use syncoord::{
    CallError, Cluster, Coordinator, HostOptions, HttpUpstream, KeyringCell, Pending,
    UpstreamOptions,
};
use syncoord_server::{
    ClientProbe, Handled, Handler, HttpRequest, Limits, Reply, Server, ShutdownHandle,
};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration does not make a daemon.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// An upstream's client or coordinator could not be set up.
    #[error("upstream `{name}` ({url}): {error}")]
    Upstream {
        /// The upstream's `name`.
        name: String,
        /// Its `url`.
        url: String,
        /// What went wrong.
        error: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address as configured.
        addr: String,
        /// Why the system refused it.
        error: std::io::Error,
    },
}

/// What in the configuration stops the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The proxy configuration (every problem found, each located).
    #[error(transparent)]
    Proxy(#[from] proxy::ConfigFileErrors),
    /// `server.tls_cert` / `server.tls_key` do not make a TLS setup.
    #[error("server.tls_cert: {0}")]
    TlsCert(#[source] ca::CaError),
    /// `server.tls_listen` without certificate files, and the local CA
    /// cannot make one.
    #[error("server.tls_listen: {0}")]
    TlsListen(#[source] Arc<ca::CaError>),
    /// The Host allowlist or the admin token.
    #[error(transparent)]
    Exposure(#[from] ExposureError),
}

/// A running daemon: its listeners and one coordinator per upstream.
pub struct Daemon {
    servers: Vec<Server>,
    hosts: Arc<PerUpstream<Coordinator>>,
    drain: Duration,
    /// `server.state_file`, and the proxy whose upstreams name its entries.
    state: Option<(std::path::PathBuf, Arc<Proxy>)>,
    /// The configuration in effect, swapped by [`Daemon::reload`].
    current: Arc<Current>,
    /// One reload at a time.
    reloading: std::sync::Mutex<()>,
    /// What each upstream's client signs with, in upstream order: a
    /// reload swaps the keys.
    keyrings: Vec<KeyringCell>,
    readiness: Arc<probes::Readiness>,
    access: Arc<access::AccessLog>,
}

/// See [`proxy::OUTCOME_UNKNOWN_STATUS`]: also the answer to a call sent
/// upstream when the daemon had to stop before upstream answered.
pub use proxy::OUTCOME_UNKNOWN_STATUS;

/// Where [`Daemon::start_with_secrets`] usually reads secrets from.
pub use syncoord::HostSecrets;

impl Daemon {
    /// Binds every listener (`server.listen`, which fronts all upstreams,
    /// plus each upstream's own `listen`) and starts the coordinators.
    /// Secrets (signing mode) come from this process's env and from
    /// files relative to the working directory.
    pub fn start(config: ProxyConfig) -> Result<Daemon, DaemonError> {
        Self::start_with_secrets(config, &HostSecrets::default())
    }

    /// [`Self::start`], reading the secrets `[[credentials]]` and
    /// `[[clients]]` name through `secrets`.
    pub fn start_with_secrets(
        config: ProxyConfig,
        secrets: &dyn SecretSource,
    ) -> Result<Daemon, DaemonError> {
        let settings = config.server.clone();
        let exposure =
            Arc::new(exposure::Exposure::new(&config, secrets).map_err(ConfigError::from)?);
        let proxy =
            Arc::new(Proxy::with_secrets(config.clone(), secrets).map_err(ConfigError::from)?);
        for warning in proxy.warnings() {
            tracing::warn!("{warning}");
        }
        for signer in proxy.keyring().iter() {
            tracing::info!(
                credential = signer.name(),
                upstream = signer.upstream(),
                algorithm = signer.algorithm(),
                key = signer.key_id(),
                "signing mode: calls with this credential are signed here"
            );
        }
        let mut keyrings = Vec::new();
        let hosts = Arc::new(proxy.per_upstream(|_, upstream, coordination| {
            let (host, keyring) = start_host(
                &settings,
                config.cluster.as_ref(),
                upstream,
                coordination.clone(),
                proxy.keyring(),
            )?;
            keyrings.push(keyring);
            Ok::<_, DaemonError>(host)
        })?);
        let state = settings
            .state_file
            .as_deref()
            .map(|p| (std::path::PathBuf::from(p), Arc::clone(&proxy)));
        if let Some((path, proxy)) = &state {
            learned::restore(path, proxy, &hosts);
        }
        let limits = server_limits(&settings);
        let ca_dir = settings
            .ca_dir
            .as_deref()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(ca::default_ca_dir);
        let ca = Arc::new(ca::LazyCa::new(ca_dir));
        // A daemon that can intercept CONNECT makes its CA now, not on the
        // first CONNECT: bots started with REQUESTS_CA_BUNDLE pointing at
        // it find the file from their first call.
        let intercepts = config.upstreams.iter().any(|u| {
            std::iter::once(&u.url).chain(&u.origins).any(|o| {
                o.get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            })
        });
        if intercepts {
            // A CA that cannot be opened says so once, and /readyz and
            // /health report it until it can (see `ca::LazyCa`).
            let _ = ca.get();
        }
        let readiness = Arc::new(probes::Readiness::new(intercepts.then(|| Arc::clone(&ca))));
        let access = Arc::new(access::AccessLog::default());
        let auth = Arc::new(auth_guard::AuthGuard::default());
        let orders = Arc::new(orders::OrderBook::default());
        // `tls_listen`: its certificate from files, or the local CA's leaf
        // for the loopback names.
        let tls = match &settings.tls_listen {
            None => None,
            Some(addr) => {
                let config = match (&settings.tls_cert, &settings.tls_key) {
                    (Some(cert), Some(key)) => {
                        ca::server_config_from_files(cert.as_ref(), key.as_ref())
                            .map_err(ConfigError::TlsCert)?
                    }
                    _ => ca
                        .get()
                        .and_then(|ca| {
                            ca.mint(&["localhost", "127.0.0.1", "::1"])
                                .map_err(Arc::new)
                        })
                        .map_err(ConfigError::TlsListen)?,
                };
                Some((addr.clone(), config))
            }
        };
        // (fronts, address, TLS, is the admin listener)
        let mut listeners: Vec<(Option<UpstreamId>, &str, Option<_>, bool)> = proxy
            .listeners()
            .into_iter()
            .map(|(l, a)| (l, a, None, false))
            .collect();
        if let Some((addr, config)) = &tls {
            listeners.push((None, addr.as_str(), Some(Arc::clone(config)), false));
        }
        if let Some(addr) = &settings.admin_listen {
            listeners.push((None, addr.as_str(), None, true));
        }
        let current = Arc::new(Current::new(Arc::clone(&proxy)));
        let tunnels = Arc::new(tunnels::Tunnels::default());
        let mut servers: Vec<Server> = Vec::with_capacity(listeners.len());
        for (listener, addr, tls, admin_only) in listeners {
            // Names are not resolved (see `listen`): an address that does
            // not parse is treated as reachable from outside.
            let bound = addr
                .parse()
                .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
            let handler = Arc::new(ProxyHandler {
                current: Arc::clone(&current),
                hosts: Arc::clone(&hosts),
                listener,
                ca: Arc::clone(&ca),
                admin: exposure.access(bound, admin_only),
                admin_only,
                exposure: Arc::clone(&exposure),
                readiness: Arc::clone(&readiness),
                access: Arc::clone(&access),
                auth: Arc::clone(&auth),
                tunnels: Arc::clone(&tunnels),
                orders: Arc::clone(&orders),
            });
            let bound = match tls {
                None => Server::bind(addr, limits.clone(), handler),
                Some(config) => Server::bind_tls(addr, limits.clone(), handler, config),
            };
            let server = match bound {
                Ok(server) => server,
                Err(error) => {
                    // Release the listeners already bound; the hosts stop
                    // when dropped.
                    for server in servers {
                        server.shutdown_handle().shutdown();
                        server.join();
                    }
                    return Err(DaemonError::Listen {
                        addr: addr.to_owned(),
                        error,
                    });
                }
            };
            tracing::info!(listen = %server.local_addr(), fronts = ?listener.map(|id| &proxy.upstream(id).name), "listening");
            servers.push(server);
        }
        readiness.listening();
        if let (true, Some(ca)) = (intercepts, ca.get().ok()) {
            log_trust_settings(&ca.cert_path(), servers[0].local_addr());
        }
        Ok(Daemon {
            servers,
            hosts,
            drain: settings.drain(),
            state,
            current,
            reloading: std::sync::Mutex::new(()),
            keyrings,
            readiness,
            access,
        })
    }

    /// Address of the main listener (`server.listen`), with the port the
    /// system chose when it was `:0`.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.servers[0].local_addr()
    }

    /// The access log (off until told where to write).
    pub fn access_log(&self) -> Arc<access::AccessLog> {
        Arc::clone(&self.access)
    }

    /// Every listener's address, main listener first.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.servers.iter().map(Server::local_addr).collect()
    }

    /// A handle that stops the daemon from another thread (a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            servers: self.servers.iter().map(Server::shutdown_handle).collect(),
            hosts: Arc::clone(&self.hosts),
            readiness: Arc::clone(&self.readiness),
        }
    }

    /// The shutdown contract (README, "Shutdown"): listeners close at once,
    /// and so does every connection that has not sent a complete request.
    /// Requests still queued get until `server.drain_secs` to be sent;
    /// then those never sent are answered `503 aborted` with `Retry-After`
    /// (nothing reached upstream: retrying is safe). A call already sent
    /// upstream gets its real answer, waiting up to
    /// `server.upstream_timeout_secs` past the drain (the upstream client's
    /// own bound on a call); only a [`Stopper::force`] ends it sooner, with
    /// `422 outcome_unknown` and no retry hint. So this returns within
    /// `drain_secs + upstream_timeout_secs`, plus at most 1.3 s to hand
    /// over the last answers.
    pub fn shutdown(self) {
        self.stopper().stop();
        // Every upstream drains at the same time: the bound is one drain,
        // not one per upstream.
        std::thread::scope(|scope| {
            for host in self.hosts.values() {
                scope.spawn(|| host.shutdown(self.drain));
            }
        });
        for server in self.servers {
            server.join();
        }
        if let Some((path, proxy)) = &self.state {
            learned::save(path, proxy, &self.hosts);
        }
        tracing::info!("stopped");
    }
}

/// Stops a daemon from another thread; see [`Daemon::shutdown`].
#[derive(Clone)]
pub struct Stopper {
    servers: Vec<ShutdownHandle>,
    hosts: Arc<PerUpstream<Coordinator>>,
    readiness: Arc<probes::Readiness>,
}

impl Stopper {
    /// Closes the listeners and every connection without a complete
    /// request; requests being handled are still answered.
    pub fn stop(&self) {
        self.readiness.draining();
        for handle in &self.servers {
            handle.shutdown();
        }
    }

    /// Stops without waiting (a second signal): [`Self::stop`], then every
    /// open request is answered now. Queued ones get `503 aborted` with
    /// `Retry-After`; one whose call is inside upstream gets `422
    /// outcome_unknown` without it (upstream may have acted on it).
    pub fn force(&self) {
        self.stop();
        for host in self.hosts.values() {
            host.stop_now();
        }
    }
}

/// Threads for the daemon's blocking handler work: minting CONNECT
/// leaves (a signature each, cached per host), nothing that waits.
const HANDLER_THREADS: NonZeroUsize = match NonZeroUsize::new(8) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Where the CA is and what each client family must set to trust it,
/// once at start (`syncoord ca` prints the same list).
fn log_trust_settings(pem: &std::path::Path, listen: std::net::SocketAddr) {
    let proxy = format!("http://{listen}");
    tracing::info!(ca = %pem.display(), "CONNECT interception: clients sending through HTTPS_PROXY={proxy} must trust this CA");
    for t in trust::trust_settings(pem, &proxy) {
        tracing::info!(family = t.family, settings = %t.settings, "trust settings");
    }
}

/// The server's limits, every one from `[server]` but the handler
/// threads.
fn server_limits(settings: &proxy::ServerSettings) -> Limits {
    Limits {
        max_header_bytes: settings.max_header_bytes,
        max_headers: settings.max_headers,
        max_body_bytes: settings.max_body_bytes,
        idle_timeout: settings.idle_timeout(),
        header_timeout: settings.header_timeout(),
        body_timeout: settings.body_timeout(),
        write_timeout: settings.write_timeout(),
        max_connections: settings.max_connections,
        event_loops: settings
            .event_loops
            .and_then(NonZeroUsize::new)
            .unwrap_or_else(syncoord_server::default_event_loops),
        busy_poll: Duration::from_micros(settings.busy_poll_us as u64),
        // Only CONNECT interception (minting a leaf) runs there; requests
        // waiting for upstream wait on the event loops.
        handler_threads: HANDLER_THREADS,
    }
}

fn start_host(
    settings: &proxy::ServerSettings,
    cluster: Option<&proxy::ClusterSettings>,
    upstream: &proxy::UpstreamConfig,
    coordination: CompiledConfig,
    keyring: &Keyring,
) -> Result<(Coordinator, KeyringCell), DaemonError> {
    let name = upstream.name.clone();
    let url = upstream.url.as_str();
    let limits = limits_text(upstream);
    let fail = |error: String| DaemonError::Upstream {
        name: name.clone(),
        url: url.to_owned(),
        error,
    };
    // `ca_file`: extra roots beside the public ones (a sandbox, a
    // corporate proxy).
    let extra_roots_pem = match &upstream.ca_file {
        None => None,
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| fail(format!("ca_file `{path}`: cannot read it: {e}")))?,
        ),
    };
    let options = UpstreamOptions {
        connect_timeout: settings.upstream_connect_timeout(),
        timeout: settings.upstream_timeout(),
        max_response_bytes: settings.max_response_bytes as u64,
        extra_roots_pem,
        ..UpstreamOptions::default()
    };
    let upstream = HttpUpstream::new(url, options)
        .map_err(|e| fail(e.to_string()))?
        .with_keyring(keyring.clone());
    let keyring = upstream.keyring_cell();
    let options = HostOptions {
        upstream_threads: settings.upstream_threads,
        thread_name: name.clone(),
        // A call that left gets its real answer unless upstream gives none
        // within the client's own timeout (which covers the whole call).
        in_flight_grace: settings.upstream_timeout(),
        ..HostOptions::default()
    };
    // In a cluster each upstream has budgets and answers of its own: its
    // keys live under `<cluster name>:<hash of its URL>:`, and the limits
    // it paces by are published beside the URL for peers to compare.
    let cluster = cluster
        .map(|c| {
            let fingerprint = syncoord_wire::Fingerprint::new(&name, url, &limits);
            Cluster::for_upstream(c.clone(), fingerprint, options.upstream_threads + 1)
        })
        .transpose()
        .map_err(|e| fail(e.to_string()))?;
    Coordinator::start_in_cluster(coordination, Arc::new(upstream), options, cluster)
        .map(|host| (host, keyring))
        .map_err(|e| fail(e.to_string()))
}

/// The limits an upstream is paced by, rendered stably for its cluster
/// fingerprint: its scopes (rates, bursts, headroom, keying) and the
/// reserve the top class keeps.
fn limits_text(upstream: &proxy::UpstreamConfig) -> String {
    let c = &upstream.coordination;
    serde_json::to_string(&(&c.scopes, c.queue.top_class_reserve)).unwrap_or_default()
}

/// How often a waiting request looks whether its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(250);

/// Answers one listener's requests.
struct ProxyHandler {
    /// The configuration in effect: each request is handled by the one
    /// current when it arrived.
    current: Arc<Current>,
    hosts: Arc<PerUpstream<Coordinator>>,
    /// The upstream this listener is dedicated to, if any.
    listener: Option<UpstreamId>,
    /// Mints the leaves of intercepted CONNECTs.
    ca: Arc<ca::LazyCa>,
    /// The Host allowlist and the admin token.
    exposure: Arc<exposure::Exposure>,
    /// What this listener may answer of the admin endpoints.
    admin: exposure::AdminAccess,
    /// `server.admin_listen`: our endpoints only, nothing proxied.
    admin_only: bool,
    /// What `/readyz` answers.
    readiness: Arc<probes::Readiness>,
    /// One line per answered request, when on.
    access: Arc<access::AccessLog>,
    /// Failed client authentication, throttled per source.
    auth: Arc<auth_guard::AuthGuard>,
    /// `[server] tunnel`: opened and failed, every listener together.
    tunnels: Arc<tunnels::Tunnels>,
    /// Orders whose answer did not reach their bot: counted, recorded.
    orders: Arc<orders::OrderBook>,
}

impl Handler for ProxyHandler {
    fn handle(&self, request: HttpRequest) -> Reply {
        if request.method.eq_ignore_ascii_case("CONNECT") {
            return self.connect(&request);
        }
        match self.answer(request) {
            Submitted::Now(response) => response.into(),
            Submitted::Waiting(waiting) => {
                waiting.wait().map_or(Reply::DropConnection, Reply::from)
            }
        }
    }

    /// Routing, submitting and the endpoints never block: a cache hit or
    /// a refusal is answered on the server's event loop, and only a
    /// request that must wait for its turn upstream takes a pool thread.
    fn handle_nonblocking(&self, request: HttpRequest) -> Handled {
        if request.method.eq_ignore_ascii_case("CONNECT") && request.tunnel.is_none() {
            // Minting a leaf is a signature: done on a pool thread.
            return Handled::Blocking(request);
        }
        match self.answer(request) {
            Submitted::Now(response) => Handled::Now(response.into()),
            // Waits on the event loop: no thread per waiting request.
            Submitted::Waiting(waiting) => Handled::Wait(waiting),
        }
    }
}

/// A request submitted to its coordinator.
enum Submitted {
    /// Answered at once: a cache hit, a refusal.
    Now(Response),
    /// Waiting for its turn upstream (boxed: it is much the larger).
    Waiting(Box<Waiting>),
}

/// A request waiting for its answer, and what waiting needs.
struct Waiting {
    pending: Pending,
    probe: ClientProbe,
    request_timeout: Duration,
    peer: std::net::SocketAddr,
    client: String,
    method: String,
    path: String,
    /// How our own errors look to this upstream's client libraries.
    shape: proxy::ErrorShape,
    /// When it was submitted: `request_timeout` runs from here.
    started: Instant,
    /// The order's `client_order_id`, when its body has one: how the
    /// operator (and the bot) finds it upstream.
    order_id: Option<String>,
    /// A call other than a read: its fate is counted and recorded.
    tracked: Option<Box<orders::Tracked>>,
    /// The access log, when on, with what its line needs (boxed: most
    /// requests are answered at once, and this keeps `Submitted` small).
    access: Option<Box<Access>>,
}

/// What an access line needs beyond the answer.
struct Access {
    log: Arc<access::AccessLog>,
    started: Instant,
    target: String,
    upstream: String,
    /// The route's name and the priority class the request ran in (`-`
    /// before a route was known).
    route: String,
    class: String,
}

impl Access {
    fn record(&self, client: &str, method: &str, response: &Response, timing: Timing) {
        self.log.record(&access::Entry {
            client,
            method,
            target: &self.target,
            upstream: &self.upstream,
            route: &self.route,
            class: &self.class,
            elapsed: self.started.elapsed(),
            timing,
            response,
        });
    }
}

/// How the answering call went, when one did.
fn timing_of(result: &Result<syncoord_core::Answer, CallError>) -> Timing {
    result.as_ref().map(|a| a.timing).unwrap_or_default()
}

/// The daemon's requests wait on the server's event loop: the ticket's
/// completion wakes the loop that owns the connection, which then takes
/// the answer without blocking. The loop also polls at each sweep, which
/// is when the bot's own wait runs out or its hang-up is noticed.
impl syncoord_server::Waiter for Waiting {
    fn start(&mut self, wake: syncoord_server::Wake) {
        self.pending.on_ready(move || wake.wake());
    }

    fn poll(&mut self) -> Option<Reply> {
        if let Some(result) = self.pending.wait_for(Duration::ZERO) {
            return Some(self.answered(result).into());
        }
        if self.started.elapsed() >= self.request_timeout {
            // Cancels it, unless its answer came in meanwhile.
            let pending = std::mem::replace(&mut self.pending, Pending::ended());
            let result = pending.wait_timeout(Duration::ZERO);
            return Some(self.answered(result).into());
        }
        if self.probe.gone() {
            self.client_gone();
            return Some(Reply::DropConnection);
        }
        None
    }
}

impl Waiting {
    /// Waits for the answer; `None` when the client hung up while its
    /// request waited (the request is then cancelled, so a bot that gave
    /// up and retried never has its first order sent after all, and an
    /// abandoned read spends no upstream budget).
    fn wait(self) -> Option<Response> {
        let Waiting {
            mut pending,
            probe,
            request_timeout,
            peer,
            client,
            method,
            path,
            shape,
            started,
            order_id,
            tracked,
            access,
        } = self;
        let result = loop {
            let left = request_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break pending.wait_timeout(Duration::ZERO);
            }
            if let Some(result) = pending.wait_for(left.min(CLIENT_CHECK)) {
                break result;
            }
            if probe.gone() {
                drop(pending);
                tracing::info!(%peer, %client, %method, %path, "client hung up while waiting; request cancelled");
                return None;
            }
        };
        let timing = timing_of(&result);
        let response = call_response(result, shape);
        log_answer(
            &response,
            &peer,
            &client,
            &method,
            &path,
            order_id.as_deref(),
        );
        if let Some(tracked) = &tracked {
            tracked.answered(response.status);
        }
        if let Some(access) = &access {
            access.record(&client, &method, &response, timing);
        }
        Some(response)
    }
}

impl Waiting {
    /// The bot hung up. A request not yet sent is cancelled (a bot that
    /// gave up and retried never has its first order sent after all); one
    /// whose call has left runs on, and its real answer is logged at
    /// `warn`, since nobody is left to hear an order's fate.
    fn client_gone(&mut self) {
        let pending = std::mem::replace(&mut self.pending, Pending::ended());
        if matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
            // A read: dropping it cancels it; its answer, if it left, is
            // cached for the next bot where the route caches.
            drop(pending);
            let Waiting {
                peer,
                client,
                method,
                path,
                ..
            } = &*self;
            tracing::info!(%peer, %client, %method, %path, "client hung up while waiting; request cancelled");
            return;
        }
        let (peer, client, method, path) = (
            self.peer,
            self.client.clone(),
            self.method.clone(),
            self.path.clone(),
        );
        let order_id = self.order_id.clone();
        let (c, m, p, o) = (
            client.clone(),
            method.clone(),
            path.clone(),
            order_id.clone(),
        );
        let tracked = self.tracked.take();
        let late = tracked.as_ref().map(|t| orders::Tracked {
            book: Arc::clone(&t.book),
            upstream: t.upstream.clone(),
            order: t.order.clone(),
        });
        let left = pending.abandon(move |result| {
            let answer = call_response(result, proxy::ErrorShape::Syncoord);
            let status = answer.status;
            if let Some(late) = &late {
                late.late(&answer);
            }
            tracing::warn!(%peer, client = %c, method = %m, path = %p, client_order_id = o.as_deref().unwrap_or("-"), status, "late answer: the bot hung up after its call left for upstream; upstream answered this");
        });
        if left {
            if let Some(tracked) = &tracked {
                tracked.gone();
            }
            tracing::warn!(%peer, %client, %method, %path, client_order_id = order_id.as_deref().unwrap_or("-"), "bot gone: it hung up after its call left for upstream; the answer will be logged when it comes");
        } else {
            tracing::info!(%peer, %client, %method, %path, "client hung up while waiting; request cancelled before it was sent");
        }
    }

    /// The answer to the bot, logged.
    fn answered(&self, result: Result<syncoord_core::Answer, CallError>) -> Response {
        let timing = timing_of(&result);
        let response = call_response(result, self.shape);
        let Waiting {
            peer,
            client,
            method,
            path,
            order_id,
            ..
        } = self;
        log_answer(&response, peer, client, method, path, order_id.as_deref());
        if let Some(tracked) = &self.tracked {
            tracked.answered(response.status);
        }
        if let Some(access) = &self.access {
            access.record(&self.client, &self.method, &response, timing);
        }
        response
    }
}

/// Logs an answer; an order whose outcome is unknown (it left for
/// upstream and no answer came back) at `warn`, with what finds it.
fn log_answer(
    response: &Response,
    peer: &std::net::SocketAddr,
    client: &str,
    method: &str,
    path: &str,
    order_id: Option<&str>,
) {
    if response.status == OUTCOME_UNKNOWN_STATUS {
        tracing::warn!(%peer, %client, %method, %path, client_order_id = order_id.unwrap_or("-"), "order outcome unknown: it left for upstream and no answer came back; check it upstream before sending it again");
    } else {
        tracing::debug!(%peer, %client, %method, %path, status = response.status, "answered");
    }
}

/// The client order id of a JSON body (`client_order_id` on Advanced
/// Trade, `client_oid` on Exchange), if short and printable.
fn client_order_id(body: &[u8]) -> Option<String> {
    if body.is_empty() || body.len() > 64 * 1024 || !body.starts_with(b"{") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    // Advanced Trade's name, then Exchange's.
    let id = ["client_order_id", "client_oid"]
        .iter()
        .find_map(|k| value.get(*k)?.as_str())?;
    (id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())).then(|| id.to_owned())
}

/// The route a request takes and the priority class it runs in, by name,
/// as the coordinator decides them (a request's own priority wins over its
/// route's, within the configured classes).
fn route_and_class<'a>(
    coordination: &'a CompiledConfig,
    request: &syncoord_core::Request,
) -> (&'a str, &'a str) {
    let route = coordination.route(&request.method, &request.path);
    let classes = &coordination.config().priorities;
    let class = request.priority.unwrap_or(route.class).0 as usize;
    let class = classes
        .get(class.min(classes.len().saturating_sub(1)))
        .map_or("-", String::as_str);
    (route.name.as_str(), class)
}

/// The answer to a bot, from how its call ended.
fn call_response(
    result: Result<syncoord_core::Answer, CallError>,
    shape: proxy::ErrorShape,
) -> Response {
    match result {
        Ok(answer) => proxy::answer_response(&answer),
        Err(CallError::Failed(failure)) => proxy::failure_response_shaped(&failure, shape),
        // The bot's own wait (`server.request_timeout_secs`) ran out.
        Err(CallError::TimedOut { waited }) => proxy::timed_out_response(waited, shape),
        Err(CallError::ShuttingDown) => proxy::aborted_response("syncoord is shutting down", shape),
        // Sent, and the daemon was forced to stop before the answer.
        Err(CallError::OutcomeUnknown(why)) => {
            Rejection::outcome_unknown(why).into_response_shaped(shape)
        }
        // Nothing went upstream: the bot's request is at fault.
        Err(CallError::Invalid(why)) => Rejection::bad_request(why).into_response_shaped(shape),
    }
}

impl ProxyHandler {
    /// A CONNECT: intercepted (`200`, then TLS with a leaf for the host)
    /// when a configured upstream answers for `https://host:port`,
    /// otherwise refused; never a tunnel, and no connection is opened
    /// for it.
    fn connect(&self, request: &HttpRequest) -> Reply {
        let peer = request.peer;
        if self.admin_only {
            return exposure::refusal(404, "not_found", "the admin listener proxies nothing")
                .into();
        }
        let proxy = self.current.get();
        // A proxy client authenticates the tunnel once, on the CONNECT;
        // the requests inside inherit its `Proxy-Authorization` (and are
        // each authenticated again by `route`).
        let authenticated = match self.auth.guard(&proxy, peer.ip(), &request.headers, || {
            proxy.authenticate(&request.headers)
        }) {
            Ok(authenticated) => authenticated,
            Err(throttled) => return throttled.into(),
        };
        if let Err(rejection) = authenticated {
            if !auth_guard::is_auth_failure(rejection.kind()) {
                tracing::info!(%peer, status = rejection.status(), kind = rejection.kind().as_str(), "CONNECT refused");
            }
            return rejection.into_proxy_auth_response().into();
        }
        let inherited: Arc<[(String, String)]> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"))
            .cloned()
            .collect();
        let target = match proxy.connect(&request.target) {
            Ok(target) => target,
            Err(rejection) if rejection.kind() == RejectionKind::HostNotConfigured => {
                // Not an upstream: a plain tunnel if `[server] tunnel`
                // lists it, never interception.
                if let Some(to) = proxy.tunnel(&request.target) {
                    let timeout = Duration::from_secs_f64(
                        proxy.config().server.upstream_connect_timeout_secs,
                    );
                    return self.tunnels.open(&to, timeout, peer);
                }
                tracing::info!(%peer, target = %request.target.escape_debug(), status = rejection.status(), "CONNECT refused");
                return rejection.into_response().into();
            }
            Err(rejection) => {
                tracing::info!(%peer, target = %request.target.escape_debug(), status = rejection.status(), "CONNECT refused");
                return rejection.into_response().into();
            }
        };
        let config = self
            .ca
            .get()
            .and_then(|ca| ca.server_config(&target.host).map_err(Arc::new));
        match config {
            Ok(config) => {
                tracing::debug!(%peer, host = %target.host, "CONNECT intercepted");
                Reply::Intercept {
                    config,
                    tunnel: target.base.into(),
                    inherited,
                }
            }
            Err(why) => {
                // Said at `error` once, when the CA failed (`ca::LazyCa`).
                tracing::debug!(%peer, error = %why, "cannot intercept CONNECT: the local CA is not usable");
                Rejection::ca_unavailable(why).into_response().into()
            }
        }
    }

    /// Any request but a CONNECT outside a tunnel, without blocking: our
    /// own endpoints are answered here, the rest routed and submitted.
    fn answer(&self, request: HttpRequest) -> Submitted {
        if let Some(refused) = self.exposure.check_host(&request) {
            return Submitted::Now(refused);
        }
        // Inside a tunnel every request is for the real host, never for
        // our own endpoints.
        if request.tunnel.is_none() {
            if let Some(probe) = probes::probe(&request.method, &request.target) {
                return Submitted::Now(self.readiness.answer(probe));
            }
            if let Some(endpoint) = proxy::endpoint(&request.method, &request.target) {
                if let Some(refused) = self.exposure.check_admin(endpoint, self.admin, &request) {
                    return Submitted::Now(refused);
                }
                let response = self.endpoint(endpoint);
                if self.access.enabled() {
                    Access {
                        log: Arc::clone(&self.access),
                        started: Instant::now(),
                        target: request.target.clone(),
                        upstream: "-".into(),
                        route: "-".into(),
                        class: "-".into(),
                    }
                    .record("-", &request.method, &response, Timing::default());
                }
                return Submitted::Now(response);
            }
        }
        if self.admin_only {
            return Submitted::Now(exposure::refusal(
                404,
                "not_found",
                "the admin listener serves the dashboard, stats, metrics and health only",
            ));
        }
        // Ours, never upstream's: any other method is refused here.
        if request.tunnel.is_none() && request.target.starts_with(orders::ORDERS_PREFIX) {
            if !request.method.eq_ignore_ascii_case("GET") {
                return Submitted::Now(exposure::refusal(
                    405,
                    "method_not_allowed",
                    "the order record answers GET only",
                ));
            }
            let proxy = self.current.get();
            return Submitted::Now(orders::lookup(&self.orders, &proxy, &request));
        }
        self.submit(request)
    }

    /// Routes and submits, without blocking.
    fn submit(&self, request: HttpRequest) -> Submitted {
        let HttpRequest {
            method,
            target,
            headers,
            body,
            peer,
            client: probe,
            tunnel,
            ..
        } = request;
        // Inside an intercepted CONNECT an origin-form target is relative
        // to the tunnel's host: `https://api.coinbase.com` + `/api/v3/...`,
        // routed like any absolute-form request.
        let target = match tunnel {
            Some(base) if target.starts_with('/') => format!("{base}{target}"),
            _ => target,
        };
        let order_id = client_order_id(&body);
        let proxy = self.current.get();
        let started = Instant::now();
        let access = |upstream: &str, route: &str, class: &str| {
            self.access.enabled().then(|| Access {
                log: Arc::clone(&self.access),
                started,
                target: target.clone(),
                upstream: upstream.to_owned(),
                route: route.to_owned(),
                class: class.to_owned(),
            })
        };
        let routed = self.auth.guard(&proxy, peer.ip(), &headers, || {
            proxy.route(self.listener, &method, &target, &headers, body)
        });
        let forward = match routed {
            Err(throttled) => return Submitted::Now(throttled),
            Ok(routed) => routed,
        };
        let forward = match forward {
            Ok(forward) => forward,
            Err(rejection) => {
                // Failed authentication is logged in summary by the guard.
                if !auth_guard::is_auth_failure(rejection.kind()) {
                    tracing::info!(%peer, %method, status = rejection.status(), reason = %rejection.message(), "refused");
                }
                let shape = proxy.error_shape_for(self.listener, &target);
                let response = rejection.into_response_shaped(shape);
                if let Some(access) = access("-", "-", "-") {
                    access.record("-", &method, &response, Timing::default());
                }
                return Submitted::Now(response);
            }
        };
        let host = &self.hosts[forward.upstream];
        let shape = proxy.error_shape(forward.upstream);
        let server = &proxy.config().server;
        let client = forward.request.client.clone();
        let path = forward.request.path.clone();
        // A call syncoord signs at dispatch has no signature to expire: it
        // may wait its `max_wait` to be sent, plus the call itself, and
        // ends sooner only when its bot hangs up (which cancels it).
        let request_timeout = match forward.request.max_wait {
            Some(wait) => server
                .request_timeout()
                .max(wait + server.upstream_timeout()),
            None => server.request_timeout(),
        };
        let upstream_name = &proxy.upstream(forward.upstream).name;
        let access = if self.access.enabled() {
            let (route, class) =
                route_and_class(proxy.coordination(forward.upstream), &forward.request);
            access(upstream_name, route, class)
        } else {
            None
        };
        let tracked = orders::Tracked::for_call(
            &self.orders,
            &proxy,
            &headers,
            &forward.request,
            upstream_name,
            order_id.clone(),
        );
        let mut pending = host.submit(forward.request, forward.outgoing);
        if pending.ticket().is_none() {
            // Answered or refused at once.
            let result = pending
                .wait_for(Duration::ZERO)
                .unwrap_or(Err(CallError::ShuttingDown));
            let timing = timing_of(&result);
            let response = call_response(result, shape);
            if let Some(access) = &access {
                access.record(&client, &method, &response, timing);
            }
            return Submitted::Now(response);
        }
        Submitted::Waiting(Box::new(Waiting {
            pending,
            probe,
            request_timeout,
            peer,
            client,
            method,
            path,
            shape,
            started,
            order_id,
            tracked,
            access: access.map(Box::new),
        }))
    }

    fn endpoint(&self, endpoint: Endpoint) -> Response {
        if !endpoint.reads_stats() {
            // The dashboard page and its assets: static, no snapshots.
            return endpoint.render::<&str>(&[]);
        }
        let proxy = self.current.get();
        let ca_problem = self.readiness.ca_problem();
        let reports: Vec<_> = self
            .hosts
            .iter()
            .map(|(id, host)| {
                let mut stats = host.stats();
                let name = proxy.upstream(id).name.as_str();
                stats.orders = self.orders.counts(name);
                let mut health = stats.health.clone();
                if let Some(why) = &ca_problem {
                    probes::add_ca_reason(&mut health, why);
                }
                (name, stats, health)
            })
            .collect();
        let response = endpoint.render(&reports);
        self.tunnels.add_to(endpoint, response)
    }
}
