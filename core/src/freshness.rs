//! How fresh an answer must be, and how long upstream lets us keep one:
//! the `Cache-Control` directives (RFC 9111 §5.2) the coordinator acts on.
//!
//! On a bot's request ([`Freshness::from_headers`], §5.2.1): `max-age=N`
//! (only an answer at most N s old), `no-cache` (only an answer from a call
//! that left after the request arrived), `max-stale[=N]` (an expired answer
//! will do, up to N s past expiry, rather than wait), `only-if-cached`
//! (the cache or nothing, never a wait), and `X-Syncoord-Max-Age: N` for
//! clients that cannot set `Cache-Control`. The stricter of two ages wins.
//!
//! On upstream's answer ([`Storable::from_headers`], §5.2.2): `no-store`,
//! `no-cache`, `private`, `s-maxage`, `max-age`, `must-revalidate` and
//! `proxy-revalidate`, and `Expires`, `Date` and `Age` (§4.2.1, §5.1,
//! §5.3). Which wins over the route's own TTL is decided in
//! [`Storable::ttl`].
//!
//! Parsing never fails: a directive that is malformed or unknown is
//! ignored, as RFC 9111 §5.2 asks, so a bot's odd header never costs it
//! its answer.

use web_time::Duration;

/// The header for clients that cannot set `Cache-Control`: whole or
/// fractional seconds, like `max-age`.
pub const MAX_AGE_HEADER: &str = "X-Syncoord-Max-Age";

/// What a request asks of the age of its answer. The default asks nothing:
/// any fresh cache entry will do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Only an answer at most this old (`max-age`, `X-Syncoord-Max-Age`).
    pub max_age: Option<Duration>,
    /// Only an answer from a call that left after the request arrived
    /// (`no-cache`; the same as `max-age=0`).
    pub no_cache: bool,
    /// An expired answer up to this long past its expiry will do instead
    /// of waiting (`max-stale`; without a value, any expired entry still
    /// held).
    pub max_stale: Option<Duration>,
    /// The cache or a 504, never a wait (`only-if-cached`).
    pub only_if_cached: bool,
}

/// The longest age a directive may name: more than any entry can reach,
/// far from `Instant` overflow.
const MAX_DIRECTIVE: Duration = Duration::from_secs(1_000_000_000);

impl Freshness {
    /// Reads the request's `Cache-Control` (every such header, comma
    /// separated directives, case-insensitive names) and
    /// `X-Syncoord-Max-Age`.
    pub fn from_headers(headers: &[(String, String)]) -> Self {
        let mut f = Freshness::default();
        let mut syncoord_max_age = None;
        // One pass over the headers; a name of another length is skipped
        // without comparing a byte.
        for (name, value) in headers {
            if name.len() == MAX_AGE_HEADER.len() && name.eq_ignore_ascii_case(MAX_AGE_HEADER) {
                // The first one counts, as `header()` reads it.
                if syncoord_max_age.is_none() {
                    syncoord_max_age = Some(value.as_str());
                }
            } else if name.len() == 13 && name.eq_ignore_ascii_case("cache-control") {
                for (directive, arg) in directives(value) {
                    if directive.eq_ignore_ascii_case("max-age") {
                        f.tighten(arg.and_then(seconds));
                    } else if directive.eq_ignore_ascii_case("no-cache") {
                        f.no_cache = true;
                    } else if directive.eq_ignore_ascii_case("max-stale") {
                        f.max_stale = match arg {
                            None => Some(MAX_DIRECTIVE),
                            Some(a) => seconds(a).or(f.max_stale),
                        };
                    } else if directive.eq_ignore_ascii_case("only-if-cached") {
                        f.only_if_cached = true;
                    }
                }
            }
        }
        if let Some(v) = syncoord_max_age {
            f.tighten(seconds(v));
        }
        f
    }

    fn tighten(&mut self, age: Option<Duration>) {
        if let Some(age) = age {
            self.max_age = Some(self.max_age.map_or(age, |m| m.min(age)));
        }
    }

    /// Whether the request asks for anything a plain read does not.
    pub fn is_default(&self) -> bool {
        *self == Freshness::default()
    }

