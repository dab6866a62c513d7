//! The corruption pipeline: a reader thread decodes and masks token row groups into batches and
//! builds their padded input tensors -> bounded channel -> this thread only runs the auxiliary
//! model and samples (the tch model is not `Sync`, so it stays on one thread, and it does no
//! other host work that would leave the GPU idle) -> bounded channel -> a writer thread applies
//! the sampled tokens, gathers each shard's rows and hands complete shards to rayon tasks that
//! shuffle, encode and write them.
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use crossbeam_channel::{bounded, Receiver, Sender};
use shared::format::epoch_meta::ShardStats;
use shared::format::manifest::ShardEntry;
use shared::format::row_rules::{RowRules, RowsAt};
use shared::format::shard_reader::ShardFile;
use shared::format::token_shards::TokenRows;
use shared::runtime::progress::Progress;

use super::plan::Plan;
use super::shard::write_epoch_shard;
use shared::corruption::batch::{apply, build_inputs, CorruptedRow, Inputs, Seq};
use shared::corruption::distributions::{Sampler, Setup};
use shared::corruption::sampling::{NonFiniteLogits, Sampled};
use shared::runtime::clock::StageClock;

/// Batches queued between reader and model, and between model and writer.
const QUEUE: usize = 4;

enum ToModel {
    /// Shard `shard` starts; it has `rows` rows.
    Begin { shard: usize, rows: usize },
    Batch {
        shard: usize,
        seqs: Vec<Seq>,
        inputs: Inputs,
    },
}

enum ToWriter {
    Begin {
        shard: usize,
        rows: usize,
    },
    Rows {
        shard: usize,
        seqs: Vec<Seq>,
        sampled: Sampled,
    },
}

/// What this process made.
#[derive(Debug, Default)]
pub struct Made {
    pub entries: BTreeMap<usize, ShardEntry>,
    pub stats: ShardStats,
    pub seconds: f64,
    pub stages: Stages,
    /// With `--profile-batches`: the model thread's time per stage.
    pub clock: Option<StageClock>,
}

/// Where the pipeline's time went, to tell which stage limits the throughput.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stages {
    /// Reader: decoding, masking and building model inputs (not waiting to hand them on).
    pub read_busy: f64,
    /// Model thread: running the auxiliary model and sampling.
    pub model_busy: f64,
    /// Model thread: waiting for the reader's next batch.
    pub model_starved: f64,
    /// Model thread: waiting for room in the writer's queue.
    pub model_blocked: f64,
    /// Seconds of the first batch (CUDA kernel selection and allocator warm-up included).
    pub first_batch: f64,
    /// Median and largest seconds of one batch.
    pub median_batch: f64,
    pub slowest_batch: f64,
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reader busy {:.2} s; model busy {:.2} s (first batch {:.3} s, median {:.4} s, \
             slowest {:.3} s), waited {:.2} s for the reader and {:.2} s for the writer",
            self.read_busy,
            self.model_busy,
            self.first_batch,
            self.median_batch,
            self.slowest_batch,
            self.model_starved,
            self.model_blocked
        )
    }
}

/// Corrupts the shards of `plan.todo` with `model`, the sampler of `setup`'s distribution.
pub fn run(plan: &Plan, setup: &Setup, model: &dyn Sampler) -> anyhow::Result<Made> {
    let start = Instant::now();
    let total_rows: u64 = plan.todo.iter().map(|&k| plan.tokens.shards[k].rows).sum();
    let progress = Progress::new(
        &format!("epoch {}", plan.config.epoch),
        total_rows,
        "sequences",
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} sequences ({per_sec}, eta {eta})",
    );
    let (to_model, from_reader) = bounded::<ToModel>(QUEUE);
    let (to_writer, from_model) = bounded::<ToWriter>(QUEUE);

    let (read, (infer, mut stages, clock), write) = std::thread::scope(|s| {
        let reader = s.spawn(|| read(plan, setup, to_model));
        let writer = s.spawn(|| write(plan, from_model, &progress));
        let infer = infer(plan, model, from_reader, to_writer);
        (join(reader), infer, join(writer))
    });
    progress.finish_and_clear();
    // The first real failure wins: a stage that stops early only closes its channels.
    stages.read_busy = read.context("reading token shards")?;
    infer.context("running the auxiliary model")?;
    let (entries, stats) = write.context("writing epoch shards")?;
    Ok(Made {
        entries,
        stats,
        seconds: start.elapsed().as_secs_f64(),
        stages,
        clock: plan.config.profile_batches.then_some(clock),
    })
}

