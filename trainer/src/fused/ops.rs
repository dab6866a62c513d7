//! The non-GEMM work of the hand-written step, behind one trait: [`TchOps`] computes it with
//! plain tch operations on any device (the reference, and the CPU implementation), and
//! `super::cuda::CudaOps` with the NVRTC kernels of `shared/kernels/` on CUDA. The step
//! (`super::step`) does the GEMMs itself and calls these in the same order on both.
//!
//! Tensors are 2-D `[N, width]` (N = batch x sequence) unless said otherwise. LayerNorm
//! statistics are fp32 `[N, 1]`.
use tch::{Kind, Tensor};

/// A dropout site's mask.
pub enum Drop {
    /// No dropout (p = 0 or evaluation).
    Off,
    /// The scaled keep mask (`bernoulli(1 - p) / (1 - p)`, of the activation's shape and kind),
    /// drawn from torch's generator exactly as `Tensor::dropout` draws it, so that the step
    /// uses the autograd model's masks (the CPU path).
    Mask(Tensor),
    /// Regenerated in the kernels from Philox4x32-10 keyed by (seed, site) and the element
    /// index (the CUDA path): nothing is stored between forward and backward.
    Philox { p: f32, seed: u64, site: u64 },
}

impl Drop {
    /// `x` times the mask.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            Drop::Off => x.shallow_clone(),
            Drop::Mask(m) => x * m.view_as(x),
            Drop::Philox { .. } => panic!("a Philox mask is applied inside a CUDA kernel"),
        }
    }
}

/// An activation of the residual stream (a LayerNorm's output): `x` in fp32, and `c`, its copy
/// in the compute kind that the next GEMMs read (the same tensor when the compute kind is fp32).
/// The residual additions read `x`, so the stream is never rounded to bf16, as under bf16
/// autocast (LayerNorm in fp32, the residual addition promoted to fp32).
pub struct Resid {
    pub x: Tensor,
    pub c: Tensor,
}

impl Resid {
    /// `x` (fp32) with its compute-kind copy.
    pub fn of(x: Tensor, kind: Kind) -> Self {
        let c = if x.kind() == kind {
            x.shallow_clone()
        } else {
            x.to_kind(kind)
        };
        Resid { x, c }
    }

    pub fn shallow_clone(&self) -> Self {
        Resid {
            x: self.x.shallow_clone(),
            c: self.c.shallow_clone(),
        }
    }
}

/// The gradient of a residual-stream activation as it arrives: an fp32 part `f` (the residual's,
/// from the LayerNorm above) and a compute-kind part `c` (a GEMM's dX), either absent. Their sum
/// is formed in fp32 by the operation that consumes it (inside the LayerNorm kernels on CUDA),
/// so no residual gradient is rounded to bf16.
pub struct ResidGrad {
    pub f: Option<Tensor>,
    pub c: Option<Tensor>,
}

impl ResidGrad {
    /// `f + c` in fp32.
    pub fn total(&self) -> Tensor {
        match (&self.f, &self.c) {
            (Some(f), Some(c)) => f.to_kind(Kind::Float) + c.to_kind(Kind::Float),
            (Some(f), None) => f.to_kind(Kind::Float),
            (None, Some(c)) => c.to_kind(Kind::Float),
            (None, None) => panic!("a residual gradient with neither part"),
        }
    }
}

/// What a LayerNorm's backward needs: its input (for a residual LayerNorm, the sum of the
/// branch and the residual; fp32), mean and reciprocal standard deviation, and the compute kind
/// of the branch's gradient.
pub struct LnSaved {
    pub x: Tensor,
    pub mean: Tensor,
    pub rstd: Tensor,
    pub kind: Kind,
}

/// The gradients of a LayerNorm's input, affine parameters and (residual LayerNorms) branch.
pub struct LnGrads {
    /// d loss / d (LayerNorm input), fp32: also the gradient of the residual.
    pub dx: Tensor,
    /// `dx` times the dropout mask, in the compute kind: the gradient of the branch before
    /// dropout (the operand of its GEMMs).
    pub dbranch: Tensor,
    pub dw: Tensor,
    pub db: Tensor,
}

/// What attention's backward needs.
pub enum AttnSaved {
    /// The reference: the scaled q and k, v, the softmax and the dropped-out softmax.
    Explicit {
        qs: Tensor,
        ks: Tensor,
        v: Tensor,
        p: Tensor,
        pd: Tensor,
        mask: Option<Tensor>,
        scale_root: f64,
    },
    /// CUDA: `_scaled_dot_product_efficient_attention`'s outputs.
    Efficient {
        q: Tensor,
        k: Tensor,
        v: Tensor,
        out: Tensor,
        logsumexp: Tensor,
        philox_seed: Tensor,
        philox_offset: Tensor,
        bias: Option<Tensor>,
        dropout: f64,
    },
}

