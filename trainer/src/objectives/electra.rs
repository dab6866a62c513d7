//! Original ELECTRA as the paper re-implements it, on token folders: a generator (a masked LM
//! of `--generator-layers`, the discriminator's width) trained jointly with the discriminator.
//!
//! - Masking: the loader masks each row as `preprocess` would epoch `pass`
//!   ([`crate::loader::CorruptMasking`]); every masked position becomes [MASK] for the
//!   generator.
//! - Generator: cross-entropy at the masked positions (vocabulary logits there only).
//! - Replacements: sampled from the generator's softmax at T = 1 with the same per-position
//!   uniforms as `preprocess` (inverse CDF), without gradient through the sample.
//! - Discriminator: RTD on the corrupted rows, as `rtd`; a sample equal to the original counts
//!   as original.
//! - Loss = MLM + `--rtd-weight` x RTD.
//!
//! One `VarStore` holds both models (`discriminator.*`, `generator.*`); the word, position and
//! token-type embeddings are the discriminator's tensors, which the generator reads too (they
//! are not registered under `generator.*`): one tensor, updated once with the sum of both
//! losses' gradients, checkpointed once. The export views give each model its Hugging Face
//! names: `export/discriminator` (ElectraForPreTraining) and `export/generator`
//! (ElectraForMaskedLM, which `preprocess --aux-model` takes).
use anyhow::bail;
use serde::{Deserialize, Serialize};
use shared::cost::EncoderShape;
use shared::model::{admin, Architecture, Discriminator, MaskedLm, ModelConfig};
use std::cell::RefCell;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::args::{tagged, untagged, ObjectiveArgs};
use super::{
    BatchContext, BenchInput, DataKind, DeviceBatch, EvalOutput, ExportedModel, Figures,
    ObjectiveInit, ObjectiveSpec, Reports, SettingsInput, StepOutput, TrainObjective,
};
use crate::loader::{BatchKind, CorruptMasking};

/// `--objective electra`.
pub const SPEC: ObjectiveSpec = ObjectiveSpec {
    name: "electra",
    help: "Original ELECTRA on token folders: a generator (--generator-layers) trained jointly with the discriminator, embeddings shared, loss = MLM + --rtd-weight x RTD",
    data: DataKind::Tokens,
    flags: &["--generator-layers"],
    fused_step: false,
    check,
    settings,
    batches,
    build,
    bench: Some(bench),
    joint: true,
};

/// What the electra flags resolve to (`run.json`'s `objective_settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElectraSettings {
    pub generator_layers: i64,
    pub rtd_weight: f64,
}

fn check(a: &ObjectiveArgs) -> anyhow::Result<()> {
    if let Some(n) = a.generator_layers.filter(|&n| n < 1) {
        bail!("--generator-layers: expected at least 1, found {n}");
    }
    Ok(())
}

/// The generator depth for `--model` with `layers` discriminator layers when
/// `--generator-layers` is not given.
pub fn default_generator_layers(model: &str, layers: i64) -> i64 {
    let size = if shared::model::ModelConfig::is_preset(model) {
        model.split('-').next().unwrap_or(model)
    } else {
        ""
    };
    match size {
        "tiny" => 1,
        "small" | "base" => 4,
        "large" => 6,
        _ => (layers / 3).max(1),
    }
}

fn settings(i: &SettingsInput) -> anyhow::Result<Option<serde_json::Value>> {
    let s = ElectraSettings {
        generator_layers: i
            .args
            .generator_layers
            .unwrap_or_else(|| default_generator_layers(i.model, i.layers)),
        rtd_weight: i.args.rtd_weight,
    };
    Ok(Some(tagged(SPEC.name, &s)?))
}

/// `trainer bench`: a generator of `--aux-layers` layers, lambda 50.
fn bench(i: &mut BenchInput) -> anyhow::Result<Box<dyn TrainObjective>> {
    Ok(Box::new(Electra::new(
        i.model_config,
        i.aux_layers,
        50.0,
        i.batch.mask_rate,
        i.device,
    )?))
}

/// Sub-paths of the two models in the `VarStore`.
const DISCRIMINATOR: &str = "discriminator";
const GENERATOR: &str = "generator";

