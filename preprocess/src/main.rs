//! `preprocess`: turns a corpus into token shards (`preprocess tokenize`) and corrupts one epoch
//! of them with the frozen auxiliary model (`preprocess --epoch E`).
mod bench;
mod cli;
mod corrupt;
mod term_frequency;
mod tokenize;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("preprocess: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
