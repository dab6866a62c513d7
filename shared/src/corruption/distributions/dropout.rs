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
