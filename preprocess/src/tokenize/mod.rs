//! `preprocess tokenize`: corpus to packed token shards.
use clap::Args;

#[derive(Debug, Args)]
pub struct TokenizeArgs {}

pub fn run(_args: TokenizeArgs) -> anyhow::Result<()> {
    anyhow::bail!("preprocess tokenize is not built yet")
}
