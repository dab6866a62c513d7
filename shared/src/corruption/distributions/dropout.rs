//! `--augmentation dropout` and `drop-attention`: softmax(z) of the auxiliary model run with its
//! activation (hidden) dropout, or its attention-probability dropout, at rate gamma (the other
//! rate 0). The masks come from torch's generator, seeded per batch, so the output depends on
//! `--batch-size` (data-spec/epoch.md, "Determinism").
use crate::corruption::aux::DropoutRates;

use super::augmentation::Augmentation;
use super::interface::{Named, Setup, Uses};

/// Dropout at rate gamma on the activations, or on the attention probabilities.
pub struct Dropout {
    named: Named,
    attention: bool,
}

/// `--augmentation dropout`.
pub const DROPOUT: Dropout = Dropout {
    named: Named {
        name: "dropout",
        about: "activation dropout at rate gamma",
    },
    attention: false,
};

/// `--augmentation drop-attention`.
pub const DROP_ATTENTION: Dropout = Dropout {
    named: Named {
        name: "drop-attention",
        about: "attention dropout at rate gamma",
    },
    attention: true,
};

impl Augmentation for Dropout {
    fn named(&self) -> Named {
        self.named
    }

    fn uses(&self) -> Uses {
        Uses {
            gamma: true,
            dropout: true,
            ..Uses::default()
        }
    }

    fn dropout(&self, setup: &Setup) -> DropoutRates {
        // At gamma = 0 it is the plain model at T = 1 (no dropout, no seeding).
        let g = setup.gamma;
        (g > 0.0).then_some(if self.attention { (0.0, g) } else { (g, 0.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::distributions::{DropToken, Temperature, TfInterpAugmentation};

    fn at(gamma: f64) -> Setup<'static> {
        Setup {
            keys: crate::corruption::batch::Keys {
                seed: 0,
                epoch: 0,
                mask_rate: 0.15,
                special: crate::corruption::masking::SpecialIds {
                    pad: 0,
                    cls: 1,
                    sep: 2,
                    mask: 3,
                },
            },
            vocab_size: 8,
            tokens: std::path::Path::new("tokens"),
            alpha: None,
            gamma,
            temperature: 1.0,
            term_frequency: None,
            unk: None,
            aux: None,
        }
    }

    #[test]
    fn dropout_augmentations_drop_what_they_are_named_after_at_gamma() {
        // (hidden states, attention probabilities); the model's modules are tested at those
        // rates in `model::attention`.
        assert_eq!(DROPOUT.dropout(&at(0.3)), Some((0.3, 0.0)));
        assert_eq!(DROP_ATTENTION.dropout(&at(0.3)), Some((0.0, 0.3)));
        assert_eq!(DROPOUT.dropout(&at(1.0)), Some((1.0, 0.0)));
        assert_eq!(DROP_ATTENTION.dropout(&at(1.0)), Some((0.0, 1.0)));
        assert_eq!(DROPOUT.dropout(&at(0.0)), None);
        assert_eq!(DROP_ATTENTION.dropout(&at(0.0)), None);
        assert_eq!(Temperature.dropout(&at(0.5)), None);
        assert_eq!(TfInterpAugmentation.dropout(&at(0.5)), None);
        assert_eq!(DropToken.dropout(&at(0.5)), None);
    }
}
