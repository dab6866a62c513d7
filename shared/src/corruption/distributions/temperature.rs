//! `--augmentation temperature` (the default): softmax(logits / T), T from the temperature
//! schedule, Fast-ELECTRA's curriculum.
use crate::corruption::aux::AuxSampling;

use super::aux_sampler::{AuxSampler, AUX, AUX_USES};
use super::interface::{Distribution, Named, Sampler, Setup, Uses};

pub struct Temperature;

impl Distribution for Temperature {
    fn distribution(&self) -> Named {
        AUX
    }

    fn augmentation(&self) -> Option<Named> {
        Some(Named {
            name: "temperature",
            about: "softmax(logits/T), T from --temperature-schedule",
        })
    }

    fn uses(&self) -> Uses {
        Uses {
            temperature: true,
            ..AUX_USES
        }
    }

    fn sampler(&self, setup: &Setup) -> anyhow::Result<Box<dyn Sampler>> {
        let sampling = AuxSampling::tempered(setup.temperature);
        Ok(Box::new(AuxSampler::load(setup, None, sampling)?))
    }
}
