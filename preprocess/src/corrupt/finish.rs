//! Completing an epoch: once every shard is present with this run's settings, the manifest is
//! built from the shards' footers (so whichever part finishes last writes the same manifest) and
//! written last, atomically; the quality report is printed.
use std::collections::BTreeMap;

use anyhow::Context;
use shared::format::epoch_meta::{ShardStats, META_SHARD_STATS, META_SOURCE_UNVERIFIED};
use shared::format::manifest::{EpochManifest, ShardEntry};
use shared::format::shard_reader::ShardFile;
use shared::format::spec::{epoch, shard_file_name, DATA_SPEC_VERSION, MANIFEST_FILE};

use super::pipeline::Made;
use super::plan::{scan, Plan};

/// Key of the report holding this process's throughput (sequences per second of wall time).
pub const REPORT_THROUGHPUT: &str = "sequences_per_second";

/// Writes the manifest if every shard is present; returns it, or `None` while parts are missing.
pub fn finish(plan: &Plan, made: &Made) -> anyhow::Result<Option<EpochManifest>> {
    let out = &plan.config.out_dir;
    let shards = plan.token_paths.len();
    let present = scan(out, shards, &plan.settings)?.present;
    let have = present.iter().filter(|&&p| p).count();
    if have < shards {
        eprintln!(
            "epoch {}: {have} of {shards} shards present; the manifest is written by the part \
             that completes the epoch",
            plan.config.epoch
        );
        return Ok(None);
    }
    let mut entries = Vec::with_capacity(shards);
    let mut unverified = Vec::new();
    let mut total = ShardStats::default();
    for k in 0..shards {
        let path = out.join(shard_file_name(k));
        let file = ShardFile::open(&path)?;
        let stats: ShardStats = file
            .key_value(META_SHARD_STATS)
            .with_context(|| format!("{}: metadata {META_SHARD_STATS}: missing", path.display()))
            .and_then(|s| {
                serde_json::from_str(&s).with_context(|| {
                    format!(
                        "{}: metadata {META_SHARD_STATS}: not valid JSON",
                        path.display()
                    )
                })
            })?;
        anyhow::ensure!(
            stats.rows == file.num_rows(),
            "{}: metadata {META_SHARD_STATS}: expected rows = {} (the file's), found {}",
            path.display(),
            file.num_rows(),
            stats.rows
        );
        let entry = match made.entries.get(&k) {
            Some(e) => e.clone(),
            None => ShardEntry {
                file: shard_file_name(k),
                rows: stats.rows,
                tokens: stats.tokens,
                bytes: file.len_bytes(),
                sha256: shared::files::hash::sha256_file(&path)?,
            },
        };
        if file.key_value(META_SOURCE_UNVERIFIED).is_some() {
            unverified.push(plan.tokens.shards[k].file.clone());
        }
        total.add(&stats);
        entries.push(entry);
    }
    let mut report = total.report();
    if made.stats.rows > 0 && made.seconds > 0.0 {
        report.insert(
            REPORT_THROUGHPUT.into(),
            made.stats.rows as f64 / made.seconds,
        );
    }
    let manifest = EpochManifest {
        data_spec_version: DATA_SPEC_VERSION,
        kind: epoch::KIND.to_string(),
        corruption: plan.settings.corruption.clone(),
        replacement: plan.settings.replacement.clone(),
        aux_model: plan.aux.clone(),
        tokenizer: plan.tokens.tokenizer.clone(),
        tokens_fingerprint: plan.tokens.dataset_fingerprint.clone(),
        split: plan.tokens.split.clone(),
        settings_fingerprint: plan.settings.fingerprint(),
        max_seq_len: plan.tokens.max_seq_len,
        vocab_size: plan.tokens.tokenizer.vocab_size,
        num_sequences: total.rows,
        num_tokens: total.tokens,
        num_masked: total.masked,
        num_replaced: total.replaced,
        report,
        shards: entries,
        unverified_token_shards: unverified,
    };
    shared::files::atomic::write_json_atomic(&out.join(MANIFEST_FILE), &manifest)?;
    Ok(Some(manifest))
}

/// Prints the quality report of `report` (stderr).
pub fn print_report(epoch: u32, temperature: f64, report: &BTreeMap<String, f64>) {
    let get = |k: &str| report.get(k).copied().unwrap_or(f64::NAN);
    eprintln!(
        "epoch {epoch} (T = {temperature:.4}): replaced {:.2}% of tokens, {:.2}% of masked; \
         aux top-1 accuracy {:.2}%; mean entropy {:.3} nats{}",
        100.0 * get("replaced_fraction_of_tokens"),
        100.0 * get("replaced_fraction_of_masked"),
        100.0 * get("aux_top1_accuracy"),
        get("mean_entropy"),
        report
            .get(REPORT_THROUGHPUT)
            .map_or(String::new(), |t| format!("; {t:.1} sequences/s"))
    );
}
