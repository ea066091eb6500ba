//! Everything the hosts rely on, checked at once: server addresses,
//! limits and TLS files, each upstream (name, URL, origins, prefix,
//! listener, coordination), signing, and what the edge cannot run.

use std::net::SocketAddr;

use syncoord_core::config::Keying;

use super::errors::{errors_without_positions, ConfigFileErrors, Issue};
use super::schema::ProxyConfig;
use super::CheckedUpstream;
use crate::url::BaseUrl;

impl ProxyConfig {
    /// Checks everything the hosts rely on; every problem at once. No
    /// positions: use [`Self::from_toml_str`] for a file.
    pub fn validate(&self) -> Result<(), ConfigFileErrors> {
        errors_without_positions(self.issues())
    }

    /// The Worker shards rate-limit state by Durable Object: one for an
    /// upstream's global scopes, one per credential for per-credential
    /// scopes. A route drawing from both kinds at once could not be
    /// limited by one object, so it is refused here, naming the route.
    pub fn validate_for_edge(&self) -> Result<(), ConfigFileErrors> {
        let mut issues = self.issues();
        issues.extend(self.edge_issues());
        errors_without_positions(issues)
    }

    fn edge_issues(&self) -> Vec<Issue> {
        self.edge_issues_at(&[])
    }

    /// `index[k]` is upstream `k`'s index in the file (`k` itself when
    /// missing).
    pub(super) fn edge_issues_at(&self, index: &[usize]) -> Vec<Issue> {
        let mut issues: Vec<Issue> = crate::signing::spec::edge_issues(&self.credentials)
            .into_iter()
            .map(|(field, message)| Issue::new(field, message))
            .collect();
        for (k, u) in self.upstreams.iter().enumerate() {
            let i = index.get(k).copied().unwrap_or(k);
            if u.ca_file.is_some() {
                issues.push(Issue::new(
                    format!("upstreams[{i}].ca_file"),
                    "the Worker's fetch() trusts Cloudflare's roots only: extra roots are a native-host setting",
                ));
            }
            let c = &u.coordination;
            let mut check = |field: String, name: &str, scopes: &[String]| {
                let (global, per_cred): (Vec<&String>, Vec<&String>) = scopes
                    .iter()
                    .filter(|s| c.scopes.contains_key(*s))
                    .partition(|s| c.scopes.get(*s).map(|sc| sc.per) == Some(Keying::Global));
                if !global.is_empty() && !per_cred.is_empty() {
                    let list = |v: Vec<&String>| {
                        v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    };
                    issues.push(Issue::new(
                        field,
                        format!(
                            "route `{name}` mixes global scopes ({}) with per-credential scopes ({}); on the edge one Durable Object must own all of a request's buckets, so use one kind per route",
                            list(global),
                            list(per_cred)
                        ),
                    ));
                }
            };
            check(
                format!("upstreams[{i}].coordination.defaults.scopes"),
                "default",
                &c.defaults.scopes,
            );
            for (j, r) in c.routes.iter().enumerate() {
                let name = r.name.clone().unwrap_or_else(|| r.path.clone());
                let field = if r.scopes.is_some() {
                    format!("upstreams[{i}].coordination.routes[{j}].scopes")
                } else {
                    format!("upstreams[{i}].coordination.routes[{j}]")
                };
                check(
                    field,
                    &name,
                    r.scopes.as_ref().unwrap_or(&c.defaults.scopes),
                );
            }
        }
        issues
    }

    pub(super) fn issues(&self) -> Vec<Issue> {
        self.issues_at(&[])
    }

    /// Every upstream with its base URL parsed and its coordination
    /// compiled, in config order, or every problem found. The one pass
    /// that both checks and compiles, so [`crate::Proxy::new`] neither
    /// repeats the work nor words an error a second time.
    pub(crate) fn checked_upstreams(&self) -> Result<Vec<CheckedUpstream>, ConfigFileErrors> {
        let (issues, upstreams) = self.check_at(&[]);
        errors_without_positions(issues)?;
        Ok(upstreams)
    }

    /// Every problem, upstream `k` named by `index[k]` (`k` when missing).
    pub(super) fn issues_at(&self, index: &[usize]) -> Vec<Issue> {
        self.check_at(index).0
    }

