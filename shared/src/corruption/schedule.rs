//! Temperature schedules of Fast-ELECTRA (equation 2 of `docs/design.md` and the paper's alternatives).
//!
//! The temperature of epoch `e` of `E` is a pure function of `u = e / E`, the fraction of
//! training done when the epoch starts:
//!
//! | name    | T(u)                                   | parameters          |
//! |---------|----------------------------------------|---------------------|
//! | `exp`   | `1 + (T0 - 1) * exp(-u / tau)`         | `t0 >= 1`, `tau > 0`|
//! | `const` | `T0`                                   | `t0 >= 1`           |
//! | `poly`  | `1 + (T0 - 1) * (1 - u)^k`             | `t0 >= 1`, `k > 0`  |
//! | `step`  | `1 + (T0 - 1) * (1 - floor(u * k) / k)`| `t0 >= 1`, integer `k >= 1` |
//!
//! `step` cuts training into `k` equal stretches and lowers T by `(T0 - 1) / k` at the start of
//! each; the first stretch runs at `T0`. For `step`, `floor(e * k / E)` is computed in integers so
//! that an epoch on a step boundary never lands on the wrong side through rounding.
use crate::format::manifest::ScheduleInfo;

/// Why a schedule's parameters were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown temperature schedule {found:?}: expected one of exp, const, poly, step")]
    UnknownName { found: String },
    #[error("schedule {schedule}: parameter {param}: expected {expected}, found {found}")]
    BadParam {
        schedule: &'static str,
        param: &'static str,
        expected: &'static str,
        found: f64,
    },
}

/// A temperature schedule with checked parameters (build it with [`TemperatureSchedule::new`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TemperatureSchedule {
    /// `1 + (t0 - 1) * exp(-u / tau)`: equation 2 of `docs/design.md`.
    Exp { t0: f64, tau: f64 },
    /// `t0` in every epoch.
    Const { t0: f64 },
    /// `1 + (t0 - 1) * (1 - u)^k`.
    Poly { t0: f64, k: f64 },
    /// `1 + (t0 - 1) * (1 - floor(u * k) / k)`: `k` equal steps.
    Step { t0: f64, k: u32 },
}

/// Names accepted by [`TemperatureSchedule::new`].
pub const SCHEDULE_NAMES: [&str; 4] = ["exp", "const", "poly", "step"];

