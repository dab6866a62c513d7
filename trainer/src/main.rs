//! `trainer`: trains the main model on dumped epochs (RTD), or a masked LM on token shards;
//! `trainer cost` prints the cost model, `trainer loader-bench` measures the loader.
use clap::Parser;
use std::process::ExitCode;

mod checkpoint;
mod cli;
mod cost_cmd;
mod data;
mod dist;
mod ext;
mod fused;
mod loader;
mod lr;
mod metrics;
mod objective_bench;
mod objectives;
mod optim;
mod outputs;
mod parallel;
mod plots;
mod rng;
mod train;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        Some(cli::Command::Cost(args)) => cost_cmd::run(args),
        Some(cli::Command::LoaderBench(args)) => train::bench::run(args),
        Some(cli::Command::Bench(args)) => objective_bench::run(args),
        Some(cli::Command::DistCheck(args)) => dist::check(args),
        Some(cli::Command::FusedCheck(args)) => fused::check::run(args),
        None => train::run(&cli.train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
