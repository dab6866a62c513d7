//! The model-free distributions of the paper (Appendix D.1, E.2; data-spec/epoch.md,
//! "Distributions"): every one is `p ∝ p_A^gamma * p_SOH^(1 - gamma)` with `A` uniform or the
//! term frequencies, so one table ([`ModelFree`]) and one struct serve all five: `uniform` and
//! `term-frequency` are `gamma = 1` (no alpha), `smoothed-one-hot` is `gamma = 0`, `unf-soh` and
//! `tf-soh` take gamma from its schedule. No auxiliary model is loaded.
use anyhow::Context;

use crate::corruption::model_free::{counts, Base, ModelFree, ModelFreeError};

use super::interface::{Distribution, Named, Sampler, Setup, Uses};

/// `p_A`: every non-special id alike, or the training split's term frequencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Uniform,
    TermFrequency,
}

/// Where gamma comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// `gamma = 1`: `p_A` alone (alpha unused).
    Pure,
    /// `gamma = 0`: `p_SOH` alone.
    SmoothedOneHot,
    /// This epoch's gamma from `--gamma-schedule`.
    Scheduled,
}

/// One model-free distribution `p_A^gamma * p_SOH^(1 - gamma)`.
#[derive(Debug, Clone, Copy)]
pub struct Interpolation {
    pub named: Named,
    pub source: Source,
    pub mix: Mix,
}

pub const UNIFORM: Interpolation = Interpolation {
    named: Named {
        name: "uniform",
        about: "every non-special id alike (no auxiliary model)",
    },
    source: Source::Uniform,
    mix: Mix::Pure,
};

pub const TERM_FREQUENCY: Interpolation = Interpolation {
    named: Named {
        name: "term-frequency",
        about: "the token folder's term frequencies",
    },
    source: Source::TermFrequency,
    mix: Mix::Pure,
};

pub const SMOOTHED_ONE_HOT: Interpolation = Interpolation {
    named: Named {
        name: "smoothed-one-hot",
        about: "the original kept at 1 - alpha, alpha spread evenly",
    },
    source: Source::Uniform,
    mix: Mix::SmoothedOneHot,
};

pub const UNF_SOH: Interpolation = Interpolation {
    named: Named {
        name: "unf-soh",
        about: "p ∝ p_uniform^gamma p_SOH^(1-gamma)",
    },
    source: Source::Uniform,
    mix: Mix::Scheduled,
};

pub const TF_SOH: Interpolation = Interpolation {
    named: Named {
        name: "tf-soh",
        about: "p ∝ p_TF^gamma p_SOH^(1-gamma)",
    },
    source: Source::TermFrequency,
    mix: Mix::Scheduled,
};

impl Interpolation {
    /// The epoch's table.
    pub fn table(&self, setup: &Setup) -> Result<ModelFree, ModelFreeError> {
        let name = self.named.name;
        let base = match self.source {
            Source::Uniform => Base::Uniform,
            Source::TermFrequency => counts(setup, name)?,
        };
        let (alpha, gamma) = match self.mix {
            Mix::Pure => (None, 1.0),
            Mix::SmoothedOneHot => (setup.alpha, 0.0),
            Mix::Scheduled => (setup.alpha, setup.gamma),
        };
        let special = setup.special_ids();
        ModelFree::new(name, setup.vocab_size, &special, base, alpha, gamma)
    }
}

impl Distribution for Interpolation {
    fn distribution(&self) -> Named {
        self.named
    }

    fn uses(&self) -> Uses {
        Uses {
            term_frequency: self.source == Source::TermFrequency,
            alpha: self.mix != Mix::Pure,
            gamma: self.mix == Mix::Scheduled,
            ..Uses::default()
        }
    }

    fn sampler(&self, setup: &Setup) -> anyhow::Result<Box<dyn Sampler>> {
        let table = self
            .table(setup)
            .with_context(|| format!("--tokens {}", setup.tokens.display()))?;
        Ok(Box::new(table))
    }
}
