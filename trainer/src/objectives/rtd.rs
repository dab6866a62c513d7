//! Replaced-token detection (the Fast-ELECTRA main model) on dumped epoch folders: binary
//! cross-entropy with logits over the real (non-padding) tokens, mean over real tokens;
//! "replaced" (target 1) is the positive class. Exports an `ElectraForPreTraining` folder.
use shared::cost::EncoderShape;
use shared::model::{init_discriminator, Discriminator, Pretrained};
use tch::{nn::VarStore, Kind, Reduction, Tensor};

use super::args::ObjectiveArgs;
use super::{
    no_checks, no_settings, BatchContext, BenchInput, DataKind, DeviceBatch, EvalOutput,
    ExportedModel, ObjectiveInit, ObjectiveSpec, Reports, StepOutput, TrainObjective,
};
use crate::fused::grads::GradReady;
use crate::fused::{FusedStep, StepKind};
use crate::loader::BatchKind;
use crate::metrics::CountTensors;

/// `--objective rtd`.
pub const SPEC: ObjectiveSpec = ObjectiveSpec {
    name: "rtd",
    help: "Replaced-token detection on epoch folders (Fast-ELECTRA's main model)",
    data: DataKind::Epochs,
    flags: &[],
    fused_step: true,
    check: no_checks,
    settings: no_settings,
    batches,
    build,
    bench: Some(bench),
    joint: false,
};

/// `trainer bench`: targets drawn at random (15% replaced) for the random rows.
fn bench(i: &mut BenchInput) -> anyhow::Result<Box<dyn TrainObjective>> {
    let t = Tensor::rand([i.rows.ids.len() as i64], tch::kind::FLOAT_CPU).lt(0.15);
    i.rows.targets = Vec::<bool>::try_from(&t)?
        .into_iter()
        .map(i8::from)
        .collect();
    build(&ObjectiveInit {
        model_config: i.model_config,
        device: i.device,
        batch: i.batch,
        args: &ObjectiveArgs::default(),
        settings: None,
        step: StepKind::Autograd,
    })
}

fn batches(_: &BatchContext) -> BatchKind {
    BatchKind::Rtd
}

fn build(init: &ObjectiveInit) -> anyhow::Result<Box<dyn TrainObjective>> {
    let model = init_discriminator(init.model_config, init.device)?;
    let fused = match init.step {
        StepKind::Autograd => None,
        StepKind::Fused => Some(FusedStep::new(&model.vs, init.model_config, init.device)?),
    };
    Ok(Box::new(Rtd {
        model,
        shape: crate::train::model::shape(init.model_config),
        fused,
    }))
}

/// The discriminator being trained.
pub struct Rtd {
    model: Pretrained<Discriminator>,
    shape: EncoderShape,
    /// `--step fused`: the hand-written step over the model's variables.
    fused: Option<FusedStep>,
}

/// Loss and counts of RTD logits `[B, L]` against targets `[B, L]` on real tokens.
pub fn loss_and_counts(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> StepOutput {
    let logits = logits.to_kind(Kind::Float);
    let real = mask.to_kind(Kind::Float);
    let per_token =
        logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::None);
    let loss = (per_token * &real).sum(Kind::Float) / real.sum(Kind::Float).clamp_min(1.0);
    let counts = tch::no_grad(|| {
        let real = mask.gt(0);
        let pred = logits.gt(0.0).logical_and(&real);
        let actual = targets.gt(0.5).logical_and(&real);
        let correct = pred.eq_tensor(&actual).logical_and(&real);
        let f = |t: &Tensor| t.sum(Kind::Double);
        CountTensors {
            correct: f(&correct),
            total: f(&real),
            true_positive: f(&pred.logical_and(&actual)),
            predicted_positive: f(&pred),
            actual_positive: f(&actual),
        }
        .stack()
    });
    StepOutput { loss, counts }
}

