//! The training run (placeholder until the shard and model APIs land).
pub mod bench {
    pub fn run(_: &crate::cli::BenchArgs) -> anyhow::Result<()> {
        anyhow::bail!("not built yet")
    }
}
pub fn run(_: &crate::cli::TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
