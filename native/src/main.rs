//! `syncoord`: the command line. Each subcommand is a thin shell over one
//! library module; see `syncoord --help`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

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
