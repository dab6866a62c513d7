//! `--distribution tf-soh`: `p ∝ p_TF^gamma * p_SOH^(1 - gamma)`.
use crate::corruption::model_free::{counts, ModelFree, ModelFreeDistribution, ModelFreeError};

use super::interface::{Named, Setup, Uses};

pub struct TfSoh;

impl ModelFreeDistribution for TfSoh {
    fn named(&self) -> Named {
        Named {
            name: "tf-soh",
            about: "p ∝ p_TF^gamma p_SOH^(1-gamma)",
        }
    }

    fn uses(&self) -> Uses {
        Uses {
            term_frequency: true,
            alpha: true,
            gamma: true,
            ..Uses::default()
        }
    }

    fn table(&self, setup: &Setup) -> Result<ModelFree, ModelFreeError> {
        let special = setup.special_ids();
        let (name, alpha, gamma) = (self.named().name, setup.alpha, setup.gamma);
        let base = counts(setup, name)?;
        ModelFree::new(name, setup.vocab_size, &special, base, alpha, gamma)
    }
}
