//! The strength gamma of interpolations and augmentations, scheduled like the temperature
//! (data-spec/epoch.md, "Gamma"), and the check of `--alpha`.
use crate::corruption::schedule::TemperatureSchedule;
use crate::format::manifest::GammaScheduleInfo;

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
