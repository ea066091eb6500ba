use super::*;

use crate::config::ScopeId;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn bk(n: u16) -> BucketKey {
    BucketKey {
        scope: ScopeId(n),
        credential: None,
    }
}

fn lane(ids: &[u16]) -> Lane {
    ids.iter().map(|&n| bk(n)).collect::<Vec<_>>().into()
}

fn client(name: &str) -> Arc<str> {
    Arc::from(name)
}

const X: u16 = 1;
const Y: u16 = 2;
const Z: u16 = 3;

fn ready(_: &[BucketKey], _: u32) -> Option<Wait> {
    None
}

/// Pushes call `id` of `class` on `lanes` for `who` at `now`, cost 1.
fn push(q: &mut Queue, now: Instant, id: u64, class: u8, lanes: &[u16], who: &str) {
    q.push(now, CallId(id), ClassId(class), lane(lanes), client(who), 1);
}

/// Selects and takes until nothing can go; returns the ids in order.
fn drain(q: &mut Queue, mut check: impl FnMut(&[BucketKey], u32) -> Option<Wait>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Selection::Go(call) = q.select(&mut check, free) {
        q.take(call);
        out.push(call.0);
    }
    out
}

/// A limiter where bucket `blocked` refuses everything until `until`.
fn blocked_until(blocked: u16, until: Instant) -> impl FnMut(&[BucketKey], u32) -> Option<Wait> {
    move |lane: &[BucketKey], _| lane.contains(&bk(blocked)).then_some(Wait::Until(until))
}

#[test]
fn strict_priority_across_classes() {
    let t0 = Instant::now();
    let mut q = Queue::new(4, None);
    push(&mut q, t0, 1, 3, &[X], "a");
    push(&mut q, t0 + s(1), 2, 1, &[Y], "b");
    push(&mut q, t0 + s(2), 3, 0, &[X], "c");
    push(&mut q, t0 + s(3), 4, 2, &[Z], "a");
    push(&mut q, t0 + s(4), 5, 0, &[Y], "d");
    assert_eq!(q.len(), 5);
    assert_eq!(drain(&mut q, ready), vec![3, 5, 2, 4, 1]);
    assert!(q.is_empty());
    assert_eq!(q.select(ready, free), Selection::Wait(None));
}

#[test]
fn classes_beyond_the_last_clamp_to_it() {
    let t0 = Instant::now();
    let mut q = Queue::new(2, None);
    push(&mut q, t0, 1, 9, &[X], "a");
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(1)));
    assert_eq!(q.depth(ClassId(1)), 1);
    assert_eq!(q.depth(ClassId(9)), 0);
    push(&mut q, t0, 2, 0, &[X], "a");
    assert_eq!(drain(&mut q, ready), vec![2, 1]);
}

