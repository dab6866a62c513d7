//! `--augmentation temperature` (the default): softmax(logits / T), T from the temperature
//! schedule, Fast-ELECTRA's curriculum.
use super::augmentation::Augmentation;
use super::interface::{Named, Uses};

pub struct Temperature;

impl Augmentation for Temperature {
    fn named(&self) -> Named {
        Named {
            name: "temperature",
            about: "softmax(logits/T), T from --temperature-schedule",
        }
    }

    fn uses(&self) -> Uses {
        Uses {
            temperature: true,
            ..Uses::default()
        }
    }
}
