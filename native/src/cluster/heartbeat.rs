//! The heartbeat: this daemon recorded alive (how many are alive sets the
//! fallback share), its fingerprint published and the peers' compared,
//! and, while the store is off, the reconnect probe.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Duration;

use syncoord_wire::Fingerprint;

use super::{lock, Cluster};

impl Cluster {
    /// One heartbeat (also the reconnect probe): records this daemon alive,
    /// publishes its fingerprint, reads how many are alive and the peers'
    /// fingerprints. Returns whether the store answered.
    pub(super) fn beat(&self) -> bool {
        let window = (self.settings.heartbeat().as_millis() as u64 * 3).max(1);
        let key = self.key("alive", "").trim_end_matches(':').to_owned();
        let mine = self
            .fingerprint
            .as_ref()
            .map_or(String::new(), Fingerprint::encode);
        let reply: Option<(u64, Vec<String>)> = self.run(|c| {
            self.heartbeat
                .key(&key)
                .key(&self.peers_key)
                .arg(&self.id)
                .arg(window)
                .arg(&mine)
                .invoke(c)
        });
        match reply {
            Some((n, peers)) => {
                self.alive.store(n.max(1), Ordering::Relaxed);
                self.came_up();
                self.compare(&peers);
                true
            }
            None => false,
        }
    }

    /// Logs each peer that disagrees with this daemon's fingerprint, once
    /// per peer and disagreement (and once when it agrees again).
    fn compare(&self, peers: &[String]) {
        let Some(mine) = &self.fingerprint else {
            return;
        };
        let now: HashMap<String, String> = peers
            .chunks_exact(2)
            .filter_map(|p| {
                let theirs = Fingerprint::decode(&p[1])?;
                Some((p[0].clone(), mine.disagreement(&theirs)?))
            })
            .collect();
        let mut logged = lock(&self.disagreeing);
        for (peer, why) in &now {
            if logged.get(peer) != Some(why) {
                tracing::error!(
                    cluster = %self.settings.name,
                    upstream = %mine.upstream,
                    peer = %peer,
                    "cluster peer disagrees: {why}"
                );
            }
        }
        for peer in logged.keys() {
            if !now.contains_key(peer) {
                tracing::info!(cluster = %self.settings.name, upstream = %mine.upstream, peer = %peer, "cluster peer no longer disagrees (gone or reconfigured)");
            }
        }
        *logged = now;
    }

    /// The heartbeat thread's loop: a heartbeat every `heartbeat_secs`
    /// while the store is up; while it is down, reconnect attempts with
    /// exponential backoff (50 ms doubling to the heartbeat interval).
    /// `changed` runs after every change of [`Self::is_up`] (the host
    /// tells its core), `beaten` after every heartbeat the store answered
    /// (the host exchanges learned rates). Returns after [`Self::stop`].
    pub fn run_heartbeat(&self, changed: &dyn Fn(), beaten: &dyn Fn()) {
        let beat = self.settings.heartbeat();
        let mut backoff = Duration::from_millis(50);
        let mut was_up = self.is_up();
        changed();
        loop {
            let wait = if self.is_up() {
                beat
            } else {
                backoff.min(beat)
            };
            {
                let stopping = lock(&self.stopping);
                if *stopping {
                    return;
                }
                let (stopping, _) = self
                    .wake
                    .wait_timeout(stopping, wait)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stopping {
                    return;
                }
            }
            let ok = self.beat();
            if ok {
                beaten();
            }
            backoff = if ok {
                Duration::from_millis(50)
            } else {
                (backoff * 2).min(beat)
            };
            let up = self.is_up();
            if up != was_up {
                was_up = up;
                changed();
            }
        }
    }

    /// Ends [`Self::run_heartbeat`].
    pub fn stop(&self) {
        *lock(&self.stopping) = true;
        self.wake.notify_all();
    }
}