/// A stage thread's result; a panic becomes an error with its message (the caller adds what
/// the stage was doing).
fn join<T>(h: std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>) -> anyhow::Result<T> {
    shared::runtime::panic::joined(h.join())
}

/// Reader: token shards of `plan.todo` -> masked batches with their model inputs. Every batch is
/// padded to the dataset's `max_seq_len`, so a row's logits do not depend on the lengths of the
/// rows it shares a batch with. Stops quietly if the model stage has gone (its error is reported
/// instead).
fn read(plan: &Plan, setup: &Setup, tx: Sender<ToModel>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut waited = 0.0;
    let mut send = |msg: ToModel| {
        let t = Instant::now();
        let ok = tx.send(msg).is_ok();
        waited += t.elapsed().as_secs_f64();
        ok
    };
    let batch_size = plan.config.batch_size;
    let width = plan.tokens.max_seq_len as usize;
    let keys = &setup.keys;
    let batch = |shard: usize, seqs: Vec<Seq>| {
        let mut inputs = build_inputs(&seqs, width, keys);
        // E.g. drop-token: the auxiliary model's view only (the rows keep their tokens).
        plan.config
            .choice
            .distribution
            .prepare(setup, &mut inputs, &seqs);
        ToModel::Batch {
            shard,
            inputs,
            seqs,
        }
    };
    let rules = RowRules::tokens(&plan.tokens);
    for &k in &plan.todo {
        let path = &plan.token_paths[k];
        let file = ShardFile::open(path)?;
        let rows = file.num_rows() as usize;
        if !send(ToModel::Begin { shard: k, rows }) {
            return Ok(0.0);
        }
        let mut seqs = Vec::with_capacity(batch_size);
        let mut row = 0;
        for g in 0..file.num_row_groups() {
            let tokens = TokenRows::from_batch(&file.read_row_group(g)?, path)?;
            let at = RowsAt {
                file: path,
                row_group: g,
                first_row: row as u64,
            };
            rules.check(&tokens.offsets, &tokens.ids, &tokens.sequence_ids, at)?;
            for i in 0..tokens.len() {
                seqs.push(Seq::new(row, tokens.sequence_ids[i], tokens.row(i), keys));
                row += 1;
                if seqs.len() == batch_size {
                    let full = std::mem::replace(&mut seqs, Vec::with_capacity(batch_size));
                    if !send(batch(k, full)) {
                        return Ok(0.0);
                    }
                }
            }
        }
        if !seqs.is_empty() && !send(batch(k, seqs)) {
            return Ok(0.0);
        }
    }
    Ok(started.elapsed().as_secs_f64() - waited)
}

/// Model stage, on the calling thread: device work only.
fn infer(
    plan: &Plan,
    model: &dyn Sampler,
    rx: Receiver<ToModel>,
    tx: Sender<ToWriter>,
) -> (anyhow::Result<()>, Stages, StageClock) {
    let mut stages = Stages::default();
    let mut batches = Vec::new();
    let mut clock = StageClock::new(model.device(), plan.config.profile_batches);
    let result = infer_loop(plan, model, rx, tx, &mut stages, &mut batches, &mut clock);
    stages.first_batch = batches.first().copied().unwrap_or(0.0);
    batches.sort_by(f64::total_cmp);
    if let Some(&slowest) = batches.last() {
        stages.median_batch = batches[batches.len() / 2];
        stages.slowest_batch = slowest;
    }
    (result, stages, clock)
}

fn infer_loop(
    plan: &Plan,
    model: &dyn Sampler,
    rx: Receiver<ToModel>,
    tx: Sender<ToWriter>,
    stages: &mut Stages,
    batches: &mut Vec<f64>,
    clock: &mut StageClock,
) -> anyhow::Result<()> {
    loop {
        let t = Instant::now();
        let Ok(msg) = rx.recv() else {
            return Ok(());
        };
        stages.model_starved += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let is_batch = matches!(msg, ToModel::Batch { .. });
        let out = match msg {
            ToModel::Begin { shard, rows } => ToWriter::Begin { shard, rows },
            ToModel::Batch {
                shard,
                seqs,
                inputs,
            } => ToWriter::Rows {
                shard,
                sampled: shared::runtime::panic::catch(
                    || batch_rows(&seqs),
                    || model.sample(&seqs, &inputs, clock),
                )?
                .map_err(|e| name_position(e, &seqs, &inputs))
                .with_context(|| format!("token shard {}", plan.token_paths[shard].display()))?,
                seqs,
            },
        };
        let busy = t.elapsed().as_secs_f64();
        stages.model_busy += busy;
        if is_batch {
            batches.push(busy);
        }
        let t = Instant::now();
        if tx.send(out).is_err() {
            return Ok(());
        }
        stages.model_blocked += t.elapsed().as_secs_f64();
    }
}

