//! The objective seam: what one training step computes, on which data, with which parameters,
//! and what the run exports and reports. The loop (`train::trainer`) only talks to a
//! `dyn TrainObjective`; nothing else in the trainer matches on `--objective`.
//!
//! An objective is two things:
//! - an [`ObjectiveSpec`] (a `const SPEC` in its file): its name, the kind of data folders it
//!   reads ([`DataKind`]: epoch folders or token folders), how the loader collates its
//!   micro-batches, and a constructor. The spec is known before any model exists: the data
//!   is opened and checked with it.
//! - a [`TrainObjective`] (built by the spec with a seeded torch, see `crate::rng::init_seed`):
//!   it owns the trained model(s) and their `VarStore`, computes the loss and the metric counts
//!   of a device micro-batch, gives the training FLOPs per row for MFU, lists the Hugging Face
//!   folders to export and says what its metrics mean.
//!
//! Implementations: [`rtd`] (replaced-token detection on dumped epochs: the Fast-ELECTRA main
//! model), [`mlm`] (masked LM on token folders: makes an auxiliary model), [`online`] (RTD on
//! token folders corrupted inline by a frozen auxiliary model) and [`electra`] (a generator and
//! a discriminator trained jointly, embeddings shared). Their extra flags are in [`args`].
//!
//! **Adding an objective** = one new file here with a `pub const SPEC: ObjectiveSpec` and a type
//! implementing [`TrainObjective`], a variant of [`crate::cli::Objective`] (its `--objective`
//! value and help text) and its line in [`Objective::spec`] (the registry).
//!
//! **Several models in one objective** (e.g. joint ELECTRA: a generator and a discriminator
//! sharing the embeddings, loss = MLM + lambda * RTD): keep ONE `VarStore` and build each model
//! under its own sub-path (`vs.root() / "discriminator"`, `vs.root() / "generator"`); create the
//! shared tensor once (say under the discriminator) and hand the generator a `shallow_clone` of
//! it instead of registering it again, so the optimizer ([`crate::optim::AdamW`] takes every
//! trainable variable of [`TrainObjective::vars`]) updates it once with the sum of both
//! gradients, and checkpoints hold it once. For the export, build one `VarStore` per model
//! whose variables carry the Hugging Face names (`tch::nn::Path::add(name,
//! tensor.shallow_clone(), false)` for each variable under the model's sub-path, plus the shared
//! tensor) and return one [`ExportedModel`] per folder (`export/discriminator`,
//! `export/generator`); the views share storage with the trained tensors, so they export the
//! trained values.
pub mod args;
pub mod batch;
pub mod electra;
pub mod mlm;
pub mod online;
pub mod rtd;

use shared::corruption::masking::SpecialIds;
use shared::model::{Architecture, ModelConfig};
use tch::{nn::VarStore, Device, Tensor};

use crate::cli::Objective;
pub use crate::data::DataKind;
use crate::loader::BatchKind;
pub use batch::DeviceBatch;

/// The loss of a micro-batch and, without gradient, its metric counts on the device (an f64
/// 5-vector made by [`crate::metrics::CountTensors::stack`], summed over an interval and read
/// back with [`crate::metrics::Counts::from_device`]).
pub struct StepOutput {
    pub loss: Tensor,
    pub counts: Tensor,
}

/// A validation micro-batch's output: the step's, plus for binary objectives the scores and
/// labels of every prediction (for the ROC AUC).
pub struct EvalOutput {
    pub step: StepOutput,
    /// `(scores [N] f32, labels [N] bool)` of the positive class, detached.
    pub scores: Option<(Tensor, Tensor)>,
}

/// What the metrics of an objective mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reports {
    /// What the loss is, for the loss plot's y axis (e.g. "loss (binary cross-entropy)").
    pub loss_label: &'static str,
    /// The positive class of precision, recall, F1, the all-negative baseline and AUC (RTD:
    /// "replaced"); None when the objective only reports accuracy (MLM).
    pub positive_class: Option<&'static str>,
}

/// A Hugging Face folder the run exports (`config.json` + `model.safetensors`, then the data's
/// `tokenizer.json` beside them).
pub struct ExportedModel<'a> {
    /// Sub-folder of `RUN/export/` ("" = `export/` itself).
    pub folder: &'static str,
    /// Variables named as the architecture's Hugging Face checkpoint names them.
    pub vs: &'a VarStore,
    pub config: &'a ModelConfig,
    pub architecture: Architecture,
}

/// What collating the objective's batches needs from the flags and the data.
#[derive(Debug, Clone, Copy)]
pub struct BatchContext {
    pub seed: u64,
    pub mask_rate: f64,
    pub special: SpecialIds,
    pub vocab: u32,
    /// The data's `max_seq_len`.
    pub max_seq_len: u32,
}

