//! `trainer`: the command line over the `trainer` library (see `lib.rs`).
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = trainer::cli::Cli::parse();
    match trainer::commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