/// Names the sequence and position of a row of non-finite logits.
/// Names a batch by its rows' `sequence_id`s (first and last), for an error.
fn batch_rows(seqs: &[Seq]) -> String {
    match (seqs.first(), seqs.last()) {
        (Some(a), Some(b)) => format!(
            "the auxiliary model on the batch of sequence_id {} ..= {} ({} rows)",
            a.sequence_id,
            b.sequence_id,
            seqs.len()
        ),
        _ => "the auxiliary model on an empty batch".to_string(),
    }
}

fn name_position(e: anyhow::Error, seqs: &[Seq], inputs: &Inputs) -> anyhow::Error {
    let Some(bad) = e.downcast_ref::<NonFiniteLogits>() else {
        return e;
    };
    let flat = inputs.positions[bad.row] as usize;
    let (b, s) = (flat / inputs.width, flat % inputs.width);
    e.context(format!(
        "the auxiliary model's logits at sequence_id {} position {s}",
        seqs[b].sequence_id
    ))
}

type Written = (usize, anyhow::Result<(ShardEntry, ShardStats)>);

/// Writer: gathers rows per shard; a complete shard is shuffled, encoded and written by a rayon
/// task (at most `threads` at once), so encoding overlaps inference.
fn write(
    plan: &Plan,
    rx: Receiver<ToWriter>,
    progress: &Progress,
) -> anyhow::Result<(BTreeMap<usize, ShardEntry>, ShardStats)> {
    let (done_tx, done_rx) = bounded::<Written>(plan.todo.len().max(1));
    let mut pending: BTreeMap<usize, (usize, Vec<CorruptedRow>)> = BTreeMap::new();
    let mut entries = BTreeMap::new();
    let mut stats = ShardStats::default();
    let mut in_flight = 0usize;
    let max_in_flight = plan.config.threads.max(1);

    let finish_one = |(k, result): Written,
                      entries: &mut BTreeMap<usize, ShardEntry>,
                      stats: &mut ShardStats|
     -> anyhow::Result<()> {
        let (entry, s) = result?;
        entries.insert(k, entry);
        stats.add(&s);
        if plan.config.abort_after_shards == Some(entries.len()) {
            eprintln!(
                "preprocess: aborting after {} shard(s) as asked (--abort-after-shards)",
                entries.len()
            );
            std::process::abort();
        }
        Ok(())
    };

    let dispatch = |k: usize, rows: Vec<CorruptedRow>, in_flight: &mut usize| {
        let done = done_tx.clone();
        let dir = plan.config.out_dir.clone();
        let source = plan.tokens.shards[k].clone();
        let settings = plan.settings.clone();
        let verified = plan.config.verify_shards;
        rayon::spawn(move || {
            // A panic in a rayon task would abort the process: it becomes this shard's error.
            let result = shared::runtime::panic::catch(
                || format!("writing epoch shard {k}"),
                || write_epoch_shard(&dir, k, &source, &settings, verified, rows),
            )
            .and_then(|r| r);
            let _ = done.send((k, result));
        });
        *in_flight += 1;
    };

    let mut result = Ok(());
    for msg in rx {
        let (k, complete) = match msg {
            ToWriter::Begin { shard, rows } => {
                pending.insert(shard, (rows, Vec::with_capacity(rows)));
                (shard, rows == 0)
            }
            ToWriter::Rows {
                shard,
                seqs,
                sampled,
            } => {
                let rows = apply(seqs, &sampled);
                progress.inc(rows.len() as u64);
                let p = pending.get_mut(&shard).expect("Begin precedes Rows");
                p.1.extend(rows);
                (shard, p.1.len() >= p.0)
            }
        };
        if complete {
            let (_, rows) = pending.remove(&k).expect("pending shard");
            while in_flight >= max_in_flight {
                in_flight -= 1;
                let written = done_rx.recv().expect("a dispatched shard reports");
                if let Err(e) = finish_one(written, &mut entries, &mut stats) {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
            dispatch(k, rows, &mut in_flight);
        }
    }
    // Wait for the shards in flight even after an error, so nothing is left half-done.
    while in_flight > 0 {
        in_flight -= 1;
        let written = done_rx.recv().expect("a dispatched shard reports");
        let r = finish_one(written, &mut entries, &mut stats);
        if result.is_ok() {
            result = r;
        }
    }
    result?;
    if let Some((&k, (rows, got))) = pending.iter().next() {
        anyhow::bail!(
            "shard {k}: expected {rows} rows, the model stage delivered {}",
            got.len()
        );
    }
    Ok((entries, stats))
}
