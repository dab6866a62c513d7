//! `ElectraDiscriminatorPredictions`: `dense` (H -> H) -> `hidden_act` -> `dense_prediction`
//! (H -> 1), one replaced-token-detection logit per token.
use super::activation::Activation;
use super::dense::Dense;
use super::ModelConfig;
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct RtdHead {
    dense: Dense,
    activation: Activation,
    dense_prediction: Dense,
}

impl RtdHead {
    /// `p` is the `discriminator_predictions` path.
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> anyhow::Result<Self> {
        let (h, r) = (cfg.hidden_size, cfg.initializer_range);
        Ok(RtdHead {
            dense: Dense::new(&p / "dense", h, h, r),
            activation: Activation::parse(&cfg.hidden_act)?,
            dense_prediction: Dense::new(&p / "dense_prediction", h, 1, r),
        })
    }

    /// [B, S, H] -> [B, S] logits (fp32).
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        let x = self.activation.forward(&self.dense.forward(hidden));
        self.dense_prediction
            .forward(&x)
            .squeeze_dim(-1)
            .to_kind(Kind::Float)
    }
}
