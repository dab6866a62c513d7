//! Masked LM on token folders (to make an auxiliary model): dynamic masking by the loader,
//! cross-entropy at the masked positions only (vocabulary logits computed there only, via
//! `MaskedLm::logits_at`). Exports an `ElectraForMaskedLM` folder that `preprocess
//! --aux-model` takes as it is.
use shared::cost::EncoderShape;
use shared::model::{init_masked_lm, Architecture, MaskedLm, Pretrained};
use tch::{nn::VarStore, Kind, Tensor};

use super::{
    no_checks, no_settings, BatchContext, DataKind, DeviceBatch, ExportedModel, ObjectiveInit,
    ObjectiveSpec, Reports, StepOutput, TrainObjective,
};
use crate::loader::{BatchKind, MlmMasking};
use crate::metrics::CountTensors;

/// `--objective mlm`.
pub const SPEC: ObjectiveSpec = ObjectiveSpec {
    name: "mlm",
    help: "Masked LM on token folders (to make an auxiliary model)",
    data: DataKind::Tokens,
    flags: &[],
    fused_step: false,
    check: no_checks,
    settings: no_settings,
    batches,
    build,
    bench: None,
    joint: false,
};

fn batches(c: &BatchContext) -> BatchKind {
    BatchKind::Mlm(MlmMasking {
        seed: c.seed,
        rate: c.mask_rate,
        special: c.special,
        vocab: c.vocab,
    })
}

fn build(init: &ObjectiveInit) -> anyhow::Result<Box<dyn TrainObjective>> {
    Ok(Box::new(Mlm {
        model: init_masked_lm(
            init.model_config,
            Architecture::ElectraForMaskedLM,
            init.device,
        )?,
        shape: crate::train::model::shape(init.model_config),
        mask_rate: init.batch.mask_rate,
    }))
}

/// The masked LM being trained.
pub struct Mlm {
    model: Pretrained<MaskedLm>,
    shape: EncoderShape,
    mask_rate: f64,
}

/// One forward pass of the masked LM on `b`; counts are `correct` of `total` masked positions.
pub fn forward(model: &MaskedLm, b: &DeviceBatch, train: bool) -> StepOutput {
    let (positions, labels) = b.mlm_labels();
    let logits = model
        .logits_at(&b.input_ids, &b.attention_mask, positions, train)
        .to_kind(Kind::Float);
    let loss = logits.cross_entropy_for_logits(labels);
    let counts = tch::no_grad(|| {
        let correct = logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Double);
        let n = Tensor::from(labels.size()[0] as f64).to_device(labels.device());
        let z = n.zeros_like();
        CountTensors {
            correct,
            total: n,
            true_positive: z.shallow_clone(),
            predicted_positive: z.shallow_clone(),
            actual_positive: z,
        }
        .stack()
    });
    StepOutput { loss, counts }
}

impl TrainObjective for Mlm {
    fn vars(&self) -> &VarStore {
        &self.model.vs
    }

    fn step(&self, b: &DeviceBatch, train: bool) -> StepOutput {
        forward(&self.model.model, b, train)
    }

    fn train_flops_per_row(&self, padded_len: u64) -> f64 {
        shared::cost::masked_lm_train_flops(&self.shape, padded_len, self.mask_rate) as f64
    }

    fn reports(&self) -> Reports {
        Reports {
            loss_label: "loss (masked-LM cross-entropy)",
            positive_class: None,
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
