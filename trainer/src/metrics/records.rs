//! The lines of `metrics.jsonl`: `"split": "train"` every `--log-every` updates and
//! `"split": "validation"` every `--validate-every` updates. Fields that an objective does not
//! report (the class metrics of MLM) or that are undefined (precision with nothing predicted
//! positive, AUC of one class) are null. The demo's summary reads `accuracy`,
//! `baseline_accuracy`, `f1` and `auc` by these names.
use serde::{Deserialize, Serialize};

/// One logged interval of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    pub split: String,
    /// Updates done at the end of the interval.
    pub step: u64,
    /// Epoch number of the interval's last micro-batch.
    pub epoch: u32,
    /// That epoch's temperature (from its manifest; null for MLM).
    pub temperature: Option<f64>,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Mean loss over the interval's updates.
    pub loss: f64,
    /// Gradient norm before clipping, last update.
    pub grad_norm: f64,
    /// RTD: accuracy over real tokens; MLM: accuracy at masked positions.
    pub accuracy: f64,
    /// RTD: precision of "replaced" (null when nothing was predicted replaced, and for MLM).
    pub precision: Option<f64>,
    /// RTD: recall of "replaced" (null when nothing was replaced, and for MLM).
    pub recall: Option<f64>,
    /// RTD: F1 of "replaced" (null when nothing was replaced nor predicted so, and for MLM).
    #[serde(default)]
    pub f1: Option<f64>,
    pub seq_per_s: f64,
    /// Real (non-padding) tokens per second.
    pub tokens_per_s: f64,
    /// Model FLOPs utilisation (shared::cost FLOPs / device peak; null where the peak is unknown).
    pub mfu: Option<f64>,
    /// Peak CUDA memory in bytes (null on the CPU or where libtorch does not report it).
    pub peak_memory_bytes: Option<u64>,
    /// Fraction of the interval's wall time spent waiting for the loader.
    pub data_wait_fraction: f64,
    /// `--comm-timing` (data-parallel runs with the Reducer): the last update's bucketed
    /// all-reduce, timed; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allreduce: Option<CommTiming>,
    /// The objective's own figures, each a field of the line (electra: `generator_loss`, the
    /// generator's mean MLM loss over the interval); none for the others.
    #[serde(flatten)]
    pub objective_figures: std::collections::BTreeMap<String, f64>,
}

/// One update's bucketed gradient all-reduce (rank 0's clock), in milliseconds relative to the
/// last gradient of the backward pass: the moment the last bucket was launched, which the
/// Reducer does from the autograd hook of that bucket's last gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommTiming {
    /// From the last gradient to the completion of the last all-reduce: the communication the
    /// backward pass did not hide.
    pub tail_ms: f64,
    /// Each bucket's launch, in launch order (<= 0: launched before the backward pass ended).
    pub launch_ms: Vec<f64>,
    /// Each bucket's all-reduce completion, in launch order (< 0: done while the backward pass
    /// was still computing).
    pub done_ms: Vec<f64>,
    /// The backward pass's gradient production: first bucket launch to last gradient.
    pub backward_span_ms: f64,
}

/// One validation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub split: String,
    pub step: u64,
    pub loss: f64,
    pub accuracy: f64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// RTD: F1 of "replaced" (null for MLM).
    #[serde(default)]
    pub f1: Option<f64>,
    /// RTD: ROC AUC of the "replaced" logit over every real token of the validation rows
    /// (exact, ties at average ranks); null for MLM or when the rows hold one class only.
    #[serde(default)]
    pub auc: Option<f64>,
    /// RTD: accuracy of predicting "original" everywhere (1 - replaced fraction).
    pub baseline_accuracy: Option<f64>,
    pub rows: u64,
    pub tokens: u64,
}
