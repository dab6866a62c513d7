//! The training objectives: replaced-token detection (the main model) and masked LM (to make
//! an auxiliary model). Each returns the micro-batch's mean loss and, without gradient, the
//! counts `[correct, total, true_positive, predicted_positive, actual_positive]` (f64, on the
//! device) from which accuracy, precision and recall are computed at logging time.
pub mod batch;
pub mod mlm;
pub mod rtd;

pub use batch::DeviceBatch;

/// A loss and its counts.
pub struct StepOutput {
    pub loss: tch::Tensor,
    pub counts: tch::Tensor,
}