impl TemperatureSchedule {
    /// Builds and checks a schedule: `t0` finite and >= 1; `tau` finite and > 0 (for `exp`);
    /// `k` finite and > 0 (for `poly`), a whole number >= 1 (for `step`). Parameters a schedule
    /// does not use are ignored.
    pub fn new(name: &str, t0: f64, tau: f64, k: f64) -> Result<Self, ScheduleError> {
        let schedule: &'static str = match name {
            "exp" => "exp",
            "const" => "const",
            "poly" => "poly",
            "step" => "step",
            other => {
                return Err(ScheduleError::UnknownName {
                    found: other.to_string(),
                })
            }
        };
        let bad = |param, expected, found| ScheduleError::BadParam {
            schedule,
            param,
            expected,
            found,
        };
        if !(t0.is_finite() && t0 >= 1.0) {
            return Err(bad(
                "t0",
                "a finite number >= 1 (T below 1 sharpens, not eases)",
                t0,
            ));
        }
        Ok(match schedule {
            "exp" => {
                if !(tau.is_finite() && tau > 0.0) {
                    return Err(bad("tau", "a finite number > 0", tau));
                }
                Self::Exp { t0, tau }
            }
            "const" => Self::Const { t0 },
            "poly" => {
                if !(k.is_finite() && k > 0.0) {
                    return Err(bad("k", "a finite number > 0", k));
                }
                Self::Poly { t0, k }
            }
            _ => {
                if !(k.is_finite() && k >= 1.0 && k.fract() == 0.0 && k <= u32::MAX as f64) {
                    return Err(bad("k", "a whole number of steps >= 1", k));
                }
                Self::Step { t0, k: k as u32 }
            }
        })
    }

    /// The schedule's name: `exp`, `const`, `poly` or `step`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Exp { .. } => "exp",
            Self::Const { .. } => "const",
            Self::Poly { .. } => "poly",
            Self::Step { .. } => "step",
        }
    }

    /// The starting temperature T0.
    pub fn t0(&self) -> f64 {
        match *self {
            Self::Exp { t0, .. }
            | Self::Const { t0 }
            | Self::Poly { t0, .. }
            | Self::Step { t0, .. } => t0,
        }
    }

    /// Temperature of epoch `epoch` (0-based) of `epochs`, i.e. at `u = epoch / epochs`.
    /// `epochs` must be > 0; `epoch` is normally below `epochs` (callers check that).
    pub fn temperature(&self, epoch: u32, epochs: u32) -> f64 {
        assert!(epochs > 0, "TemperatureSchedule::temperature: epochs = 0");
        if let Self::Step { t0, k } = *self {
            // Integer floor(epoch * k / epochs): exact on step boundaries.
            let done = (epoch as u64 * k as u64 / epochs as u64).min(k as u64);
            return 1.0 + (t0 - 1.0) * (1.0 - done as f64 / k as f64);
        }
        self.temperature_at(epoch as f64 / epochs as f64)
    }

    /// Temperature at training fraction `u` (clamped to 0..=1).
    pub fn temperature_at(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        match *self {
            Self::Exp { t0, tau } => 1.0 + (t0 - 1.0) * (-u / tau).exp(),
            Self::Const { t0 } => t0,
            Self::Poly { t0, k } => 1.0 + (t0 - 1.0) * (1.0 - u).powf(k),
            Self::Step { t0, k } => {
                let done = (u * k as f64).floor().min(k as f64);
                1.0 + (t0 - 1.0) * (1.0 - done / k as f64)
            }
        }
    }

    /// The schedule's decay factor of epoch `epoch` of `epochs`, in [0, 1]: `exp(-u/tau)`, 1
    /// (const), `(1 - u)^k`, `1 - floor(epoch k / epochs) / k` (integer floor). The strength
    /// gamma of a distribution or augmentation is `gamma_max` times it (data-spec/epoch.md,
    /// "Gamma"). `T0` plays no part.
    pub fn decay(&self, epoch: u32, epochs: u32) -> f64 {
        assert!(epochs > 0, "TemperatureSchedule::decay: epochs = 0");
        let u = (epoch as f64 / epochs as f64).clamp(0.0, 1.0);
        match *self {
            Self::Exp { tau, .. } => (-u / tau).exp(),
            Self::Const { .. } => 1.0,
            Self::Poly { k, .. } => (1.0 - u).powf(k),
            Self::Step { k, .. } => {
                let done = (epoch as u64 * k as u64 / epochs as u64).min(k as u64);
                1.0 - done as f64 / k as f64
            }
        }
    }

    /// The schedule as recorded in manifests; parameters the schedule does not use are 0.
    pub fn to_info(&self) -> ScheduleInfo {
        let (tau, k) = match *self {
            Self::Exp { tau, .. } => (tau, 0.0),
            Self::Const { .. } => (0.0, 0.0),
            Self::Poly { k, .. } => (0.0, k),
            Self::Step { k, .. } => (0.0, k as f64),
        };
        ScheduleInfo {
            name: self.name().to_string(),
            t0: self.t0(),
            tau,
            k,
        }
    }

    /// The schedule a manifest records, checked like [`TemperatureSchedule::new`].
    pub fn from_info(info: &ScheduleInfo) -> Result<Self, ScheduleError> {
        Self::new(&info.name, info.t0, info.tau, info.k)
    }
}

