//! What the model stage of the pipeline runs for one batch: the auxiliary model with its
//! augmentation, or a model-free distribution (no model loaded at all).
use anyhow::Context;
use shared::corruption::augmentation::{dropout_seed, AuxSampling, TfInterp};
use shared::corruption::aux::AuxModel;
use shared::corruption::batch::{Inputs, Seq};
use shared::corruption::distribution::Augmentation;
use shared::corruption::model_free::ModelFree;
use shared::corruption::sampling::{padded_vocab, Sampled};
use shared::runtime::clock::StageClock;
use tch::Device;

use super::plan::Plan;

pub enum Corrupter {
    Aux {
        model: Box<AuxModel>,
        sampling: AuxSampling,
        /// Seed torch's generator per batch (dropout, drop-attention).
        seed_dropout: bool,
    },
    ModelFree(ModelFree),
}

impl Corrupter {
    /// Loads the auxiliary model (if the distribution needs one) or builds the model-free table.
    pub fn new(plan: &Plan, device: Device) -> anyhow::Result<Self> {
        let c = &plan.config;
        let special = [
            plan.special.cls,
            plan.special.sep,
            plan.special.pad,
            plan.special.mask,
        ];
        let gamma = c.gamma.map_or(0.0, |(_, g)| g);
        let Some(dir) = &c.aux_model else {
            let vocab = plan.tokens.tokenizer.vocab_size as usize;
            let table = ModelFree::new(
                c.distribution,
                vocab,
                &special,
                plan.term_frequency.as_deref(),
                c.alpha.unwrap_or(0.5),
                gamma,
            )
            .with_context(|| format!("--tokens {}", c.tokens.display()))?;
            return Ok(Self::ModelFree(table));
        };
        let augmentation = c.augmentation.unwrap_or(Augmentation::Temperature);
        // At gamma = 0 every augmentation is the plain model at T = 1 (no dropout, no drops).
        let on = gamma > 0.0;
        let dropout = augmentation.dropout_rates(gamma);
        let mut model = AuxModel::load_with_dropout(dir, device, dropout)?;
        model.pad_rows_to(c.batch_size);
        if c.sampler == super::args::SamplerKind::Kernel {
            model.use_kernel_sampler()?;
        }
        let sampling = match augmentation {
            Augmentation::TfInterp if on => {
                let counts = plan
                    .term_frequency
                    .as_deref()
                    .context("tf-interp: the term-frequency counts are loaded by the plan")?;
                let width = padded_vocab(plan.tokens.tokenizer.vocab_size as i64);
                AuxSampling::TfInterp(TfInterp::new(counts, &special, width, gamma, device))
            }
            _ => AuxSampling::Temperature(c.temperature),
        };
        Ok(Self::Aux {
            model: Box::new(model),
            sampling,
            seed_dropout: dropout.is_some(),
        })
    }

    /// Where the work runs (the CPU for a model-free distribution).
    pub fn device(&self) -> Device {
        match self {
            Self::Aux { model, .. } => model.device(),
            Self::ModelFree(_) => Device::Cpu,
        }
    }

    /// Samples a token at every masked position of `seqs` (whose inputs are `inputs`).
    pub fn corrupt(
        &self,
        plan: &Plan,
        seqs: &[Seq],
        inputs: &Inputs,
        clock: &mut StageClock,
    ) -> anyhow::Result<Sampled> {
        match self {
            Self::Aux {
                model,
                sampling,
                seed_dropout,
            } => {
                if *seed_dropout {
                    if let Some(first) = seqs.first() {
                        tch::manual_seed(dropout_seed(
                            plan.config.seed,
                            plan.config.epoch,
                            first.sequence_id,
                        ));
                    }
                }
                model.corrupt_with(inputs, sampling, clock)
            }
            Self::ModelFree(table) => {
                let originals: Vec<i32> = seqs
                    .iter()
                    .flat_map(|s| s.masked.iter().map(|&p| s.ids[p as usize]))
                    .collect();
                Ok(table.sample_all(&originals, &inputs.uniforms))
            }
        }
    }
}
