//! The link to the store: pooled connections, every round trip timed and
//! counted, and the store turned off on the first error (the heartbeat
//! turns it on again).

use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::Connection;

use super::{lock, Cluster};

impl Cluster {
    fn connection(&self) -> redis::RedisResult<Connection> {
        if let Some(c) = lock(&self.pool).pop() {
            return Ok(c);
        }
        let c = self
            .client
            .get_connection_with_timeout(self.settings.connect_timeout())?;
        c.set_read_timeout(Some(self.settings.call_timeout()))?;
        c.set_write_timeout(Some(self.settings.call_timeout()))?;
        Ok(c)
    }

    /// Runs one round trip with a pooled connection, timed and counted;
    /// an error turns the store off (the connection is dropped). `None`
    /// when the store is off or the call failed.
    pub(super) fn round_trip<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if !self.is_up() {
            return None;
        }
        self.run(f)
    }

    pub(super) fn run<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let started = Instant::now();
        let result = self
            .connection()
            .and_then(|mut c| f(&mut c).map(|v| (v, c)));
        let took = started.elapsed();
        let mut k = lock(&self.counters);
        k.round_trips += 1;
        match result {
            Ok((v, c)) => {
                if let Some(h) = k.rtt.as_mut() {
                    let _ = h.record((took.as_micros() as u64).max(1));
                }
                drop(k);
                let mut pool = lock(&self.pool);
                if pool.len() < self.pool_size {
                    pool.push(c);
                }
                Some(v)
            }
            Err(e) => {
                k.errors += 1;
                if e.is_timeout() {
                    k.timeouts += 1;
                }
                drop(k);
                // Said once when the store is lost (and once when it is
                // reached again), never per failed call.
                if self.went_down() {
                    tracing::warn!(store = %self.store, error = %e, "shared store lost; limiting locally until it answers again");
                } else {
                    tracing::debug!(store = %self.store, error = %e, "shared store call failed");
                }
                None
            }
        }
    }

    /// Marks the store down; whether it was up until now.
    fn went_down(&self) -> bool {
        lock(&self.pool).clear();
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if was_up {
            let mut k = lock(&self.counters);
            k.fallbacks += 1;
            k.fallback_since = Some(Instant::now());
            drop(k);
            // The heartbeat thread reconnects.
            self.wake.notify_all();
        }
        was_up
    }

    pub(super) fn came_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            let mut k = lock(&self.counters);
            if let Some(since) = k.fallback_since.take() {
                k.fallback_total += since.elapsed();
            }
            drop(k);
            tracing::info!(store = %self.store, "shared store reached; sharing budgets");
        }
    }
}
