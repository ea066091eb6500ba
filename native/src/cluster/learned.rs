//! Learned rates through the shared store, so all daemons learn together:
//! at each heartbeat a daemon writes its rates under its own field of the
//! hash `<name>:learned` (JSON: when, on its clock in Unix milliseconds,
//! and the rates) and reads the other daemons' back. An entry not
//! rewritten within three heartbeats is a daemon gone, and ignored; the
//! hash expires with the last daemon. Keys are additive: nothing else
//! reads or writes `learned`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use syncoord_core::LearnedRate;

use super::Cluster;

/// One daemon's entry.
#[derive(Serialize, Deserialize)]
struct Published {
    written_ms: u64,
    rates: Vec<LearnedRate>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Cluster {
    /// Publishes `mine` and returns what the other live daemons learned,
    /// each rate aged by the time since it was written; `None` when the
    /// store is off or did not answer (learning goes on locally).
    pub fn exchange_learned(&self, mine: &[LearnedRate]) -> Option<Vec<LearnedRate>> {
        let key = self.key("learned", "").trim_end_matches(':').to_owned();
        let window_ms = (self.settings.heartbeat().as_millis() as u64 * 3).max(1);
        let now_ms = unix_ms();
        let text = serde_json::to_string(&Published {
            written_ms: now_ms,
            rates: mine.to_vec(),
        })
        .ok()?;
        let (all,): (HashMap<String, String>,) = self.round_trip(|c| {
            redis::pipe()
                .hset(&key, &self.id, &text)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(window_ms)
                .ignore()
                .hgetall(&key)
                .query(c)
        })?;
        let mut theirs = Vec::new();
        for (id, value) in all {
            if id == self.id {
                continue;
            }
            // A garbled entry is some other program's: skipped.
            let Ok(p) = serde_json::from_str::<Published>(&value) else {
                continue;
            };
            let since = now_ms.saturating_sub(p.written_ms);
            if since > window_ms {
                continue;
            }
            theirs.extend(p.rates.into_iter().map(|mut r| {
                r.age_secs += since as f64 / 1000.0;
                r
            }));
        }
        Some(theirs)
    }
}
