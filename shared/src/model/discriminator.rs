//! `ElectraForPreTraining`: encoder + replaced-token-detection head (the main model).
use super::encoder::Encoder;
use super::rtd_head::RtdHead;
use super::{Architecture, ModelConfig};
use tch::{nn, Tensor};

/// The ELECTRA discriminator.
#[derive(Debug)]
pub struct Discriminator {
    pub encoder: Encoder,
    pub head: RtdHead,
}

impl Discriminator {
    /// Builds the model under `p` (the root of a `VarStore`), initialised for training from
    /// scratch.
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> anyhow::Result<Self> {
        Ok(Discriminator {
            encoder: Encoder::new(p, cfg, Architecture::ElectraForPreTraining)?,
            head: RtdHead::new(p / "discriminator_predictions", cfg)?,
        })
    }

    /// `input_ids` [B, S] i64, `attention_mask` [B, S] (1 = real token, 0 = padding) ->
    /// RTD logits [B, S] (fp32; positive = "replaced").
    pub fn forward_t(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let hidden = self.encoder.forward_t(input_ids, attention_mask, train);
        self.head.forward(&hidden)
    }
}