#[test]
fn fifo_within_a_client_even_across_lanes() {
    let t0 = Instant::now();
    let mut q = Queue::new(1, None);
    for id in 1..=6 {
        let lanes: &[u16] = if id % 2 == 0 { &[X] } else { &[Y, Z] };
        push(&mut q, t0 + s(id), id, 0, lanes, "a");
    }
    assert_eq!(drain(&mut q, ready), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn round_robin_across_clients_within_a_class() {
    let t0 = Instant::now();
    for b_lane in [[X], [Y]] {
        let mut q = Queue::new(2, None);
        for id in 1..=10 {
            push(&mut q, t0, id, 1, &[X], "a");
        }
        push(&mut q, t0 + s(1), 11, 1, &b_lane, "b");
        push(&mut q, t0 + s(1), 12, 1, &b_lane, "b");
        assert_eq!(
            drain(&mut q, ready),
            vec![1, 11, 2, 12, 3, 4, 5, 6, 7, 8, 9, 10],
            "b's calls interleave with a's, not after them"
        );
    }
}

#[test]
fn a_late_client_joins_the_current_round() {
    let t0 = Instant::now();
    let mut q = Queue::new(1, None);
    for id in 1..=10 {
        push(&mut q, t0, id, 0, &[X], "a");
    }
    let first: Vec<u64> = (0..5)
        .map(|_| match q.select(ready, free) {
            Selection::Go(c) => {
                q.take(c);
                c.0
            }
            w => panic!("{w:?}"),
        })
        .collect();
    assert_eq!(first, vec![1, 2, 3, 4, 5]);
    for id in 20..23 {
        push(&mut q, t0 + s(10), id, 0, &[X], "c");
    }
    // Neither at the back of a's backlog, nor ahead of a's current round.
    assert_eq!(drain(&mut q, ready), vec![20, 6, 21, 7, 22, 8, 9, 10]);
}

#[test]
fn a_blocked_lane_does_not_block_other_buckets() {
    let t0 = Instant::now();
    let tx = t0 + s(5);
    let mut q = Queue::new(3, None);
    push(&mut q, t0, 1, 0, &[X], "a");
    push(&mut q, t0 + s(1), 2, 0, &[Y], "b");
    push(&mut q, t0 + s(2), 3, 2, &[Y], "c");
    assert_eq!(drain(&mut q, blocked_until(X, tx)), vec![2, 3]);
    assert_eq!(
        q.select(blocked_until(X, tx), free),
        Selection::Wait(Some(tx))
    );
    assert!(q.contains(CallId(1)));
    assert_eq!(drain(&mut q, ready), vec![1]);
}

#[test]
fn a_blocked_head_reserves_its_bucket_against_later_and_lower_calls() {
    let t0 = Instant::now();
    let tx = t0 + s(5);
    let mut q = Queue::new(3, None);
    // Bucket X holds two units: the head (cost 3) cannot go, cost 1 could.
    let mut x_tokens = 2;
    let mut check = |lane: &[BucketKey], cost: u32| {
        (lane.contains(&bk(X)) && cost > x_tokens).then_some(Wait::Until(tx))
    };
    q.push(t0, CallId(1), ClassId(0), lane(&[X]), client("a"), 3);
    push(&mut q, t0 + s(1), 5, 0, &[X], "b"); // same class, later
    push(&mut q, t0 + s(1), 2, 1, &[X], "c"); // lower class
    push(&mut q, t0 + s(1), 3, 1, &[X, Y], "d"); // lower, shares X
    push(&mut q, t0 + s(2), 4, 2, &[Y], "e"); // lowest, other bucket
    assert_eq!(q.select(&mut check, free), Selection::Go(CallId(4)));
    q.take(CallId(4));
    assert_eq!(q.select(&mut check, free), Selection::Wait(Some(tx)));
    x_tokens = 3;
    let mut check = |lane: &[BucketKey], cost: u32| {
        (lane.contains(&bk(X)) && cost > x_tokens).then_some(Wait::Until(tx))
    };
    assert_eq!(q.select(&mut check, free), Selection::Go(CallId(1)));
    assert_eq!(drain(&mut q, ready), vec![1, 5, 2, 3]);
}

#[test]
fn only_the_refusing_buckets_are_reserved() {
    let t0 = Instant::now();
    let tx = t0 + s(5);
    let mut q = Queue::new(2, None);
    // The head needs X and Y, but only X refuses: Y stays usable.
    push(&mut q, t0, 1, 0, &[X, Y], "a");
    push(&mut q, t0 + s(1), 2, 1, &[Y], "b");
    push(&mut q, t0 + s(1), 3, 1, &[X], "c");
    let check = blocked_until(X, tx);
    assert_eq!(q.select(check, free), Selection::Go(CallId(2)));
}

#[test]
fn wait_reports_the_earliest_instant() {
    let t0 = Instant::now();
    let mut q = Queue::new(2, None);
    assert_eq!(q.select(ready, free), Selection::Wait(None), "empty");
    push(&mut q, t0, 1, 0, &[X], "a");
    push(&mut q, t0, 2, 1, &[Y], "b");
    push(&mut q, t0, 3, 1, &[Z], "c");
    let waits = |lane: &[BucketKey], _: u32| {
        if lane.contains(&bk(X)) {
            Some(Wait::Until(t0 + s(5)))
        } else if lane.contains(&bk(Y)) {
            Some(Wait::Paused(t0 + s(3)))
        } else {
            Some(Wait::Until(t0 + s(8)))
        }
    };
    assert_eq!(q.select(waits, free), Selection::Wait(Some(t0 + s(3))));
    q.remove(CallId(2));
    assert_eq!(q.select(waits, free), Selection::Wait(Some(t0 + s(5))));
    q.remove(CallId(1));
    assert_eq!(q.select(waits, free), Selection::Wait(Some(t0 + s(8))));
    q.remove(CallId(3));
    assert_eq!(
        q.select(waits, free),
        Selection::Wait(None),
        "nothing queued"
    );
}

#[test]
fn shed_candidate_is_the_newest_of_the_lowest_class_below() {
    let t0 = Instant::now();
    let mut q = Queue::new(4, None);
    push(&mut q, t0, 1, 1, &[X], "a");
    push(&mut q, t0 + s(1), 2, 3, &[X], "a");
    push(&mut q, t0 + s(2), 3, 3, &[Y], "b");
    push(&mut q, t0 + s(3), 4, 2, &[X], "c");
    assert_eq!(q.shed_candidate(ClassId(0)), Some(CallId(3)));
    assert_eq!(q.shed_candidate(ClassId(2)), Some(CallId(3)));
    assert_eq!(q.shed_candidate(ClassId(3)), None, "newcomer is lowest");
    assert_eq!(q.shed_candidate(ClassId(200)), None, "clamped to lowest");
    q.remove(CallId(3));
    assert_eq!(q.shed_candidate(ClassId(0)), Some(CallId(2)));
    q.remove(CallId(2));
    assert_eq!(q.shed_candidate(ClassId(0)), Some(CallId(4)));
    assert_eq!(q.shed_candidate(ClassId(1)), Some(CallId(4)));
    assert_eq!(q.shed_candidate(ClassId(2)), None, "not strictly below");
    q.remove(CallId(4));
    assert_eq!(q.shed_candidate(ClassId(0)), Some(CallId(1)));
    assert_eq!(q.shed_candidate(ClassId(1)), None);
}

#[test]
fn promote_moves_a_call_up_keeping_its_arrival() {
    let t0 = Instant::now();
    let mut q = Queue::new(4, None);
    push(&mut q, t0, 1, 3, &[X], "a");
    push(&mut q, t0 + s(1), 2, 1, &[X], "b");
    push(&mut q, t0 + s(2), 3, 2, &[X], "c");
    q.promote(t0 + s(3), CallId(1), ClassId(1));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(1)));
    assert!(q.contains(CallId(1)));
    assert_eq!(q.len(), 3);
    assert_eq!((q.depth(ClassId(1)), q.depth(ClassId(3))), (2, 0));
    // Never demotes; unknown calls are ignored.
    q.promote(t0 + s(3), CallId(3), ClassId(3));
    assert_eq!(q.class_of(CallId(3)), Some(ClassId(2)));
    q.promote(t0 + s(3), CallId(99), ClassId(0));
    assert_eq!(q.len(), 3);
    // Call 1 arrived before call 2: call 2 is the newer one to shed...
    q.remove(CallId(3));
    assert_eq!(q.shed_candidate(ClassId(0)), Some(CallId(2)));
    // ...and call 1 goes first.
    assert_eq!(drain(&mut q, ready), vec![1, 2]);
}