    /// The oldest an answer may be, if the request bounds it (`no-cache`
    /// bounds it at zero).
    pub fn age_limit(&self) -> Option<Duration> {
        if self.no_cache {
            Some(Duration::ZERO)
        } else {
            self.max_age
        }
    }
}

/// `name[=value]` pairs of a `Cache-Control` value; quoted values lose
/// their quotes.
fn directives(value: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    value.split(',').filter_map(|d| {
        let d = ows(d);
        if d.is_empty() {
            return None;
        }
        Some(match d.split_once('=') {
            Some((n, v)) => (ows(n), Some(ows(v).trim_matches('"'))),
            None => (d, None),
        })
    })
}

/// Without the optional whitespace (spaces and tabs, RFC 9110 §5.6.3)
/// around it: cheaper than `str::trim`, which looks for every Unicode
/// space.
fn ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Delta-seconds (RFC 9111 §1.2.2): digits, read as seconds; a fraction
/// is accepted from `X-Syncoord-Max-Age`. Anything else is ignored.
fn seconds(v: &str) -> Option<Duration> {
    let v = ows(v);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    // Whole seconds, as RFC 9111 writes them, without a float parse.
    if v.len() <= 9 && !v.contains('.') {
        let n: u64 = v.parse().ok()?;
        return Some(Duration::from_secs(n).min(MAX_DIRECTIVE));
    }
    let n: f64 = v.parse().ok()?;
    n.is_finite()
        .then(|| Duration::from_secs_f64(n.min(MAX_DIRECTIVE.as_secs_f64())))
}

/// What upstream's `Cache-Control` says about keeping its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Storable {
    /// `no-store`, or `no-cache` (which asks for revalidation before every
    /// use; the cache does not revalidate, so it does not keep it).
    no_store: bool,
    /// `private`: for one user's cache only.
    private: bool,
    /// `s-maxage`, else `max-age`, else `Expires` less `Date` (RFC 9111
    /// §4.2.1), less upstream's `Age`: how much longer upstream lets a
    /// shared cache keep it.
    lifetime: Option<Duration>,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: once stale it
    /// must not be served (RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10), not
    /// even when upstream fails.
    pub(crate) no_stale: bool,
    /// Upstream's `Age` (zero without one): the answer's age on arrival.
    pub(crate) age: Duration,
}

impl Storable {
    /// Reads upstream's `Cache-Control`, `Expires`, `Date` and `Age`;
    /// `received_unix`: when the answer arrived, for an `Expires` without
    /// a `Date`.
    pub(crate) fn from_headers(headers: &[(String, String)], received_unix: Option<u64>) -> Self {
        let mut s = Storable::default();
        let mut max_age = None;
        let mut s_maxage = None;
        let (mut expires, mut date, mut age) = (None, None, None);
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("expires") {
                expires.get_or_insert(value.as_str());
            } else if name.eq_ignore_ascii_case("date") {
                date.get_or_insert(value.as_str());
            } else if name.eq_ignore_ascii_case("age") {
                age = age.or_else(|| seconds(value).filter(|_| !value.contains('.')));
            }
            if !name.eq_ignore_ascii_case("cache-control") {
                continue;
            }
            for (directive, arg) in directives(value) {
                if directive.eq_ignore_ascii_case("no-store")
                    || directive.eq_ignore_ascii_case("no-cache")
                {
                    s.no_store = true;
                } else if directive.eq_ignore_ascii_case("private") {
                    s.private = true;
                } else if directive.eq_ignore_ascii_case("s-maxage") {
                    s_maxage = arg.and_then(seconds).or(s_maxage);
                } else if directive.eq_ignore_ascii_case("max-age") {
                    max_age = arg.and_then(seconds).or(max_age);
                } else if directive.eq_ignore_ascii_case("must-revalidate")
                    || directive.eq_ignore_ascii_case("proxy-revalidate")
                {
                    s.no_stale = true;
                }
            }
        }
        s.no_stale |= s_maxage.is_some();
        let from_expires = || {
            let expires = expires?;
            // "A cache recipient MUST interpret invalid date formats,
            // especially the value "0", as representing a time in the
            // past (i.e., "already expired")" (§5.3).
            let Some(at) = unix(expires) else {
                return Some(Duration::ZERO);
            };
            let now = date.and_then(unix).or(received_unix)?;
            Some(Duration::from_secs(at.saturating_sub(now)))
        };
        // max-age and s-maxage win over Expires (§5.3), and the time the
        // answer already spent in caches upstream (`Age`, §5.1) counts.
        s.lifetime = s_maxage
            .or(max_age)
            .or_else(from_expires)
            .map(|l| l.saturating_sub(age.unwrap_or_default()));
        s.age = age.unwrap_or_default();
        s
    }

    /// How long to keep the answer (zero: not at all), given the route's
    /// `ttl`, whether the route pinned it, and whether the cache entry is
    /// keyed by credential (`per_credential`).
    ///
    /// Which wins:
    /// 1. `private` on a shared route: never stored (the answer may be one
    ///    account's; a per-credential route keeps it, keyed by credential);
    /// 2. a pinned TTL (the rule set `ttl_secs`): the route's TTL, whatever
    ///    upstream says about lifetime;
    /// 3. `no-store` / `no-cache`: not stored;
    /// 4. `s-maxage`, else `max-age`: upstream's lifetime;
    /// 5. otherwise the route's TTL (from `[defaults]`).
    pub(crate) fn ttl(&self, ttl: Duration, pinned: bool, per_credential: bool) -> Duration {
        if self.private && !per_credential {
            return Duration::ZERO;
        }
        if pinned {
            return ttl;
        }
        if self.no_store {
            return Duration::ZERO;
        }
        self.lifetime.unwrap_or(ttl)
    }
}

