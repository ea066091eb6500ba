//! Budgets: the shared GCRA over every bucket of a call, one round trip;
//! a bucket resumes empty after the store was off.

use std::sync::atomic::Ordering;
use std::time::Duration;

use syncoord_core::{SharedRefusal, SharedSpend};

use super::{lock, rendered, Cluster};

impl Cluster {
    /// Runs the shared GCRA for `spend`; `None` when it may go (or the
    /// store is off). `now_us` overrides Redis's clock (tests).
    pub fn spend(&self, spend: &SharedSpend, now_us: Option<u64>) -> Option<SharedRefusal> {
        if spend.buckets.is_empty() || !self.is_up() {
            return None;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let names: Vec<String> = spend.buckets.iter().map(rendered).collect();
        let resume: Vec<bool> = {
            let applied = lock(&self.resumed);
            names
                .iter()
                .map(|n| epoch > 0 && applied.get(n).copied().unwrap_or(0) < epoch)
                .collect()
        };
        let reply: Option<(u8, u64)> = self.round_trip(|c| {
            let mut inv = self.gcra.prepare_invoke();
            for n in &names {
                inv.key(self.key("gcra", n));
            }
            for n in &names {
                inv.key(self.key("pause", n));
            }
            inv.arg(now_us.map_or(String::new(), |n| n.to_string()))
                .arg(spend.cost)
                .arg(spend.reserve);
            for (b, r) in spend.buckets.iter().zip(&resume) {
                inv.arg(syncoord_core::micros_ceil(b.interval))
                    .arg(b.burst)
                    .arg(if *r { "1" } else { "0" });
            }
            inv.invoke(c)
        });
        let (kind, micros) = reply?;
        if resume.iter().any(|r| *r) {
            let mut applied = lock(&self.resumed);
            for n in names {
                applied.insert(n, epoch);
            }
        }
        let wait = Duration::from_micros(micros);
        match kind {
            0 => None,
            2 => Some(SharedRefusal::Paused(wait)),
            _ => Some(SharedRefusal::Until(wait)),
        }
    }
}