#[test]
fn promoted_call_goes_before_the_class_it_left() {
    let t0 = Instant::now();
    let mut q = Queue::new(4, None);
    push(&mut q, t0, 1, 2, &[X], "a");
    push(&mut q, t0, 2, 3, &[Y], "b");
    q.promote(t0, CallId(2), ClassId(0));
    assert_eq!(drain(&mut q, ready), vec![2, 1]);
}

#[test]
fn aging_moves_calls_up_one_class_per_period() {
    let t0 = Instant::now();
    let ns = Duration::from_nanos(1);
    let mut q = Queue::new(4, Some(s(10)));
    push(&mut q, t0, 1, 3, &[X], "a");
    assert_eq!(q.next_aging(), Some(t0 + s(10)));
    q.age(t0 + s(10) - ns);
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(3)));
    q.age(t0 + s(10));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(2)));
    assert_eq!(q.next_aging(), Some(t0 + s(20)));
    assert_eq!(q.oldest_arrival(), Some(t0 + s(10)), "arrival in its class");
    q.age(t0 + s(20) - ns);
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(2)));
    q.age(t0 + s(20));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(1)));
    // The top class stays for urgent calls: aging stops at class 1.
    assert_eq!(q.next_aging(), None);
    q.age(t0 + s(1000));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(1)));
    assert_eq!((q.depth(ClassId(1)), q.len()), (1, 1));
}

#[test]
fn aging_tracks_several_calls_and_ignores_removed_ones() {
    let t0 = Instant::now();
    let mut q = Queue::new(4, Some(s(10)));
    push(&mut q, t0, 1, 3, &[X], "a");
    push(&mut q, t0 + s(5), 2, 3, &[X], "b");
    push(&mut q, t0 + s(7), 3, 2, &[Y], "c");
    assert_eq!(q.next_aging(), Some(t0 + s(10)));
    q.age(t0 + s(10));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(2)));
    assert_eq!(q.class_of(CallId(2)), Some(ClassId(3)));
    assert_eq!(q.next_aging(), Some(t0 + s(15)));
    q.remove(CallId(2));
    assert_eq!(q.next_aging(), Some(t0 + s(17)), "call 3 is next");
    q.age(t0 + s(17));
    assert_eq!(q.class_of(CallId(3)), Some(ClassId(1)));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(2)));
    assert_eq!(q.next_aging(), Some(t0 + s(20)));
    // An aged call goes ahead of a fresh call of its old class.
    push(&mut q, t0 + s(18), 4, 3, &[X], "d");
    assert_eq!(drain(&mut q, ready), vec![3, 1, 4]);
    assert_eq!(q.next_aging(), None);
}

