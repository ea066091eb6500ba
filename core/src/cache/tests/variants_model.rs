//! `Vary` in the cache against random stores, reads, invalidations and
//! evictions: a hit is always the variant stored for the reader's own
//! value (or an answer that does not vary), and the records of which
//! variants exist never disagree with the entries.

use super::*;
use crate::vary::Vary;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Target, the reader's `Accept`, and whether the answer varies on
    /// `Accept` (else on `Accept-Language`, which readers never send).
    Varied(u8, u8, bool),
    Plain(u8),
    Read(u8, u8),
    Invalidate(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 0u8..12, any::<bool>()).prop_map(|(k, v, a)| Op::Varied(k, v, a)),
        (0u8..3).prop_map(Op::Plain),
        (0u8..3, 0u8..12).prop_map(|(k, v)| Op::Read(k, v)),
        (0u8..3).prop_map(Op::Invalidate),
    ]
}

fn accept(v: u8) -> Vec<(String, String)> {
    vec![("Accept".into(), format!("v{v}"))]
}

impl Cache {
    /// Every record names only stored variants, every variant entry is
    /// in its record, no record is empty or over the bound, and a target
    /// that varies has no entry that does not.
    fn check_variants(&self) -> Result<(), String> {
        for (primary, rec) in &self.varies {
            if rec.variants.is_empty() || rec.variants.len() > MAX_VARIANTS {
                return Err(format!("{primary:?}: {} variants", rec.variants.len()));
            }
            if self.entries.contains_key(primary) {
                return Err(format!("{primary:?} varies and has a plain entry"));
            }
            for v in &rec.variants {
                if !self.entries.contains_key(&primary.with_variant(*v)) {
                    return Err(format!("{primary:?}: a recorded variant is not stored"));
                }
            }
        }
        for key in self.entries.keys() {
            if let Some(v) = key.variant() {
                let listed = self
                    .varies
                    .get(&key.primary())
                    .is_some_and(|r| r.variants.contains(&v));
                if !listed {
                    return Err(format!("{key:?} is stored but not recorded"));
                }
            }
        }
        let bytes: usize = self.entries.values().map(|e| e.bytes).sum();
        if bytes != self.bytes {
            return Err(format!("bytes {} but entries hold {bytes}", self.bytes));
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn a_hit_is_the_readers_own_variant(ops in proptest::collection::vec(op(), 1..150)) {
        let t0 = Instant::now();
        let mut c = Cache::new(&config(6, 1 << 20, 0.0), IDLE);
        for (i, op) in ops.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64);
            let store = Store::real(now, s(3600));
            match *op {
                Op::Varied(k, v, on_accept) => {
                    let vary = if on_accept { "Accept" } else { "Accept-Language" };
                    let body = if on_accept { format!("{k}:v{v}") } else { format!("{k}:any") };
                    let response = Arc::new(Response::new(200, body).with_header("Vary", vary));
                    prop_assert!(Vary::of(&response.headers) != Vary::None);
                    let stored = c.store_answer(now, &key(&format!("/k{k}")), response, store, &accept(v));
                    prop_assert!(stored.is_some());
                }
                Op::Plain(k) => {
                    let stored = c.store_answer(now, &key(&format!("/k{k}")), ok(&format!("{k}:any")), store, &[]);
                    prop_assert!(stored.is_some());
                }
                Op::Read(k, v) => {
                    let selected = c.select(key(&format!("/k{k}")), &accept(v));
                    if let Lookup::Fresh { response, .. } = c.lookup(now, &selected) {
                        let body = String::from_utf8_lossy(&response.body).into_owned();
                        let mine = format!("{k}:v{v}");
                        let any = format!("{k}:any");
                        prop_assert!(body == mine || body == any, "read of {} with v{} got {}", k, v, body);
                    }
                }
                Op::Invalidate(k) => {
                    let target = format!("/k{k}");
                    c.invalidate_where(|key| key.target() == target);
                }
            }
            c.check_variants().map_err(TestCaseError::fail)?;
        }
    }
}

/// The ninth variant of one target pushes out the first; the records and
/// the byte count follow.
#[test]
fn the_oldest_variant_goes_first() {
    let t0 = Instant::now();
    let mut c = Cache::new(&config(100, 1 << 20, 0.0), IDLE);
    let k = key("/a");
    let varied = || Arc::new(Response::new(200, "x").with_header("Vary", "accept"));
    for v in 0..=MAX_VARIANTS as u8 {
        c.store_answer(t0, &k, varied(), Store::real(t0, s(60)), &accept(v));
    }
    assert_eq!(c.snapshot().entries, MAX_VARIANTS);
    assert_eq!(c.snapshot().evictions, 1);
    assert_eq!(c.lookup(t0, &c.select(k.clone(), &accept(0))), Lookup::Miss);
    assert!(is_fresh(&c.lookup(t0, &c.select(k.clone(), &accept(1)))));
    c.check_variants().unwrap();
}
