//! `--distribution smoothed-one-hot`: `1 - alpha` on the original token, `alpha` spread evenly
//! over the other non-special ids.
use crate::corruption::model_free::{Base, ModelFree, ModelFreeDistribution, ModelFreeError};

use super::interface::{Named, Setup, Uses};

pub struct SmoothedOneHot;

impl ModelFreeDistribution for SmoothedOneHot {
    fn named(&self) -> Named {
        Named {
            name: "smoothed-one-hot",
            about: "the original kept at 1 - alpha, alpha spread evenly",
        }
    }

    fn uses(&self) -> Uses {
        Uses {
            alpha: true,
            ..Uses::default()
        }
    }

    fn table(&self, setup: &Setup) -> Result<ModelFree, ModelFreeError> {
        let special = setup.special_ids();
        let (name, alpha) = (self.named().name, setup.alpha);
        ModelFree::new(name, setup.vocab_size, &special, Base::Uniform, alpha, 0.0)
    }
}