    /// [`Self::issues_at`], and each upstream that passed its own checks,
    /// parsed and compiled (all of them when there is no issue). The
    /// checks run in the order their problems are reported.
    fn check_at(&self, index: &[usize]) -> (Vec<Issue>, Vec<CheckedUpstream>) {
        let mut out = Issues::default();
        let (server_addr, tls_addr) = self.check_server_addresses(&mut out);
        self.check_tls_files(&mut out);
        self.check_server_limits(&mut out);
        self.check_server_times(&mut out);
        if self.upstreams.is_empty() {
            out.push("upstreams", "at least one upstream is needed".into());
        }
        if let Some(c) = &self.cluster {
            for (field, message) in c.issues() {
                out.push(&format!("cluster.{field}"), message);
            }
        }
        self.check_tunnels(server_addr, tls_addr, &mut out);
        let mut listens = main_listeners(server_addr, tls_addr, &mut out);
        let mut checked = Vec::with_capacity(self.upstreams.len());
        for k in 0..self.upstreams.len() {
            let i = index.get(k).copied().unwrap_or(k);
            if let Some(upstream) = self.check_upstream(k, i, &mut listens, &mut out) {
                checked.push(upstream);
            }
        }
        self.check_signing(index, &mut out);
        (out.0, checked)
    }

    /// `server.tunnel`: entries that parse, and `*` only with every
    /// proxying listener (main, TLS, each upstream's) on loopback.
    fn check_tunnels(
        &self,
        server_addr: Option<SocketAddr>,
        tls_addr: Option<SocketAddr>,
        out: &mut Issues,
    ) {
        if self.server.tunnel.is_empty() {
            return;
        }
        let upstream_listens = self
            .upstreams
            .iter()
            .filter_map(|u| u.listen.as_deref()?.parse::<SocketAddr>().ok());
        let listeners: Vec<SocketAddr> = server_addr
            .into_iter()
            .chain(tls_addr)
            .chain(upstream_listens)
            .collect();
        for (field, message) in crate::tunnel::issues(&self.server.tunnel, &listeners) {
            out.push(&field, message);
        }
    }