fn batches(c: &BatchContext) -> BatchKind {
    BatchKind::Corrupt(CorruptMasking {
        seed: c.seed,
        rate: c.mask_rate,
        special: c.special,
        width: None,
    })
}

/// The names (under a model's root) of the embedding tables the generator shares.
fn shared_names(cfg: &ModelConfig) -> Vec<String> {
    let base = Architecture::ElectraForPreTraining.base_prefix();
    let mut names = vec!["word_embeddings", "token_type_embeddings"];
    if shared::model::positions::Positions::of(cfg).ok()
        == Some(shared::model::positions::Positions::Absolute)
    {
        names.push("position_embeddings");
    }
    names
        .into_iter()
        .map(|n| format!("{base}.embeddings.{n}.weight"))
        .collect()
}

fn build(init: &ObjectiveInit) -> anyhow::Result<Box<dyn TrainObjective>> {
    let ElectraSettings {
        generator_layers,
        rtd_weight,
    } = untagged(SPEC.name, init.settings)?;
    Ok(Box::new(Electra::new(
        init.model_config,
        generator_layers,
        rtd_weight,
        init.batch.mask_rate,
        init.device,
    )?))
}

/// The generator and the discriminator being trained together.
pub struct Electra {
    vs: VarStore,
    discriminator: Discriminator,
    generator: MaskedLm,
    disc_config: ModelConfig,
    gen_config: ModelConfig,
    /// Hugging Face-named views of each model's variables (the same tensors).
    disc_export: VarStore,
    gen_export: VarStore,
    rtd_weight: f64,
    mask_rate: f64,
    shape: EncoderShape,
    gen_shape: EncoderShape,
    /// Sum of the generator's detached MLM losses since the last metrics line, and their count.
    gen_loss: RefCell<(Option<Tensor>, u64)>,
}

/// A `VarStore` on `device` holding `named` (name, tensor) as they are.
fn view(device: Device, named: impl IntoIterator<Item = (String, Tensor)>) -> VarStore {
    let vs = VarStore::new(device);
    {
        let mut v = vs.variables_.lock().expect("a fresh VarStore");
        for (name, t) in named {
            v.named_variables.insert(name, t);
        }
    }
    vs
}

