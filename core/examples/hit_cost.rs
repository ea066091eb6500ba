//! Submits N cache hits, for counting the instructions one costs
//! (`scripts/bench-hit-instructions.sh` runs it under callgrind twice and
//! subtracts). Instruction counts, unlike criterion's wall-clock figures,
//! do not move with the machine's load.
//!
//! `hit_cost ticker|private|directives|varied N` (`varied`: the ticker's
//! answer carries `Vary: Accept`, each hit selects its variant).

use std::hint::black_box;
use std::process::ExitCode;

use syncoord_core::{
    Admission, Config, Coordinator, Duration, Freshness, Instant, Outcome, Output, Request,
    RequestHeaders, Response,
};

const TICKER: &str = "/api/v3/brokerage/market/products/BTC-USD/ticker";
const ACCOUNTS: &str = "/api/v3/brokerage/accounts";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(which), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: hit_cost ticker|private|directives|varied N");
        return ExitCode::from(2);
    };
    // A ccxt-like header set with one request directive.
    let headers: Vec<(String, String)> = [
        ("Host", "127.0.0.1:8787"),
        ("User-Agent", "ccxt/4"),
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip"),
        ("Cache-Control", "max-age=5"),
        ("X-Syncoord-Client", "bot-7"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    let request = match which.as_str() {
        "ticker" | "directives" => Request::get(TICKER, "bot-1"),
        "private" => Request::get(ACCOUNTS, "bot-1").with_credential("key:a"),
        "varied" => {
            Request::get(TICKER, "bot-1").with_headers(RequestHeaders::from(headers.clone()))
        }
        other => {
            eprintln!("hit_cost: unknown case `{other}` (ticker, private, directives or varied)");
            return ExitCode::from(2);
        }
    };
    let t0 = Instant::now();
    let Ok(config) = Config::default().compile() else {
        eprintln!("hit_cost: the default configuration does not compile");
        return ExitCode::FAILURE;
    };
    let mut coord: Coordinator = Coordinator::new(config, t0, 1);
    if !matches!(
        coord.submit(t0, request.clone(), ()),
        Admission::Waiting { .. }
    ) {
        eprintln!("hit_cost: the warm-up request was not queued");
        return ExitCode::FAILURE;
    }
    let Output::Dispatch(dispatch) = coord.poll_output(t0) else {
        eprintln!("hit_cost: the warm-up request was not dispatched");
        return ExitCode::FAILURE;
    };
    let mut body = Response::new(200, vec![b'x'; 300]);
    if which == "varied" {
        body = body.with_header("Vary", "Accept");
    }
    if coord
        .complete(t0, dispatch.call, Outcome::response(body))
        .is_err()
    {
        eprintln!("hit_cost: the warm-up call could not complete");
        return ExitCode::FAILURE;
    }
    while matches!(coord.poll_output(t0), Output::Finished(_)) {}
    let requests: Vec<Request> = (0..n).map(|_| request.clone()).collect();
    let mut now = t0;
    let mut hits = 0;
    for mut r in requests {
        now += Duration::from_nanos(1);
        if which == "directives" {
            r.freshness = Freshness::from_headers(black_box(&headers));
        }
        if matches!(black_box(coord.submit(now, r, ())), Admission::Answered(_)) {
            hits += 1;
        }
    }
    if hits != n {
        eprintln!("hit_cost: {hits} of {n} requests were hits");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