/// What building an objective's model(s) needs.
pub struct ObjectiveInit<'a> {
    /// The resolved `--model` config (vocabulary and length checked against the data).
    pub model_config: &'a ModelConfig,
    pub device: Device,
    pub batch: BatchContext,
    /// The objective-specific flags, checked.
    pub args: &'a args::ObjectiveArgs,
    /// What they resolved to (as in `run.json`).
    pub settings: Option<&'a args::ObjectiveSettings>,
    /// `--step` (checked: `fused` only for objectives that have a hand-written step).
    pub step: crate::fused::StepKind,
}

/// An objective before it has a model: name, data, batches, constructor.
pub struct ObjectiveSpec {
    /// The `--objective` value (also the first word of a default run folder's name).
    pub name: &'static str,
    /// The data folders it trains and validates on.
    pub data: DataKind,
    /// How the loader collates its micro-batches.
    pub batches: fn(&BatchContext) -> BatchKind,
    /// Builds the freshly initialised model(s); seed torch first.
    pub build: fn(&ObjectiveInit) -> anyhow::Result<Box<dyn TrainObjective>>,
}

impl Objective {
    /// The registry: the spec of each `--objective` value.
    pub fn spec(self) -> &'static ObjectiveSpec {
        match self {
            Objective::Rtd => &rtd::SPEC,
            Objective::Mlm => &mlm::SPEC,
            Objective::Online => &online::SPEC,
            Objective::Electra => &electra::SPEC,
        }
    }
}

/// A training objective with its model(s).
pub trait TrainObjective {
    /// Every parameter the optimizer trains, checkpointed and resumed as one set.
    fn vars(&self) -> &VarStore;

    /// Loss and counts of one micro-batch (`train` = dropout on).
    fn step(&self, batch: &DeviceBatch, train: bool) -> StepOutput;

    /// Work on a micro-batch that can fail on bad input, done just before [`Self::step`],
    /// [`Self::train_micro_batch`] or [`Self::evaluate`] uses it (`train` as theirs): the online
    /// objective corrupts the batch here, so that non-finite auxiliary logits are an error
    /// naming the sequence and position, not a panic. Nothing by default.
    fn prepare(&self, _batch: &DeviceBatch, _train: bool) -> anyhow::Result<()> {
        Ok(())
    }

    /// One training micro-batch: its loss times `scale` (detached) and counts, with the
    /// gradients of `scale` x loss added to the parameters' `.grad()`. By default
    /// [`TrainObjective::step`] then `backward()` (autograd); `--step fused` overrides it.
    fn train_micro_batch(&self, batch: &DeviceBatch, scale: f64) -> StepOutput {
        let out = self.step(batch, true);
        let loss = out.loss * scale;
        loss.backward();
        StepOutput {
            loss: loss.detach(),
            counts: out.counts,
        }
    }

    /// The validation output of one micro-batch (no dropout, no gradient needed); by default
    /// the step's, without scores.
    fn evaluate(&self, batch: &DeviceBatch) -> EvalOutput {
        EvalOutput {
            step: self.step(batch, false),
            scores: None,
        }
    }

    /// Training FLOPs (forward + backward) of one row padded to `padded_len` tokens, after
    /// `shared::cost`, for the MFU figure.
    fn train_flops_per_row(&self, padded_len: u64) -> f64;

    /// What its loss and counts mean.
    fn reports(&self) -> Reports;

    /// The Hugging Face folder(s) the run exports at its end.
    fn exports(&self) -> Vec<ExportedModel<'_>>;

    /// Whether the step reads bf16 copies of the weights that the optimizer keeps and writes in
    /// its update (`--step fused` on CUDA).
    fn wants_bf16_weights(&self) -> bool {
        false
    }

    /// Hands the step those copies (bf16 views by variable name), once, before the first update.
    fn use_bf16_weights(&self, _views: std::collections::HashMap<String, Tensor>) {}

    /// Called before each update with the updates done and the run's total (for a schedule
    /// over updates, e.g. online's `--temperature-per update`).
    fn begin_update(&self, _done: u64, _total: u64) {}

    /// Figures of the interval since the last call, beyond loss and counts (read at each metrics
    /// line: a host sync).
    fn take_extras(&self) -> Extras {
        Extras::default()
    }
}

/// Objective-specific figures of a metrics interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Extras {
    /// The temperature the interval's last batch was corrupted at (online).
    pub temperature: Option<f64>,
    /// Mean generator MLM loss over the interval's micro-batches (electra).
    pub generator_loss: Option<f64>,
}
