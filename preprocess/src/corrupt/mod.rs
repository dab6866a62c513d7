//! `preprocess --epoch E`: corrupt one epoch of token shards with the frozen auxiliary model.
use clap::Args;

#[derive(Debug, Args)]
pub struct CorruptArgs {}

pub fn run(_args: CorruptArgs) -> anyhow::Result<()> {
    anyhow::bail!("preprocess --epoch is not built yet")
}
