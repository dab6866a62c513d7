//! The masked-LM head in both naming schemes.
//!
//! ELECTRA generator: `generator_predictions.dense` (hidden -> embedding) -> GELU ->
//! `generator_predictions.LayerNorm` -> `generator_lm_head` (weight tied to the word embeddings
//! unless `tie_word_embeddings` is false; own bias).
//! BERT: `cls.predictions.transform.dense` -> `hidden_act` -> `cls.predictions.transform.LayerNorm`
//! -> decoder (weight tied to the word embeddings unless `tie_word_embeddings` is false) +
//! `cls.predictions.bias`.
use super::activation::Activation;
use super::dense::{linear, Dense, LayerNorm};
use super::{init, Architecture, ModelConfig};
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct MlmHead {
    dense: Dense,
    activation: Activation,
    layer_norm: LayerNorm,
    /// [V, E]: the word-embedding matrix itself when tied.
    decoder_weight: Tensor,
    decoder_bias: Tensor,
}

impl MlmHead {
    /// `p` is the model root; `word_embeddings` the encoder's [V, E] matrix.
    pub fn new(
        p: &nn::Path,
        cfg: &ModelConfig,
        arch: Architecture,
        word_embeddings: &Tensor,
    ) -> anyhow::Result<Self> {
        let (h, v, r, eps) = (
            cfg.hidden_size,
            cfg.vocab_size,
            cfg.initializer_range,
            cfg.layer_norm_eps,
        );
        let e = word_embeddings.size()[1];
        let own_weight = |p: &nn::Path| {
            if cfg.tie_word_embeddings {
                word_embeddings.shallow_clone()
            } else {
                p.var("weight", &[v, e], init::normal(r))
            }
        };
        Ok(match arch {
            Architecture::ElectraForMaskedLM => {
                let pred = p / "generator_predictions";
                let lm = p / "generator_lm_head";
                MlmHead {
                    dense: Dense::new(&pred / "dense", h, e, r),
                    // transformers hard-codes GELU here, whatever hidden_act says.
                    activation: Activation::Gelu,
                    layer_norm: LayerNorm::new(&pred / "LayerNorm", e, eps),
                    decoder_weight: own_weight(&lm),
                    decoder_bias: lm.var("bias", &[v], init::ZEROS),
                }
            }
            Architecture::BertForMaskedLM => {
                let pred = p / "cls" / "predictions";
                let t = &pred / "transform";
                MlmHead {
                    dense: Dense::new(&t / "dense", h, h, r),
                    activation: Activation::parse(&cfg.hidden_act)?,
                    layer_norm: LayerNorm::new(&t / "LayerNorm", h, eps),
                    decoder_weight: own_weight(&(&pred / "decoder")),
                    decoder_bias: pred.var("bias", &[v], init::ZEROS),
                }
            }
            Architecture::ElectraForPreTraining => {
                anyhow::bail!("ElectraForPreTraining has no masked-LM head")
            }
        })
    }

    /// Hidden states [.., H] -> vocabulary logits [.., V] (fp32).
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        linear(
            &self.transform(hidden),
            &self.decoder_weight,
            Some(&self.decoder_bias),
        )
        .to_kind(Kind::Float)
    }

    /// Hidden states [.., H] -> the decoder's input [.., E] (dense, activation, LayerNorm).
    pub fn transform(&self, hidden: &Tensor) -> Tensor {
        let x = self.activation.forward(&self.dense.forward(hidden));
        self.layer_norm.forward(&x)
    }

    /// Uses `word_embeddings` (the tensor itself) as the decoder weight.
    pub(crate) fn tie_decoder(&mut self, word_embeddings: &Tensor) {
        self.decoder_weight = word_embeddings.shallow_clone();
    }

    /// The vocabulary projection: weight [V, E] (the word embeddings when tied) and bias [V].
    pub fn decoder(&self) -> (&Tensor, &Tensor) {
        (&self.decoder_weight, &self.decoder_bias)
    }
}
