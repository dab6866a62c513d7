//! `--distribution uniform`: every non-special id equally likely.
use crate::corruption::model_free::{Base, ModelFree, ModelFreeDistribution, ModelFreeError};

use super::interface::{Named, Setup, Uses};

pub struct Uniform;

impl ModelFreeDistribution for Uniform {
    fn named(&self) -> Named {
        Named {
            name: "uniform",
            about: "every non-special id alike (no auxiliary model)",
        }
    }

    fn uses(&self) -> Uses {
        Uses::default()
    }

    fn table(&self, setup: &Setup) -> Result<ModelFree, ModelFreeError> {
        let special = setup.special_ids();
        ModelFree::new(
            self.named().name,
            setup.vocab_size,
            &special,
            Base::Uniform,
            None,
            1.0,
        )
    }
}
