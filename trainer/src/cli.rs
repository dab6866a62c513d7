//! The command line of `trainer`: training (no subcommand, flags in [`crate::train::args`]) and
//! the subcommands (flags in their files under [`crate::commands`]).
use clap::{Parser, Subcommand};

/// Trains the Fast-ELECTRA main model (replaced-token detection) on dumped epochs, or a masked
/// LM on token shards; `trainer cost` prints the cost model.
#[derive(Debug, Parser)]
#[command(
    name = "trainer",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: crate::train::args::TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints training FLOPs per sequence per update and memory of the main model and of the
    /// auxiliary model (jointly trained vs frozen).
    Cost(crate::commands::cost::CostArgs),
    /// Measures the loader alone (decode, shuffle, collate; no model): sequences per second.
    LoaderBench(crate::commands::loader_bench::LoaderBenchArgs),
    /// Table 7: seconds per update and peak memory of rtd, online and electra at the same
    /// model and batch (random rows, no data needed), with the ratios to electra (joint).
    Bench(crate::commands::bench::ObjectiveBenchArgs),
    /// Checks and times the process group under a launcher (torchrun): all-reduce, broadcast
    /// and barrier of every rank, with the all-reduce's time and bus bandwidth.
    DistCheck(crate::commands::dist_check::DistCheckArgs),
    /// GPU check of `--step fused` and the sampler kernel (scripts/gpu-check.sh): every kernel
    /// against the tch reference, the whole step's gradients against autograd, times.
    FusedCheck(crate::commands::fused_check::FusedCheckArgs),
    /// Fine-tunes pre-trained encoders on a sentence or sentence-pair task (GLUE, mr, any file)
    /// over a grid of hyper-parameters and seeds, and ranks them by the dev metric.
    Finetune(Box<crate::commands::finetune::FinetuneArgs>),
}
