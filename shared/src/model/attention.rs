//! `BertAttention` (= `ElectraAttention`): `self.{query,key,value}`, `output.{dense,LayerNorm}`,
//! computed with `scaled_dot_product_attention` and a boolean padding mask (or, with relative
//! positions, an additive fp32 mask holding the position bias and -inf at padding). With Admin
//! initialisation the residual input is scaled by `output.admin_omega` ([`super::admin`]).
use super::dense::{Dense, LayerNorm};
use super::ModelConfig;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Attention {
    query: Dense,
    key: Dense,
    value: Dense,
    output_dense: Dense,
    output_layer_norm: LayerNorm,
    /// Admin's residual scale (None: plain post-LN residual).
    pub(crate) omega: Option<Tensor>,
    heads: i64,
    attention_dropout: f64,
    hidden_dropout: f64,
}

impl Attention {
    /// `p` is the `attention` path.
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        let (h, r) = (cfg.hidden_size, cfg.initializer_range);
        let s = &p / "self";
        let o = &p / "output";
        Attention {
            query: Dense::new(&s / "query", h, h, r),
            key: Dense::new(&s / "key", h, h, r),
            value: Dense::new(&s / "value", h, h, r),
            output_dense: Dense::new(&o / "dense", h, h, r),
            output_layer_norm: LayerNorm::new(&o / "LayerNorm", h, cfg.layer_norm_eps),
            omega: super::admin::omega(&o, cfg),
            heads: cfg.num_attention_heads,
            attention_dropout: cfg.attention_probs_dropout_prob,
            hidden_dropout: cfg.hidden_dropout_prob,
        }
    }

    /// `x` [B, S, H]; `mask` [B, 1, 1, S] bool (true = attend) or [B, heads, S, S] additive
    /// fp32. Returns [B, S, H] fp32.
    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let out = self.branch(x, mask, train);
        self.output_layer_norm
            .forward(&super::admin::residual(out, x, self.omega.as_ref()))
    }

    /// The attention branch before the residual: output projection of the attended values,
    /// after dropout.
    pub(crate) fn branch(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let (b, s, h) = x.size3().expect("attention input is [B, S, H]");
        let split = |t: Tensor| t.view([b, s, self.heads, h / self.heads]).transpose(1, 2);
        let q = split(self.query.forward(x));
        let k = split(self.key.forward(x));
        let v = split(self.value.forward(x));
        let dropout = if train { self.attention_dropout } else { 0.0 };
        // An additive mask must be of the query's kind (bf16 under mixed precision).
        let mask = if mask.kind() == tch::Kind::Bool {
            mask.shallow_clone()
        } else {
            mask.to_kind(q.kind())
        };
        let ctx = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(&mask),
            dropout,
            false,
            None,
            false,
        )
        .transpose(1, 2)
        .contiguous()
        .view([b, s, h]);
        self.output_dense
            .forward(&ctx)
            .dropout(self.hidden_dropout, train)
    }

    /// The LayerNorm after the residual.
    pub(crate) fn layer_norm(&self) -> &LayerNorm {
        &self.output_layer_norm
    }
}
