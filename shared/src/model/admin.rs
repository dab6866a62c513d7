//! Admin initialisation (Liu et al., 2020, "Understanding the Difficulty of Training
//! Transformers"), the post-LN stabiliser the Fast-ELECTRA paper's main models use (via METRO).
//!
//! Each residual connection of a post-LN layer becomes `LayerNorm(f(x) + omega * x)`, with a
//! learned vector `omega` (`attention.output.admin_omega`, `output.admin_omega`, one per
//! residual, of the hidden size). At initialisation, a profiling forward pass sets, for the i-th
//! residual block in order (attention then feed-forward of each layer),
//! `omega_i = sqrt(Var[x_0] + sum_{j < i} Var[f_j(x_{j-1})])`: the residual input is scaled by
//! the standard deviation the stream would have without LayerNorm, so no block's update dominates
//! and the dependency on the residual branch stays balanced as depth grows. Here `x_0` is the
//! embeddings' output.
//!
//! The profiling batch is made from the model's own vocabulary (uniform random ids, 8 sequences
//! of 128 tokens, from torch's generator, which the trainer seeds), so initialisation needs no
//! data and stays a function of the seed. Config field: `residual_scaling` (`"none"` or
//! `"admin"`). A model with Admin is not a transformers BERT/ELECTRA model
//! (`docs/model-format.md`).
use anyhow::bail;
use tch::{nn, Kind, Tensor};

use super::encoder::Encoder;
use super::ModelConfig;

/// Config key of the residual scaling.
pub const RESIDUAL_SCALING: &str = "residual_scaling";

/// Whether `cfg` asks for Admin (errors on an unknown value).
pub fn enabled(cfg: &ModelConfig) -> anyhow::Result<bool> {
    match cfg.extra.get(RESIDUAL_SCALING) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            Some("none") => Ok(false),
            Some("admin") => Ok(true),
            _ => bail!("field {RESIDUAL_SCALING}: expected \"none\" or \"admin\", found {v}"),
        },
    }
}

/// The `admin_omega` variable under `p` (an `output` path) when `cfg` asks for Admin.
pub(crate) fn omega(p: &nn::Path, cfg: &ModelConfig) -> Option<Tensor> {
    enabled(cfg)
        .unwrap_or(false)
        .then(|| p.var("admin_omega", &[cfg.hidden_size], nn::Init::Const(1.0)))
}

/// `branch + omega * x` (or `branch + x` without Admin).
pub(crate) fn residual(branch: Tensor, x: &Tensor, omega: Option<&Tensor>) -> Tensor {
    match omega {
        Some(w) => branch + x * w,
        None => branch + x,
    }
}

/// Sets every `admin_omega` of `encoder` by the profiling pass (no gradient, no dropout).
/// Does nothing for an encoder without Admin.
pub fn initialize(encoder: &Encoder, vocab_size: i64, device: tch::Device) {
    if encoder.layers.iter().all(|l| l.omega.is_none()) {
        return;
    }
    tch::no_grad(|| {
        let ids = Tensor::randint(vocab_size, [8, 128], (Kind::Int64, device));
        let mask = Tensor::ones([8, 128], (Kind::Int64, device));
        let mut x = encoder.embed(&ids, false);
        let mask = encoder.attention_mask(&mask, device);
        let mut total = x.var(false).double_value(&[]);
        let set = |w: Option<&Tensor>, total: f64| {
            if let Some(w) = w {
                let _ = w.shallow_clone().fill_(total.sqrt());
            }
        };
        for layer in &encoder.layers {
            let att = layer.attention();
            let f = att.branch(&x, &mask, false);
            set(att.omega.as_ref(), total);
            let a = att
                .layer_norm()
                .forward(&residual(f.shallow_clone(), &x, att.omega.as_ref()));
            total += f.var(false).double_value(&[]);
            let f = layer.ffn_branch(&a, false);
            set(layer.omega.as_ref(), total);
            x = layer.output_layer_norm().forward(&residual(
                f.shallow_clone(),
                &a,
                layer.omega.as_ref(),
            ));
            total += f.var(false).double_value(&[]);
        }
    });
}
