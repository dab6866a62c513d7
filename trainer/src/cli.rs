//! Command-line flags of `trainer` (training) and `trainer cost` / `trainer loader-bench`.
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints training FLOPs per sequence per update and memory of the main model and of the
    /// auxiliary model (jointly trained vs frozen).
    Cost(CostArgs),
    /// Measures the loader alone (decode, shuffle, collate; no model): sequences per second.
    LoaderBench(BenchArgs),
    /// Table 7: seconds per update and peak memory of rtd, online and electra at the same
    /// model and batch (random rows, no data needed), with the ratios to electra (joint).
    Bench(ObjectiveBenchArgs),
    /// Checks and times the process group under a launcher (torchrun): all-reduce, broadcast
    /// and barrier of every rank, with the all-reduce's time and bus bandwidth.
    DistCheck(DistCheckArgs),
    /// GPU check of `--step fused` and the sampler kernel (scripts/gpu-check.sh): every kernel
    /// against the tch reference, the whole step's gradients against autograd, times.
    FusedCheck(crate::fused::check::FusedCheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DistCheckArgs {
    /// fp32 elements all-reduced (the base model's gradient is 110M).
    #[arg(long, default_value_t = 1 << 20)]
    pub numel: i64,
    /// Timed all-reduces.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Device: auto (cuda:$LOCAL_RANK when CUDA is available: NCCL), cpu (Gloo), cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seconds to wait for the other ranks.
    #[arg(long, default_value_t = 120)]
    pub dist_timeout: u64,
}

/// What `trainer bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchObjective {
    /// The three below, each in its own process, and their ratios to electra.
    All,
    /// The discriminator alone (dumped Fast-ELECTRA).
    Rtd,
    /// The discriminator plus a frozen auxiliary model's inference (online Fast-ELECTRA).
    Online,
    /// Generator and discriminator trained jointly (original ELECTRA).
    Electra,
}

#[derive(Debug, Clone, Args)]
pub struct ObjectiveBenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = BenchObjective::All)]
    pub objective: BenchObjective,
    /// Main model: tiny, small, base or large (optionally -rel, -rel-admin), or a config.json.
    #[arg(long, default_value = "base")]
    pub model: String,
    /// Sequences per update.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sequence (every row is this long).
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 30522)]
    pub vocab: i64,
    /// Layers of the auxiliary model (online) and of the generator (electra), main model's
    /// width.
    #[arg(long, default_value_t = 4)]
    pub aux_layers: i64,
    /// Timed updates (after the warm-up ones).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// Untimed updates first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// The training objective. With [`Objective::spec`](crate::objectives) this enum is the
/// registry of objectives: a new one adds a variant here and a line there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Replaced-token detection on epoch folders (Fast-ELECTRA's main model).
    Rtd,
    /// Masked LM on token folders (to make an auxiliary model).
    Mlm,
    /// Fast-ELECTRA without dumping, on token folders: the frozen --aux-model corrupts each
    /// batch inline (inference only) at the schedule's temperature; RTD as `rtd`.
    Online,
    /// Original ELECTRA on token folders: a generator (--generator-layers) trained jointly with
    /// the discriminator, embeddings shared, loss = MLM + --rtd-weight x RTD.
    Electra,
}

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
    /// Training objective.
    #[arg(long, value_enum, default_value_t = Objective::Rtd)]
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
    /// Seed of initialisation, shuffling, dropout and MLM masking.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run in --run-dir (required then) from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
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

#[derive(Debug, Clone, Args)]
pub struct CostArgs {
    /// Main model: tiny, small, base or large, or a Hugging Face config.json.
    #[arg(long, default_value = "base")]
    pub model: String,
    /// Layers of the auxiliary model (same width as the main model).
    #[arg(long, default_value_t = 4)]
    pub aux_layers: u64,
    /// Sequence length in tokens.
    #[arg(long, default_value_t = 512)]
    pub seq_len: u64,
    /// Vocabulary size.
    #[arg(long, default_value_t = 30522)]
    pub vocab: u64,
    /// Sequences per batch (for activation memory).
    #[arg(long, default_value_t = 32)]
    pub batch_size: u64,
    /// Fraction of positions the auxiliary model predicts (its vocabulary logits).
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    /// What to count: `system` (this system: auxiliary logits at the masked positions only,
    /// softmax and heads included, GiB) or `paper` (the Fast-ELECTRA paper's Table 1: the
    /// auxiliary vocabulary projection at every position, no softmax or heads, relative
    /// positions, decimal GB; `--model base --aux-layers 4 --vocab 128000 --batch-size 2048`
    /// gives its base column).
    #[arg(long, value_enum, default_value_t = Accounting::System)]
    pub accounting: Accounting,
}

/// The cost accounting of `trainer cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accounting {
    /// This system's costs (shared::cost).
    System,
    /// The paper's Table 1 rules (shared::cost::paper).
    Paper,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Epoch folders (or token folders with --objective mlm).
    #[arg(long, num_args = 1.., required = true)]
    pub shards: Vec<PathBuf>,
    /// Kind of folders.
    #[arg(long, value_enum, default_value_t = Objective::Rtd)]
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

/// The format of a run's export (`--export-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Hugging Face when possible, else the project's own `fast_electra` format.
    Auto,
    /// A Hugging Face folder that transformers loads, or an error before training.
    HuggingFace,
}
