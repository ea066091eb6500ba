//! Which upstream a target names (see the parent module's docs), and
//! which CONNECTs may be intercepted.

use percent_encoding::percent_decode_str;

use super::validate::{check_percent_encoding, check_target_chars, sanitize_client};
use super::{ConnectTarget, Proxy, UpstreamId};
use crate::rejection::{Rejection, RejectionKind};
use crate::url::{split_absolute, Origin};
use crate::ErrorShape;

impl Proxy {
    /// Picks the upstream (see the module docs) and returns the path and
    /// query relative to its base URL, exactly as sent.
    pub(super) fn select(
        &self,
        listener: Option<UpstreamId>,
        target: &str,
    ) -> Result<(UpstreamId, String), Rejection> {
        let listener = listener.map(UpstreamId::index);
        if let Some(i) = listener {
            if i >= self.upstreams.len() {
                return Err(Rejection::new(
                    RejectionKind::BadListener,
                    format!("listener {i} fronts no configured upstream"),
                ));
            }
        }
        if let Some(absolute) = absolute_url(target)? {
            let (origin, rest) = split_absolute(&absolute).map_err(|e| {
                Rejection::new(
                    RejectionKind::BadUrl,
                    format!("absolute URL in the request: {e}"),
                )
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
                return Ok((UpstreamId(i), rooted(rel)));
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
                RejectionKind::HostNotConfigured,
                format!("{} is not a configured upstream; {why}", describe(&origin)),
            ));
        }
        if !target.starts_with('/') {
            return Err(Rejection::new(
                RejectionKind::BadTarget,
                "the request-target must be a path starting with `/`, an absolute http(s) URL, or `/` followed by one (ccxt proxyUrl)",
            ));
        }
        if let Some(i) = listener {
            return Ok((UpstreamId(i), target.to_owned()));
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
            return Ok((UpstreamId(i), rooted(rest)));
        }
        match self.default {
            Some(id) => Ok((id, target.to_owned())),
            None => Err(Rejection::new(
                RejectionKind::NoUpstream,
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

    /// The error shape for a request refused before it had an upstream:
    /// that of the upstream its target would pick, if any.
    pub fn error_shape_for(&self, listener: Option<UpstreamId>, target: &str) -> ErrorShape {
        match self.select(listener, target) {
            Ok((id, _)) => self.error_shape(id),
            Err(_) => ErrorShape::Syncoord,
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
            Rejection::new(
                RejectionKind::BadTarget,
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
        let (origin, rest) = split_absolute(&url).map_err(|e| {
            Rejection::new(
                RejectionKind::BadTarget,
                format!("CONNECT {authority}: {e}"),
            )
        })?;
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
                RejectionKind::HostNotConfigured,
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
            Rejection::new(
                RejectionKind::BadUrl,
                format!("invalid percent-encoding at byte {at} of the encoded URL (expected `%` and two hex digits)"),
            )
        })?;
        let decoded = percent_decode_str(inner)
            .decode_utf8()
            .map_err(|_| {
                Rejection::new(
                    RejectionKind::BadUrl,
                    "the encoded URL does not decode to UTF-8",
                )
            })?
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

pub(super) fn path_of(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}
