//! The subcommands of `trainer`, one file each, named after the command: its flags (a clap
//! `Args` struct) and its `run`. Training itself (no subcommand) is [`crate::train::run`].
pub mod bench;
pub mod cost;
pub mod dist_check;
pub mod finetune;
pub mod fused_check;
pub mod loader_bench;

use crate::cli::{Cli, Command};

/// Runs what the command line asks for.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::Cost(args)) => cost::run(args),
        Some(Command::LoaderBench(args)) => loader_bench::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::DistCheck(args)) => dist_check::run(args),
        Some(Command::FusedCheck(args)) => fused_check::run(args),
        Some(Command::Finetune(args)) => finetune::run(args),
        None => crate::train::run(&cli.train),
    }
}
