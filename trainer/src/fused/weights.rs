//! The discriminator's parameters as the hand-written step sees them: views (shallow clones) of
//! the `VarStore` variables, found by their Hugging Face names, and the check that the model is
//! an architecture the step implements.
use anyhow::{bail, Context};
use shared::model::{admin, positions::Positions, Activation, ModelConfig};
use std::cell::RefCell;
use std::collections::HashMap;
use tch::{nn::VarStore, Tensor};

/// A linear layer's `weight` [out, in] and `bias` [out].
pub struct Lin {
    pub w: Tensor,
    pub b: Tensor,
    /// `w` in the step's compute kind: a view of `w` in fp32, a copy in bf16 refreshed once
    /// per update ([`Weights::refresh`]), not once per GEMM.
    pub wc: RefCell<Tensor>,
    /// The Hugging Face name without `.weight` / `.bias`.
    pub name: String,
}

/// A LayerNorm's `weight` and `bias`.
pub struct Ln {
    pub w: Tensor,
    pub b: Tensor,
    pub name: String,
}

/// One post-LN encoder layer.
pub struct LayerW {
    pub query: Lin,
    pub key: Lin,
    pub value: Lin,
    pub attn_out: Lin,
    pub attn_ln: Ln,
    pub inter: Lin,
    pub out: Lin,
    pub out_ln: Ln,
}

/// Every parameter of an `ElectraForPreTraining` with absolute positions, GELU, no Admin.
pub struct Weights {
    pub word: Tensor,
    pub pos: Tensor,
    pub typ: Tensor,
    pub emb_ln: Ln,
    pub project: Option<Lin>,
    pub layers: Vec<LayerW>,
    pub head_dense: Lin,
    pub head_pred: Lin,
    pub heads: i64,
    pub eps: f64,
    /// Hidden and attention-probability dropout rates of the config.
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
}

/// Refuses a config the hand-written step does not implement, saying which field and why.
pub fn check_supported(cfg: &ModelConfig) -> anyhow::Result<()> {
    if Positions::of(cfg)? != Positions::Absolute {
        bail!(
            "--step fused: implements absolute position embeddings only; this model has relative \
             (T5) positions: use --step autograd"
        );
    }
    if admin::enabled(cfg)? {
        bail!(
            "--step fused: implements the plain post-LN residual only; this model uses Admin \
             (residual_scaling \"admin\"): use --step autograd"
        );
    }
    if Activation::parse(&cfg.hidden_act)? != Activation::Gelu {
        bail!(
            "--step fused: implements the erf GELU (hidden_act \"gelu\") only, found {:?}: use \
             --step autograd",
            cfg.hidden_act
        );
    }
    Ok(())
}

impl Weights {
    /// Views of the variables of a discriminator built under `vs.root()` with config `cfg`.
    pub fn of(vs: &VarStore, cfg: &ModelConfig) -> anyhow::Result<Self> {
        check_supported(cfg)?;
        let vars = vs.variables();
        let get = |name: &str| -> anyhow::Result<Tensor> {
            vars.get(name)
                .map(Tensor::shallow_clone)
                .with_context(|| format!("--step fused: the model has no variable {name}"))
        };
        let lin = |name: String| -> anyhow::Result<Lin> {
            let w = get(&format!("{name}.weight"))?;
            Ok(Lin {
                wc: RefCell::new(w.shallow_clone()),
                w,
                b: get(&format!("{name}.bias"))?,
                name,
            })
        };
        let ln = |name: String| -> anyhow::Result<Ln> {
            Ok(Ln {
                w: get(&format!("{name}.weight"))?,
                b: get(&format!("{name}.bias"))?,
                name,
            })
        };
        let e = "electra.embeddings";
        let project = if vars.contains_key("electra.embeddings_project.weight") {
            Some(lin("electra.embeddings_project".into())?)
        } else {
            None
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| -> anyhow::Result<LayerW> {
                let p = format!("electra.encoder.layer.{i}");
                Ok(LayerW {
                    query: lin(format!("{p}.attention.self.query"))?,
                    key: lin(format!("{p}.attention.self.key"))?,
                    value: lin(format!("{p}.attention.self.value"))?,
                    attn_out: lin(format!("{p}.attention.output.dense"))?,
                    attn_ln: ln(format!("{p}.attention.output.LayerNorm"))?,
                    inter: lin(format!("{p}.intermediate.dense"))?,
                    out: lin(format!("{p}.output.dense"))?,
                    out_ln: ln(format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let w = Weights {
            word: get(&format!("{e}.word_embeddings.weight"))?,
            pos: get(&format!("{e}.position_embeddings.weight"))?,
            typ: get(&format!("{e}.token_type_embeddings.weight"))?,
            emb_ln: ln(format!("{e}.LayerNorm"))?,
            project,
            layers,
            head_dense: lin("discriminator_predictions.dense".into())?,
            head_pred: lin("discriminator_predictions.dense_prediction".into())?,
            heads: cfg.num_attention_heads,
            eps: cfg.layer_norm_eps,
            hidden_dropout: cfg.hidden_dropout_prob,
            attention_dropout: cfg.attention_probs_dropout_prob,
        };
        let covered = w.names();
        for name in vars.keys() {
            if !covered.contains(name) {
                bail!("--step fused: the model has a variable the step does not know: {name}");
            }
        }
        Ok(w)
    }

    /// Every linear layer.
    fn lins(&self) -> Vec<&Lin> {
        let mut v: Vec<&Lin> = self.project.iter().collect();
        for l in &self.layers {
            v.extend([&l.query, &l.key, &l.value, &l.attn_out, &l.inter, &l.out]);
        }
        v.extend([&self.head_dense, &self.head_pred]);
        v
    }

    /// Makes every `wc` the current weights in `kind` (call after each optimizer update; in
    /// the weights' own kind `wc` is a view and always current).
    pub fn refresh(&self, kind: tch::Kind) {
        tch::no_grad(|| {
            for l in self.lins() {
                let mut wc = l.wc.borrow_mut();
                *wc = if l.w.kind() == kind {
                    l.w.shallow_clone()
                } else {
                    l.w.to_kind(kind)
                };
            }
        });
    }

    /// Makes every `wc` the view of `views` named as its weight.
    pub fn use_copies(&self, views: &HashMap<String, Tensor>) {
        for l in self.lins() {
            let v = &views[&format!("{}.weight", l.name)];
            *l.wc.borrow_mut() = v.shallow_clone();
        }
    }

    /// The names of every parameter the step computes a gradient for.
    pub fn names(&self) -> Vec<String> {
        let e = "electra.embeddings";
        let mut n = vec![
            format!("{e}.word_embeddings.weight"),
            format!("{e}.position_embeddings.weight"),
            format!("{e}.token_type_embeddings.weight"),
        ];
        let mut pair = |base: &str| {
            n.push(format!("{base}.weight"));
            n.push(format!("{base}.bias"));
        };
        pair(&self.emb_ln.name);
        if let Some(p) = &self.project {
            pair(&p.name);
        }
        for l in &self.layers {
            for base in [
                &l.query.name,
                &l.key.name,
                &l.value.name,
                &l.attn_out.name,
                &l.attn_ln.name,
                &l.inter.name,
                &l.out.name,
                &l.out_ln.name,
            ] {
                pair(base);
            }
        }
        pair(&self.head_dense.name);
        pair(&self.head_pred.name);
        n
    }
}

/// Gradients by parameter name.
pub type Grads = HashMap<String, Tensor>;
