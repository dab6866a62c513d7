//! Masked LM: cross-entropy at the masked positions only (vocabulary logits computed there
//! only, via `MaskedLm::logits_at`).
use shared::model::MaskedLm;
use tch::{Kind, Tensor};

use super::{DeviceBatch, StepOutput};

/// One forward pass of the masked LM on `b`; counts are `[correct, masked, 0, 0, 0]`.
pub fn forward(model: &MaskedLm, b: &DeviceBatch, train: bool) -> StepOutput {
    let positions = b.positions.as_ref().expect("MLM batch has positions");
    let labels = b.labels.as_ref().expect("MLM batch has labels");
    let logits = model
        .logits_at(&b.input_ids, &b.attention_mask, positions, train)
        .to_kind(Kind::Float);
    let loss = logits.cross_entropy_for_logits(labels);
    let counts = tch::no_grad(|| {
        let correct = logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Double);
        let n = Tensor::from(labels.size()[0] as f64).to_device(labels.device());
        let z = n.zeros_like();
        Tensor::stack(&[correct, n, z.shallow_clone(), z.shallow_clone(), z], 0)
    });
    StepOutput { loss, counts }
}
