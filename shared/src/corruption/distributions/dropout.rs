//! `--augmentation dropout`: softmax(z) of the auxiliary model run with its activation (hidden)
//! dropout at rate gamma (attention dropout 0).
use crate::corruption::aux::AuxSampling;

use super::aux_sampler::{AuxSampler, AUX, AUX_USES};
use super::interface::{Distribution, Named, Sampler, Setup, Uses};

pub struct Dropout;

impl Distribution for Dropout {
    fn distribution(&self) -> Named {
        AUX
    }

    fn augmentation(&self) -> Option<Named> {
        Some(Named {
            name: "dropout",
            about: "activation dropout at rate gamma",
        })
    }

    fn uses(&self) -> Uses {
        Uses {
            gamma: true,
            dropout: true,
            ..AUX_USES
        }
    }

    fn sampler(&self, setup: &Setup) -> anyhow::Result<Box<dyn Sampler>> {
        // At gamma = 0 it is the plain model at T = 1 (no dropout, no seeding).
        let rates = (setup.gamma > 0.0).then_some((setup.gamma, 0.0));
        let sampling = AuxSampling::tempered(setup.temperature);
        Ok(Box::new(AuxSampler::load(setup, rates, sampling)?))
    }
}
