//! `trainer loader-bench`: the loader alone (memory-mapped shards decoded on worker threads,
//! shuffled, collated into padded batches; no model), in sequences and tokens per second.
use crate::objectives::Objective;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::data::{self, ShardDecoder};
use crate::loader::pipeline::Decoder;
use crate::loader::{Cursor, EpochData, Loader, LoaderConfig};
use crate::objectives::BatchContext;
use crate::train::config::positive;

#[derive(Debug, Clone, Args)]
pub struct LoaderBenchArgs {
    /// Epoch folders (or token folders with --objective mlm).
    #[arg(long, num_args = 1.., required = true)]
    pub shards: Vec<PathBuf>,
    /// Kind of folders.
    #[arg(long, value_enum, default_value = "rtd")]
    pub objective: Objective,
    /// Decoding threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Sequences to load (at most one pass over the folders).
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Row groups whose rows are shuffled together.
    #[arg(long, default_value_t = 8)]
    pub shuffle_window: usize,
    /// Skip the SHA-256 check of every shard against its manifest (schema, metadata and rows are
    /// still checked).
    #[arg(long)]
    pub no_verify_shards: bool,
    /// Testing aid: first write every row as the loader decodes it, one JSON line
    /// {sequence_id, ids, targets} per row in file and row-group order, to this file.
    #[arg(long, hide = true)]
    pub debug_dump_rows: Option<PathBuf>,
}

/// Runs the benchmark and prints one line of figures.
pub fn run(args: &LoaderBenchArgs) -> anyhow::Result<()> {
    positive("--batch-size", args.batch_size as u64)?;
    positive("--shuffle-window", args.shuffle_window as u64)?;
    positive("--rows", args.rows)?;
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    let spec = args.objective.spec();
    let verify = !args.no_verify_shards;
    let mut folders = data::open_training(&args.shards, spec.data, spec.name, verify)?;
    let epochs: Vec<EpochData> = folders.iter().map(|f| f.epoch_data()).collect();
    let total: u64 = epochs.iter().map(|e| e.rows()).sum();
    let first = &folders[0];
    let pad_id = first.tokenizer.special_tokens.pad as i32;
    let kind = (spec.batches)(&BatchContext {
        seed: 0,
        mask_rate: 0.15,
        special: (&first.tokenizer.special_tokens).into(),
        vocab: first.vocab_size,
        max_seq_len: first.max_seq_len,
    });
    let decoder = ShardDecoder::take(&mut folders, spec.data);
    if let Some(path) = &args.debug_dump_rows {
        dump_rows(&decoder, &epochs, path)?;
    }
    let want = args.rows.min(total) / args.batch_size as u64;
    let start = Instant::now();
    let loader = Loader::start(
        Arc::new(epochs),
        Arc::new(decoder),
        LoaderConfig {
            seed: 0,
            batch_size: args.batch_size,
            window: args.shuffle_window,
            prefetch: 64,
            pad_id,
            kind,
            repeat_last_epoch: false,
        },
        Cursor::default(),
    );
    let (mut rows, mut tokens) = (0u64, 0u64);
    for _ in 0..want {
        let b = loader.next_batch()?;
        rows += b.rows as u64;
        tokens += b.real_tokens;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(loader);
    let per_s = rows as f64 / secs;
    println!(
        "loader-bench: {rows} sequences ({:.1} tokens each) in {secs:.3} s on {threads} thread(s): {per_s:.0} seq/s ({:.0} per thread), {:.0} tokens/s = {:.0} sequences of 512 tokens/s ({:.0} per thread)",
        tokens as f64 / rows.max(1) as f64,
        per_s / threads as f64,
        tokens as f64 / secs,
        tokens as f64 / secs / 512.0,
        tokens as f64 / secs / 512.0 / threads as f64
    );
    Ok(())
}

/// `--debug-dump-rows`: every row as the loader decodes it (the trainer's decoder, row checks
/// included), in file and row-group order.
fn dump_rows(decoder: &ShardDecoder, epochs: &[EpochData], path: &Path) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for (e, epoch) in epochs.iter().enumerate() {
        for group in &epoch.groups {
            let rows = decoder.decode(e, group)?;
            for i in 0..rows.len() {
                let (a, b) = (rows.offsets[i], rows.offsets[i + 1]);
                let targets = if rows.targets.is_empty() {
                    &[][..]
                } else {
                    &rows.targets[a..b]
                };
                let line = serde_json::json!({
                    "sequence_id": rows.sequence_ids[i],
                    "ids": &rows.ids[a..b],
                    "targets": targets,
                });
                writeln!(w, "{line}").with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}
