//! `trainer`: trains the main model on dumped epochs (RTD), or a masked LM on token shards.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "trainer: not built yet (cuda available: {})",
        tch::Cuda::is_available()
    );
    ExitCode::FAILURE
}
