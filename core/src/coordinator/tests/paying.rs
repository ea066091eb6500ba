//! Refresh that pays for itself, as a property over random schedules in
//! virtual time: bots reading a few refreshed keys in bursts, with idle
//! gaps, some asking a `max-age`, and an upstream of random latency.
//!
//! The oracle is a log of what the bots sent and what went upstream, kept
//! here and checked by counting; it shares nothing with the coordinator's
//! own bookkeeping.

use super::*;

use crate::freshness::Freshness;
use proptest::prelude::*;

/// `/market/**` refreshed ahead, at most once a second, TTL 10 s, for keys
/// whose answer served `min_reads` reads; a budget that never makes
/// anyone wait (refresh takes only spare budget, and this property is
/// about when it is worth spending).
fn refreshed(min_reads: u32) -> Config {
    let mut c = config(50.0, 50);
    c.refresh.min_reads = min_reads;
    c.routes[2].refresh_ahead = Some(true);
    c.routes[2].min_age_secs = Some(1.0);
    c.refresh.resend_max_age_secs = 1000.0;
    c
}

/// The longest refresh interval a schedule can lead to: readers ask at
/// most `max-age=5`, and refresh leaves at 80% of it.
const LONGEST_INTERVAL: Duration = Duration::from_secs(4);

/// One bot read: after `gap_ms`, of key `key`, with `max-age` if set.
#[derive(Debug, Clone)]
struct Read {
    gap_ms: u64,
    key: u32,
    max_age: Option<u64>,
}

fn read() -> impl Strategy<Value = Read> {
    (
        // Mostly bursts, sometimes an idle gap of up to 20 s.
        prop_oneof![8 => 0u64..400, 2 => 400u64..3_000, 1 => 3_000u64..20_000],
        0u32..4,
        prop_oneof![3 => Just(None), 1 => (1u64..=5).prop_map(Some)],
    )
        .prop_map(|(gap_ms, key, max_age)| Read {
            gap_ms,
            key,
            max_age,
        })
}

/// What happened, as the host saw it.
#[derive(Default, Debug)]
struct Log {
    /// Every bot request, when it was made.
    requests: Vec<Instant>,
    /// Reads answered from the cache: (when, key).
    hits: Vec<(Instant, u32)>,
    /// First attempts of calls upstream: (when, key, refresh).
    calls: Vec<(Instant, u32, bool)>,
}

impl Log {
    /// When the last call for `key` before `at` was made, if any.
    fn previous_call(&self, key: u32, at: Instant) -> Option<Instant> {
        self.calls
            .iter()
            .filter(|c| c.1 == key && c.0 < at)
            .map(|c| c.0)
            .max()
    }
}

