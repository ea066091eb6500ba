//! Writes invalidate what they change, beyond their own target (which
//! `writes_invalidate` checks): the routes a write rule names in
//! `invalidates` (for the writer's credential only), and the same-origin
//! `Location` / `Content-Location` of the answer (RFC 9111 §4.4). A write
//! that failed changed nothing, so it invalidates nothing.
//!
//! Routes (tests/conformance.toml): `inv-write` (POST
//! `/__echo/inv/write/**`) names `inv-private` (GET
//! `/__echo/inv/private/**`, keyed by credential) and `inv-shared` (GET
//! `/__echo/inv/shared/**`, one entry for everyone).

use super::shape::shaped;
use super::{echo_of, expect, expect_status, get, send, set_faults, unique, Reply, Target};

fn seq(reply: &Reply) -> Result<u64, String> {
    echo_of(reply)?["seq"]
        .as_u64()
        .ok_or_else(|| format!("echo without a seq: {}", reply.text()))
}

/// Reads `url` as `who` and expects a hit on the answer `first` was.
fn still_cached(url: &str, who: &[(&str, &str)], first: &Reply, what: &str) -> Result<(), String> {
    let r = get(url, who)?;
    expect(r.source() == "hit" && seq(&r)? == seq(first)?, || {
        format!(
            "{what}: expected the cached answer (a hit), got {}",
            r.source()
        )
    })
}

/// Reads `url` as `who` and expects upstream's new answer, not `first`.
fn refetched(url: &str, who: &[(&str, &str)], first: &Reply, what: &str) -> Result<(), String> {
    let r = get(url, who)?;
    expect_status(&r, 200, what)?;
    expect(r.source() == "miss" && seq(&r)? != seq(first)?, || {
        format!("{what}: expected a read upstream, got {}", r.source())
    })
}

fn post(url: &str, who: &[(&str, &str)]) -> Result<Reply, String> {
    let mut headers = who.to_vec();
    headers.push(("content-type", "application/json"));
    send("POST", url, &headers, Some(b"{}"))
}

/// A write rule's `invalidates`: after a successful write, the named
/// routes' entries of the writer's credential (and the shared route's
/// one entry) are read upstream again; another credential's entry stays
/// a hit. A write answered 4xx or 5xx invalidates nothing: RFC 9111 §4.4
/// invalidates only on "a non-error status code".
pub(crate) fn named(t: &Target) -> Result<(), String> {
    let id = unique("");
    let private = format!("{}/__echo/inv/private/{id}", t.base);
    let shared = format!("{}/__echo/inv/shared/{id}", t.base);
    let write = format!("{}/__echo/inv/write/{id}", t.base);
    let alice = [("CB-ACCESS-KEY", "conf-key-inv-alice")];
    let bob = [("CB-ACCESS-KEY", "conf-key-inv-bob")];
    let mut first = Vec::new();
    for (url, who) in [(&private, &alice), (&private, &bob), (&shared, &alice)] {
        let r = get(url, who)?;
        expect_status(&r, 200, url)?;
        expect(r.source() == "miss", || {
            format!("{url}: a new path is a miss")
        })?;
        first.push(r);
    }
    let [a, b, s] = [&first[0], &first[1], &first[2]];
    still_cached(
        &private,
        &alice,
        a,
        "alice's private entry before any write",
    )?;
    still_cached(&shared, &bob, s, "the shared entry before any write")?;

    // Failed writes: upstream refusing the request (4xx), then failing
    // on its side (5xx).
    for status in [409u16, 500] {
        let failed = post(
            &format!(
                "{}{}",
                t.base,
                shaped(&format!("/__echo/inv/write/{id}"), Some(status), &[])
            ),
            &alice,
        )?;
        expect(failed.status >= 400, || {
            format!(
                "a write upstream answered {status} came back {}",
                failed.status
            )
        })?;
        let what = format!("after a write answered {status}");
        still_cached(&private, &alice, a, &format!("alice's entry {what}"))?;
        still_cached(&shared, &alice, s, &format!("the shared entry {what}"))?;
    }

    let written = post(&write, &alice)?;
    expect_status(&written, 200, "alice's write")?;
    refetched(
        &private,
        &alice,
        a,
        "alice's entry of a route her write names",
    )?;
    refetched(
        &shared,
        &bob,
        s,
        "the shared entry of a route a write names",
    )?;
    still_cached(&private, &bob, b, "bob's entry after alice's write")?;
    // What the write does not name stays as it is.
    let unnamed = format!("{}{}", t.base, unique("/__echo/inv/other-"));
    let u1 = get(&unnamed, &alice)?;
    post(&write, &alice)?;
    still_cached(&unnamed, &alice, &u1, "a route the write does not name")
}

/// RFC 9111 §4.4: "A cache MAY invalidate other URIs when it receives a
/// non-error status code in response to an unsafe request method
/// (including methods whose safety is unknown). In particular, the URIs
/// in the Location and Content-Location response header fields (if
/// present) are candidates for invalidation" ... "However, a cache MUST
/// NOT trigger an invalidation under these conditions if the origin
/// (Section 4.3.1 of [HTTP]) of the URI to be invalidated differs from
/// that of the target URI". And "A cache MUST invalidate the target URI
/// when it receives a non-error status code in response to an unsafe
/// request method": an error status invalidates nothing.
pub(crate) fn location(t: &Target) -> Result<(), String> {
    let dir = unique("/__echo/loc/");
    let (loc, content, foreign) = (
        format!("{dir}/created?x=1"),
        format!("{dir}/content"),
        format!("{dir}/foreign"),
    );
    let url = |p: &str| format!("{}{p}", t.base);
    let mut first = Vec::new();
    for p in [&loc, &content, &foreign] {
        let r = get(&url(p), &[])?;
        expect_status(&r, 200, p)?;
        first.push(r);
        still_cached(&url(p), &[], &first[first.len() - 1], p)?;
    }
    // A write answered with an error names both: nothing changes.
    set_faults(t, r#"{"status": 409, "status_next": 1}"#)?;
    let failed = post(
        &url(&shaped(
            &format!("{dir}/write-failed"),
            None,
            &[("Location", &loc)],
        )),
        &[],
    );
    set_faults(t, "{}")?;
    expect_status(&failed?, 409, "the write set to fail")?;
    still_cached(&url(&loc), &[], &first[0], "Location of a failed write")?;
    // A write whose answer names the first two on the same origin.
    let written = post(
        &url(&shaped(
            &format!("{dir}/write"),
            Some(201),
            &[("Location", &loc), ("Content-Location", &content)],
        )),
        &[],
    )?;
    expect_status(&written, 201, "the write")?;
    refetched(
        &url(&loc),
        &[],
        &first[0],
        "the Location of a successful write",
    )?;
    refetched(
        &url(&content),
        &[],
        &first[1],
        "the Content-Location of a successful write",
    )?;
    // Another origin's URI with the same path is not ours to invalidate.
    let other_origin = format!("https://other-origin.example{foreign}");
    let written = post(
        &url(&shaped(
            &format!("{dir}/write-foreign"),
            None,
            &[("Location", &other_origin)],
        )),
        &[],
    )?;
    expect_status(&written, 200, "the write naming another origin")?;
    still_cached(
        &url(&foreign),
        &[],
        &first[2],
        "a Location on another origin",
    )
}
