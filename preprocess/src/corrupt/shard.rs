//! Turning the corrupted rows of one token shard into its epoch shard: statistics in row order,
//! seeded shuffle, Arrow batches of one row group each, atomic zstd Parquet write with the
//! settings and statistics in the key-value metadata.
use std::path::Path;

use rayon::prelude::*;
use shared::corruption::rng::{domain, CounterRng};
use shared::format::epoch_meta::{
    EpochSettings, ShardStats, META_EPOCH, META_SETTINGS, META_SETTINGS_FINGERPRINT,
    META_SHARD_STATS, META_SOURCE_SHA256, META_SOURCE_SHARD, META_SOURCE_UNVERIFIED,
    META_TEMPERATURE,
};
use shared::format::epoch_shards::{epoch_schema, EpochRows};
use shared::format::manifest::ShardEntry;
use shared::format::spec::{epoch, shard_file_name, META_KIND};

use shared::corruption::batch::CorruptedRow;

/// Rows per row group of an epoch shard (the trainer decodes row groups in parallel).
pub const ROW_GROUP_ROWS: usize = 1024;

/// Statistics of `rows` (already in token-shard row order): integer counts, and the entropy
/// summed in row then position order so that the same rows give the same bits.
pub fn stats_of(rows: &[CorruptedRow]) -> ShardStats {
    let mut s = ShardStats::default();
    for r in rows {
        s.rows += 1;
        s.tokens += r.input_ids.len() as u64;
        s.masked += r.masked_positions.len() as u64;
        s.replaced += r.replaced as u64;
        s.correct_top1 += r.correct_top1 as u64;
        for &h in &r.entropy {
            s.entropy_sum += h as f64;
        }
    }
    s
}

/// The permutation of `n` rows of shard `shard`: `CounterRng(seed, [SHUFFLE, epoch, shard])`.
pub fn row_order(n: usize, seed: u64, epoch: u32, shard: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    CounterRng::new(seed, &[domain::SHUFFLE, epoch as u64, shard as u64]).shuffle(&mut order);
    order
}

/// Writes epoch shard `shard` (made from token shard `source`) into `dir`. `rows` may arrive in
/// any order; they are sorted by row index first.
pub fn write_epoch_shard(
    dir: &Path,
    shard: usize,
    source: &ShardEntry,
    settings: &EpochSettings,
    source_verified: bool,
    mut rows: Vec<CorruptedRow>,
) -> anyhow::Result<(ShardEntry, ShardStats)> {
    rows.sort_unstable_by_key(|r| r.row);
    anyhow::ensure!(
        rows.len() as u64 == source.rows,
        "epoch shard {shard}: expected {} rows (token shard {}), found {}",
        source.rows,
        source.file,
        rows.len()
    );
    let stats = stats_of(&rows);
    let order = row_order(
        rows.len(),
        settings.corruption.seed,
        settings.corruption.epoch,
        shard,
    );
    let batches = order
        .par_chunks(ROW_GROUP_ROWS)
        .map(|chunk| {
            let mut group = EpochRows::new();
            for &i in chunk {
                let r = &rows[i];
                group.push(
                    r.sequence_id,
                    &r.input_ids,
                    &r.targets,
                    &r.masked_positions,
                    &r.original_ids,
                );
            }
            group.to_batch()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut metadata = vec![
        (META_KIND.to_string(), epoch::KIND.to_string()),
        (
            META_EPOCH.to_string(),
            settings.corruption.epoch.to_string(),
        ),
        (
            META_TEMPERATURE.to_string(),
            settings.corruption.temperature.to_string(),
        ),
        (META_SETTINGS.to_string(), settings.to_json()),
        (
            META_SETTINGS_FINGERPRINT.to_string(),
            settings.fingerprint(),
        ),
        (META_SHARD_STATS.to_string(), serde_json::to_string(&stats)?),
        (META_SOURCE_SHARD.to_string(), source.file.clone()),
        (META_SOURCE_SHA256.to_string(), source.sha256.clone()),
    ];
    if !source_verified {
        metadata.push((META_SOURCE_UNVERIFIED.to_string(), "true".to_string()));
    }
    let path = dir.join(shard_file_name(shard));
    let entry = shared::format::shard_writer::write_shard(
        &path,
        epoch_schema(),
        &batches,
        &metadata,
        ROW_GROUP_ROWS,
        stats.tokens,
    )?;
    Ok((entry, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_keyed_permutation() {
        let a = row_order(100, 0, 1, 2);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, row_order(100, 0, 1, 2));
        assert_ne!(a, row_order(100, 0, 1, 3));
        assert_ne!(a, (0..100).collect::<Vec<_>>());
    }
}