    /// `server.listen` and `server.tls_listen` as addresses.
    fn check_server_addresses(&self, out: &mut Issues) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let s = &self.server;
        let server_addr = match s.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                out.push(
                    "server.listen",
                    format!("`{}` is not an ip:port address", s.listen),
                );
                None
            }
        };
        let tls_addr = match s.tls_listen.as_deref().map(str::parse::<SocketAddr>) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                out.push(
                    "server.tls_listen",
                    format!(
                        "`{}` is not an ip:port address",
                        s.tls_listen.as_deref().unwrap_or_default()
                    ),
                );
                None
            }
        };
        (server_addr, tls_addr)
    }

    /// `tls_cert` and `tls_key` come together, and only with a
    /// `tls_listen` to serve them on.
    fn check_tls_files(&self, out: &mut Issues) {
        let s = &self.server;
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => out.push(
                "server.tls_key",
                "`tls_cert` is set without `tls_key`: give both, or neither for the local CA's leaf".into(),
            ),
            (None, Some(_)) => out.push(
                "server.tls_cert",
                "`tls_key` is set without `tls_cert`: give both, or neither for the local CA's leaf".into(),
            ),
            _ => {}
        }
        if s.tls_cert.is_some() && s.tls_listen.is_none() {
            out.push(
                "server.tls_cert",
                "`tls_cert` is set but there is no `tls_listen` to serve it on".into(),
            );
        }
    }

    /// The server's counts and sizes, each within its range.
    fn check_server_limits(&self, out: &mut Issues) {
        let s = &self.server;
        let sizes: [(&str, usize, usize, usize); 8] = [
            ("event_loops", s.event_loops.unwrap_or(1), 1, 1024),
            ("busy_poll_us", s.busy_poll_us, 0, 10_000),
            ("max_header_bytes", s.max_header_bytes, 1024, 1 << 20),
            ("max_headers", s.max_headers, 1, 10_000),
            ("max_body_bytes", s.max_body_bytes, 1, 1 << 30),
            ("max_connections", s.max_connections, 1, 1_000_000),
            ("upstream_threads", s.upstream_threads, 1, 1024),
            ("max_response_bytes", s.max_response_bytes, 1024, 1 << 30),
        ];
        for (name, value, min, max) in sizes {
            if !(min..=max).contains(&value) {
                out.push(
                    &format!("server.{name}"),
                    format!("must be between {min} and {max} (got {value})"),
                );
            }
        }
    }

    /// The server's timeouts: finite, at most a day, more than 0 (the
    /// drain may be 0).
    fn check_server_times(&self, out: &mut Issues) {
        let s = &self.server;
        let times = [
            ("idle_timeout_secs", s.idle_timeout_secs, false),
            ("header_timeout_secs", s.header_timeout_secs, false),
            ("body_timeout_secs", s.body_timeout_secs, false),
            ("write_timeout_secs", s.write_timeout_secs, false),
            ("request_timeout_secs", s.request_timeout_secs, false),
            ("drain_secs", s.drain_secs, true),
            (
                "upstream_connect_timeout_secs",
                s.upstream_connect_timeout_secs,
                false,
            ),
            ("upstream_timeout_secs", s.upstream_timeout_secs, false),
        ];
        for (name, value, zero_ok) in times {
            let ok =
                value.is_finite() && value <= 86_400.0 && (value > 0.0 || zero_ok && value == 0.0);
            if !ok {
                let low = if zero_ok { "0" } else { "more than 0" };
                out.push(
                    &format!("server.{name}"),
                    format!("must be {low} and at most 86400 seconds (got {value})"),
                );
            }
        }
    }

    /// Upstream `k` (`upstreams[i]` in the file): its own fields, and
    /// those it must not share with the upstreams before it. Parsed and
    /// compiled when its URL and coordination are sound.
    fn check_upstream(
        &self,
        k: usize,
        i: usize,
        listens: &mut Vec<(SocketAddr, String)>,
        out: &mut Issues,
    ) -> Option<CheckedUpstream> {
        let u = &self.upstreams[k];
        let f = |field: &str| format!("upstreams[{i}].{field}");
        self.check_upstream_name(k, &f, out);
        let base = BaseUrl::parse(&u.url)
            .map_err(|e| out.push(&f("url"), e.to_string()))
            .ok();
        let mut origins = self.check_origins(k, &f, out);
        if let Some(file) = &u.ca_file {
            if file.trim().is_empty() {
                out.push(&f("ca_file"), "must name a PEM file".into());
            }
        }
        self.check_upstream_prefix(k, &f, out);
        if let Some(l) = &u.listen {
            check_listen(l, f("listen"), listens, out);
        }
        let coordination = u
            .coordination
            .compile()
            .map_err(|errors| {
                for e in errors.0 {
                    out.push(
                        &format!("upstreams[{i}].coordination.{}", e.field),
                        e.problem.to_string(),
                    );
                }
            })
            .ok();
        let (base, coordination) = (base?, coordination?);
        if origins.is_empty() {
            origins.push(base.clone());
        }
        Some(CheckedUpstream {
            base,
            origins,
            prefix: u.prefix.clone(),
            coordination,
        })
    }

    /// Upstream `k`'s name: well formed (it names the upstream in
    /// metrics) and its own.
    fn check_upstream_name(&self, k: usize, f: &dyn Fn(&str) -> String, out: &mut Issues) {
        let u = &self.upstreams[k];
        let name_ok = !u.name.is_empty()
            && u.name.len() <= 64
            && u.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            out.push(
                &f("name"),
                format!(
                    "`{}` must be 1 to 64 letters, digits, `-` or `_` (it names the upstream in metrics)",
                    u.name
                ),
            );
        }
        if self.upstreams[..k].iter().any(|o| o.name == u.name) {
            out.push(
                &f("name"),
                format!("`{}` names more than one upstream", u.name),
            );
        }
    }

    /// Upstream `k`'s `origins`, parsed: each once, and none that an
    /// upstream before it answers for (a request naming it must reach
    /// one upstream).
    fn check_origins(
        &self,
        k: usize,
        f: &dyn Fn(&str) -> String,
        out: &mut Issues,
    ) -> Vec<BaseUrl> {
        let u = &self.upstreams[k];
        let mut origins = Vec::with_capacity(u.origins.len());
        for (j, o) in u.origins.iter().enumerate() {
            match BaseUrl::parse(o) {
                Ok(parsed) => {
                    if origins.contains(&parsed) {
                        out.push(
                            &f(&format!("origins[{j}]")),
                            format!("`{o}` is listed twice"),
                        );
                    } else {
                        origins.push(parsed);
                    }
                }
                Err(e) => out.push(&f(&format!("origins[{j}]")), e.to_string()),
            }
        }
        for (j, parsed) in origins.iter().enumerate() {
            let clash = self.upstreams[..k].iter().find(|other| {
                let theirs: Vec<BaseUrl> = if other.origins.is_empty() {
                    BaseUrl::parse(&other.url).into_iter().collect()
                } else {
                    other
                        .origins
                        .iter()
                        .filter_map(|x| BaseUrl::parse(x).ok())
                        .collect()
                };
                theirs.contains(parsed)
            });
            if let Some(other) = clash {
                out.push(
                    &f(&format!("origins[{j}]")),
                    format!(
                        "`{}` is also an origin of upstream `{}`: a request naming it must reach one upstream",
                        u.origins[j], other.name
                    ),
                );
            }
        }
        origins
    }

    /// Upstream `k`'s `prefix`: a path prefix, and no other upstream's.
    fn check_upstream_prefix(&self, k: usize, f: &dyn Fn(&str) -> String, out: &mut Issues) {
        let Some(p) = &self.upstreams[k].prefix else {
            return;
        };
        if let Err(e) = check_prefix(p) {
            out.push(&f("prefix"), e.to_string());
        }
        if self.upstreams[..k]
            .iter()
            .any(|o| o.prefix.as_deref() == Some(p.as_str()))
        {
            out.push(
                &f("prefix"),
                format!("`{p}` is the prefix of another upstream"),
            );
        }
    }

    /// Signing mode: `[[credentials]]` and `[[clients]]` against the
    /// upstreams, and each upstream's `signing.deadline_secs`.
    fn check_signing(&self, index: &[usize], out: &mut Issues) {
        let names: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
        for (field, message) in
            crate::signing::spec::check(&self.credentials, &self.clients, &names)
        {
            out.0.push(Issue::new(field, message));
        }
        // A ceiling is a class every upstream the client reaches has.
        for (c, client) in self.clients.iter().enumerate() {
            let Some(class) = &client.max_priority else {
                continue;
            };
            let missing: Vec<&str> = self
                .upstreams
                .iter()
                .filter(|u| u.coordination.class_id(class).is_none())
                .map(|u| u.name.as_str())
                .collect();
            if !missing.is_empty() {
                out.push(
                    &format!("clients[{c}].max_priority"),
                    format!(
                        "unknown priority class `{class}` on upstream(s) {} (a client's ceiling must be a class of every upstream)",
                        missing.join(", ")
                    ),
                );
            }
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            let d = u.signing.deadline_secs;
            if !(d.is_finite() && d > 0.0 && d <= 86_400.0) {
                out.0.push(Issue::new(
                    format!(
                        "upstreams[{}].signing.deadline_secs",
                        index.get(i).copied().unwrap_or(i)
                    ),
                    format!("{d} must be more than 0 and at most 86400 seconds"),
                ));
            }
        }
    }
}

