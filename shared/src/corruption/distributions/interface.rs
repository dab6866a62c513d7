//! What every replaced-token distribution implements ([`Distribution`]), what it is given
//! ([`Setup`]) and what it makes ([`Sampler`]).
use std::path::Path;

use tch::Device;

use crate::corruption::batch::{Inputs, Keys, Seq};
use crate::corruption::sampling::Sampled;
use crate::runtime::clock::StageClock;

/// A flag value: its name and its one-line help (`preprocess --help` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    pub name: &'static str,
    pub about: &'static str,
}

/// What a distribution reads besides the masked sequences. The plan loads exactly these inputs,
/// keeps exactly these parameters, and the settings record exactly them (data-spec/epoch.md,
/// "Shard metadata"): a parameter a distribution does not use is neither checked against other
/// epochs nor written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uses {
    /// The frozen auxiliary model (`--aux-model`); without it, no model is loaded at all.
    pub aux_model: bool,
    /// The training split's term-frequency counts (their file's SHA-256 is recorded).
    pub term_frequency: bool,
    /// The tokenizer's [UNK] id.
    pub unk: bool,
    /// `--alpha`.
    pub alpha: bool,
    /// This epoch's gamma from `--gamma-schedule` and `--gamma-max`.
    pub gamma: bool,
    /// This epoch's temperature from `--temperature-schedule` (else T = 1 and the recorded
    /// schedule is `const` with `t0 = 1`).
    pub temperature: bool,
    /// Dropout masks drawn per batch, so the output depends on `--batch-size` (recorded as
    /// `dropout_batch_size`; data-spec/epoch.md, "Determinism").
    pub dropout: bool,
}

/// The auxiliary model's folder and how to run it (present where [`Uses::aux_model`]).
#[derive(Debug, Clone, Copy)]
pub struct AuxSetup<'a> {
    pub dir: &'a Path,
    pub device: Device,
    /// `--batch-size`: on CUDA every batch is padded to it.
    pub batch_size: usize,
    /// `--sampler kernel`: tempered draws by the one-pass CUDA kernel.
    pub kernel_sampler: bool,
}

/// Everything a distribution builds its sampler from: the epoch's keys and checked parameters,
/// and the inputs the plan loaded for it (only those its [`Uses`] asks for are present).
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// Seed, epoch, mask rate and the special ids (which every model-free distribution gives
    /// probability 0).
    pub keys: Keys,
    /// The tokenizer's vocabulary size.
    pub vocab_size: usize,
    /// The token folder (errors about its term-frequency counts name it).
    pub tokens: &'a Path,
    /// `--alpha`, where used.
    pub alpha: Option<f64>,
    /// This epoch's gamma (0 where unused).
    pub gamma: f64,
    /// This epoch's temperature (1 where not tempered).
    pub temperature: f64,
    /// The training split's term frequencies, where used.
    pub term_frequency: Option<&'a [u64]>,
    /// The tokenizer's [UNK] id, where used.
    pub unk: Option<i32>,
    /// The auxiliary model, where used.
    pub aux: Option<AuxSetup<'a>>,
}

impl Setup<'_> {
    /// The special ids as a list: [CLS], [SEP], [PAD], [MASK].
    pub fn special_ids(&self) -> [i32; 4] {
        let s = &self.keys.special;
        [s.cls, s.sep, s.pad, s.mask]
    }
}

/// One replaced-token distribution: a model-free one, or the auxiliary model's under one
/// augmentation. Implementations are unit structs listed in [`super::REGISTRY`].
pub trait Distribution: Sync {
    /// Its `--distribution` value.
    fn distribution(&self) -> Named;

    /// Its `--augmentation` value, for a distribution that has augmentations (`aux`).
    fn augmentation(&self) -> Option<Named> {
        None
    }

    /// What it reads.
    fn uses(&self) -> Uses;

    /// Changes the auxiliary model's inputs of one batch, on the reader thread, before the
    /// batch is queued for the model (drop-token). Nothing by default.
    fn prepare(&self, _setup: &Setup, _inputs: &mut Inputs, _seqs: &[Seq]) {}

    /// The epoch's sampler, made once on the thread that runs it (it may load a model).
    fn sampler(&self, setup: &Setup) -> anyhow::Result<Box<dyn Sampler>>;

    /// The flag that chose it, as errors name it: `--augmentation NAME`, else `--distribution
    /// NAME`.
    fn flag(&self) -> String {
        match self.augmentation() {
            Some(a) => format!("--augmentation {}", a.name),
            None => format!("--distribution {}", self.distribution().name),
        }
    }
}

/// Draws a replacement token at every masked position of a batch.
pub trait Sampler {
    /// Where the work runs (the CPU for a model-free distribution).
    fn device(&self) -> Device;

    /// Samples every masked position of `seqs`, whose auxiliary-model inputs (and per-position
    /// uniforms) are `inputs`; each stage's time is charged to `clock`.
    fn sample(
        &self,
        seqs: &[Seq],
        inputs: &Inputs,
        clock: &mut StageClock,
    ) -> anyhow::Result<Sampled>;
}
