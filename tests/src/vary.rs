//! `Vary` (RFC 9111 §4.1), on every host: "When a cache receives a request
//! that can be satisfied by a stored response and that stored response
//! contains a Vary header field, the cache MUST NOT use that stored
//! response without revalidation unless all the presented request header
//! fields nominated by that Vary field value match those fields in the
//! original request"; "A stored response with a Vary header field value
//! containing a member "*" always fails to match". The mock's echo answers
//! with the `Vary` its query asks for (`?vary=...`) and shows the headers
//! that reached it, so each answer says which request it was made for.

use super::{
    concurrent_gets, echo_of, echoed_header, expect, mock_counts, set_faults, unique, Reply, Target,
};

/// The echo's sequence number and the `Accept` it was made for.
fn made_for(reply: &Reply) -> Result<(u64, Option<String>), String> {
    let echo = echo_of(reply)?;
    let seq = echo["seq"].as_u64().ok_or("echo without a seq")?;
    Ok((seq, echoed_header(&echo, "accept").map(str::to_owned)))
}

pub(super) fn vary(t: &Target) -> Result<(), String> {
    variants(t)?;
    star(t)?;
    coalesced(t)?;
    if t.name == "native" {
        replaced_encoding(t)?;
    }
    Ok(())
}

/// The native host's client sends its own `Accept-Encoding` (and
/// decodes): upstream saw one value for every bot, so `Vary:
/// Accept-Encoding` does not split the cache there. (The Worker hands the
/// bot's value to `fetch`, and the runtime may rewrite it on the way in
/// and out, so nothing is asserted of it here.)
fn replaced_encoding(t: &Target) -> Result<(), String> {
    let url = format!(
        "{}{}?vary=Accept-Encoding",
        t.base,
        unique("/__echo/vary-enc/")
    );
    let first = super::get(&url, &[("Accept-Encoding", "identity")])?;
    let second = super::get(&url, &[("Accept-Encoding", "gzip")])?;
    let sources = (first.source(), second.source());
    expect(sources == ("miss", "hit"), || {
        format!("a header the host replaces must not select a variant: got {sources:?}")
    })
}

/// Each `Accept` value reads its own variant (a part of a value is another
/// value); whitespace around commas does not make another. (An absent
/// field, which matches only an absent one, is a core test: the suite's
/// HTTP client always sends `Accept`.)
fn variants(t: &Target) -> Result<(), String> {
    let url = format!("{}{}?vary=Accept", t.base, unique("/__echo/vary/"));
    let read = |accept: &str| super::get(&url, &[("Accept", accept)]);
    let a1 = read("text/a, text/b")?;
    let a2 = read("text/a ,text/b")?;
    let b1 = read("text/c")?;
    let b2 = read("text/c")?;
    let a3 = read("text/a, text/b")?;
    let part = read("text/a")?;
    let sources = [&a1, &a2, &b1, &b2, &a3, &part].map(Reply::source);
    expect(
        sources == ["miss", "hit", "miss", "hit", "hit", "miss"],
        || {
            format!("expected miss, hit (same Accept), miss, hit (another Accept), hit (the first again), miss (part of the first); got {sources:?}")
        },
    )?;
    let (a1, a2, b1, b2, a3, part) = (
        made_for(&a1)?,
        made_for(&a2)?,
        made_for(&b1)?,
        made_for(&b2)?,
        made_for(&a3)?,
        made_for(&part)?,
    );
    expect(a1 == a2 && a1 == a3 && b1 == b2, || {
        format!("a hit must be the variant fetched for the same Accept: {a1:?} {a2:?} {a3:?}, {b1:?} {b2:?}")
    })?;
    expect(
        b1.1.as_deref() == Some("text/c") && part.1.as_deref() == Some("text/a"),
        || format!("each variant must be made for its own Accept: {b1:?}, {part:?}"),
    )
}

/// `Vary: *` is never reused.
fn star(t: &Target) -> Result<(), String> {
    let url = format!("{}{}?vary=*", t.base, unique("/__echo/vary-star/"));
    let first = super::get(&url, &[])?;
    let second = super::get(&url, &[])?;
    let sources = (first.source(), second.source());
    expect(sources == ("miss", "miss"), || {
        format!("a Vary: * answer must not be reused: got {sources:?}")
    })?;
    expect(made_for(&first)?.0 != made_for(&second)?.0, || {
        "a Vary: * answer must not be reused: both reads got the same echo".into()
    })
}

/// Reads of two `Accept` values at once, before anyone knows the target
/// varies: each gets an answer made for its own `Accept`, and upstream is
/// asked once per variant, never once per read.
fn coalesced(t: &Target) -> Result<(), String> {
    const READERS: usize = 4;
    let url = format!("{}{}?vary=Accept", t.base, unique("/__echo/vary-coalesce/"));
    let before = mock_counts(t)?;
    set_faults(t, r#"{"latency_ms": 400}"#)?;
    let replies = std::thread::scope(|s| {
        let a = s.spawn(|| concurrent_gets(READERS, &url, &[("Accept", "text/a")]));
        let b = s.spawn(|| concurrent_gets(READERS, &url, &[("Accept", "text/b")]));
        let join = |h: std::thread::ScopedJoinHandle<'_, Vec<Result<Reply, String>>>| {
            h.join()
                .unwrap_or_else(|_| vec![Err("readers panicked".into())])
        };
        [("text/a", join(a)), ("text/b", join(b))]
    });
    set_faults(t, "{}")?;
    let after = mock_counts(t)?;
    for (accept, replies) in &replies {
        for reply in replies {
            let reply = reply.as_ref().map_err(Clone::clone)?;
            let (_, made) = made_for(reply)?;
            expect(made.as_deref() == Some(*accept), || {
                format!(
                    "a read with Accept {accept} got the answer made for {made:?} ({})",
                    reply.source()
                )
            })?;
        }
    }
    let calls = after.requests - before.requests;
    expect(calls == 2, || {
        format!(
            "{} reads of 2 variants must make 2 upstream calls, made {calls}",
            2 * READERS
        )
    })
}
