//! The flags of `trainer` (training) as clap parses them; [`super::run_record::TrainConfig`]
//! checks them before any file is read.
use clap::{Args, ValueEnum};
use std::path::PathBuf;

use crate::objectives::Objective;

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Shard folders: epoch folders (`data/epoch-*`, rtd) or token folders (mlm, online,
    /// electra). Any number;
    /// epochs are trained in the order of the epoch number in their manifests.
    #[arg(long, num_args = 1.., required = true)]
    pub shards: Vec<PathBuf>,
    /// The run folder (run.json, metrics.jsonl, loss.png, accuracy.png, checkpoints/,
    /// export/). Refused if it holds another run, unless --resume (which needs it given)
    /// [default: a new folder runs/<objective>-<model>-<UTC yyyymmdd-HHMMSS> under the current
    /// directory, with -2, -3, ... appended if that exists; printed at start].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Model size: tiny, small, base or large, or a Hugging Face config.json (its file stem
    /// names the default run folder).
    #[arg(long, default_value = "base")]
    pub model: String,
    /// Dropout rate of the model (hidden and attention dropout), overriding the preset's or the
    /// config's (0.1 for the presets). Tiny models learn faster without it.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Format of `RUN/export/`: `auto` (a Hugging Face folder when transformers' BERT/ELECTRA
    /// classes can hold the model, else this project's `fast_electra` format,
    /// docs/model-format.md) or `hugging-face` (refused before training, saying why, for a model
    /// they cannot hold: T5 relative positions or Admin).
    #[arg(long, value_enum, default_value_t = ExportFormat::Auto)]
    pub export_format: ExportFormat,
    /// Training objective (the registry of `trainer::objectives`).
    #[arg(long, value_enum, default_value = "rtd")]
    pub objective: Objective,
    /// How an update computes its gradients: `autograd` (tch autograd over the model: every
    /// objective and architecture) or `fused` (--objective rtd only: the hand-written forward
    /// and backward of docs/fused-step.md; absolute positions, GELU, no Admin; on the CPU the
    /// same dropout masks as autograd, on CUDA Philox masks inside the kernels).
    #[arg(long, value_enum, default_value_t = crate::fused::StepKind::Autograd)]
    pub step: crate::fused::StepKind,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Micro-batches per update (gradient accumulation); an update sees batch-size x this.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Peak learning rate (after warm-up; then linear decay to 0 at the last update).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Linear warm-up, in updates.
    #[arg(long, default_value_t = 10_000)]
    pub warmup_steps: u64,
    /// Updates to run [default: as many as the epochs give, one pass each].
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// AdamW weight decay (not on biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Global gradient-norm clipping threshold (0 = off).
    #[arg(long, default_value_t = 2.0)]
    pub clip_norm: f64,
    /// MLM: fraction of tokens masked per sequence (80% [MASK], 10% random, 10% kept).
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    /// Validation data: an epoch folder of the validation split (rtd) or the validation token
    /// folder (mlm).
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// Validate every N updates (and at the end) when --validation is given.
    #[arg(long, default_value_t = 1000)]
    pub validate_every: u64,
    /// At most this many validation sequences per validation pass.
    #[arg(long, default_value_t = 10_000)]
    pub validation_rows: u64,
    /// Write a checkpoint every N updates (and at the end).
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// Log a metrics line every N updates (a host sync happens only then).
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N. Started by torchrun (RANK,
    /// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set), auto and cuda mean
    /// cuda:$LOCAL_RANK, one process per GPU.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Data-parallel runs: seconds a rank waits for the others (joining the group, every
    /// collective) before it stops with an error naming the lost ranks.
    #[arg(long, default_value_t = 600)]
    pub dist_timeout: u64,
    /// Data-parallel runs: all-reduce the gradients in buckets of at most this many MB
    /// launched during the backward pass as their gradients are final, overlapping
    /// communication with computation: `--step autograd` through c10d's DDP Reducer (the first
    /// bucket 1 MB), `--step fused` by the hand-written backward (buckets of whole layers); same
    /// result as one all-reduce after the backward pass (bit for bit with 2 ranks). 0: one flat
    /// all-reduce after the backward pass.
    #[arg(long, default_value_t = 25.0)]
    pub bucket_mb: f64,
    /// Data-parallel runs with buckets: the precision the gradients travel in. `bf16` halves the
    /// traffic (each bucket cast to bf16, summed, cast back; `--step autograd` divides it by the
    /// world size first, as the Reducer averages), at
    /// the cost of bf16 rounding of every gradient (measured in the README).
    #[arg(long, value_enum, default_value_t = GradComm::Fp32)]
    pub grad_comm: GradComm,
    /// Data-parallel runs: time each update's gradient all-reduce and write it to
    /// metrics.jsonl (`allreduce`: launch and completion of each bucket and the tail after the
    /// last gradient; with --bucket-mb 0 the one flat all-reduce, all tail; use with
    /// --log-every 1 to get every update).
    #[arg(long)]
    pub comm_timing: bool,
    /// Seed of initialisation, shuffling, dropout and MLM masking.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run in --run-dir (required then) from its latest checkpoint. `--resume auto`:
    /// continue it when the folder holds a run (the same run: run.json must match), start it
    /// when the folder is new or empty; one command line for the first launch and every
    /// relaunch (`torchrun --max-restarts N`, a requeued job).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "always", value_name = "auto")]
    pub resume: Option<ResumeMode>,
    /// When the updates need more rows than the epochs hold, pass over the last epoch again
    /// (reshuffled) instead of failing.
    #[arg(long)]
    pub repeat_last_epoch: bool,
    /// Row groups whose rows are shuffled together.
    #[arg(long, default_value_t = 8)]
    pub shuffle_window: usize,
    /// Micro-batches the loader prepares ahead of the model.
    #[arg(long, default_value_t = 16)]
    pub prefetch: usize,
    /// Loader threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub loader_threads: usize,
    /// The tokenizer.json copied into the export [default: the path in the manifest's
    /// tokenizer.path]; either way its SHA-256 must equal the manifest's tokenizer.sha256.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Skip checking every shard's SHA-256 against its manifest before training (sizes, row
    /// counts and metadata are still checked).
    #[arg(long)]
    pub no_verify_shards: bool,
    /// Peak FLOP/s of the device in TFLOP/s for the MFU figure [default: from the GPU's name:
    /// H100/H200 989.4 (dense bf16), A100 312; none on the CPU, so MFU is null there].
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Where the run's TensorBoard event files go (rank 0 writes them, flushed at every metrics
    /// line; every number of metrics.jsonl as a scalar under train/, val/, perf/ or curriculum/,
    /// README "TensorBoard"); a resumed run adds a file that makes TensorBoard drop the updates
    /// after its checkpoint. A fresh run refuses a folder already holding event files
    /// [default: RUN/tensorboard].
    #[arg(long, value_name = "DIR")]
    pub tensorboard_dir: Option<PathBuf>,
    /// Write no TensorBoard event files.
    #[arg(long, conflicts_with = "tensorboard_dir")]
    pub no_tensorboard: bool,
    /// Testing aid: stop (as if killed) after this many updates of this invocation, without
    /// writing anything more; `--resume` then continues from the last checkpoint.
    #[arg(long, hide = true)]
    pub debug_stop_after: Option<u64>,
    /// Testing aid: make the loss of this update NaN, to exercise the non-finite-loss stop.
    #[arg(long, hide = true)]
    pub debug_nan_at_step: Option<u64>,
    #[command(flatten)]
    pub objective_args: crate::objectives::args::ObjectiveArgs,
}

/// The precision of the gradients' all-reduce (`--grad-comm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GradComm {
    Fp32,
    Bf16,
}

/// `--resume` (always: the folder must hold the run) or `--resume auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResumeMode {
    /// `--resume`: continue the run the folder holds.
    #[value(hide = true)]
    Always,
    /// `--resume auto`: continue the run the folder holds, or start it in a new or empty folder.
    Auto,
}

/// The format of a run's export (`--export-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Hugging Face when possible, else the project's own `fast_electra` format.
    Auto,
    /// A Hugging Face folder that transformers loads, or an error before training.
    HuggingFace,
}
