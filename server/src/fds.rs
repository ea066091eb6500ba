//! File descriptors: the one resource a connection costs the server.
//!
//! systemd and most shells start a process with a soft limit of 1,024
//! open files, far below the hard limit; the first server of a process
//! raises the soft limit to the hard one, and the connection bound is
//! kept below whatever the limit is, with room to spare for everything
//! else the process opens (upstream connections, logs, epoll, the
//! reserve descriptor of the event loop).

use std::sync::OnceLock;

/// Descriptors left for the rest of the process at any limit.
const SPARE_MIN: u64 = 64;

/// The soft limit after raising it to the hard limit (once per process);
/// `None` where the platform has no such limit or it cannot be read.
fn soft_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "open file limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open file limit");
            None
        }
    })
}

/// `wanted`, lowered to what the open file limit leaves room for: one
/// descriptor per connection, plus an eighth of the limit (at least
/// `SPARE_MIN`) kept for the rest of the process.
pub(crate) fn connection_bound(wanted: usize) -> usize {
    let Some(limit) = soft_limit() else {
        return wanted;
    };
    let room = bound_for(limit);
    if (wanted as u64) > room {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = limit,
            lowered_to = room,
            "server.max_connections lowered to fit the open file limit (raise `ulimit -n` / LimitNOFILE for more)"
        );
        return room.max(1) as usize;
    }
    wanted
}

/// Connections a soft limit of `limit` descriptors leaves room for.
fn bound_for(limit: u64) -> u64 {
    let spare = (limit / 8).max(SPARE_MIN);
    limit.saturating_sub(spare)
}

#[cfg(test)]
mod tests {
    use super::bound_for;

    #[test]
    fn the_bound_leaves_room_for_the_rest_of_the_process() {
        assert_eq!(bound_for(256), 192);
        assert_eq!(bound_for(1024), 896);
        assert_eq!(bound_for(65_536), 57_344);
        assert_eq!(bound_for(10), 0);
    }
}
