//! Runs the reference workload in virtual time and prints the figures:
//! `cargo run --release -p syncoord-sim --example reference_workload [BOTS] [HOURS] [on|off|coinbase|coinbase-off]`
//! (the third argument: refresh-ahead on (default) or off, or the
//! Coinbase-limits workload with it on or off)
use syncoord_core::Duration;
use syncoord_sim::{self as sim, Scenario};

fn main() {
    let mut args = std::env::args().skip(1);
    let bots = match args.next().map(|a| a.parse::<usize>()) {
        None => 25,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: reference_workload [BOTS (a positive number, default 25)] [HOURS (default 24)]");
            std::process::exit(2);
        }
    };
    let hours = match args.next().map(|a| a.parse::<f64>()) {
        None => 24.0,
        Some(Ok(h)) if h.is_finite() && h > 0.0 => h,
        Some(_) => {
            eprintln!("HOURS must be a positive number");
            std::process::exit(2);
        }
    };
    let mut scenario = match args.next().as_deref() {
        None | Some("on") => Scenario::reference(bots),
        Some("off") => Scenario::reference(bots).without_refresh(),
        Some("coinbase") => Scenario::coinbase(bots),
        Some("coinbase-off") => Scenario::coinbase(bots).without_refresh(),
        Some(other) => {
            eprintln!("unknown mode `{other}` (on, off, coinbase, coinbase-off)");
            std::process::exit(2);
        }
    };
    scenario.duration = Duration::from_secs_f64(hours * 3600.0);
    let started = std::time::Instant::now();
    let report = sim::run(&scenario);
    print!("{report}");
    println!(
        "  (ran in {:.2} s of real time)",
        started.elapsed().as_secs_f64()
    );
    let ok = report.upstream_429s == 0 && report.bot_429s == 0 && report.bots_served == report.bots;
    std::process::exit(if ok { 0 } else { 1 });
}
