//! A deterministic simulation in virtual time: groups of trading bots on
//! timers, an upstream that enforces its documented limits (and answers 429
//! past them), and the coordinator between them. Hours of traffic run in
//! a second; the same seed gives the same run.
//!
//! A [`Scenario`] is a workload (bot groups and the calls each evaluation
//! makes, [`BotGroup`]), a simulated [`Upstream`] (its limits, latency and
//! fault windows) and the coordinator's [`Config`]. [`run`] plays it and
//! returns a [`Report`]: the coordinator's own stats, plus a breakdown per
//! route and per priority class, the budget each bucket used, and what the
//! upstream's limits saw.
//!
//! [`Scenario::reference`] is the reference workload: 25 bots sharing one
//! API key, each evaluating every ~30 s (ticker, balances, candles every
//! fourth time, an occasional order), an upstream budget of 8 calls per
//! minute with a burst of 8, and a 90 s cache TTL. [`Scenario::coinbase`]
//! is the same bots at Coinbase Advanced Trade's own limits, evaluating
//! every second. Both run with the presets' refresh-ahead on;
//! [`Scenario::without_refresh`] turns it off for comparison.
//!
//! [`Workload`] is the workload file `syncoord simulate` reads (TOML),
//! resolved against a configuration file into a [`Scenario`].
//!
//! This is tooling beside the core, not part of it: it reads the clock
//! once (the virtual time's origin) and owns its own event loop.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod engine;
mod prepare;
mod reference;
mod report;
mod scenario;
pub mod workload;

pub use reference::{documented_limits, reference_config, reference_group, reference_upstream};
pub use report::{Breakdown, BucketUse, LimitUse, Report};
pub use scenario::{
    Ban, BotGroup, Call, Credentials, Fault, FaultKind, HeaderStyle, Latency, Limit, Scenario,
    ScenarioError, ScenarioErrors, Upstream, When,
};

use syncoord_core::Duration;

use engine::Sim;

/// Runs `scenario` to the end (bots stop at `duration`; what is in flight
/// then finishes).
///
/// # Panics
///
/// When the scenario does not pass [`Scenario::check`]; use [`try_run`]
/// for scenarios read from outside.
pub fn run(scenario: &Scenario) -> Report {
    match try_run(scenario, &mut |_| {}) {
        Ok(r) => r,
        Err(e) => panic!("invalid scenario:\n{e}"),
    }
}

/// Runs `scenario`, calling `progress` with the virtual time reached about
/// every simulated minute (a host shows progress with it; it cannot change
/// the run).
pub fn try_run(
    scenario: &Scenario,
    progress: &mut dyn FnMut(Duration),
) -> Result<Report, ScenarioErrors> {
    let prepared = scenario.prepare()?;
    Ok(Sim::new(scenario, prepared).run(progress))
}