#[test]
fn without_aging_nothing_moves() {
    let t0 = Instant::now();
    let mut q = Queue::new(4, None);
    push(&mut q, t0, 1, 3, &[X], "a");
    q.age(t0 + s(10_000));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(3)));
    assert_eq!(q.next_aging(), None);
}

#[test]
fn bookkeeping_remove_take_len_depth_oldest() {
    let t0 = Instant::now();
    let mut q = Queue::new(3, None);
    assert!(q.is_empty());
    assert_eq!(q.oldest_arrival(), None);
    push(&mut q, t0 + s(1), 1, 0, &[X], "a");
    push(&mut q, t0 + s(2), 2, 1, &[X, Y], "b");
    push(&mut q, t0 + s(3), 3, 1, &[Z], "c");
    push(&mut q, t0 + s(4), 4, 2, &[Y], "a");
    assert_eq!(q.len(), 4);
    assert_eq!(
        (
            q.depth(ClassId(0)),
            q.depth(ClassId(1)),
            q.depth(ClassId(2))
        ),
        (1, 2, 1)
    );
    assert_eq!(q.oldest_arrival(), Some(t0 + s(1)));
    assert!(q.remove(CallId(1)));
    assert!(!q.remove(CallId(1)), "already gone");
    assert!(!q.contains(CallId(1)));
    assert_eq!(q.class_of(CallId(1)), None);
    assert_eq!(q.oldest_arrival(), Some(t0 + s(2)));
    assert_eq!(q.depth(ClassId(0)), 0);
    q.take(CallId(2));
    q.take(CallId(77)); // unknown: no effect
    assert_eq!(q.len(), 2);
    assert_eq!(q.depth(ClassId(1)), 1);
    assert_eq!(drain(&mut q, ready), vec![3, 4]);
    assert!(q.is_empty());
    assert_eq!(q.oldest_arrival(), None);
}

#[test]
fn costs_reach_the_check() {
    let t0 = Instant::now();
    let mut q = Queue::new(1, None);
    q.push(t0, CallId(1), ClassId(0), lane(&[X]), client("a"), 7);
    let mut seen = Vec::new();
    let sel = q.select(
        |l: &[BucketKey], cost| {
            seen.push((l.to_vec(), cost));
            None
        },
        free,
    );
    assert_eq!(sel, Selection::Go(CallId(1)));
    assert_eq!(seen, vec![(vec![bk(X)], 7)]);
}

#[test]
fn a_call_promoted_past_aging_schedules_no_aging_wake_up() {
    let t0 = Instant::now();
    let mut q = Queue::new(4, Some(s(10)));
    push(&mut q, t0, 1, 3, &[X], "a");
    push(&mut q, t0 + s(4), 2, 3, &[X], "b");
    assert_eq!(q.next_aging(), Some(t0 + s(10)));
    // A trading-priority caller joins call 1 at the instant it arrived: it
    // now sits in class 1, where aging no longer applies, and only call 2
    // is still due to age.
    q.promote(t0, CallId(1), ClassId(1));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(1)));
    assert_eq!(
        q.next_aging(),
        Some(t0 + s(14)),
        "call 1's class-3 record is stale"
    );
    q.age(t0 + s(10));
    assert_eq!(q.class_of(CallId(1)), Some(ClassId(1)));
    assert_eq!(q.class_of(CallId(2)), Some(ClassId(3)));
}

/// No client share holds any call.
fn free(_: CallId, _: u32) -> Option<Instant> {
    None
}

#[test]
fn a_call_held_by_its_share_lets_the_next_on_its_lane_go() {
    let t0 = Instant::now();
    let mut q = Queue::new(1, None);
    push(&mut q, t0, 1, 0, &[X], "runaway");
    push(&mut q, t0, 2, 0, &[X], "runaway-2");
    push(&mut q, t0, 3, 0, &[X], "good");
    let later = t0 + s(2);
    // Calls 1 and 2 are held; call 3 on the same bucket goes, and the
    // held ones reserve nothing.
    let held = |c: CallId, _| (c.0 < 3).then_some(later);
    assert_eq!(q.select(ready, held), Selection::Go(CallId(3)));
    q.take(CallId(3));
    // Only held calls left: wait until the share admits one.
    assert_eq!(q.select(ready, held), Selection::Wait(Some(later)));
}
