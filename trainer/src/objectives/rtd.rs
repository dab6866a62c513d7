//! Replaced-token detection: binary cross-entropy with logits over the real (non-padding)
//! tokens, mean over real tokens; "replaced" (target 1) is the positive class.
use shared::model::Discriminator;
use tch::{Kind, Reduction, Tensor};

use super::{DeviceBatch, StepOutput};

/// Loss and counts of RTD logits `[B, L]` against targets `[B, L]` on real tokens.
pub fn loss_and_counts(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> StepOutput {
    let logits = logits.to_kind(Kind::Float);
    let real = mask.to_kind(Kind::Float);
    let per_token = logits.binary_cross_entropy_with_logits::<Tensor>(
        targets,
        None,
        None,
        Reduction::None,
    );
    let loss = (per_token * &real).sum(Kind::Float) / real.sum(Kind::Float).clamp_min(1.0);
    let counts = tch::no_grad(|| {
        let real = mask.gt(0);
        let pred = logits.gt(0.0).logical_and(&real);
        let actual = targets.gt(0.5).logical_and(&real);
        let correct = pred.eq_tensor(&actual).logical_and(&real);
        let f = |t: &Tensor| t.sum(Kind::Double);
        Tensor::stack(
            &[
                f(&correct),
                f(&real),
                f(&pred.logical_and(&actual)),
                f(&pred),
                f(&actual),
            ],
            0,
        )
    });
    StepOutput { loss, counts }
}

/// One forward pass of the discriminator on `b`.
pub fn forward(model: &Discriminator, b: &DeviceBatch, train: bool) -> StepOutput {
    let logits = model.forward_t(&b.input_ids, &b.attention_mask, train);
    let targets = b.targets.as_ref().expect("RTD batch has targets");
    loss_and_counts(&logits, targets, &b.attention_mask)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Vec::<f64>::try_from(&out.counts).unwrap(), vec![2.0, 3.0, 1.0, 2.0, 1.0]);
    }
}
