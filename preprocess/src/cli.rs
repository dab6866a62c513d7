//! Command line: `preprocess tokenize ...` or `preprocess --epoch E ...` (no subcommand).
use clap::{Parser, Subcommand};

/// Fast-ELECTRA preprocessing: tokenize a corpus once, then corrupt it once per epoch with a
/// frozen auxiliary masked LM at that epoch's temperature (or another replaced-token
/// distribution: --distribution, --augmentation).
#[derive(Debug, Parser)]
#[command(
    name = "preprocess",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand: corrupt one epoch (see `preprocess --help`).
    #[command(flatten)]
    pub corrupt: crate::corrupt::CorruptArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tokenize and pack a corpus into token shards (once per corpus and tokenizer).
    Tokenize(crate::tokenize::TokenizeArgs),
    /// Measure the corruption's sequences per second on random data (median after warm-up).
    Bench(crate::bench::BenchArgs),
    /// Count the token ids of an existing training split into its term-frequency file (new
    /// token folders get it from `tokenize`).
    TermFrequency(crate::term_frequency::TermFrequencyArgs),
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Tokenize(args)) => crate::tokenize::run(args),
        Some(Command::Bench(args)) => crate::bench::run(args),
        Some(Command::TermFrequency(args)) => crate::term_frequency::run(args),
        None => crate::corrupt::run(cli.corrupt),
    }
}
