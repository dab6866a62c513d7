//! `--distribution term-frequency`: proportional to the training split's term frequency.
use crate::corruption::model_free::{counts, ModelFree, ModelFreeDistribution, ModelFreeError};

use super::interface::{Named, Setup, Uses};

pub struct TermFrequency;

impl ModelFreeDistribution for TermFrequency {
    fn named(&self) -> Named {
        Named {
            name: "term-frequency",
            about: "the token folder's term frequencies",
        }
    }

    fn uses(&self) -> Uses {
        Uses {
            term_frequency: true,
            ..Uses::default()
        }
    }

    fn table(&self, setup: &Setup) -> Result<ModelFree, ModelFreeError> {
        let name = self.named().name;
        let special = setup.special_ids();
        ModelFree::new(
            name,
            setup.vocab_size,
            &special,
            counts(setup, name)?,
            None,
            1.0,
        )
    }
}