impl std::fmt::Display for TemperatureSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Exp { t0, tau } => write!(f, "exp(t0={t0}, tau={tau})"),
            Self::Const { t0 } => write!(f, "const(t0={t0})"),
            Self::Poly { t0, k } => write!(f, "poly(t0={t0}, k={k})"),
            Self::Step { t0, k } => write!(f, "step(t0={t0}, k={k})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn exp_start_mid_end() {
        let s = TemperatureSchedule::new("exp", 2.0, 0.1, 0.0).unwrap();
        assert!(close(s.temperature(0, 10), 2.0));
        assert!(close(s.temperature(5, 10), 1.0 + (-5.0f64).exp()));
        assert!(close(s.temperature_at(1.0), 1.0 + (-10.0f64).exp()));
        // Strictly decreasing over the epochs.
        let t: Vec<f64> = (0..10).map(|e| s.temperature(e, 10)).collect();
        assert!(t.windows(2).all(|w| w[1] < w[0]), "{t:?}");
    }

    #[test]
    fn const_is_constant() {
        let s = TemperatureSchedule::new("const", 1.5, f64::NAN, f64::NAN).unwrap();
        for e in 0..5 {
            assert_eq!(s.temperature(e, 5), 1.5);
        }
    }

    #[test]
    fn poly_start_mid_end() {
        let s = TemperatureSchedule::new("poly", 3.0, 0.0, 2.0).unwrap();
        assert!(close(s.temperature(0, 4), 3.0));
        assert!(close(s.temperature(2, 4), 1.0 + 2.0 * 0.25));
        assert!(close(s.temperature_at(1.0), 1.0));
    }

    #[test]
    fn step_boundaries_are_exact() {
        let s = TemperatureSchedule::new("step", 2.0, 0.0, 10.0).unwrap();
        // Every epoch of 10 starts a new step: 2.0, 1.9, ..., 1.1.
        for e in 0..10 {
            assert!(
                close(s.temperature(e, 10), 2.0 - e as f64 / 10.0),
                "epoch {e}"
            );
        }
        let s = TemperatureSchedule::new("step", 3.0, 0.0, 2.0).unwrap();
        let t: Vec<f64> = (0..6).map(|e| s.temperature(e, 6)).collect();
        assert_eq!(t, vec![3.0, 3.0, 3.0, 2.0, 2.0, 2.0]);
        assert!(close(s.temperature_at(1.0), 1.0));
    }

    #[test]
    fn validation_names_the_parameter() {
        let err = TemperatureSchedule::new("exp", 0.5, 0.1, 1.0).unwrap_err();
        assert!(err.to_string().contains("t0"), "{err}");
        assert!(TemperatureSchedule::new("exp", f64::INFINITY, 0.1, 1.0).is_err());
        assert!(TemperatureSchedule::new("exp", f64::NAN, 0.1, 1.0).is_err());
        let err = TemperatureSchedule::new("exp", 2.0, 0.0, 1.0).unwrap_err();
        assert!(err.to_string().contains("tau"), "{err}");
        assert!(TemperatureSchedule::new("poly", 2.0, 0.1, -1.0).is_err());
        assert!(TemperatureSchedule::new("step", 2.0, 0.1, 2.5).is_err());
        assert!(TemperatureSchedule::new("step", 2.0, 0.1, 0.0).is_err());
        let err = TemperatureSchedule::new("cosine", 2.0, 0.1, 1.0).unwrap_err();
        assert!(err.to_string().contains("cosine"), "{err}");
    }

    #[test]
    fn decay_follows_the_paper_gamma_schedules() {
        let exp = TemperatureSchedule::new("exp", 1.0, 0.5, 0.0).unwrap();
        assert!(close(exp.decay(0, 4), 1.0));
        assert!(close(exp.decay(2, 4), (-1.0f64).exp()));
        let c = TemperatureSchedule::new("const", 1.0, 0.0, 0.0).unwrap();
        assert_eq!(c.decay(3, 4), 1.0);
        let p = TemperatureSchedule::new("poly", 1.0, 0.0, 2.0).unwrap();
        assert!(close(p.decay(2, 4), 0.25));
        let s = TemperatureSchedule::new("step", 1.0, 0.0, 2.0).unwrap();
        let d: Vec<f64> = (0..4).map(|e| s.decay(e, 4)).collect();
        assert_eq!(d, vec![1.0, 1.0, 0.5, 0.5]);
    }

    #[test]
    fn info_round_trip() {
        for s in [
            TemperatureSchedule::new("exp", 2.0, 0.5, 0.0).unwrap(),
            TemperatureSchedule::new("const", 1.2, 0.0, 0.0).unwrap(),
            TemperatureSchedule::new("poly", 2.0, 0.0, 1.5).unwrap(),
            TemperatureSchedule::new("step", 2.0, 0.0, 4.0).unwrap(),
        ] {
            assert_eq!(TemperatureSchedule::from_info(&s.to_info()).unwrap(), s);
        }
        // Unused parameters are recorded as 0, so they never make two equal schedules differ.
        let a = TemperatureSchedule::new("const", 2.0, 0.1, 3.0).unwrap();
        let b = TemperatureSchedule::new("const", 2.0, 0.7, 9.0).unwrap();
        assert_eq!(a.to_info(), b.to_info());
    }
}
