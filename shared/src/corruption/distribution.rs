//! Which replaced-token distribution an epoch samples from (data-spec/epoch.md, "Distributions"):
//! the auxiliary model's (`aux`, with an augmentation) or a model-free one, and the strength
//! gamma of interpolations and augmentations, scheduled like the temperature.
use crate::corruption::schedule::TemperatureSchedule;
use crate::format::manifest::GammaScheduleInfo;

/// Where replacement tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// The frozen auxiliary model, transformed by an [`Augmentation`].
    Aux,
    /// Every non-special id equally likely.
    Uniform,
    /// Proportional to the training split's term frequency.
    TermFrequency,
    /// `1 - alpha` on the original token, `alpha` spread evenly over the other non-special ids.
    SmoothedOneHot,
    /// `p ∝ p_uniform^gamma * p_SOH^(1 - gamma)`.
    UnfSoh,
    /// `p ∝ p_TF^gamma * p_SOH^(1 - gamma)`.
    TfSoh,
}

/// Names accepted by `--distribution`, in [`Distribution`] order.
pub const DISTRIBUTION_NAMES: [&str; 6] = [
    "aux",
    "uniform",
    "term-frequency",
    "smoothed-one-hot",
    "unf-soh",
    "tf-soh",
];

impl Distribution {
    const ALL: [Self; 6] = [
        Self::Aux,
        Self::Uniform,
        Self::TermFrequency,
        Self::SmoothedOneHot,
        Self::UnfSoh,
        Self::TfSoh,
    ];

    pub fn name(self) -> &'static str {
        DISTRIBUTION_NAMES[Self::ALL.iter().position(|&d| d == self).expect("listed")]
    }

    /// Needs the auxiliary model (only `aux`).
    pub fn needs_aux_model(self) -> bool {
        self == Self::Aux
    }

    /// Uses the term-frequency counts.
    pub fn uses_term_frequency(self) -> bool {
        matches!(self, Self::TermFrequency | Self::TfSoh)
    }

    /// Uses `alpha` (the smoothed one-hot distribution takes part).
    pub fn uses_alpha(self) -> bool {
        matches!(self, Self::SmoothedOneHot | Self::UnfSoh | Self::TfSoh)
    }

    /// Uses the scheduled `gamma` (the interpolations).
    pub fn uses_gamma(self) -> bool {
        matches!(self, Self::UnfSoh | Self::TfSoh)
    }
}

impl std::str::FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                format!(
                    "--distribution: expected one of {}, found {s:?}",
                    DISTRIBUTION_NAMES.join(", ")
                )
            })
    }
}

/// How the auxiliary model's distribution is made easier (with `--distribution aux`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Augmentation {
    /// softmax(logits / T), T from the temperature schedule (Fast-ELECTRA's default).
    Temperature,
    /// `p ∝ p_TF^gamma * p_aux^(1 - gamma)`.
    TfInterp,
    /// The auxiliary model's activation (hidden) dropout on at rate gamma.
    Dropout,
    /// The auxiliary model's attention-probability dropout on at rate gamma.
    DropAttention,
    /// A gamma fraction of the auxiliary model's unmasked input tokens become [UNK].
    DropToken,
}

/// Names accepted by `--augmentation`, in [`Augmentation`] order.
pub const AUGMENTATION_NAMES: [&str; 5] = [
    "temperature",
    "tf-interp",
    "dropout",
    "drop-attention",
    "drop-token",
];

impl Augmentation {
    const ALL: [Self; 5] = [
        Self::Temperature,
        Self::TfInterp,
        Self::Dropout,
        Self::DropAttention,
        Self::DropToken,
    ];

    pub fn name(self) -> &'static str {
        AUGMENTATION_NAMES[Self::ALL.iter().position(|&a| a == self).expect("listed")]
    }

    /// Every augmentation but `temperature` is scheduled by gamma (and samples at T = 1).
    pub fn uses_gamma(self) -> bool {
        self != Self::Temperature
    }

    /// Runs the auxiliary model with dropout (masks from torch's generator, see
    /// data-spec/epoch.md, "Determinism").
    pub fn uses_dropout(self) -> bool {
        matches!(self, Self::Dropout | Self::DropAttention)
    }

    /// The auxiliary model's dropout rates (hidden states, attention probabilities) at `gamma`:
    /// `dropout` drops hidden states (activations) at rate gamma, `drop-attention` attention
    /// probabilities; `None` (no dropout at all) for the others and at gamma = 0, which is
    /// plain T = 1.
    pub fn dropout_rates(self, gamma: f64) -> Option<(f64, f64)> {
        match self {
            Self::Dropout if gamma > 0.0 => Some((gamma, 0.0)),
            Self::DropAttention if gamma > 0.0 => Some((0.0, gamma)),
            _ => None,
        }
    }
}

