//! `[server] state_file`: the limiter's learned rates across restarts, so
//! a restarted daemon does not spend 429s learning upstream's limits again.
//! JSON, one list of rates per upstream name; written whole to a temporary
//! file then renamed (a crash mid-write leaves the old file). A missing
//! file is a first start; an unreadable or garbled one is logged and
//! ignored (learning starts over), never fatal.

use std::collections::BTreeMap;
use std::path::Path;

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

/// Saves every upstream's rates to `path`.
pub(crate) fn save(path: &Path, proxy: &Proxy, hosts: &PerUpstream<Coordinator>) {
    let state: State = hosts
        .iter()
        .map(|(id, host)| (proxy.upstream(id).name.clone(), host.learned_rates()))
        .collect();
    let result = serde_json::to_string_pretty(&state)
        .map_err(std::io::Error::other)
        .and_then(|text| {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)
        });
    match result {
        Ok(()) => tracing::info!(path = %path.display(), "learned rates saved"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "learned rates not saved"),
    }
}
