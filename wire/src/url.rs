//! Just enough URL parsing for the proxy: the origin (scheme, host, port)
//! of an absolute URL and the rest of it left exactly as written, because
//! request signatures cover the path and query byte for byte.

use std::fmt;

/// Scheme, host and port: what an absolute URL must share with a
/// configured upstream to be forwarded to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https://` (else `http://`).
    pub https: bool,
    /// Lower-case; IPv6 addresses keep their brackets.
    pub host: String,
    /// Explicit, or the scheme's default (80, 443).
    pub port: u16,
}

impl Origin {
    /// `host`, or `host:port` when the port is not the scheme's default:
    /// what a `Host` header, and a Coinbase JWT's `uri`, name.
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Why an absolute URL's origin cannot be read (`split_absolute`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Neither `http://` nor `https://`.
    #[error("the scheme must be http:// or https://")]
    Scheme,
    /// Nothing between the scheme and the path.
    #[error("no host")]
    NoHost,
    /// `user@host`: credentials do not belong in a URL here.
    #[error("user info (`user@`) is not allowed in the URL")]
    UserInfo,
    /// `[` without `]`.
    #[error("unclosed `[` in the host")]
    UnclosedBracket,
    /// The bracketed part, without its brackets.
    #[error("`[{0}]` is not an IPv6 address")]
    Ipv6(String),
    /// What follows `]` instead of `:port`.
    #[error("unexpected `{0}` after the IPv6 address")]
    AfterIpv6(String),
    /// The host as written.
    #[error("`{0}` is not a valid host name")]
    Host(String),
    /// The port as written.
    #[error("`{0}` is not a port number (1 to 65535)")]
    Port(String),
}

/// Why a configured base URL is refused; each message starts with the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    /// Its origin cannot be read.
    #[error("`{url}`: {error}")]
    Origin {
        /// The URL as configured.
        url: String,
        /// What is wrong with its origin.
        error: UrlError,
    },
    /// A `?query` or `#fragment` (a base URL is only a prefix).
    #[error("`{url}`: a base URL has no query or fragment (only scheme, host, port and an optional base path)")]
    QueryOrFragment {
        /// The URL as configured.
        url: String,
    },
    /// A base path that could be read two ways.
    #[error("`{url}`: the base path may hold only plain segments (no empty, `.` or `..` segment, no percent-encoding)")]
    BasePath {
        /// The URL as configured.
        url: String,
    },
}

/// A configured upstream's base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// Scheme, host and port.
    pub origin: Origin,
    /// Base path without a trailing `/` (empty for none), e.g. `/v1`.
    pub path: String,
}

impl BaseUrl {
    /// `http(s)://host[:port][/base/path]`; no user info, query or fragment.
    pub fn parse(url: &str) -> Result<BaseUrl, BaseUrlError> {
        let (origin, rest) = split_absolute(url).map_err(|error| BaseUrlError::Origin {
            url: url.to_owned(),
            error,
        })?;
        if rest.contains(['?', '#']) {
            return Err(BaseUrlError::QueryOrFragment {
                url: url.to_owned(),
            });
        }
        let path = rest.trim_end_matches('/');
        for seg in path.split('/').skip(1) {
            let ok = !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b));
            if !ok {
                return Err(BaseUrlError::BasePath {
                    url: url.to_owned(),
                });
            }
        }
        Ok(BaseUrl {
            origin,
            path: path.to_owned(),
        })
    }
}

/// Splits `http(s)://authority` from the rest of an absolute URL. The rest
/// is empty or starts with `/`, `?` or `#`, and is returned untouched.
pub fn split_absolute(url: &str) -> Result<(Origin, &str), UrlError> {
    let lower_starts = |p: &str| url.len() >= p.len() && url[..p.len()].eq_ignore_ascii_case(p);
    let (https, after) = if lower_starts("https://") {
        (true, &url[8..])
    } else if lower_starts("http://") {
        (false, &url[7..])
    } else {
        return Err(UrlError::Scheme);
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.is_empty() {
        return Err(UrlError::NoHost);
    }
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or(UrlError::UnclosedBracket)?;
        let addr = &v6[..close];
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UrlError::Ipv6(addr.to_owned()));
        }
        let tail = &v6[close + 1..];
        let port = match tail {
            "" => None,
            t => Some(
                t.strip_prefix(':')
                    .ok_or_else(|| UrlError::AfterIpv6(t.to_owned()))?,
            ),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !ok {
            return Err(UrlError::Host(host.to_owned()));
        }
        (host.to_ascii_lowercase(), port)
    };
    let default_port = if https { 443 } else { 80 };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && p.to_string().len() <= 5)
            .ok_or_else(|| UrlError::Port(p.to_owned()))?,
    };
    Ok((Origin { https, host, port }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_rest() {
        let (o, rest) = split_absolute("HTTPS://Api.Coinbase.com/api/v3?x=1").unwrap();
        assert_eq!(
            o,
            Origin {
                https: true,
                host: "api.coinbase.com".into(),
                port: 443
            }
        );
        assert_eq!(rest, "/api/v3?x=1");
        let (o, rest) = split_absolute("http://127.0.0.1:8080").unwrap();
        assert_eq!((o.port, o.https, rest), (8080, false, ""));
        let (o, rest) = split_absolute("http://[::1]:9/a").unwrap();
        assert_eq!((o.host.as_str(), o.port, rest), ("[::1]", 9, "/a"));
        let (o, _) = split_absolute("https://h:/x").unwrap();
        assert_eq!(o.port, 443);
        for bad in [
            "ftp://h",
            "https://",
            "https://u:p@h/",
            "https://h:0",
            "https://h:99999",
            "https://h:x",
            "https://[zz]/",
            "https://[::1/",
            "https://h h/",
            "//h/",
        ] {
            assert!(split_absolute(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let said = |url: &str| split_absolute(url).map(drop).unwrap_err().to_string();
        assert_eq!(said("ftp://h"), "the scheme must be http:// or https://");
        assert_eq!(
            said("https://[::1]x/"),
            "unexpected `x` after the IPv6 address"
        );
        assert_eq!(said("https://h:0"), "`0` is not a port number (1 to 65535)");
        let said = |url: &str| BaseUrl::parse(url).unwrap_err().to_string();
        assert_eq!(
            said("https://h h/"),
            "`https://h h/`: `h h` is not a valid host name"
        );
        assert_eq!(
            said("https://h/?q"),
            "`https://h/?q`: a base URL has no query or fragment (only scheme, host, port and an optional base path)"
        );
    }

    #[test]
    fn base_urls() {
        assert_eq!(BaseUrl::parse("https://h/").unwrap().path, "");
        assert_eq!(BaseUrl::parse("https://h/v1/api/").unwrap().path, "/v1/api");
        for bad in [
            "https://h/?q",
            "https://h/#f",
            "https://h/a/../b",
            "https://h//a",
            "https://h/%41",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