impl Rtd {
    /// A training micro-batch: autograd, or the hand-written step telling `ready` as each
    /// part of the model's gradients is final.
    fn train(
        &self,
        b: &DeviceBatch,
        scale: f64,
        ready: Option<&mut dyn GradReady>,
    ) -> anyhow::Result<StepOutput> {
        let Some(fused) = &self.fused else {
            let out = self.step(b, true);
            let loss = out.loss * scale;
            loss.f_backward()?;
            return Ok(StepOutput {
                loss: loss.detach(),
                counts: out.counts,
            });
        };
        let (logits, loss) = fused.accumulate(
            &self.model.vs,
            &b.input_ids,
            &b.attention_mask,
            b.key_padding,
            targets(b),
            scale,
            ready,
        );
        // The counts of the logits (the loss of loss_and_counts is recomputed: cheap, [B, L]).
        let counts =
            tch::no_grad(|| loss_and_counts(&logits, targets(b), &b.attention_mask).counts);
        Ok(StepOutput {
            loss: loss * scale,
            counts,
        })
    }

    fn logits(&self, b: &DeviceBatch, train: bool) -> Tensor {
        self.model
            .model
            .forward_t(&b.input_ids, &b.attention_mask, train)
    }
}

fn targets(b: &DeviceBatch) -> &Tensor {
    b.rtd_targets()
}

impl TrainObjective for Rtd {
    fn vars(&self) -> &VarStore {
        &self.model.vs
    }

    fn step(&self, b: &DeviceBatch, train: bool) -> StepOutput {
        loss_and_counts(&self.logits(b, train), targets(b), &b.attention_mask)
    }

    fn wants_bf16_weights(&self) -> bool {
        self.fused.as_ref().is_some_and(FusedStep::is_cuda)
    }

    fn use_bf16_weights(&self, views: std::collections::HashMap<String, Tensor>) {
        if let Some(f) = &self.fused {
            f.use_weight_copies(&views);
        }
    }

    fn begin_update(&self, _done: u64, _total: u64) {
        if let Some(f) = &self.fused {
            f.begin_update();
        }
    }

    fn train_micro_batch(&self, b: &DeviceBatch, scale: f64) -> anyhow::Result<StepOutput> {
        self.train(b, scale, None)
    }

    fn train_micro_batch_telling(
        &self,
        b: &DeviceBatch,
        scale: f64,
        ready: &mut dyn GradReady,
    ) -> anyhow::Result<StepOutput> {
        self.train(b, scale, Some(ready))
    }

    fn evaluate(&self, b: &DeviceBatch) -> EvalOutput {
        let logits = self.logits(b, false);
        let step = loss_and_counts(&logits, targets(b), &b.attention_mask);
        let real = b.attention_mask.gt(0);
        let scores = logits.to_kind(Kind::Float).masked_select(&real).detach();
        let labels = targets(b).gt(0.5).masked_select(&real);
        EvalOutput {
            step,
            scores: Some((scores, labels)),
        }
    }

    fn train_flops_per_row(&self, padded_len: u64) -> f64 {
        shared::cost::discriminator_train_flops(&self.shape, padded_len) as f64
    }

    fn reports(&self) -> Reports {
        Reports {
            loss_label: "loss (binary cross-entropy)",
            positive_class: Some("replaced"),
        }
    }

    fn exports(&self) -> Vec<ExportedModel<'_>> {
        vec![ExportedModel {
            folder: "",
            vs: &self.model.vs,
            config: &self.model.config,
            architecture: self.model.architecture,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counts;

    #[test]
    fn padding_is_ignored_and_counts_are_right() {
        let logits = Tensor::from_slice(&[2.0f32, -1.0, 3.0, 50.0]).view([1, 4]);
        let targets = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([1, 4]);
        let mask = Tensor::from_slice(&[1i64, 1, 1, 0]).view([1, 4]);
        let out = loss_and_counts(&logits, &targets, &mask);
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want = (sp(-2.0) + sp(-1.0) + sp(3.0)) / 3.0;
        assert!((out.loss.double_value(&[]) - want).abs() < 1e-5);
        // correct 2 of 3 real; predicted replaced: positions 0, 2; actual: 0; tp: 0.
        assert_eq!(
            Vec::<f64>::try_from(&out.counts).unwrap(),
            vec![2.0, 3.0, 1.0, 2.0, 1.0]
        );
        assert_eq!(
            Counts::from_device(&out.counts).unwrap(),
            Counts {
                correct: 2.0,
                total: 3.0,
                true_positive: 1.0,
                predicted_positive: 2.0,
                actual_positive: 1.0
            }
        );
    }
}
