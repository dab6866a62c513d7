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

/// Sets every `admin_omega` of `encoder` by the profiling pass (no gradient, no dropout) on
/// uniform random ids from torch's generator. Does nothing for an encoder without Admin.
pub fn initialize(encoder: &Encoder, vocab_size: i64, device: tch::Device) {
    if encoder.layers.iter().all(|l| l.omega.is_none()) {
        return;
    }
    let ids = Tensor::randint(vocab_size, [8, 128], (Kind::Int64, device));
    initialize_on(encoder, &ids);
}

/// [`initialize`] on the profiling batch `ids` `[B, S]` (every token real).
pub fn initialize_on(encoder: &Encoder, ids: &Tensor) {
    if encoder.layers.iter().all(|l| l.omega.is_none()) {
        return;
    }
    tch::no_grad(|| {
        let mask = Tensor::ones(ids.size(), (Kind::Int64, ids.device()));
        let device = ids.device();
        let mut x = encoder.embed(ids, false);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::positions::relative_bias;
    use crate::model::ModelConfig;
    use tch::{nn::VarStore, Device};

    /// A tensor of the store by name.
    fn var(vs: &VarStore, name: &str) -> Tensor {
        vs.variables()
            .remove(name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    }

    fn layer_norm(x: &Tensor, vs: &VarStore, name: &str, eps: f64) -> Tensor {
        let (w, b) = (
            var(vs, &format!("{name}.weight")),
            var(vs, &format!("{name}.bias")),
        );
        let mean = x.mean_dim(-1, true, Kind::Float);
        let centred = x - &mean;
        let var = centred.square().mean_dim(-1, true, Kind::Float);
        centred / (var + eps).sqrt() * w + b
    }

    fn dense(x: &Tensor, vs: &VarStore, name: &str) -> Tensor {
        x.matmul(&var(vs, &format!("{name}.weight")).tr()) + var(vs, &format!("{name}.bias"))
    }

    /// Population variance of every element, in fp64.
    fn variance(t: &Tensor) -> f64 {
        let t = t.to_kind(Kind::Double);
        (&t - t.mean(Kind::Double))
            .square()
            .mean(Kind::Double)
            .double_value(&[])
    }

    #[test]
    fn omegas_follow_the_formula_on_a_fixed_profile_batch() {
        // omega_i = sqrt(Var x_0 + sum_{j < i} Var f_j), recomputed here from the weights with
        // plain tensor algebra (embedding lookup, LayerNorm, softmax attention with the relative
        // bias, erf GELU), not through the model's modules.
        let cfg = ModelConfig::preset("tiny-rel-admin", 300).unwrap();
        tch::manual_seed(11);
        let vs = VarStore::new(Device::Cpu);
        let model = crate::model::Discriminator::new(&vs.root(), &cfg).unwrap();
        let (b, s) = (3i64, 40i64);
        let ids = Tensor::from_slice(&(0..b * s).map(|i| (i * 37 + 5) % 300).collect::<Vec<_>>())
            .view([b, s]);
        initialize_on(&model.encoder, &ids);
        let eps = cfg.layer_norm_eps;
        let e = "electra.embeddings";
        let words =
            var(&vs, &format!("{e}.word_embeddings.weight")).index_select(0, &ids.view([-1]));
        let types = var(&vs, &format!("{e}.token_type_embeddings.weight")).get(0);
        let mut x = layer_norm(
            &(words.view([b, s, -1]) + types),
            &vs,
            &format!("{e}.LayerNorm"),
            eps,
        );
        let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
        let table = var(&vs, "electra.encoder.relative_attention_bias.weight");
        let bias = relative_bias(&table, s, 32, 128); // [1, heads, s, s]
        let mut total = variance(&x);
        let check = |name: &str, want: f64| {
            let omega = var(&vs, name);
            let (lo, hi) = (omega.min().double_value(&[]), omega.max().double_value(&[]));
            assert!(
                (lo - want).abs() <= 1e-5 * want && (hi - want).abs() <= 1e-5 * want,
                "{name} in [{lo}, {hi}], expected {want}"
            );
        };
        for i in 0..cfg.num_hidden_layers {
            let l = format!("electra.encoder.layer.{i}");
            // Attention block: f = output projection of softmax(q k^T / sqrt(d) + bias) v.
            let split = |t: Tensor| t.view([b, s, heads, h / heads]).transpose(1, 2);
            let q = split(dense(&x, &vs, &format!("{l}.attention.self.query")));
            let k = split(dense(&x, &vs, &format!("{l}.attention.self.key")));
            let v = split(dense(&x, &vs, &format!("{l}.attention.self.value")));
            let scores = q.matmul(&k.transpose(-1, -2)) / ((h / heads) as f64).sqrt() + &bias;
            let ctx = scores
                .softmax(-1, Kind::Float)
                .matmul(&v)
                .transpose(1, 2)
                .contiguous()
                .view([b, s, h]);
            let f = dense(&ctx, &vs, &format!("{l}.attention.output.dense"));
            let omega = total.sqrt();
            check(&format!("{l}.attention.output.admin_omega"), omega);
            let a = layer_norm(
                &(&f + &x * omega),
                &vs,
                &format!("{l}.attention.output.LayerNorm"),
                eps,
            );
            total += variance(&f);
            // Feed-forward block: g = output(GELU(intermediate(a))).
            let g = dense(
                &dense(&a, &vs, &format!("{l}.intermediate.dense")).gelu("none"),
                &vs,
                &format!("{l}.output.dense"),
            );
            let omega = total.sqrt();
            check(&format!("{l}.output.admin_omega"), omega);
            x = layer_norm(
                &(&g + &a * omega),
                &vs,
                &format!("{l}.output.LayerNorm"),
                eps,
            );
            total += variance(&g);
        }
    }
}