impl Electra {
    /// Builds both models (seed torch first); warns when the generator is deeper than the
    /// discriminator.
    pub fn new(
        cfg: &ModelConfig,
        generator_layers: i64,
        rtd_weight: f64,
        mask_rate: f64,
        device: Device,
    ) -> anyhow::Result<Self> {
        if generator_layers > cfg.num_hidden_layers {
            eprintln!(
                "trainer: warning: --generator-layers {generator_layers} is deeper than the discriminator's {} layers; the paper found a generator that strong harmful (keep it at a third to a half of the discriminator)",
                cfg.num_hidden_layers
            );
        }
        let mut gen_config = cfg.clone();
        gen_config.num_hidden_layers = generator_layers;
        gen_config.architectures = Some(vec![Architecture::ElectraForMaskedLM.as_str().into()]);
        let vs = VarStore::new(device);
        let discriminator = Discriminator::new(&(vs.root() / DISCRIMINATOR), cfg)?;
        admin::initialize(&discriminator.encoder, cfg.vocab_size, device);
        let mut generator = MaskedLm::new(
            &(vs.root() / GENERATOR),
            &gen_config,
            Architecture::ElectraForMaskedLM,
        )?;
        generator.share_embeddings(
            &discriminator.encoder.embeddings,
            gen_config.tie_word_embeddings,
        );
        admin::initialize(&generator.encoder, cfg.vocab_size, device);
        // The generator's own tables are unused: drop them, so the store holds each tensor once.
        let names = shared_names(cfg);
        {
            let mut v = vs.variables_.lock().expect("the VarStore just made");
            for n in &names {
                if let Some(t) = v.named_variables.remove(&format!("{GENERATOR}.{n}")) {
                    let ptr = t.data_ptr();
                    v.trainable_variables
                        .retain(|var| var.tensor.data_ptr() != ptr);
                }
            }
        }
        let all = vs.variables();
        let under = |prefix: &str| {
            let p = format!("{prefix}.");
            all.iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(&p)
                        .map(|s| (s.to_string(), t.shallow_clone()))
                })
                .collect::<Vec<_>>()
        };
        let disc_export = view(device, under(DISCRIMINATOR));
        let mut gen_named = under(GENERATOR);
        for n in &names {
            gen_named.push((
                n.clone(),
                all[&format!("{DISCRIMINATOR}.{n}")].shallow_clone(),
            ));
        }
        let gen_export = view(device, gen_named);
        Ok(Self {
            shape: crate::train::model::shape(cfg),
            gen_shape: crate::train::model::shape(&gen_config),
            vs,
            discriminator,
            generator,
            disc_config: cfg.clone(),
            gen_config,
            disc_export,
            gen_export,
            rtd_weight,
            mask_rate,
            gen_loss: RefCell::new((None, 0)),
        })
    }

    /// The word-embedding tensor both models read.
    #[cfg(test)]
    pub fn shared_word_embeddings(&self) -> (&Tensor, &Tensor) {
        (
            &self.discriminator.encoder.embeddings.word_embeddings,
            &self.generator.encoder.embeddings.word_embeddings,
        )
    }

    /// (generator MLM loss, RTD output, discriminator logits) of a batch.
    fn forward(&self, b: &DeviceBatch, train: bool) -> (Tensor, StepOutput, Tensor, Tensor) {
        let c = b.corrupt_rows();
        let inp = &c.inputs;
        let shape = [inp.rows as i64, inp.width as i64];
        let device = b.input_ids.device();
        let gen_ids = Tensor::from_slice(&inp.input_ids)
            .view(shape)
            .to_device(device);
        let positions = Tensor::from_slice(&inp.positions).to_device(device);
        let flat = b.input_ids.view([-1]);
        let originals = flat.index_select(0, &positions);
        let logits = self
            .generator
            .logits_at(&gen_ids, &b.attention_mask, &positions, train)
            .to_kind(Kind::Float);
        let mlm = logits.cross_entropy_for_logits(&originals);
        let sampled = tch::no_grad(|| {
            // Inverse CDF at the position's uniform: the first id whose CDF reaches it.
            let cdf = logits
                .detach()
                .softmax(-1, Kind::Float)
                .cumsum(-1, Kind::Float);
            let u = Tensor::from_slice(&inp.uniforms)
                .to_kind(Kind::Float)
                .to_device(device)
                .unsqueeze(-1);
            cdf.lt_tensor(&u)
                .sum_dim_intlist(-1, false, Kind::Int64)
                .clamp_max(self.disc_config.vocab_size - 1)
        });
        let disc_ids = flat
            .index_put(&[Some(&positions)], &sampled, false)
            .view(shape);
        let replaced = sampled.ne_tensor(&originals).to_kind(Kind::Float);
        let targets = Tensor::zeros([shape[0] * shape[1]], (Kind::Float, device))
            .index_put(&[Some(&positions)], &replaced, false)
            .view(shape);
        let disc_logits = self
            .discriminator
            .forward_t(&disc_ids, &b.attention_mask, train);
        let rtd = super::rtd::loss_and_counts(&disc_logits, &targets, &b.attention_mask);
        (mlm, rtd, disc_logits, targets)
    }
}

impl TrainObjective for Electra {
    fn vars(&self) -> &VarStore {
        &self.vs
    }

    fn step(&self, b: &DeviceBatch, train: bool) -> StepOutput {
        let (mlm, rtd, _, _) = self.forward(b, train);
        if train {
            let mut g = self.gen_loss.borrow_mut();
            let d = mlm.detach();
            g.0 = Some(match g.0.take() {
                Some(s) => s + d,
                None => d,
            });
            g.1 += 1;
        }
        // In a data-parallel run each term weighs by this rank's share of its own terms
        // (masked positions for MLM, real tokens for RTD: crate::parallel); 1 otherwise.
        let mlm = if train && b.masked_term_factor != 1.0 {
            mlm * b.masked_term_factor
        } else {
            mlm
        };
        StepOutput {
            loss: mlm + rtd.loss * self.rtd_weight,
            counts: rtd.counts,
        }
    }

