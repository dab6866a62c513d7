//! `trainer finetune`: fine-tunes pre-trained encoders on a sentence or sentence-pair task over a
//! grid of hyper-parameters and seeds, and ranks them by the task's dev metric
//! (`trainer::finetune`, docs/finetune.md).
use clap::Args;
use std::path::PathBuf;

use crate::finetune::source::Init;
use crate::finetune::train::Optimizer;

#[derive(Debug, Clone, Args)]
pub struct FinetuneArgs {
    /// The models to fine-tune (a list compares them): a run folder, a checkpoint folder
    /// (RUN/checkpoints/step-N), a Hugging Face folder, or a size preset (tiny, small, base,
    /// large; random initialisation, needs --tokenizer).
    #[arg(long, value_delimiter = ',', required = true)]
    pub model: Vec<String>,
    /// pretrained, random (the same architecture freshly initialised: the control), or both.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pretrained")]
    pub init: Vec<Init>,
    /// The task and its files.
    #[command(flatten)]
    pub task: crate::finetune::task::TaskArgs,
    /// The tokenizer.json [default: the model's own: a run's export, a Hugging Face folder's
    /// tokenizer.json]; required for a size preset.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per example ([CLS] a [SEP] b [SEP], truncated longest-first).
    #[arg(long, default_value_t = 128)]
    pub max_seq_len: usize,
    /// Peak learning rates (a list makes a grid).
    #[arg(long, value_delimiter = ',', default_value = "2e-5,3e-5,4e-5,5e-5")]
    pub lr: Vec<f64>,
    /// Epochs (a list makes a grid).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub epochs: Vec<u32>,
    /// Examples per update (a list makes a grid).
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub batch_size: Vec<usize>,
    /// Decoupled weight decay, not on biases and LayerNorm weights (a list makes a grid).
    #[arg(long, value_delimiter = ',', default_value = "0.01")]
    pub weight_decay: Vec<f64>,
    /// Share of the updates spent warming the learning rate up, linearly, before its linear
    /// decay to 0 (a list makes a grid).
    #[arg(long, value_delimiter = ',', default_value = "0.1")]
    pub warmup_proportion: Vec<f64>,
    /// Runs of every grid point, with seeds 0..N; the table reports the median over them.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// The optimizer.
    #[arg(long, value_enum, default_value_t = Optimizer::Adamax)]
    pub optimizer: Optimizer,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.98)]
    pub beta2: f64,
    #[arg(long, default_value_t = 1e-6)]
    pub eps: f64,
    /// Global gradient-norm clipping (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    /// Hidden, attention and classifier dropout while fine-tuning.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// The results folder (results.json, results.md, scores.png, runs/, best/) [default:
    /// finetune/<task>-<UTC yyyymmdd-HHMMSS>]. A folder of an interrupted command resumes:
    /// finished runs are skipped.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the best model's predictions under OUT/best/predictions/: the test split's in
    /// GLUE's submission format, and the logits of every dev and test example
    /// (`<split>.logits.jsonl`).
    #[arg(long)]
    pub predict: bool,
    /// TensorBoard event files: one folder per run under DIR, `train/loss` and every dev metric
    /// (`dev/accuracy`, `dev_mismatched/accuracy`, ...) after each epoch, the step being the
    /// update [default: OUT/tensorboard].
    #[arg(long, value_name = "DIR")]
    pub tensorboard_dir: Option<PathBuf>,
    /// Write no TensorBoard event files.
    #[arg(long, conflicts_with = "tensorboard_dir")]
    pub no_tensorboard: bool,
    /// Device: auto (CUDA in bf16 when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Runs `trainer finetune`.
pub fn run(args: &FinetuneArgs) -> anyhow::Result<()> {
    crate::finetune::run(args)
}