/// An HTTP-date as Unix seconds.
fn unix(v: &str) -> Option<u64> {
    httpdate::parse_http_date(ows(v))
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h;

    #[test]
    fn request_directives_are_read_case_insensitively() {
        let f = Freshness::from_headers(&h(&[("cache-control", "Max-Age=5, only-if-cached")]));
        assert_eq!(f.max_age, Some(Duration::from_secs(5)));
        assert!(f.only_if_cached && !f.no_cache);
        let f = Freshness::from_headers(&h(&[("Cache-Control", "no-cache")]));
        assert!(f.no_cache);
        assert_eq!(f.age_limit(), Some(Duration::ZERO));
        let f = Freshness::from_headers(&h(&[("Cache-Control", "max-stale=30")]));
        assert_eq!(f.max_stale, Some(Duration::from_secs(30)));
        let f = Freshness::from_headers(&h(&[("Cache-Control", "max-stale")]));
        assert_eq!(f.max_stale, Some(MAX_DIRECTIVE));
        assert!(Freshness::from_headers(&h(&[("Accept", "x")])).is_default());
    }

    #[test]
    fn the_stricter_age_wins_and_garbage_is_ignored() {
        let f = Freshness::from_headers(&h(&[
            ("Cache-Control", "max-age=10"),
            ("X-Syncoord-Max-Age", "2.5"),
        ]));
        assert_eq!(f.max_age, Some(Duration::from_millis(2500)));
        let f = Freshness::from_headers(&h(&[
            ("Cache-Control", "max-age=1"),
            ("Cache-Control", "max-age=9"),
        ]));
        assert_eq!(f.max_age, Some(Duration::from_secs(1)));
        for bad in ["max-age=-1", "max-age=soon", "max-age", "max-age=1e3", "="] {
            let f = Freshness::from_headers(&h(&[("Cache-Control", bad)]));
            assert_eq!(f.max_age, None, "{bad}");
        }
        let f = Freshness::from_headers(&h(&[("X-Syncoord-Max-Age", "NaN")]));
        assert!(f.is_default());
        let f = Freshness::from_headers(&h(&[("Cache-Control", "max-age=\"3\"")]));
        assert_eq!(f.max_age, Some(Duration::from_secs(3)));
    }

    #[test]
    fn which_ttl_wins() {
        let ttl = Duration::from_secs(90);
        let read = |v: &str| Storable::from_headers(&h(&[("Cache-Control", v)]), None);
        let secs = Duration::from_secs;
        // Unpinned: upstream's lifetime, s-maxage first.
        assert_eq!(read("max-age=5").ttl(ttl, false, false), secs(5));
        assert_eq!(
            read("max-age=5, s-maxage=7").ttl(ttl, false, false),
            secs(7)
        );
        assert_eq!(read("no-store").ttl(ttl, false, false), Duration::ZERO);
        assert_eq!(read("no-cache").ttl(ttl, false, true), Duration::ZERO);
        assert_eq!(read("public").ttl(ttl, false, false), ttl);
        // Pinned: the route's TTL, whatever upstream says of lifetime...
        assert_eq!(read("max-age=5").ttl(ttl, true, false), ttl);
        assert_eq!(read("no-store").ttl(ttl, true, false), ttl);
        // ...but `private` never enters a shared entry.
        assert_eq!(read("private").ttl(ttl, true, false), Duration::ZERO);
        assert_eq!(read("private, max-age=3").ttl(ttl, false, true), secs(3));
        assert_eq!(
            Storable::from_headers(&[], None).ttl(ttl, false, false),
            ttl
        );
    }

    /// RFC 9111 §4.2.1: "If the max-age response directive is present,
    /// use its value, or if the Expires response header field is present,
    /// use its value minus the value of the Date response header field
    /// (using the time the message was received if it is not present)";
    /// §5.3: invalid dates, "0" among them, are already expired; §5.1:
    /// `Age` is time already spent in caches.
    #[test]
    fn expires_date_and_age() {
        let ttl = Duration::from_secs(90);
        let secs = Duration::from_secs;
        let date = "Sun, 06 Dec 2026 12:00:00 GMT";
        let later = "Sun, 06 Dec 2026 12:00:30 GMT";
        let read =
            |hs: &[(&str, &str)], rx| Storable::from_headers(&h(hs), rx).ttl(ttl, false, false);
        assert_eq!(read(&[("Expires", later), ("Date", date)], None), secs(30));
        assert_eq!(
            read(&[("Expires", date), ("Date", later)], None),
            Duration::ZERO
        );
        assert_eq!(
            read(&[("Expires", "0"), ("Date", date)], None),
            Duration::ZERO
        );
        assert_eq!(read(&[("Expires", "soon")], None), Duration::ZERO);
        // No Date: the time it was received.
        let received = unix(date);
        assert_eq!(read(&[("Expires", later)], received), secs(30));
        assert_eq!(
            read(&[("Expires", later)], None),
            ttl,
            "nothing to measure against"
        );
        // max-age wins over Expires.
        assert_eq!(
            read(
                &[
                    ("Expires", later),
                    ("Date", date),
                    ("Cache-Control", "max-age=5")
                ],
                None
            ),
            secs(5)
        );
        // Age is time already spent in caches upstream.
        assert_eq!(
            read(&[("Cache-Control", "max-age=60"), ("Age", "45")], None),
            secs(15)
        );
        assert_eq!(
            read(&[("Cache-Control", "max-age=60"), ("Age", "75")], None),
            Duration::ZERO
        );
        assert_eq!(
            read(&[("Cache-Control", "max-age=60"), ("Age", "x")], None),
            secs(60)
        );
        // A pinned TTL still wins.
        let pinned = Storable::from_headers(&h(&[("Expires", "0")]), None).ttl(ttl, true, false);
        assert_eq!(pinned, ttl);
    }

    /// §5.2.2.2 must-revalidate, §5.2.2.8 proxy-revalidate, §5.2.2.10
    /// s-maxage ("incorporates the semantics of the proxy-revalidate
    /// response directive"): no stale serving.
    #[test]
    fn revalidation_directives_forbid_stale_serving() {
        let read = |v: &str| Storable::from_headers(&h(&[("Cache-Control", v)]), None).no_stale;
        assert!(read("max-age=5, must-revalidate"));
        assert!(read("Proxy-Revalidate"));
        assert!(read("s-maxage=5"));
        assert!(!read("max-age=5"));
        assert!(!read("public"));
    }
}
