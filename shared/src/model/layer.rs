//! `BertLayer` (= `ElectraLayer`): attention, then the feed-forward block
//! `intermediate.dense` -> activation -> `output.dense` -> dropout -> residual -> `output.LayerNorm`.
use super::activation::Activation;
use super::attention::Attention;
use super::dense::{Dense, LayerNorm};
use super::ModelConfig;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Layer {
    attention: Attention,
    intermediate: Dense,
    output: Dense,
    output_layer_norm: LayerNorm,
    /// Admin's residual scale of the feed-forward block (None: plain post-LN residual).
    pub(crate) omega: Option<Tensor>,
    activation: Activation,
    dropout: f64,
}

impl Layer {
    /// `p` is the `encoder.layer.N` path.
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> anyhow::Result<Self> {
        let (h, f, r) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.initializer_range,
        );
        Ok(Layer {
            attention: Attention::new(&p / "attention", cfg),
            intermediate: Dense::new(&p / "intermediate" / "dense", h, f, r),
            output: Dense::new(&p / "output" / "dense", f, h, r),
            output_layer_norm: LayerNorm::new(&p / "output" / "LayerNorm", h, cfg.layer_norm_eps),
            omega: super::admin::omega(&(&p / "output"), cfg),
            activation: Activation::parse(&cfg.hidden_act)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let a = self.attention.forward_t(x, mask, train);
        let out = self.ffn_branch(&a, train);
        self.output_layer_norm
            .forward(&super::admin::residual(out, &a, self.omega.as_ref()))
    }

    /// The feed-forward branch before the residual, after dropout.
    pub(crate) fn ffn_branch(&self, a: &Tensor, train: bool) -> Tensor {
        let inter = self.activation.forward(&self.intermediate.forward(a));
        self.output.forward(&inter).dropout(self.dropout, train)
    }

    pub(crate) fn attention(&self) -> &Attention {
        &self.attention
    }

    pub(crate) fn output_layer_norm(&self) -> &LayerNorm {
        &self.output_layer_norm
    }
}