    fn evaluate(&self, b: &DeviceBatch) -> EvalOutput {
        let (mlm, rtd, logits, targets) = self.forward(b, false);
        let real = b.attention_mask.gt(0);
        EvalOutput {
            step: StepOutput {
                loss: mlm + rtd.loss * self.rtd_weight,
                counts: rtd.counts,
            },
            scores: Some((
                logits.to_kind(Kind::Float).masked_select(&real).detach(),
                targets.gt(0.5).masked_select(&real),
            )),
        }
    }

    fn train_flops_per_row(&self, padded_len: u64) -> f64 {
        (shared::cost::discriminator_train_flops(&self.shape, padded_len)
            + 3 * shared::cost::masked_lm_forward_flops(
                &self.gen_shape,
                padded_len,
                self.mask_rate,
                false,
            )) as f64
    }

    fn reports(&self) -> Reports {
        Reports {
            loss_label: "loss (generator MLM + rtd-weight x RTD)",
            positive_class: Some("replaced"),
        }
    }

    fn exports(&self) -> Vec<ExportedModel<'_>> {
        vec![
            ExportedModel {
                folder: "discriminator",
                vs: &self.disc_export,
                config: &self.disc_config,
                architecture: Architecture::ElectraForPreTraining,
            },
            ExportedModel {
                folder: "generator",
                vs: &self.gen_export,
                config: &self.gen_config,
                architecture: Architecture::ElectraForMaskedLM,
            },
        ]
    }

    /// `generator_loss`: the generator's mean MLM loss over the interval's micro-batches.
    fn take_figures(&self) -> Figures {
        let mut g = self.gen_loss.borrow_mut();
        let (sum, n) = (g.0.take(), std::mem::take(&mut g.1));
        Figures {
            temperature: None,
            own: sum
                .map(|s| ("generator_loss", s.double_value(&[]) / n.max(1) as f64))
                .into_iter()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::collate::collate;
    use crate::loader::Rows;
    use shared::corruption::masking::SpecialIds;

    fn batch(vocab: u32) -> DeviceBatch {
        let rows = Rows {
            sequence_ids: vec![4, 9],
            offsets: vec![0, 12, 20],
            ids: (0..20)
                .map(|i| if i == 0 || i == 12 { 101 } else { 200 + i * 7 })
                .collect(),
            targets: vec![],
        };
        let kind = batches(&BatchContext {
            seed: 3,
            mask_rate: 0.3,
            special: SpecialIds {
                cls: 101,
                sep: 102,
                pad: 0,
                mask: 103,
            },
            vocab,
            max_seq_len: 16,
        });
        DeviceBatch::new(&collate(&[(&rows, 0), (&rows, 1)], 0, kind, 0), Device::Cpu)
    }

    #[test]
    fn one_embedding_tensor_gets_both_losses_gradients() {
        let cfg = ModelConfig::preset("tiny", 400).unwrap();
        tch::manual_seed(0);
        let e = Electra::new(&cfg, 1, 50.0, 0.3, Device::Cpu).unwrap();
        let names: Vec<String> = e.vs.variables().into_keys().collect();
        let word = "electra.embeddings.word_embeddings.weight";
        assert!(names.contains(&format!("discriminator.{word}")));
        assert!(!names
            .iter()
            .any(|n| n.starts_with("generator.electra.embeddings.word")));
        let (d, g) = e.shared_word_embeddings();
        assert_eq!(d.data_ptr(), g.data_ptr());
        // The export views alias the trained tensor too.
        assert_eq!(e.gen_export.variables()[word].data_ptr(), d.data_ptr());
        assert_eq!(e.disc_export.variables()[word].data_ptr(), d.data_ptr());
        let b = batch(400);
        let grad_of = |loss: Tensor| {
            let _ = d.grad().defined().then(|| d.grad().zero_());
            loss.backward();
            d.grad().copy()
        };
        let (mlm, rtd, _, _) = e.forward(&b, false);
        let g_mlm = grad_of(mlm);
        let (_, rtd2, _, _) = e.forward(&b, false);
        drop(rtd);
        let g_rtd = grad_of(rtd2.loss);
        assert!(g_mlm.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(g_rtd.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        let both = grad_of(e.step(&b, false).loss);
        let want = &g_mlm + &g_rtd * 50.0;
        assert!(both.allclose(&want, 1e-4, 1e-6, false));
    }
}
