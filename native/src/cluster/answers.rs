//! Shared answers: a local miss looks in the store before upstream, and a
//! lease lets one daemon fetch while the others wait for its answer.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use syncoord_core::Response;

use super::{lock, Cluster, SharedAnswer};

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Status.
    s: u16,
    /// Headers.
    h: Vec<(String, String)>,
    /// Body, base64.
    b: String,
    /// TTL it was stored with, ms.
    t: u64,
}

impl Cluster {
    pub(super) fn lookup(&self, key: &str) -> Lookup {
        let answer_key = self.key("ans", key);
        let lease_key = self.key("lease", key);
        let lease_ms = (self.settings.lease().as_millis() as u64).max(1);
        // One round trip: the answer and its TTL, else the lease.
        let reply: Option<(u8, Vec<u8>, i64)> = self.round_trip(|c| {
            self.lookup
                .key(&answer_key)
                .key(&lease_key)
                .arg(&self.id)
                .arg(lease_ms)
                .invoke(c)
        });
        match reply {
            None => Lookup::Off,
            Some((1, value, pttl)) => match decode(&value, pttl) {
                Some(answer) => {
                    lock(&self.counters).answers_found += 1;
                    Lookup::Found(answer)
                }
                // Unreadable or expiring this very moment: fetch it.
                None => Lookup::Lead,
            },
            Some((2, _, _)) => Lookup::Lead,
            Some(_) => Lookup::Leased,
        }
    }

    /// Polls for the leader's answer for at most the lease.
    pub(super) fn await_leader(&self, key: &str) -> Option<SharedAnswer> {
        lock(&self.counters).lease_waits += 1;
        let answer_key = self.key("ans", key);
        let lease_key = self.key("lease", key);
        let until = Instant::now() + self.settings.lease();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
            let reply: Option<(Option<Vec<u8>>, i64, bool)> = self.round_trip(|c| {
                redis::pipe()
                    .get(&answer_key)
                    .pttl(&answer_key)
                    .exists(&lease_key)
                    .query(c)
            });
            let (value, pttl, leased) = reply?;
            if let Some(answer) = value.and_then(|v| decode(&v, pttl)) {
                lock(&self.counters).answers_found += 1;
                return Some(answer);
            }
            if !leased {
                // The leader gave up (an answer not shared) or died.
                return None;
            }
        }
        None
    }

    /// Releases the lease this daemon holds on `key` (if it still does).
    pub(super) fn release(&self, key: &str) {
        let lease_key = self.key("lease", key);
        let _: Option<i64> =
            self.round_trip(|c| self.release.key(&lease_key).arg(&self.id).invoke(c));
    }
}

pub(super) enum Lookup {
    Found(SharedAnswer),
    /// Nobody fetches it: this daemon holds the lease now.
    Lead,
    /// Another daemon fetches it.
    Leased,
    Off,
}

pub(super) fn encode(r: &Response, ttl_ms: u64, max: usize) -> Option<Vec<u8>> {
    let size = r.body.len()
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > max {
        return None;
    }
    let stored = Stored {
        s: r.status,
        h: r.headers.clone(),
        b: base64::engine::general_purpose::STANDARD.encode(&r.body),
        t: ttl_ms,
    };
    serde_json::to_vec(&stored)
        .ok()
        .filter(|v| v.len() <= max * 2 + 1024)
}

fn decode(v: &[u8], pttl_ms: i64) -> Option<SharedAnswer> {
    let stored: Stored = serde_json::from_slice(v).ok()?;
    let left = u64::try_from(pttl_ms).ok().filter(|l| *l > 0)?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(stored.b)
        .ok()?;
    Some(SharedAnswer {
        response: Response {
            status: stored.s,
            headers: stored.h,
            body,
        },
        age: Duration::from_millis(stored.t.saturating_sub(left)),
        ttl_left: Duration::from_millis(left),
    })
}