impl std::str::FromStr for Augmentation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "--augmentation: expected one of {}, found {s:?}",
                    AUGMENTATION_NAMES.join(", ")
                )
            })
    }
}

/// gamma of epoch `e` of `E`: `gamma_max` times the decay of a schedule of the temperature's
/// shapes (paper, Appendix E.2): exp `gamma_max e^(-u/tau)`, const `gamma_max`, poly
/// `gamma_max (1-u)^k`, step `gamma_max (1 - floor(u k)/k)`, `u = e / E`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaSchedule {
    pub shape: TemperatureSchedule,
    pub gamma_max: f64,
}

impl GammaSchedule {
    /// Checks `gamma_max` in [0, 1] and the shape's parameters (`tau`, `k` as for the
    /// temperature), naming the flag.
    pub fn new(name: &str, gamma_max: f64, tau: f64, k: f64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&gamma_max) {
            return Err(format!(
                "--gamma-max: expected a number in [0, 1], found {gamma_max}"
            ));
        }
        let shape = TemperatureSchedule::new(name, 1.0, tau, k)
            .map_err(|e| format!("--gamma-schedule: {e}"))?;
        Ok(Self { shape, gamma_max })
    }

    /// gamma of `epoch` of `epochs`, in [0, gamma_max].
    pub fn gamma(&self, epoch: u32, epochs: u32) -> f64 {
        self.gamma_max * self.shape.decay(epoch, epochs)
    }

    /// As recorded in settings and manifests (unused parameters 0).
    pub fn to_info(&self) -> GammaScheduleInfo {
        let info = self.shape.to_info();
        GammaScheduleInfo {
            name: info.name,
            gamma_max: self.gamma_max,
            tau: info.tau,
            k: info.k,
        }
    }
}

/// Checks `--alpha` in (0, 1).
pub fn check_alpha(alpha: f64) -> Result<f64, String> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(alpha)
    } else {
        Err(format!(
            "--alpha: expected a number in (0, 1), found {alpha}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for name in DISTRIBUTION_NAMES {
            assert_eq!(name.parse::<Distribution>().unwrap().name(), name);
        }
        for name in AUGMENTATION_NAMES {
            assert_eq!(name.parse::<Augmentation>().unwrap().name(), name);
        }
        let err = "zipf".parse::<Distribution>().unwrap_err();
        assert!(err.contains("tf-soh") && err.contains("\"zipf\""), "{err}");
        assert!("mixup".parse::<Augmentation>().is_err());
    }

    #[test]
    fn dropout_augmentations_drop_what_they_are_named_after_at_gamma() {
        // (hidden states, attention probabilities); the model's modules are tested at those
        // rates in `model::attention`.
        assert_eq!(Augmentation::Dropout.dropout_rates(0.3), Some((0.3, 0.0)));
        assert_eq!(
            Augmentation::DropAttention.dropout_rates(0.3),
            Some((0.0, 0.3))
        );
        assert_eq!(Augmentation::Dropout.dropout_rates(1.0), Some((1.0, 0.0)));
        assert_eq!(
            Augmentation::DropAttention.dropout_rates(1.0),
            Some((0.0, 1.0))
        );
        for a in [
            Augmentation::Temperature,
            Augmentation::TfInterp,
            Augmentation::DropToken,
        ] {
            assert_eq!(a.dropout_rates(0.5), None, "{a:?}");
        }
        assert_eq!(Augmentation::Dropout.dropout_rates(0.0), None);
        assert_eq!(Augmentation::DropAttention.dropout_rates(0.0), None);
    }

    #[test]
    fn gamma_follows_the_schedule_and_is_checked() {
        let g = GammaSchedule::new("step", 0.8, 0.0, 2.0).unwrap();
        let v: Vec<f64> = (0..4).map(|e| g.gamma(e, 4)).collect();
        assert_eq!(v, vec![0.8, 0.8, 0.4, 0.4]);
        let c = GammaSchedule::new("const", 0.3, 0.0, 0.0).unwrap();
        assert_eq!(c.gamma(5, 6), 0.3);
        let e = GammaSchedule::new("exp", 1.0, 0.5, 0.0).unwrap();
        assert!((e.gamma(1, 2) - (-1.0f64).exp()).abs() < 1e-15);
        assert!(GammaSchedule::new("exp", 1.5, 0.5, 0.0)
            .unwrap_err()
            .contains("--gamma-max: expected a number in [0, 1], found 1.5"));
        assert!(GammaSchedule::new("exp", f64::NAN, 0.5, 0.0).is_err());
        assert!(GammaSchedule::new("exp", 0.5, 0.0, 0.0)
            .unwrap_err()
            .contains("tau"));
        assert!(check_alpha(0.35).is_ok());
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(check_alpha(bad).unwrap_err().contains("--alpha"));
        }
    }
}