/// The non-GEMM operations of the step.
pub trait Ops {
    /// The mask of dropout `site` (the step numbers them in forward order) for an activation of
    /// `shape`, with rate `p` (0 or `!train`: [`Drop::Off`]).
    fn dropout(&self, shape: &[i64], kind: Kind, p: f64, site: u64) -> Drop;

    /// Embeddings: `word[ids] + pos[0..S] + typ[0]`, LayerNorm, dropout. `ids` [B, S].
    /// Returns the output `[N, E]` (fp32, and in `kind`) and what the backward needs.
    #[allow(clippy::too_many_arguments)]
    fn embed_ln(
        &self,
        ids: &Tensor,
        word: &Tensor,
        pos: &Tensor,
        typ: &Tensor,
        w: &Tensor,
        b: &Tensor,
        eps: f64,
        drop: &Drop,
        kind: Kind,
    ) -> (Resid, LnSaved);

    /// The gradients of the embedding tables (word `[V, E]`, position `[P, E]`, token type
    /// `[T, E]`) and the LayerNorm from the output's gradient `dy` `[N, E]`.
    #[allow(clippy::too_many_arguments)]
    fn embed_ln_backward(
        &self,
        dy: &ResidGrad,
        ids: &Tensor,
        saved: &LnSaved,
        w: &Tensor,
        drop: &Drop,
        tables: [&Tensor; 3],
    ) -> ([Tensor; 3], Tensor, Tensor);

    /// `LayerNorm(dropout(branch + bias) + residual)`; `branch` is a GEMM output without bias
    /// (in the compute kind, which the output's copy and the backward's `dbranch` take),
    /// `residual` the fp32 stream.
    #[allow(clippy::too_many_arguments)]
    fn residual_ln(
        &self,
        branch: &Tensor,
        bias: &Tensor,
        drop: &Drop,
        residual: &Tensor,
        w: &Tensor,
        b: &Tensor,
        eps: f64,
    ) -> (Resid, LnSaved);

    /// The backward of [`Ops::residual_ln`] (and of a plain LayerNorm, `drop` = Off).
    fn residual_ln_backward(
        &self,
        dy: &ResidGrad,
        saved: &LnSaved,
        w: &Tensor,
        drop: &Drop,
    ) -> LnGrads;

    /// `gelu(x + bias)` (erf GELU; `bias` fp32) in x's kind; returns `(saved, out)`, `saved`
    /// being what [`Ops::gelu_backward`] needs (the reference: x + bias; CUDA: x itself).
    fn bias_gelu(&self, x: &Tensor, bias: &Tensor) -> (Tensor, Tensor);

    /// `dy * gelu'(x + bias)` from the forward's `saved`.
    fn gelu_backward(&self, dy: &Tensor, saved: &Tensor, bias: &Tensor) -> Tensor;

    /// The RTD loss of logits `z` `[B, S]` (fp32) against `targets` `[B, S]` over the real
    /// tokens (`real` `[B, S]`, nonzero = real): `sum(bce(z, t) real) / max(sum(real), 1)`,
    /// and its gradient `dz` `[B, S]` times `scale`.
    fn rtd_loss(&self, z: &Tensor, targets: &Tensor, real: &Tensor, scale: f64)
        -> (Tensor, Tensor);

    /// Attention of q, k, v `[B, heads, S, d]` with key mask `keys` (`[B, 1, 1, S]` bool, None =
    /// no padding), dropout on the probabilities: the context `[B, heads, S, d]`.
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        keys: Option<&Tensor>,
        drop: Drop,
        p: f64,
    ) -> (Tensor, AttnSaved);

    /// `(dq, dk, dv)` from the context's gradient.
    fn attention_backward(&self, dctx: &Tensor, saved: &AttnSaved) -> (Tensor, Tensor, Tensor);
}

/// The reference implementation in tch operations (any device; fp32 on the CPU).
pub struct TchOps {
    pub device: tch::Device,
}

/// LayerNorm's forward over the last dimension in fp32, keeping its input (fp32), mean and
/// rstd ([N, 1], fp32); the output is fp32 (`y`) and a copy in `kind`.
fn ln_forward(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, kind: Kind) -> (Resid, LnSaved) {
    let x32 = x.to_kind(Kind::Float);
    let width = x32.size()[1];
    let (y, mean, rstd) =
        Tensor::native_layer_norm(&x32, [width].as_slice(), Some(w), Some(b), eps);
    (
        Resid::of(y, kind),
        LnSaved {
            x: x32,
            mean,
            rstd,
            kind,
        },
    )
}

