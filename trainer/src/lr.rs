//! The learning-rate schedule of the paper's Table 3: linear warm-up, then linear decay to 0.
//! A pure function of the update index, so a resumed run gets the same rates.

/// Linear warm-up over `warmup` updates to `peak`, then linear decay reaching 0 at `total`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    /// Peak learning rate (reached at update `warmup - 1`).
    pub peak: f64,
    /// Number of warm-up updates.
    pub warmup: u64,
    /// Total number of updates of the run.
    pub total: u64,
}

impl LinearSchedule {
    /// The rate of update `step` (0-based): `peak * (step + 1) / warmup` during warm-up, then
    /// `peak * (total - step) / (total - warmup)`; 0 from `total` on.
    pub fn at(&self, step: u64) -> f64 {
        if step >= self.total {
            return 0.0;
        }
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        self.peak * (self.total - step) as f64 / (self.total - self.warmup) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::LinearSchedule;

    #[test]
    fn warmup_peak_and_end() {
        let s = LinearSchedule {
            peak: 1e-3,
            warmup: 10,
            total: 110,
        };
        assert_eq!(s.at(0), 1e-4);
        assert_eq!(s.at(9), 1e-3);
        assert_eq!(s.at(10), 1e-3);
        assert!((s.at(60) - 0.5e-3).abs() < 1e-12);
        assert!((s.at(109) - 1e-5).abs() < 1e-15);
        assert_eq!(s.at(110), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        let s = LinearSchedule {
            peak: 2.0,
            warmup: 0,
            total: 4,
        };
        assert_eq!(s.at(0), 2.0);
        assert_eq!(s.at(3), 0.5);
    }
}
