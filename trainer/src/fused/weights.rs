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
    /// `b` in the compute kind, likewise (the bias of a GEMM with a fused bias).
    pub bc: RefCell<Tensor>,
    /// The Hugging Face name without `.weight` / `.bias`.
    pub name: String,
}

/// A LayerNorm's `weight` and `bias`.
pub struct Ln {
    pub w: Tensor,
    pub b: Tensor,
    pub name: String,
}

/// The key, query and value projections of a layer as one [3H, H] GEMM with a [3H] bias, in
/// that order (the order of their names, which is the optimizer's flat layout).
pub struct Kqv {
    /// `[3H, H]` in the compute kind: a view spanning the three weights when they are adjacent
    /// in memory (the optimizer's flat buffer and its bf16 copy), else their concatenation,
    /// made again at each refresh.
    pub w: RefCell<Tensor>,
    /// `[3H]` in the compute kind, likewise.
    pub b: RefCell<Tensor>,
}

/// One post-LN encoder layer.
pub struct LayerW {
    pub kqv: Kqv,
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
            let b = get(&format!("{name}.bias"))?;
            Ok(Lin {
                wc: RefCell::new(w.shallow_clone()),
                bc: RefCell::new(b.shallow_clone()),
                w,
                b,
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
                    kqv: Kqv {
                        w: RefCell::new(Tensor::new()),
                        b: RefCell::new(Tensor::new()),
                    },
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
        w.join_kqv();
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

    /// Makes every `wc` and `bc` the current weights in `kind` (call after each optimizer
    /// update; in the weights' own kind they are views and always current).
    pub fn refresh(&self, kind: tch::Kind) {
        let in_kind = |t: &Tensor| {
            if t.kind() == kind {
                t.shallow_clone()
            } else {
                t.to_kind(kind)
            }
        };
        tch::no_grad(|| {
            for l in self.lins() {
                *l.wc.borrow_mut() = in_kind(&l.w);
                *l.bc.borrow_mut() = in_kind(&l.b);
            }
        });
        self.join_kqv();
    }

    /// Makes every `wc` and `bc` the view of `views` named as its weight and bias.
    pub fn use_copies(&self, views: &HashMap<String, Tensor>) {
        for l in self.lins() {
            *l.wc.borrow_mut() = views[&format!("{}.weight", l.name)].shallow_clone();
            *l.bc.borrow_mut() = views[&format!("{}.bias", l.name)].shallow_clone();
        }
        self.join_kqv();
    }

    /// Makes each layer's [`Kqv`] from the current `wc` and `bc` of key, query and value.
    fn join_kqv(&self) {
        tch::no_grad(|| {
            for l in &self.layers {
                let ls = [&l.key, &l.query, &l.value];
                let w: Vec<Tensor> = ls.iter().map(|x| x.wc.borrow().shallow_clone()).collect();
                let b: Vec<Tensor> = ls.iter().map(|x| x.bc.borrow().shallow_clone()).collect();
                *l.kqv.w.borrow_mut() = adjacent(&w).unwrap_or_else(|| Tensor::cat(&w, 0));
                *l.kqv.b.borrow_mut() = adjacent(&b).unwrap_or_else(|| Tensor::cat(&b, 0));
            }
        });
    }

    /// Whether every layer's [`Kqv`] is a view of its three weights and biases (no copy).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn kqv_are_views(&self) -> bool {
        self.layers.iter().all(|l| {
            let w = l.kqv.w.borrow();
            let b = l.kqv.b.borrow();
            w.data_ptr() == l.key.wc.borrow().data_ptr()
                && b.data_ptr() == l.key.bc.borrow().data_ptr()
        })
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

/// The tensors `ts` (contiguous, of one shape, kind and device) as one tensor of their
/// concatenation along dimension 0, without a copy, when they lie one after the other in one
/// storage (a view of it spanning them); None otherwise.
pub fn adjacent(ts: &[Tensor]) -> Option<Tensor> {
    let first = ts.first()?;
    let bytes = first.numel() * first.kind().elt_size_in_bytes();
    let fits = ts.windows(2).all(|p| {
        p[1].size() == first.size()
            && p[1].kind() == first.kind()
            && p[1].device() == first.device()
            && p[1].is_contiguous()
            && p[1].data_ptr() as usize == p[0].data_ptr() as usize + bytes
    }) && first.is_contiguous()
        && !first.size().is_empty();
    if !fits {
        return None;
    }
    let mut size = first.size();
    size[0] *= ts.len() as i64;
    // The same storage from the first tensor's offset on: it spans the others (they follow it
    // in memory in the same storage, checked above by address; as_strided refuses a view
    // beyond the storage).
    let stride = first.stride();
    first
        .f_as_strided(size.as_slice(), stride.as_slice(), None)
        .ok()
}