/// LayerNorm's backward, written out: with `xh = (x - mean) rstd` and `g = dy w`,
/// `dx = rstd (g - mean(g) - xh mean(g xh))`, `dw = sum_rows(dy xh)`, `db = sum_rows(dy)`.
fn ln_backward(dy: &Tensor, s: &LnSaved, w: &Tensor) -> (Tensor, Tensor, Tensor) {
    let dy = dy.to_kind(Kind::Float);
    let xh = (s.x.to_kind(Kind::Float) - &s.mean) * &s.rstd;
    let g = &dy * w;
    let m1 = g.mean_dim(-1, true, Kind::Float);
    let m2 = (&g * &xh).mean_dim(-1, true, Kind::Float);
    let dx = (g - m1 - &xh * m2) * &s.rstd;
    let dw = (&dy * &xh).sum_dim_intlist(0, false, Kind::Float);
    let db = dy.sum_dim_intlist(0, false, Kind::Float);
    (dx, dw, db)
}

const SQRT_1_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Ops for TchOps {
    fn dropout(&self, shape: &[i64], kind: Kind, p: f64, _site: u64) -> Drop {
        if p <= 0.0 {
            return Drop::Off;
        }
        // Exactly `Tensor::dropout`'s draw (ATen's _dropout_impl): empty_like(x).bernoulli_(1-p)
        // then div_(1-p), on torch's generator, so consecutive calls in the autograd model's
        // order give its masks.
        let mut m = Tensor::empty(shape, (kind, self.device));
        let _ = m.bernoulli_float_(1.0 - p);
        let _ = m.g_div_scalar_(1.0 - p);
        Drop::Mask(m)
    }

    fn embed_ln(
        &self,
        ids: &Tensor,
        word: &Tensor,
        pos: &Tensor,
        typ: &Tensor,
        w: &Tensor,
        b: &Tensor,
        eps: f64,
        drop: &Drop,
        kind: Kind,
    ) -> (Resid, LnSaved) {
        let s = ids.size()[1];
        let words = Tensor::embedding(word, ids, -1, false, false);
        let x = words + pos.narrow(0, 0, s).unsqueeze(0) + typ.get(0);
        let e = x.size()[2];
        let (y, saved) = ln_forward(&x.view([-1, e]), w, b, eps, Kind::Float);
        (Resid::of(drop.apply(&y.x), kind), saved)
    }

    fn embed_ln_backward(
        &self,
        dy: &ResidGrad,
        ids: &Tensor,
        saved: &LnSaved,
        w: &Tensor,
        drop: &Drop,
        tables: [&Tensor; 3],
    ) -> ([Tensor; 3], Tensor, Tensor) {
        let (b, s) = ids.size2().expect("ids are [B, S]");
        let dy = drop.apply(&dy.total());
        let (dx, dw, db) = ln_backward(&dy, saved, w);
        (embedding_table_grads(&dx, ids, tables, (b, s)), dw, db)
    }

    fn residual_ln(
        &self,
        branch: &Tensor,
        bias: &Tensor,
        drop: &Drop,
        residual: &Tensor,
        w: &Tensor,
        b: &Tensor,
        eps: f64,
    ) -> (Resid, LnSaved) {
        // In fp32, as the kernel: branch + bias, the mask, + the fp32 residual.
        let x = drop.apply(&(branch.to_kind(Kind::Float) + bias)) + residual.to_kind(Kind::Float);
        ln_forward(&x, w, b, eps, branch.kind())
    }

    fn residual_ln_backward(
        &self,
        dy: &ResidGrad,
        saved: &LnSaved,
        w: &Tensor,
        drop: &Drop,
    ) -> LnGrads {
        let (dx, dw, db) = ln_backward(&dy.total(), saved, w);
        LnGrads {
            dbranch: drop.apply(&dx).to_kind(saved.kind),
            dx,
            dw,
            db,
        }
    }

    fn bias_gelu(&self, x: &Tensor, bias: &Tensor) -> (Tensor, Tensor) {
        let pre = (x + bias).to_kind(x.kind());
        let out = pre.gelu("none");
        (pre, out)
    }

    fn gelu_backward(&self, dy: &Tensor, pre: &Tensor, _bias: &Tensor) -> Tensor {
        // d/dx [x Phi(x)] = Phi(x) + x phi(x).
        let cdf = ((pre * SQRT_1_2).erf() + 1.0) * 0.5;
        let pdf = (pre * pre * -0.5).exp() * INV_SQRT_2PI;
        dy * (cdf + pre * pdf)
    }

    fn rtd_loss(
        &self,
        z: &Tensor,
        targets: &Tensor,
        real: &Tensor,
        scale: f64,
    ) -> (Tensor, Tensor) {
        let real = real.to_kind(Kind::Float);
        let denom = real.sum(Kind::Float).clamp_min(1.0);
        // bce(z, t) = (1 - t) z + log(1 + exp(-z)), computed stably as softplus(-z) + (1-t) z.
        let per = (-z).softplus() + (targets.neg() + 1.0) * z;
        let loss = (per * &real).sum(Kind::Float) / &denom;
        let dz = (z.sigmoid() - targets) * real / denom * scale;
        (loss, dz)
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        keys: Option<&Tensor>,
        drop: Drop,
        _p: f64,
    ) -> (Tensor, AttnSaved) {
        // In fp32 whatever the inputs' kind (bf16: the CUDA step's precision), as the fused
        // attention kernels compute scores, softmax and their gradients; the context comes
        // back in the inputs' kind.
        let kind = q.kind();
        let (q, k, v) = (
            &q.to_kind(Kind::Float),
            &k.to_kind(Kind::Float),
            &v.to_kind(Kind::Float),
        );
        // As ATen's math path: q and k each scaled by sqrt(1/sqrt(d)) before the product.
        let d = q.size()[3] as f64;
        let scale_root = (1.0 / d.sqrt()).sqrt();
        let qs = q * scale_root;
        let ks = k * scale_root;
        let mut s = qs.matmul(&ks.transpose(-2, -1));
        let mask = keys.map(|m| {
            Tensor::zeros(m.size(), (s.kind(), s.device()))
                .masked_fill(&m.logical_not(), f64::NEG_INFINITY)
        });
        if let Some(m) = &mask {
            s += m;
        }
        let p = s.softmax(-1, s.kind());
        let pd = drop.apply(&p);
        let ctx = pd.matmul(v).to_kind(kind);
        (
            ctx,
            AttnSaved::Explicit {
                qs,
                ks,
                v: v.shallow_clone(),
                p,
                pd,
                mask: match drop {
                    Drop::Mask(m) => Some(m),
                    _ => None,
                },
                scale_root,
            },
        )
    }

    fn attention_backward(&self, dctx: &Tensor, saved: &AttnSaved) -> (Tensor, Tensor, Tensor) {
        let AttnSaved::Explicit {
            qs,
            ks,
            v,
            p,
            pd,
            mask,
            scale_root,
        } = saved
        else {
            panic!("TchOps::attention_backward needs the explicit attention's saved tensors");
        };
        let kind = dctx.kind();
        let dctx = &dctx.to_kind(Kind::Float);
        let dv = pd.transpose(-2, -1).matmul(dctx);
        let mut dp = dctx.matmul(&v.transpose(-2, -1));
        if let Some(m) = mask {
            dp *= m;
        }
        // Softmax backward: ds = p (dp - sum(dp p)).
        let ds = p * (&dp - (&dp * p).sum_dim_intlist(-1, true, dp.kind()));
        let dq = ds.matmul(ks) * *scale_root;
        let dk = ds.transpose(-2, -1).matmul(qs) * *scale_root;
        (dq.to_kind(kind), dk.to_kind(kind), dv.to_kind(kind))
    }
}

/// The gradients of the word, position and token-type tables from `dx`, the gradient of their
/// sum (`[B * S, E]`): a scatter-add over `ids` for words, a sum over the batch for positions
/// `0..S`, a sum over every row for type 0 (the only type used).
pub(super) fn embedding_table_grads(
    dx: &Tensor,
    ids: &Tensor,
    tables: [&Tensor; 3],
    (b, s): (i64, i64),
) -> [Tensor; 3] {
    let e = dx.size()[1];
    let dx3 = dx.view([b, s, e]);
    let dword = Tensor::embedding_dense_backward(&dx3, ids, tables[0].size()[0], -1, false);
    let dpos = Tensor::zeros_like(tables[1]);
    dpos.narrow(0, 0, s)
        .copy_(&dx3.sum_dim_intlist(0, false, Kind::Float));
    let dtyp = Tensor::zeros_like(tables[2]);
    dtyp.get(0)
        .copy_(&dx.sum_dim_intlist(0, false, Kind::Float));
    [dword, dpos, dtyp]
}
