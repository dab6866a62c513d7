//! `--augmentation tf-interp`: `p ∝ p_TF^gamma * p_aux^(1 - gamma)`, sampled at T = 1 on the
//! interpolated logits (data-spec/epoch.md, "Augmentations").
use anyhow::Context;
use tch::{Device, Kind, Tensor};

use crate::corruption::aux::{AuxSampling, LogitsTransform};
use crate::corruption::sampling::padded_vocab;

use super::augmentation::Augmentation;
use super::interface::{Named, Setup, Uses};

pub struct TfInterpAugmentation;

impl Augmentation for TfInterpAugmentation {
    fn named(&self) -> Named {
        Named {
            name: "tf-interp",
            about: "p ∝ p_TF^gamma p_aux^(1-gamma), sampled at T = 1",
        }
    }

    fn uses(&self) -> Uses {
        Uses {
            term_frequency: true,
            gamma: true,
            ..Uses::default()
        }
    }

    fn sampling(&self, setup: &Setup) -> anyhow::Result<AuxSampling> {
        // At gamma = 0 it is the plain model at T = 1.
        let logits: Option<Box<dyn LogitsTransform>> = if setup.gamma > 0.0 {
            let counts = setup
                .term_frequency
                .context("tf-interp: the term-frequency counts are loaded by the plan")?;
            let width = padded_vocab(setup.vocab_size as i64);
            let device = setup.aux.map_or(Device::Cpu, |a| a.device);
            let special = setup.special_ids();
            Some(Box::new(TfInterp::new(
                counts,
                &special,
                width,
                setup.gamma,
                device,
            )))
        } else {
            None
        };
        Ok(AuxSampling {
            temperature: 1.0,
            logits,
        })
    }
}

/// `log p = gamma * ln(count) + (1 - gamma) * z` (up to a constant per row), `-inf` where the
/// count is 0, on special ids and on the projection's padding.
#[derive(Debug)]
pub struct TfInterp {
    pub gamma: f64,
    /// `[V']` fp32 on the model's device: `ln(count)`, or `-inf`.
    log_counts: Tensor,
}

impl TfInterp {
    /// For `counts` over the vocabulary, `special` ids, a projection of `width` (>= vocab) ids on
    /// `device`; `gamma` in (0, 1] (gamma = 0 is plain temperature 1 and not built here).
    pub fn new(counts: &[u64], special: &[i32], width: i64, gamma: f64, device: Device) -> Self {
        let mut log = vec![f32::NEG_INFINITY; width as usize];
        for (i, &c) in counts.iter().enumerate() {
            if c > 0 && !special.contains(&(i as i32)) {
                log[i] = (c as f64).ln() as f32;
            }
        }
        Self {
            gamma,
            log_counts: Tensor::from_slice(&log).to_device(device),
        }
    }
}

impl LogitsTransform for TfInterp {
    /// The interpolated logits `[N, V']` (fp32) of the model's logits `z` `[N, V']`.
    fn logits(&self, z: &Tensor) -> Tensor {
        let z = z.to_kind(Kind::Float);
        let mixed = z * (1.0 - self.gamma) + &self.log_counts * self.gamma;
        // 0 * -inf on the padding when gamma = 1: the count's -inf wins everywhere it is -inf.
        mixed.masked_fill(&self.log_counts.isinf(), f64::NEG_INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_interp_ends_and_banned_ids() {
        let counts = [0u64, 10, 0, 5, 1];
        let special = [0, 1];
        let z = Tensor::from_slice(&[0.5f32, 1.0, 2.0, 3.0, -1.0, f32::NEG_INFINITY]).view([1, 6]);
        let full = TfInterp::new(&counts, &special, 6, 1.0, Device::Cpu).logits(&z);
        let v = Vec::<f32>::try_from(full.view([-1])).unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(v, vec![inf, inf, inf, 5f32.ln(), 0.0, inf]);
        let half = TfInterp::new(&counts, &special, 6, 0.5, Device::Cpu).logits(&z);
        let v = Vec::<f32>::try_from(half.view([-1])).unwrap();
        assert_eq!(v[3], 1.5 + 0.5 * 5f32.ln());
        assert!(v[2] == inf && v[5] == inf && v.iter().all(|x| !x.is_nan()));
    }
}
