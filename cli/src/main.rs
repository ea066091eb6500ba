//! `syncoord`: the command line. The flags live here; each subcommand is a
//! thin shell over one library crate (`syncoord-daemon`, `syncoord-mock`),
//! except `demo`, which is this binary's own. See `syncoord --help`.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod config_file;
mod demo;
mod log_redact;
mod mock_upstream;
mod plot;
mod simulate;
mod summary;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("syncoord: {error:#}");
            ExitCode::from(2)
        }
    }
}
