//! The counts a micro-batch contributes to the metrics, by name. On the device they travel as
//! one f64 5-vector (summed over an interval without a host sync, in the order of
//! [`Counts::ORDER`]); [`CountTensors::stack`] builds that vector and [`Counts::from_device`]
//! reads it back: no code indexes it by position.
use tch::{Device, Kind, Tensor};

/// Counts of one interval or validation pass. For a binary objective the positive class is the
/// objective's (RTD: "replaced"); objectives without one (MLM) count `correct` of `total`
/// predictions and leave the other three at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Correct predictions.
    pub correct: f64,
    /// Predictions made (RTD: real tokens; MLM: masked positions).
    pub total: f64,
    /// Predicted positive and actually positive.
    pub true_positive: f64,
    /// Predicted positive.
    pub predicted_positive: f64,
    /// Actually positive.
    pub actual_positive: f64,
}

/// The same counts as 0-dimensional f64 tensors on the device (no gradient).
pub struct CountTensors {
    pub correct: Tensor,
    pub total: Tensor,
    pub true_positive: Tensor,
    pub predicted_positive: Tensor,
    pub actual_positive: Tensor,
}

impl CountTensors {
    /// The device 5-vector, in [`Counts::ORDER`].
    pub fn stack(self) -> Tensor {
        Tensor::stack(
            &[
                self.correct,
                self.total,
                self.true_positive,
                self.predicted_positive,
                self.actual_positive,
            ],
            0,
        )
        .to_kind(Kind::Double)
    }
}

impl Counts {
    /// Field order of the device vector.
    pub const ORDER: [&'static str; 5] = [
        "correct",
        "total",
        "true_positive",
        "predicted_positive",
        "actual_positive",
    ];

    /// Reads the device 5-vector made by [`CountTensors::stack`] (one host sync).
    pub fn from_device(t: &Tensor) -> anyhow::Result<Self> {
        let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).view([-1]))?;
        let [correct, total, true_positive, predicted_positive, actual_positive] = v[..] else {
            anyhow::bail!(
                "metric counts: expected {} values ({}), found {}",
                Self::ORDER.len(),
                Self::ORDER.join(", "),
                v.len()
            );
        };
        Ok(Self {
            correct,
            total,
            true_positive,
            predicted_positive,
            actual_positive,
        })
    }

    /// Fraction of correct predictions (0 when nothing was predicted).
    pub fn accuracy(&self) -> f64 {
        if self.total > 0.0 {
            self.correct / self.total
        } else {
            0.0
        }
    }

    /// Precision of the positive class (None when nothing was predicted positive).
    pub fn precision(&self) -> Option<f64> {
        (self.predicted_positive > 0.0).then(|| self.true_positive / self.predicted_positive)
    }

    /// Recall of the positive class (None when nothing is positive).
    pub fn recall(&self) -> Option<f64> {
        (self.actual_positive > 0.0).then(|| self.true_positive / self.actual_positive)
    }

    /// F1 of the positive class, 2 TP / (predicted + actual positives) = the harmonic mean of
    /// precision and recall, 0 when one of them is 0 (None when there is nothing positive,
    /// predicted or actual).
    pub fn f1(&self) -> Option<f64> {
        let d = self.predicted_positive + self.actual_positive;
        (d > 0.0).then(|| 2.0 * self.true_positive / d)
    }

    /// Accuracy of predicting "negative" everywhere (RTD: all-"original"), 1 - positive rate.
    pub fn baseline_accuracy(&self) -> f64 {
        1.0 - self.actual_positive / self.total.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: [f64; 5]) -> Counts {
        let t = CountTensors {
            correct: Tensor::from(v[0]),
            total: Tensor::from(v[1]),
            true_positive: Tensor::from(v[2]),
            predicted_positive: Tensor::from(v[3]),
            actual_positive: Tensor::from(v[4]),
        };
        Counts::from_device(&t.stack()).unwrap()
    }

    #[test]
    fn rates_from_counts() {
        let k = c([8.0, 10.0, 2.0, 4.0, 3.0]);
        assert_eq!(k.true_positive, 2.0);
        assert_eq!(k.accuracy(), 0.8);
        assert_eq!(k.precision(), Some(0.5));
        assert_eq!(k.recall(), Some(2.0 / 3.0));
        // 2PR / (P + R) = 2 * 0.5 * 2/3 / (0.5 + 2/3) = 4/7 = 2 * 2 / (4 + 3).
        assert!((k.f1().unwrap() - 4.0 / 7.0).abs() < 1e-12);
        assert!((k.baseline_accuracy() - 0.7).abs() < 1e-12);
        assert_eq!(c([1.0, 1.0, 0.0, 0.0, 0.0]).precision(), None);
        assert_eq!(c([1.0, 1.0, 0.0, 0.0, 0.0]).f1(), None);
        // Predicting nothing positive while some are: F1 0, precision undefined.
        let none_predicted = c([7.0, 10.0, 0.0, 0.0, 3.0]);
        assert_eq!(
            (none_predicted.precision(), none_predicted.f1()),
            (None, Some(0.0))
        );
    }

    #[test]
    fn a_wrong_length_is_an_error() {
        let e = Counts::from_device(&Tensor::from_slice(&[1.0f64, 2.0]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected 5 values") && e.contains("found 2"),
            "{e}"
        );
    }
}
