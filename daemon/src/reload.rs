//! Hot reload: a new configuration read, checked and compiled, then
//! swapped in at once, with everything whose identity survives kept (see
//! [`Daemon::reload`]).

use std::sync::{Arc, PoisonError, RwLock};

use syncoord_proxy::{ConfigFileErrors, Proxy, ProxyConfig, ServerSettings};
use syncoord_wire::SecretSource;

use crate::Daemon;

/// The configuration in effect. A request takes the one current when it
/// arrives (a read lock held for an `Arc` clone) and keeps it to the end.
pub(crate) struct Current(RwLock<Arc<Proxy>>);

impl Current {
    pub(crate) fn new(proxy: Arc<Proxy>) -> Self {
        Current(RwLock::new(proxy))
    }

    pub(crate) fn get(&self) -> Arc<Proxy> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, proxy: Arc<Proxy>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = proxy;
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reloaded {
    /// Settings the new file changes that only a restart applies, by
    /// path (`server.listen`, `upstreams.advanced.coordination.scopes`):
    /// each keeps its old value until then; everything else is in effect.
    pub needs_restart: Vec<String>,
}

/// Why a reload was refused; the configuration running before keeps
/// running, unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file has problems (every one, each located when the file
    /// text was given to the parser).
    #[error(transparent)]
    Config(#[from] ConfigFileErrors),
    /// The new file adds, removes, renames or reorders upstreams: each has
    /// its own coordinator, listeners and budgets, so this needs a restart.
    #[error("needs a restart: the upstreams changed (running: {running}; in the file: {file})")]
    Upstreams {
        /// The running upstreams' names.
        running: String,
        /// The file's.
        file: String,
    },
}

/// `server` fields a reload applies at once (the request deadline, and
/// the front door's limits through [`syncoord_server::Server::set_limits`]);
/// every other one is bound into listeners, event loops or upstream
/// clients at start.
const LIVE_SERVER_FIELDS: [&str; 10] = [
    "request_timeout_secs",
    "max_header_bytes",
    "max_headers",
    "max_body_bytes",
    "idle_timeout_secs",
    "header_timeout_secs",
    "body_timeout_secs",
    "write_timeout_secs",
    "max_connections",
    "busy_poll_us",
];

/// `running` with the [`LIVE_SERVER_FIELDS`] of `new`.
fn live_server_settings(running: &ServerSettings, new: &ServerSettings) -> ServerSettings {
    ServerSettings {
        request_timeout_secs: new.request_timeout_secs,
        max_header_bytes: new.max_header_bytes,
        max_headers: new.max_headers,
        max_body_bytes: new.max_body_bytes,
        idle_timeout_secs: new.idle_timeout_secs,
        header_timeout_secs: new.header_timeout_secs,
        body_timeout_secs: new.body_timeout_secs,
        write_timeout_secs: new.write_timeout_secs,
        max_connections: new.max_connections,
        busy_poll_us: new.busy_poll_us,
        ..running.clone()
    }
}

impl Daemon {
    /// Applies `config` to the running daemon (what `SIGHUP` and
    /// `syncoord reload` do), or refuses it with every problem, leaving
    /// the running configuration as it was.
    ///
    /// Applied at once: client tokens and what each client may use,
    /// `[[credentials]]` and their keys (read again; a call queued for a
    /// credential that is gone fails without being sent),
    /// routes, TTLs, defaults, queue length and deadlines, retries, health
    /// thresholds, `upstreams.signing`, `prefix`, `origins`,
    /// `server.request_timeout_secs` and the front door's limits
    /// (`server.max_header_bytes`, `max_headers`, `max_body_bytes`, the
    /// idle/header/body/write timeouts, `max_connections`, `busy_poll_us`:
    /// open connections use them from their next request), scope budgets (rate, period, burst,
    /// headroom: each bucket's level carries over at the new pace). Kept
    /// across it: the cache, the
    /// limiter's buckets and levels, queued requests and calls in flight
    /// (each keeps the class, cost and buckets it was admitted under),
    /// connections, the local CA and the stats. Settings only a restart
    /// can apply (listeners, `event_loops` and every other `server` field, `cluster`,
    /// an upstream's `url`, `listen`
    /// and `ca_file`, and the scope set (names, `per`), classes and sizes
    /// of its coordination, see [`syncoord_core::needs_restart`]) keep their running value and
    /// are listed in [`Reloaded::needs_restart`]; a changed list of
    /// upstreams is refused.
    ///
    /// Secrets are read again through `secrets` (tokens from env or files).
    pub fn reload(
        &self,
        config: ProxyConfig,
        secrets: &dyn SecretSource,
    ) -> Result<Reloaded, ReloadError> {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let running = self.current.get();
        let (config, needs_restart) = keep_what_needs_a_restart(running.config(), config)?;
        let proxy = Arc::new(Proxy::with_secrets(config, secrets)?);
        for warning in proxy.warnings() {
            tracing::warn!("{warning}");
        }
        // The coordination of each upstream was checked above: none of
        // them refuses it.
        for (id, host) in self.hosts.iter() {
            if let Err(e) = host.reconfigure(proxy.coordination(id).clone()) {
                tracing::error!(upstream = %proxy.upstream(id).name, error = %e, "reload: a coordinator refused its new rules; it keeps its old ones");
            }
        }
        // Keys are read again (a rotated key file, a credential added or
        // removed): each upstream signs with them from its next attempt.
        for cell in &self.keyrings {
            cell.set(proxy.keyring().clone());
        }
        // The front door's limits (sizes, timeouts, connection bound,
        // busy polling): each listener's loops take them on their next turn.
        let limits = crate::server_limits(&proxy.config().server);
        for server in &self.servers {
            server.set_limits(limits.clone());
        }
        self.current.set(proxy);
        // A CA that could not be opened is tried again now: fixing its
        // folder needs no restart.
        self.readiness.retry_ca();
        for field in &needs_restart {
            tracing::warn!(%field, "reload: changed in the file, needs a restart; the running value is kept");
        }
        tracing::info!("configuration reloaded");
        Ok(Reloaded { needs_restart })
    }
}

/// `new` with every setting that cannot change live set back to the
/// running one's, and the paths of those it had changed.
fn keep_what_needs_a_restart(
    running: &ProxyConfig,
    mut new: ProxyConfig,
) -> Result<(ProxyConfig, Vec<String>), ReloadError> {
    let names = |c: &ProxyConfig| {
        c.upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names(running) != names(&new) {
        return Err(ReloadError::Upstreams {
            running: names(running),
            file: names(&new),
        });
    }
    let mut changed = Vec::new();
    changed.extend(
        changed_fields(&running.server, &new.server)
            .into_iter()
            .filter(|f| !LIVE_SERVER_FIELDS.contains(&f.as_str()))
            .map(|f| format!("server.{f}")),
    );
    new.server = live_server_settings(&running.server, &new.server);
    if new.cluster != running.cluster {
        changed.push("cluster".into());
        new.cluster = running.cluster.clone();
    }
    for (old, up) in running.upstreams.iter().zip(&mut new.upstreams) {
        let at = format!("upstreams.{}", up.name);
        for (field, same) in [
            ("url", old.url == up.url),
            ("listen", old.listen == up.listen),
            ("ca_file", old.ca_file == up.ca_file),
        ] {
            if !same {
                changed.push(format!("{at}.{field}"));
            }
        }
        up.url = old.url.clone();
        up.listen = old.listen.clone();
        up.ca_file = old.ca_file.clone();
        let fixed = syncoord_core::needs_restart(&old.coordination, &up.coordination);
        if !fixed.is_empty() {
            // Its rules are kept whole: a route may name a scope or class
            // the running coordinator does not have.
            changed.extend(fixed.iter().map(|f| format!("{at}.coordination.{f}")));
            up.coordination = old.coordination.clone();
            up.preset = old.preset;
            up.preset_routes = old.preset_routes;
        }
    }
    Ok((new, changed))
}

/// The top-level fields of two serializable values that differ.
fn changed_fields<T: serde::Serialize>(a: &T, b: &T) -> Vec<String> {
    let (Ok(a), Ok(b)) = (toml::Table::try_from(a), toml::Table::try_from(b)) else {
        return vec!["(all)".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_needs_a_restart_keeps_its_running_value() {
        let running = ProxyConfig::default();
        let mut new = running.clone();
        new.server.listen = "127.0.0.1:9999".into();
        new.server.request_timeout_secs = 5.0;
        new.server.max_body_bytes = 77;
        new.server.max_connections = 5;
        new.server.event_loops = Some(3);
        new.upstreams[0].url = "https://elsewhere.example".into();
        new.upstreams[0].coordination.routes[0].ttl_secs = Some(3.0);
        new.upstreams[0]
            .coordination
            .scopes
            .values_mut()
            .for_each(|s| s.rate = 1.0);
        let scopes = &mut new.upstreams[1].coordination.scopes;
        let extra = scopes.values().next().expect("the preset's").clone();
        scopes.insert("extra".into(), extra);
        new.upstreams[1].coordination.routes[0].ttl_secs = Some(4.0);
        let (kept, changed) = keep_what_needs_a_restart(&running, new).unwrap();
        assert_eq!(
            changed,
            [
                "server.event_loops",
                "server.listen",
                "upstreams.advanced.url",
                "upstreams.exchange.coordination.scopes"
            ]
        );
        assert_eq!(kept.server.listen, running.server.listen);
        assert_eq!(kept.server.event_loops, running.server.event_loops);
        assert_eq!(kept.server.request_timeout_secs, 5.0, "live");
        assert_eq!(kept.server.max_body_bytes, 77, "live");
        assert_eq!(kept.server.max_connections, 5, "live");
        assert_eq!(kept.upstreams[0].url, running.upstreams[0].url);
        assert_eq!(
            kept.upstreams[0].coordination.routes[0].ttl_secs,
            Some(3.0),
            "live"
        );
        assert!(
            kept.upstreams[0]
                .coordination
                .scopes
                .values()
                .all(|s| s.rate == 1.0),
            "budgets are live"
        );
        assert_eq!(
            kept.upstreams[1].coordination, running.upstreams[1].coordination,
            "kept whole"
        );
    }

    #[test]
    fn another_list_of_upstreams_is_refused() {
        let running = ProxyConfig::default();
        let mut new = running.clone();
        new.upstreams.pop();
        let err = keep_what_needs_a_restart(&running, new).unwrap_err();
        assert!(
            err.to_string()
                .contains("running: advanced, exchange; in the file: advanced"),
            "{err}"
        );
    }
}
