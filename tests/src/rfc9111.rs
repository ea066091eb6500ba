//! RFC 9111 (HTTP caching) and RFC 9211 (`Cache-Status`) rules, each
//! written from the RFC's text (quoted above the check), on a generic
//! route: the catch-all `echo` rule of `tests/conformance.toml`, which
//! pins no TTL (its default is 90 s) and keys its entries by credential.
//! The mock answers each check's own path with the headers the rule is
//! about (`shape.rs`), so no check changes what any other path gets.

use std::time::Duration;

use super::shape::{http_date, shaped, unix_now};
use super::{echo_of, expect, expect_status, get, mock_counts, set_faults, unique, Reply, Target};

/// The echo answer's sequence number: a new one means upstream answered.
fn seq(reply: &Reply) -> Result<u64, String> {
    echo_of(reply)?["seq"]
        .as_u64()
        .ok_or_else(|| format!("echo without a seq: {}", reply.text()))
}

/// RFC 9111 §5.2.2.7: "The unqualified private response directive
/// indicates that a shared cache MUST NOT store the response (i.e., the
/// response is intended for a single user)."
///
/// syncoord keeps an answer for one credential only under that credential
/// (it then acts as that user's own cache); a request with no credential
/// identity names no single user, so its `private` answer is not stored,
/// and neither is one on a route shared between credentials.
pub(crate) fn private(t: &Target) -> Result<(), String> {
    let private = [("Cache-Control", "private, max-age=60")];
    let url = format!(
        "{}{}",
        t.base,
        shaped(&unique("/__echo/rfc/private-"), None, &private)
    );
    let (a1, a2) = (get(&url, &[])?, get(&url, &[])?);
    expect(a2.source() == "miss" && seq(&a2)? != seq(&a1)?, || {
        format!(
            "a `private` answer to a request with no credential was reused: {} then {}",
            a1.source(),
            a2.source()
        )
    })?;
    let alice = [("CB-ACCESS-KEY", "conf-key-private-alice")];
    let bob = [("CB-ACCESS-KEY", "conf-key-private-bob")];
    let (x1, x2) = (get(&url, &alice)?, get(&url, &alice)?);
    expect(
        (x1.source(), x2.source()) == ("miss", "hit") && seq(&x2)? == seq(&x1)?,
        || {
            format!(
                "a `private` answer is kept for the credential it was for: got {} then {}",
                x1.source(),
                x2.source()
            )
        },
    )?;
    let other = get(&url, &bob)?;
    expect(
        other.source() == "miss" && seq(&other)? != seq(&x1)?,
        || {
            format!(
                "another credential was served a `private` answer: {}",
                other.source()
            )
        },
    )?;
    // A route shared between credentials is a shared cache for all of
    // them: `private` keeps the answer out, even though the route pins
    // its TTL (`echo-ttl`).
    let shared = format!(
        "{}{}",
        t.base,
        shaped(&unique("/__echo/ttl/private-"), None, &private)
    );
    let (s1, s2) = (get(&shared, &alice)?, get(&shared, &alice)?);
    expect(s2.source() == "miss" && seq(&s2)? != seq(&s1)?, || {
        format!(
            "a `private` answer was stored on a shared route: {} then {}",
            s1.source(),
            s2.source()
        )
    })
}

/// The `ttl` (RFC 9211 §2.3) of syncoord's `Cache-Status` member.
fn cache_status_ttl(reply: &Reply) -> Result<i64, String> {
    let members = members(reply)?;
    let ours = members
        .last()
        .filter(|m| m.cache == "syncoord")
        .ok_or_else(|| format!("syncoord is not the last Cache-Status member: {members:?}"))?;
    ours.ttl
        .ok_or_else(|| format!("Cache-Status of a hit has no ttl: {ours:?}"))
}

/// Reads `path` twice (no credential); the second read's source and, on
/// a hit, its remaining lifetime from `Cache-Status`.
fn twice(t: &Target, path: &str) -> Result<(String, Option<i64>, Reply), String> {
    let url = format!("{}{path}", t.base);
    let first = get(&url, &[])?;
    expect_status(&first, 200, path)?;
    let second = get(&url, &[])?;
    expect_status(&second, 200, path)?;
    let ttl = match second.source() {
        "hit" => Some(cache_status_ttl(&second)?),
        _ => None,
    };
    Ok((second.source().to_owned(), ttl, second))
}