/// Problems found so far, in the order they are reported.
#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, field: &str, message: String) {
        self.0.push(Issue::new(field, message));
    }
}

/// The main listeners' addresses, each named by its field; a `tls_listen`
/// on the main listener's address is refused.
fn main_listeners(
    server_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    out: &mut Issues,
) -> Vec<(SocketAddr, String)> {
    let mut listens: Vec<(SocketAddr, String)> = server_addr
        .map(|a| vec![(a, "server.listen".to_owned())])
        .unwrap_or_default();
    if let Some(a) = tls_addr {
        if let Some((_, other)) = listens.iter().find(|(o, _)| a.port() != 0 && *o == a) {
            out.push(
                "server.tls_listen",
                format!("`{a}` is also used by {other}"),
            );
        }
        listens.push((a, "server.tls_listen".to_owned()));
    }
    listens
}

/// An upstream's own `listen` (`field`): an address no other listener
/// uses (port 0 excepted), added to `listens`.
fn check_listen(l: &str, field: String, listens: &mut Vec<(SocketAddr, String)>, out: &mut Issues) {
    match l.parse::<SocketAddr>() {
        Err(_) => out.push(&field, format!("`{l}` is not an ip:port address")),
        Ok(a) => {
            if let Some((_, other)) = listens.iter().find(|(o, _)| a.port() != 0 && *o == a) {
                out.push(&field, format!("`{l}` is also used by {other}"));
            }
            listens.push((a, field));
        }
    }
}

/// Why an upstream's `prefix` is refused; the variants hold the prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PrefixError {
    #[error("`{0}` must start with `/`")]
    NoLeadingSlash(String),
    #[error("`/` would capture every request; leave the prefix out instead")]
    Root,
    #[error("`{0}`: segments must be letters, digits, `-`, `_`, `.` or `~`, with no empty, `.` or `..` segment and no trailing `/`")]
    Segments(String),
}

/// A path prefix: `/` then segments of unreserved characters, no trailing
/// slash.
pub(crate) fn check_prefix(p: &str) -> Result<(), PrefixError> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(PrefixError::NoLeadingSlash(p.to_owned()));
    };
    if rest.is_empty() {
        return Err(PrefixError::Root);
    }
    for seg in rest.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if !ok {
            return Err(PrefixError::Segments(p.to_owned()));
        }
    }
    Ok(())
}
