//! `--distribution unf-soh`: `p ∝ p_uniform^gamma * p_SOH^(1 - gamma)`.
use crate::corruption::model_free::{Base, ModelFree, ModelFreeDistribution, ModelFreeError};

use super::interface::{Named, Setup, Uses};

pub struct UnfSoh;

impl ModelFreeDistribution for UnfSoh {
    fn named(&self) -> Named {
        Named {
            name: "unf-soh",
            about: "p ∝ p_uniform^gamma p_SOH^(1-gamma)",
        }
    }

    fn uses(&self) -> Uses {
        Uses {
            alpha: true,
            gamma: true,
            ..Uses::default()
        }
    }

    fn table(&self, setup: &Setup) -> Result<ModelFree, ModelFreeError> {
        let special = setup.special_ids();
        let (name, alpha, gamma) = (self.named().name, setup.alpha, setup.gamma);
        ModelFree::new(
            name,
            setup.vocab_size,
            &special,
            Base::Uniform,
            alpha,
            gamma,
        )
    }
}
