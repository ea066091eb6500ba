//! Reads after writes, as a property over random schedules in virtual
//! time (issue 22): bots read refreshed keys in bursts, with idle gaps,
//! and now and then write one (`POST /market/<key>`, which RFC 9111 §4.4
//! invalidates `GET /market/<key>` with). Refresh-ahead is on, and the
//! upstream answers after a random latency.
//!
//! The oracle is an upstream of its own here: each key has a version, a
//! write bumps it when it reaches upstream, and every answer carries the
//! version upstream held when the call reached it. A read made after a
//! write's success was reported must never see an older version, whether
//! from the cache, a call it joined, or a refresh that left before the
//! write. It shares nothing with the coordinator's bookkeeping.

use super::*;

use crate::freshness::Freshness;
use proptest::prelude::*;

use std::collections::HashMap as Map;

/// Payloads at or above this are writes of key `payload - WRITE`.
const WRITE: u32 = 1_000;

fn refreshed() -> Config {
    let mut c = config(50.0, 50);
    c.routes[2].refresh_ahead = Some(true);
    c.routes[2].min_age_secs = Some(1.0);
    c.refresh.resend_max_age_secs = 1000.0;
    c
}

#[derive(Debug, Clone)]
struct Step {
    gap_ms: u64,
    key: u32,
    write: bool,
    max_age: Option<u64>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![8 => 0u64..400, 2 => 400u64..3_000, 1 => 3_000u64..12_000],
        0u32..3,
        prop_oneof![7 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(None), 1 => (1u64..=5).prop_map(Some)],
    )
        .prop_map(|(gap_ms, key, write, max_age)| Step {
            gap_ms,
            key,
            write,
            max_age,
        })
}

/// A read's answer: (key, submitted at, version seen).
type Seen = (u32, Instant, u64);

/// Plays `steps` against an upstream answering each call after a latency
/// of its own, up to `latency_ms` (so a read sent before a write may be
/// answered after it); returns each write's success (key, when its answer
/// was delivered, the version it made) and each read's answer.
fn play(steps: &[Step], latency_ms: u64, seed: u64) -> (Vec<(u32, Instant, u64)>, Vec<Seen>) {
    let (mut c, t0) = coordinator(refreshed());
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut versions: Map<u32, u64> = Map::new();
    // Calls in flight: (due, call, answer body).
    let mut pending: Vec<(Instant, CallId, u64)> = Vec::new();
    // Tickets waiting: ticket -> (key, submitted, write).
    let mut waiting: Map<Ticket, (u32, Instant, bool)> = Map::new();
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    let mut schedule = Vec::new();
    let mut t = t0;
    for s in steps {
        t += Duration::from_millis(s.gap_ms);
        schedule.push((t, s));
    }
    let end = t + Duration::from_secs(15);
    let step = Duration::from_millis(10);
    let (mut next, mut now) = (0, t0);
    let version_of = |body: &[u8]| -> u64 {
        std::str::from_utf8(body)
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(u64::MAX)
    };
    while now <= end {
        c.handle_timeout(now);
        pending.retain(|&(due, call, body)| {
            if due > now {
                return true;
            }
            let _ = c.complete(now, call, ok(&body.to_string()));
            false
        });
        for f in finished(&mut c) {
            let Some((key, at, write)) = waiting.remove(&f.ticket) else {
                continue;
            };
            if let Ok(a) = &f.result {
                let v = version_of(&a.response.body);
                if write {
                    writes.push((key, now, v));
                } else {
                    reads.push((key, at, v));
                }
            }
        }
        while let Some(&(at, s)) = schedule.get(next) {
            if at > now {
                break;
            }
            next += 1;
            let (request, payload) = if s.write {
                (post(&format!("/market/{}", s.key)), WRITE + s.key)
            } else {
                let freshness = Freshness {
                    max_age: s.max_age.map(Duration::from_secs),
                    ..Freshness::default()
                };
                let r = get(&format!("/market/{}", s.key)).with_freshness(freshness);
                (r, s.key)
            };
            match c.submit(now, request, payload) {
                Admission::Answered(a) => {
                    assert!(!s.write, "a write is never answered at once");
                    reads.push((s.key, now, version_of(&a.response.body)));
                }
                Admission::Waiting { ticket, .. } => {
                    waiting.insert(ticket, (s.key, now, s.write));
                }
                Admission::Refused(f) => panic!("refused: {f}"),
            }
        }
        // Upstream acts on a call when it reaches it: a write bumps its
        // key's version, every call answers with the version then held.
        for d in dispatch_all(&mut c, now) {
            let body = if d.payload >= WRITE {
                let v = versions.entry(d.payload - WRITE).or_insert(0);
                *v += 1;
                *v
            } else {
                versions.get(&d.payload).copied().unwrap_or(0)
            };
            let latency = Duration::from_millis(rng.u64(1..=latency_ms));
            pending.push((now + latency, d.call, body));
        }
        now += step;
    }
    (writes, reads)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_read_after_a_successful_write_never_sees_an_answer_from_before_it(
        steps in prop::collection::vec(step(), 1..100),
        latency_ms in 1u64..600,
        seed in any::<u64>(),
    ) {
        let (writes, reads) = play(&steps, latency_ms, seed);
        for &(key, done, made) in &writes {
            for &(k, at, seen) in &reads {
                if k == key && at > done {
                    prop_assert!(
                        seen >= made,
                        "read of {key} at {:?} saw version {seen}, the write done at {:?} made {made}",
                        at,
                        done
                    );
                }
            }
        }
    }
}
