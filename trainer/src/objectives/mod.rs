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
//! **Adding an objective** = one new file here and one line in [`OBJECTIVES`] (the registry):
//! 1. `src/objectives/NAME.rs` with `pub const SPEC: ObjectiveSpec` (its `--objective` name,
//!    help line, data kind, the flags it reads, its checks and settings, batch kind, `build`,
//!    optionally a bench builder) and a type implementing [`TrainObjective`] that reads its own
//!    labels from the batch ([`DeviceBatch::rtd_targets`], [`DeviceBatch::mlm_labels`],
//!    [`DeviceBatch::corrupt_rows`]) and reports figures of its own through
//!    [`TrainObjective::take_figures`];
//! 2. `&NAME::SPEC` appended to [`OBJECTIVES`]. `--objective NAME`, `--help`, `run.json`, the
//!    default run folder's name and `trainer bench` follow from the spec. (Flags of its own, if
//!    any, are added to [`args::ObjectiveArgs`], as clap flags share one namespace.)
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

pub use crate::data::DataKind;
use crate::loader::BatchKind;
pub use batch::{DeviceBatch, DeviceLabels};

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
    /// What they resolved to, as in `run.json` (made by the spec's `settings`).
    pub settings: Option<&'a serde_json::Value>,
    /// `--step` (checked: `fused` only for objectives that have a hand-written step).
    pub step: crate::fused::StepKind,
}

/// What resolving an objective's settings (`run.json`'s `objective_settings`) needs.
pub struct SettingsInput<'a> {
    pub args: &'a args::ObjectiveArgs,
    /// `--model` as given.
    pub model: &'a str,
    /// Layers of the resolved main model.
    pub layers: i64,
}

/// What `trainer bench` hands an objective's bench builder: the model, the batch context and
/// random rows of token ids (the builder adds what its batches need, e.g. RTD targets).
pub struct BenchInput<'a> {
    pub model_config: &'a ModelConfig,
    pub device: Device,
    pub batch: BatchContext,
    /// `--aux-layers`: the auxiliary model's (online) or the generator's (electra) depth.
    pub aux_layers: i64,
    pub rows: &'a mut crate::loader::Rows,
}

/// Builds an objective for `trainer bench` on random rows.
pub type BenchBuilder = fn(&mut BenchInput) -> anyhow::Result<Box<dyn TrainObjective>>;

/// An objective before it has a model: everything the trainer knows of it by name.
pub struct ObjectiveSpec {
    /// The `--objective` value (also the first word of a default run folder's name).
    pub name: &'static str,
    /// What it trains, one line (in `--help`).
    pub help: &'static str,
    /// The data folders it trains and validates on.
    pub data: DataKind,
    /// The objective-specific flags (of [`args::ObjectiveArgs`]) it reads; another objective's
    /// flag given with it is refused.
    pub flags: &'static [&'static str],
    /// Whether it has a hand-written step (`--step fused`).
    pub fused_step: bool,
    /// Checks its own flags, before any file is read.
    pub check: fn(&args::ObjectiveArgs) -> anyhow::Result<()>,
    /// What its flags resolve to (saved in `run.json`; a resume must match); None without
    /// settings of its own.
    pub settings: fn(&SettingsInput) -> anyhow::Result<Option<serde_json::Value>>,
    /// How the loader collates its micro-batches.
    pub batches: fn(&BatchContext) -> BatchKind,
    /// Builds the freshly initialised model(s); seed torch first.
    pub build: fn(&ObjectiveInit) -> anyhow::Result<Box<dyn TrainObjective>>,
    /// `trainer bench` (Table 7): builds it for random rows; None = not measured there.
    pub bench: Option<BenchBuilder>,
    /// Trains its auxiliary model jointly (original ELECTRA): the baseline of `trainer bench`'s
    /// ratios.
    pub joint: bool,
}

/// For specs without flags of their own.
pub fn no_checks(_: &args::ObjectiveArgs) -> anyhow::Result<()> {
    Ok(())
}

/// For specs without settings of their own.
pub fn no_settings(_: &SettingsInput) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(None)
}

/// **The registry**: every objective, in the order `--help` lists them. A new objective adds
/// its line here.
pub const OBJECTIVES: &[&ObjectiveSpec] = &[&rtd::SPEC, &mlm::SPEC, &online::SPEC, &electra::SPEC];

/// An `--objective` value: an entry of [`OBJECTIVES`], written and read by its name (in
/// `run.json` too).
#[derive(Clone, Copy)]
pub struct Objective(&'static ObjectiveSpec);

impl Objective {
    /// The objective named `name`, or an error listing the names.
    pub fn by_name(name: &str) -> Result<Self, String> {
        OBJECTIVES
            .iter()
            .find(|s| s.name == name)
            .map(|s| Objective(s))
            .ok_or_else(|| {
                let names: Vec<&str> = OBJECTIVES.iter().map(|s| s.name).collect();
                format!("expected one of {}, found {name:?}", names.join(", "))
            })
    }

    pub fn spec(self) -> &'static ObjectiveSpec {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for Objective {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Objective {}

impl std::fmt::Debug for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Objective::by_name(s)
    }
}

impl serde::Serialize for Objective {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Objective {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Objective::by_name(&name).map_err(serde::de::Error::custom)
    }
}

impl clap::ValueEnum for Objective {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::OnceLock<Vec<Objective>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| OBJECTIVES.iter().map(|s| Objective(s)).collect())
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.0.help))
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
    /// An error only when the backward pass fails (a data-parallel run's all-reduce inside it,
    /// `--bucket-mb`, losing a peer).
    fn train_micro_batch(&self, batch: &DeviceBatch, scale: f64) -> anyhow::Result<StepOutput> {
        let out = self.step(batch, true);
        let loss = out.loss * scale;
        loss.f_backward()?;
        Ok(StepOutput {
            loss: loss.detach(),
            counts: out.counts,
        })
    }

    /// [`Self::train_micro_batch`] telling `ready` as each part of the model's gradients is
    /// final, so that a data-parallel run all-reduces them during the backward pass
    /// (`crate::buckets`; the hand-written step of `--objective rtd --step fused` does). By
    /// default nothing is told: the buckets all start after the backward pass.
    fn train_micro_batch_telling(
        &self,
        batch: &DeviceBatch,
        scale: f64,
        _ready: &mut dyn crate::fused::grads::GradReady,
    ) -> anyhow::Result<StepOutput> {
        self.train_micro_batch(batch, scale)
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
    fn take_figures(&self) -> Figures {
        Figures::default()
    }
}

/// An objective's figures of a metrics interval, beyond loss and counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// The temperature the interval's last batch was corrupted at, for objectives that corrupt
    /// while training (`online`); dumped epochs carry theirs in their manifests.
    pub temperature: Option<f64>,
    /// Figures only this objective has, by name: each becomes a field of the metrics line
    /// (e.g. electra's `generator_loss`).
    pub own: Vec<(&'static str, f64)>,
}
