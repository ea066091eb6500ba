//! `[server] state_file`: the limiter's learned rates across restarts, so
//! a restarted daemon does not spend 429s learning upstream's limits again.
//! JSON, one list of rates per upstream name; written whole to a temporary
//! file then renamed (a crash mid-write leaves the old file). A missing
//! file is a first start; an unreadable or garbled one is logged and
//! ignored (learning starts over), never fatal.
//!
//! It is written at shutdown and, while the daemon runs, every
//! [`SAVE_EVERY`] when the rates changed: a daemon killed (OOM, power
//! loss, `kill -9`) loses at most that much learning, not all of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use syncoord::Coordinator;
use syncoord_core::LearnedRate;
use syncoord_proxy::{PerUpstream, Proxy};

type State = BTreeMap<String, Vec<LearnedRate>>;

/// Restores each upstream's rates from `path`.
pub(crate) fn restore(path: &Path, proxy: &Proxy, hosts: &PerUpstream<Coordinator>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "state file unreadable: learning starts over");
            return;
        }
    };
    let state: State = match serde_json::from_str(&text) {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "state file garbled: learning starts over");
            return;
        }
    };
    for (id, host) in hosts.iter() {
        let name = &proxy.upstream(id).name;
        if let Some(rates) = state.get(name) {
            let taken = host.restore_learned(rates);
            tracing::info!(upstream = %name, taken, saved = rates.len(), "learned rates restored");
        }
    }
}

/// How often a running daemon saves changed rates.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(5);

fn state_of(proxy: &Proxy, hosts: &PerUpstream<Coordinator>) -> State {
    hosts
        .iter()
        .map(|(id, host)| (proxy.upstream(id).name.clone(), host.learned_rates()))
        .collect()
}

/// What is compared to tell whether the rates changed since the last save:
/// each rate without its age (which grows on its own).
fn fingerprint(state: &State) -> Vec<(String, Option<String>, u64, u32)> {
    state
        .values()
        .flatten()
        .map(|r| {
            (
                r.scope.clone(),
                r.credential.clone(),
                r.rate_per_sec.to_bits(),
                r.burst,
            )
        })
        .collect()
}

/// Writes `state` to `path` atomically: a temporary file beside it,
/// flushed to disk, then renamed over it.
fn write(path: &Path, state: &State) -> std::io::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Saves every upstream's rates to `path`.
pub(crate) fn save(path: &Path, proxy: &Proxy, hosts: &PerUpstream<Coordinator>) {
    match write(path, &state_of(proxy, hosts)) {
        Ok(()) => tracing::info!(path = %path.display(), "learned rates saved"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "learned rates not saved"),
    }
}

/// The thread that saves changed rates every [`SAVE_EVERY`] while the
/// daemon runs (one thread for the daemon, asleep between saves).
pub(crate) struct Saver {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Saver {
    /// Starts saving to `path` every `every`; `None` if the thread cannot
    /// be started (logged: the file is still written at shutdown).
    pub(crate) fn start(
        path: PathBuf,
        proxy: Arc<Proxy>,
        hosts: Arc<PerUpstream<Coordinator>>,
        every: Duration,
    ) -> Option<Saver> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("state-file".into())
            .spawn(move || {
                let mut last = fingerprint(&state_of(&proxy, &hosts));
                loop {
                    match stopped.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let state = state_of(&proxy, &hosts);
                    let now = fingerprint(&state);
                    if now == last {
                        continue;
                    }
                    match write(&path, &state) {
                        Ok(()) => {
                            tracing::debug!(path = %path.display(), "learned rates saved");
                            last = now;
                        }
                        Err(e) => tracing::warn!(path = %path.display(), error = %e, "learned rates not saved"),
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Saver { stop, thread }),
            Err(e) => {
                tracing::warn!(error = %e, "no thread to save learned rates while running: saved at shutdown only");
                None
            }
        }
    }

    /// Stops the thread (a save under way completes first).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