/// Plays `reads` against a coordinator whose upstream answers after
/// `latency_ms`, then lets 30 quiet seconds pass.
fn play(reads: &[Read], latency_ms: u64, min_reads: u32) -> (Log, C, Instant) {
    let (mut c, t0) = coordinator(refreshed(min_reads));
    let latency = Duration::from_millis(latency_ms);
    let mut log = Log::default();
    let mut pending: Vec<(Instant, CallId)> = Vec::new();
    let mut schedule = Vec::new();
    let mut t = t0;
    for r in reads {
        t += Duration::from_millis(r.gap_ms);
        schedule.push((t, r));
    }
    let end = t + Duration::from_secs(30);
    let step = Duration::from_millis(10);
    let mut next = 0;
    let mut now = t0;
    while now <= end {
        c.handle_timeout(now);
        pending.retain(|&(due, call)| {
            if due > now {
                return true;
            }
            // A call may have timed out already; that is not an error here.
            let _ = c.complete(now, call, ok("fresh"));
            false
        });
        while let Some(&(at, r)) = schedule.get(next) {
            if at > now {
                break;
            }
            next += 1;
            let freshness = Freshness {
                max_age: r.max_age.map(Duration::from_secs),
                ..Freshness::default()
            };
            let request = get(&format!("/market/{}", r.key)).with_freshness(freshness);
            log.requests.push(now);
            match c.submit(now, request, r.key) {
                Admission::Answered(a) if a.source == Source::Cache => log.hits.push((now, r.key)),
                Admission::Answered(_) | Admission::Waiting { .. } => {}
                Admission::Refused(f) => panic!("refused: {f}"),
            }
        }
        for d in dispatch_all(&mut c, now) {
            if d.attempt == 1 {
                log.calls.push((now, d.payload, d.refresh));
            }
            pending.push((now + latency, d.call));
        }
        let _ = finished(&mut c);
        now += step;
    }
    (log, c, end)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn refresh_never_costs_more_calls_than_the_reads_it_serves(
        reads in prop::collection::vec(read(), 1..120),
        latency_ms in 1u64..300,
        min_reads in prop_oneof![Just(1u32), 2u32..=4, Just(8u32)],
    ) {
        let (log, c, end) = play(&reads, latency_ms, min_reads);
        let refreshes: Vec<_> = log.calls.iter().filter(|c| c.2).collect();

        // And no refresh comes before `min_reads` reads of its key were
        // served from the cache since the previous call for that key
        // (those include reads of the older answer while that call was
        // out, so this is the weaker side of the rule, never stronger).
        for &&(at, key, _) in &refreshes {
            let previous = log.previous_call(key, at);
            let served = log
                .hits
                .iter()
                .filter(|&&(h, k)| k == key && previous.is_none_or(|p| h >= p) && h <= at)
                .count();
            prop_assert!(
                served >= min_reads as usize,
                "refresh of {} at {:?} after {} reads (min_reads {})",
                key,
                at,
                served,
                min_reads
            );
        }

        // Every refresh follows a read its key's answer served since the
        // previous call for that key, at most one interval earlier: the
        // read it is matched to, one read per refresh.
        for &&(at, key, _) in &refreshes {
            let previous = log.previous_call(key, at);
            let paid = log.hits.iter().any(|&(h, k)| {
                k == key && previous.is_none_or(|p| h >= p) && h <= at && at - h <= LONGEST_INTERVAL
            });
            prop_assert!(paid, "refresh of {key} at {:?} follows no read", at);
        }
        prop_assert!(refreshes.len() <= log.hits.len());

        // Hence upstream calls never outnumber bot requests: over the
        // whole run, at every instant, and in every window once the
        // reads that paid for its refreshes (at most one interval before
        // it) are counted in.
        for (i, &(at, _, _)) in log.calls.iter().enumerate() {
            let made = log.requests.iter().filter(|&&r| r <= at).count();
            prop_assert!(i < made, "{} calls by {:?}, {made} requests", i + 1, at);
        }
        for &(a, _, _) in &log.calls {
            for window in [Duration::from_secs(2), Duration::from_secs(10)] {
                let b = a + window;
                let calls = log.calls.iter().filter(|c| c.0 >= a && c.0 <= b).count();
                let from = a.checked_sub(LONGEST_INTERVAL).unwrap_or(a);
                let requests = log.requests.iter().filter(|&&r| r >= from && r <= b).count();
                prop_assert!(calls <= requests, "{calls} calls, {requests} requests from {:?}", a);
            }
        }

        // The stats say the same, and the reduction is never negative.
        let s = c.stats(end);
        prop_assert_eq!(s.upstream.calls as usize, log.calls.len());
        prop_assert_eq!(s.upstream.refreshes as usize, refreshes.len());
        prop_assert!(s.api_call_reduction >= 0.0);
    }
}

/// After the bots stop, refresh calls fall to zero within one interval,
/// as the stats show.
#[test]
fn refresh_calls_stop_within_one_interval_of_the_last_read() {
    let reads: Vec<Read> = (0..200)
        .map(|i| Read {
            gap_ms: 50,
            key: i % 4,
            max_age: None,
        })
        .collect();
    // Each key is read 5 times a second: worth a refresh at 4 reads.
    let (log, c, end) = play(&reads, 20, 4);
    let last_read = *log.requests.last().unwrap();
    let refreshes = c.stats(end).upstream.refreshes;
    assert!(refreshes > 0, "the keys were refreshed while read");
    // Interval: the route's min_age (1 s), the readers asked nothing.
    let late: Vec<_> = log
        .calls
        .iter()
        .filter(|c| c.2 && c.0 > last_read + Duration::from_secs(1))
        .collect();
    assert!(late.is_empty(), "{late:?}");
    assert!(!c.refreshing());
    assert!(end > last_read + Duration::from_secs(20));
}
