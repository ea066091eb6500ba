//! Built without the `cluster` feature: no shared store, and no Redis
//! client in the dependency tree of a bot that coordinates alone.
//!
//! [`Cluster`] has no values here, so every branch of the host that
//! consults one is statically dead, and the host keeps one code path for
//! both builds. Enable the feature (the daemon does) for the real one.

use syncoord_core::stats::ClusterStats;
use syncoord_core::{SharedOutput, SharedSpend, StoreState};

pub use crate::store::{Before, SharedAnswer};

/// The shared store of a cluster; without the `cluster` feature there is
/// none, and no value of this type can be made.
#[derive(Debug)]
pub enum Cluster {}

impl Cluster {
    /// See the `cluster` feature's `Cluster::state`.
    pub fn state(&self) -> StoreState {
        match *self {}
    }

    /// See the `cluster` feature's `Cluster::run_heartbeat`.
    pub fn run_heartbeat(&self, _changed: &dyn Fn(), _beaten: &dyn Fn()) {
        match *self {}
    }

    /// See the `cluster` feature's `Cluster::exchange_learned`.
    pub fn exchange_learned(
        &self,
        _mine: &[syncoord_core::LearnedRate],
    ) -> Option<Vec<syncoord_core::LearnedRate>> {
        match *self {}
    }

    /// See the `cluster` feature's `Cluster::stop`.
    pub fn stop(&self) {
        match *self {}
    }

    /// See the `cluster` feature's `Cluster::before`.
    pub fn before(&self, _spend: &SharedSpend, _key: Option<&str>) -> Before {
        match *self {}
    }

    /// See the `cluster` feature's `Cluster::publish`.
    pub fn publish(&self, _outputs: Vec<SharedOutput>, _leader: Option<&str>) {
        match *self {}
    }

    /// See the `cluster` feature's `Cluster::stats`.
    pub fn stats(&self) -> ClusterStats {
        match *self {}
    }
}
