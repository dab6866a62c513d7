//! The checked choice of one epoch's distribution: which registry entry, and the parameters it
//! uses, made from the flags before any work and recorded in the settings.
use crate::corruption::schedule::TemperatureSchedule;
use crate::format::epoch_record::Replacement;

use super::gamma::GammaSchedule;
use super::interface::Distribution;

/// A distribution and this epoch's values of the parameters it uses.
#[derive(Clone, Copy)]
pub struct Choice {
    pub distribution: &'static dyn Distribution,
    /// Where used.
    pub alpha: Option<f64>,
    /// Where used: the schedule and this epoch's gamma.
    pub gamma: Option<(GammaSchedule, f64)>,
    /// The temperature schedule; `const` at T0 = 1 where the sampling is not tempered.
    pub schedule: TemperatureSchedule,
    /// This epoch's temperature (1 where not tempered).
    pub temperature: f64,
}

impl std::fmt::Debug for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Choice")
            .field("distribution", &self.distribution.distribution().name)
            .field(
                "augmentation",
                &self.distribution.augmentation().map(|a| a.name),
            )
            .field("alpha", &self.alpha)
            .field("gamma", &self.gamma)
            .field("schedule", &self.schedule)
            .field("temperature", &self.temperature)
            .finish()
    }
}

impl Choice {
    /// Keeps of `alpha` and `gamma_schedule` (both already checked) what `distribution` uses,
    /// and asks `temperature_schedule` for the schedule only where it is tempered (so its flags
    /// are checked only then). Epoch `epoch` of `epochs` fixes gamma and T; T must be finite and
    /// at least 1.
    pub fn new(
        distribution: &'static dyn Distribution,
        alpha: f64,
        gamma_schedule: GammaSchedule,
        temperature_schedule: impl FnOnce() -> anyhow::Result<TemperatureSchedule>,
        epoch: u32,
        epochs: u32,
    ) -> anyhow::Result<Self> {
        let uses = distribution.uses();
        let schedule = if uses.temperature {
            temperature_schedule()?
        } else {
            TemperatureSchedule::Const { t0: 1.0 }
        };
        let temperature = schedule.temperature(epoch, epochs);
        anyhow::ensure!(
            temperature.is_finite() && temperature >= 1.0,
            "temperature of epoch {epoch}: expected a finite T >= 1, found {temperature}"
        );
        Ok(Self {
            distribution,
            alpha: uses.alpha.then_some(alpha),
            gamma: uses
                .gamma
                .then(|| (gamma_schedule, gamma_schedule.gamma(epoch, epochs))),
            schedule,
            temperature,
        })
    }

    /// This epoch's gamma, 0 where unused.
    pub fn gamma_value(&self) -> f64 {
        self.gamma.map_or(0.0, |(_, g)| g)
    }

    /// One line: the distribution, augmentation and their parameters for this epoch.
    pub fn describe(&self) -> String {
        let d = self.distribution;
        let mut parts = vec![format!("distribution {}", d.distribution().name)];
        if let Some(a) = d.augmentation() {
            parts.push(format!("augmentation {}", a.name));
        }
        if d.uses().temperature {
            parts.push(format!(
                "schedule {}, T = {:.6}",
                self.schedule, self.temperature
            ));
        }
        if let Some(alpha) = self.alpha {
            parts.push(format!("alpha = {alpha}"));
        }
        if let Some((s, g)) = self.gamma {
            parts.push(format!(
                "gamma schedule {} from gamma_max {}, gamma = {g:.6}",
                s.shape.name(),
                s.gamma_max
            ));
        }
        parts.join(", ")
    }

    /// The record of the settings and the manifest: the names and the parameters used, the
    /// SHA-256 of the term-frequency file where it was read, and `batch_size` where the dropout
    /// masks depend on it.
    pub fn replacement(
        &self,
        term_frequency_sha256: Option<String>,
        batch_size: usize,
    ) -> Replacement {
        let d = self.distribution;
        Replacement {
            distribution: d.distribution().name.to_string(),
            augmentation: d.augmentation().map(|a| a.name.to_string()),
            alpha: self.alpha,
            gamma: self.gamma.map(|(_, g)| g),
            gamma_schedule: self.gamma.map(|(s, _)| s.to_info()),
            term_frequency_sha256,
            dropout_batch_size: d.uses().dropout.then_some(batch_size as u64),
        }
    }
}