/// RFC 9111 §4.2.1: the freshness lifetime is, first match, "If the
/// max-age response directive (Section 5.2.2.1) is present, use its
/// value, or If the Expires response header field (Section 5.3) is
/// present, use its value minus the value of the Date response header
/// field". §5.3: "A cache recipient MUST interpret invalid date formats,
/// especially the value "0", as representing a time in the past (i.e.,
/// "already expired")." and "If a response includes a Cache-Control
/// header field with the max-age directive (Section 5.2.2.1), a recipient
/// MUST ignore the Expires header field."
pub(crate) fn expires(t: &Target) -> Result<(), String> {
    let now = unix_now();
    let date = http_date(now);
    let (soon, past) = (http_date(now + 37), http_date(now - 60));
    // Expires 37 s after Date: kept that long, not the route's 90 s.
    let path = shaped(
        &unique("/__echo/rfc/expires-"),
        None,
        &[("Date", &date), ("Expires", &soon)],
    );
    let (source, ttl, _) = twice(t, &path)?;
    expect(
        source == "hit" && ttl.is_some_and(|ttl| (30..=37).contains(&ttl)),
        || format!("Expires = Date + 37 s: expected a hit with ttl 30..=37, got {source} {ttl:?}"),
    )?;
    for (what, expires) in [("a past Expires", past.as_str()), ("Expires: 0", "0")] {
        let path = shaped(
            &unique("/__echo/rfc/expired-"),
            None,
            &[("Date", &date), ("Expires", expires)],
        );
        let (source, ..) = twice(t, &path)?;
        expect(source == "miss", || {
            format!("{what} is already stale: the second read must go upstream, got {source}")
        })?;
    }
    let path = shaped(
        &unique("/__echo/rfc/expires-max-age-"),
        None,
        &[
            ("Cache-Control", "max-age=37"),
            ("Date", &date),
            ("Expires", &past),
        ],
    );
    let (source, ttl, _) = twice(t, &path)?;
    expect(
        source == "hit" && ttl.is_some_and(|ttl| (30..=37).contains(&ttl)),
        || {
            format!("max-age=37 wins over a past Expires: expected a hit with ttl 30..=37, got {source} {ttl:?}")
        },
    )
}

/// RFC 9111 §4.2.3: "age_value: The term "age_value" denotes the value of
/// the Age header field (Section 5.1), in a form appropriate for
/// arithmetic operation; or 0, if not available." ... "current_age =
/// corrected_initial_age + resident_time;" with corrected_initial_age at
/// least age_value, and §4.2: "A response's age is the time that has
/// passed since it was generated by, or successfully validated with, the
/// origin server." §5.1: "The Age header field conveys the sender's
/// estimate of the time since the response was generated or successfully
/// validated at the origin server."
///
/// So time spent in caches upstream (behind a CDN) counts: an answer with
/// `max-age=40` and `Age: 30` has 10 s left; with `Age: 50` it is stale on
/// arrival; the `Age` syncoord sends is at least upstream's; and a reader
/// asking `max-age=20` (RFC 9111 §5.2.1.1) finds it too old.
pub(crate) fn upstream_age(t: &Target) -> Result<(), String> {
    let path = shaped(
        &unique("/__echo/rfc/age-"),
        None,
        &[("Cache-Control", "max-age=40"), ("Age", "30")],
    );
    let (source, ttl, hit) = twice(t, &path)?;
    expect(
        source == "hit" && ttl.is_some_and(|ttl| (5..=10).contains(&ttl)),
        || {
            format!("max-age=40 and Age: 30 leave 10 s: expected a hit with ttl 5..=10, got {source} {ttl:?}")
        },
    )?;
    let age: Option<u64> = hit.header("age").and_then(|a| a.parse().ok());
    expect(age.is_some_and(|age| (30..40).contains(&age)), || {
        format!("a hit on an answer upstream sent with Age: 30 must say Age >= 30, said {age:?}")
    })?;
    let strict = get(
        &format!("{}{path}", t.base),
        &[("Cache-Control", "max-age=20")],
    )?;
    expect(strict.source() == "miss", || {
        format!(
            "a reader asking max-age=20 got an answer 30 s old: {}",
            strict.source()
        )
    })?;
    let path = shaped(
        &unique("/__echo/rfc/age-stale-"),
        None,
        &[("Cache-Control", "max-age=40"), ("Age", "50")],
    );
    let (source, ..) = twice(t, &path)?;
    expect(source == "miss", || {
        format!("max-age=40 and Age: 50 is stale on arrival: the second read must go upstream, got {source}")
    })
}

/// RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response if it is
/// prohibited by an explicit in-protocol directive (e.g., by a no-cache
/// response directive, a must-revalidate response directive, or an
/// applicable s-maxage or proxy-revalidate response directive; see
/// Section 5.2.2)." §5.2.2.2: "once the response has become stale, a
/// cache MUST NOT reuse that response to satisfy another request until
/// it has been successfully validated by the origin" ... "if a cache is
/// disconnected, the cache MUST generate an error response rather than
/// reuse the stale response." §5.2.2.8 (proxy-revalidate): "shared caches
/// MUST NOT reuse a response after it becomes stale". §5.2.2.10: "The
/// s-maxage directive incorporates the semantics of the proxy-revalidate
/// response directive (Section 5.2.2.8) for a shared cache."
///
/// The suite's config serves stale answers for 60 s when upstream fails
/// (`stale_if_error_secs`); a plain `max-age=1` answer shows it does.
/// Each case reads as its own credential: the echo route is private, so
/// each has its own breaker and the failures here open none another
/// check uses.
pub(crate) fn no_stale(t: &Target) -> Result<(), String> {
    let cases = [
        ("max-age=1", true),
        ("max-age=1, must-revalidate", false),
        ("max-age=1, proxy-revalidate", false),
        ("s-maxage=1", false),
    ];
    let prefix = unique("/__echo/rfc/revalidate-");
    let read = |i: usize, control: &str| {
        let path = shaped(
            &format!("{prefix}-{i}"),
            None,
            &[("Cache-Control", control)],
        );
        let key = format!("conf-key-revalidate-{i}");
        get(&format!("{}{path}", t.base), &[("CB-ACCESS-KEY", &key)])
    };
    let mut fresh = Vec::new();
    for (i, (control, _)) in cases.iter().enumerate() {
        let reply = read(i, control)?;
        expect_status(&reply, 200, control)?;
        fresh.push(reply);
    }
    std::thread::sleep(Duration::from_millis(1300));
    set_faults(t, r#"{"status": 503, "status_fraction": 1.0}"#)?;
    // At once: each waits out its retries against the failing upstream.
    let later: Vec<Result<Reply, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, (control, _))| s.spawn(move || read(i, control)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("reader panicked".into())))
            .collect()
    });
    set_faults(t, "{}")?;
    for (i, ((control, may_serve_stale), reply)) in cases.iter().zip(later).enumerate() {
        let reply = reply?;
        if *may_serve_stale {
            expect(
                reply.status == 200 && reply.source() == "stale" && reply.body == fresh[i].body,
                || {
                    format!(
                        "`{control}`: upstream failing, the stale answer is served: got {} {}",
                        reply.status,
                        reply.source()
                    )
                },
            )?;
            // RFC 9211 §2.1/§2.3: a stale answer is still a hit, with a
            // negative ttl ("May be negative, to indicate staleness").
            let ttl = cache_status_ttl(&reply)?;
            expect(ttl < 0, || {
                format!("a stale hit's Cache-Status ttl must be negative, got {ttl}")
            })?;
        } else {
            expect(
                reply.status >= 500 && reply.source() != "stale" && reply.source() != "hit",
                || {
                    format!(
                        "`{control}`: a stale answer must not be served, even while upstream fails: got {} {}",
                        reply.status,
                        reply.source()
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// One member of a `Cache-Status` list, as RFC 9211 §2 reads it.
#[derive(Debug)]
struct CacheStatusMember {
    cache: String,
    hit: bool,
    fwd: Option<String>,
    ttl: Option<i64>,
    collapsed: bool,
}

/// Every `Cache-Status` field line of `reply`, combined (RFC 9110 §5.3)
/// and parsed as a structured-field List (RFC 9211 §2: "The Cache-Status
/// HTTP response header field ... Its value is a List").
fn members(reply: &Reply) -> Result<Vec<CacheStatusMember>, String> {
    let combined = reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let list = sfv::Parser::new(&combined)
        .parse_list::<sfv::List>()
        .map_err(|e| format!("Cache-Status `{combined}` is not a structured-field list: {e}"))?;
    list.iter()
        .map(|entry| {
            let sfv::ListEntry::Item(item) = entry else {
                return Err(format!("Cache-Status `{combined}` has an inner list"));
            };
            let cache = match &item.bare_item {
                sfv::BareItem::Token(t) => t.as_str().to_owned(),
                sfv::BareItem::String(s) => s.as_str().to_owned(),
                other => return Err(format!("a cache is a token or string, got {other:?}")),
            };
            let param = |key: &str| {
                item.params
                    .iter()
                    .find(|(k, _)| k.as_str() == key)
                    .map(|(_, v)| v)
            };
            Ok(CacheStatusMember {
                cache,
                hit: param("hit").and_then(sfv::BareItem::as_boolean) == Some(true),
                fwd: param("fwd")
                    .and_then(sfv::BareItem::as_token)
                    .map(|t| t.as_str().to_owned()),
                ttl: param("ttl")
                    .and_then(sfv::BareItem::as_integer)
                    .map(i64::from),
                collapsed: param("collapsed").and_then(sfv::BareItem::as_boolean) == Some(true),
            })
        })
        .collect()
}

/// RFC 9211 §2: "Each member of the list represents a cache that has
/// handled the request ... the first member of the list represents the
/// cache closest to the origin server, and the last member of the list
/// represents the cache closest to the user agent" and "When adding a
/// value to the Cache-Status header field, caches SHOULD preserve the
/// existing field value". §2.1: "hit and fwd are exclusive; only one of
/// them should appear on each list member." §2.3: "The ttl parameter
/// indicates the response's remaining freshness lifetime as calculated by
/// the cache, as an integer number of seconds". §2.6: "The collapsed
/// parameter indicates whether this request was collapsed together with
/// one or more other forward requests." (`cache_and_ttl` checks the
/// plain `fwd=miss` and `hit; ttl` values; the stale case is in
/// `no_stale`.)
pub(crate) fn cache_status(t: &Target) -> Result<(), String> {
    let path = shaped(
        &unique("/__echo/rfc/cache-status-"),
        None,
        &[
            ("Cache-Control", "max-age=37"),
            ("Cache-Status", "OriginShield; hit; ttl=37"),
        ],
    );
    let url = format!("{}{path}", t.base);
    for (i, want) in ["fwd", "hit"].iter().enumerate() {
        let reply = get(&url, &[])?;
        expect_status(&reply, 200, &path)?;
        let members = members(&reply)?;
        expect(
            members.len() == 2 && members[0].cache == "OriginShield" && members[0].hit,
            || format!("read {i}: upstream's member must come first, kept: {members:?}"),
        )?;
        let ours = &members[1];
        let fine = ours.cache == "syncoord"
            && match *want {
                "fwd" => !ours.hit && ours.fwd.as_deref() == Some("miss") && !ours.collapsed,
                _ => {
                    ours.hit
                        && ours.fwd.is_none()
                        && ours.ttl.is_some_and(|t| (30..=37).contains(&t))
                }
            };
        expect(fine, || {
            format!("read {i}: expected syncoord's member with {want}, got {ours:?}")
        })?;
    }
    // Readers that arrive while one call is out share it: collapsed.
    const READERS: usize = 4;
    let url = format!("{}{}", t.base, unique("/__echo/rfc/collapsed-"));
    let before = mock_counts(t)?;
    set_faults(t, r#"{"latency_ms": 300}"#)?;
    let replies = super::concurrent_gets(READERS, &url, &[]);
    set_faults(t, "{}")?;
    let calls = mock_counts(t)?.requests - before.requests;
    let (mut forwarded, mut collapsed) = (0, 0);
    for reply in replies {
        let reply = reply?;
        expect_status(&reply, 200, "collapsed read")?;
        let members = members(&reply)?;
        let ours = members
            .last()
            .filter(|m| m.cache == "syncoord")
            .ok_or_else(|| format!("no syncoord member last: {members:?}"))?;
        match (ours.hit, ours.fwd.as_deref(), ours.collapsed) {
            (false, Some("miss"), false) => forwarded += 1,
            (false, Some("miss"), true) => collapsed += 1,
            // A reader that arrived after the answer: a plain hit.
            (true, None, false) => {}
            _ => return Err(format!("unexpected Cache-Status member {ours:?}")),
        }
    }
    expect(calls == 1 && forwarded == 1 && collapsed >= 1, || {
        format!("{READERS} identical reads: {calls} upstream calls, {forwarded} `fwd=miss`, {collapsed} `fwd=miss; collapsed`")
    })
}
