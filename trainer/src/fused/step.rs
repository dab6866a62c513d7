//! The discriminator's forward and backward written out (llm.c style): every activation the
//! backward needs is saved explicitly, gradients are computed by hand, and no autograd graph is
//! built. GEMMs are tch `matmul`/`addmm`s; everything else goes through [`Ops`].
//!
//! Forward (post-LN BERT/ELECTRA, N = B x S rows):
//!
//! ```text
//! x0  = LN(word[ids] + pos[0..S] + typ[0]) * M0               embed_ln
//! h   = x0 Wp^T + bp                        (embedding_size != hidden_size only)
//! per layer:  k|q|v = h [Wk;Wq;Wv]^T + [bk;bq;bv]              one GEMM, bias fused
//!             c = softmax(q k^T / sqrt(d) + key mask) * Ma  v  attention
//!             a = LN((c Wo^T + bo) * M1 + h)                  residual_ln
//!             g = gelu(a Wi^T + bi)                           bias_gelu
//!             h = LN((g Wf^T + bf) * M2 + a)                  residual_ln
//! head:       z = gelu(h Wd^T + bd) wz^T + bz                 [N] logits
//! loss        = sum_real bce(z, t) / max(#real, 1)            rtd_loss (also dz)
//! ```
//!
//! Precision (the compute kind is bf16 on CUDA, fp32 on the CPU): GEMM operands and outputs are
//! in the compute kind; the residual stream (`h`, `a`: the LayerNorms' outputs), the LayerNorms'
//! inputs and the residual gradients are fp32 ([`Resid`], [`ResidGrad`]), as under bf16
//! autocast, each LayerNorm also giving the compute-kind copy the next GEMMs read.
//!
//! Dropout sites are numbered in that order (0 = embeddings, then 3 per layer: attention
//! probabilities, attention output, feed-forward output), which is also the order in which the
//! autograd model draws its masks from torch's generator.
use super::grads::{GradReady, Sink, Unit};
use super::ops::{AttnSaved, Drop, LnSaved, Ops, Resid, ResidGrad};
use super::weights::{Lin, Weights};
use tch::{Kind, Tensor};

/// A dense layer's GEMM without bias: `x W^T` in the compute kind.
fn gemm(x: &Tensor, l: &Lin) -> Tensor {
    x.matmul(&l.wc.borrow().tr())
}

/// A dense layer with its bias fused into the GEMM: `b + x W^T` (compute kind).
fn linear(x: &Tensor, l: &Lin) -> Tensor {
    l.bc.borrow().addmm(x, &l.wc.borrow().tr())
}

struct LayerSaved {
    /// The layer's input in the compute kind (the key, query and value GEMMs' operand).
    h_in: Tensor,
    attn: AttnSaved,
    ctx: Tensor,
    drop1: Drop,
    ln1: LnSaved,
    /// The attention block's output in the compute kind (the intermediate GEMM's operand).
    a: Tensor,
    pre: Tensor,
    g: Tensor,
    drop2: Drop,
    ln2: LnSaved,
}

/// What one micro-batch's forward leaves for its backward.
pub struct Forward {
    /// RTD logits [B, S] (fp32).
    pub logits: Tensor,
    /// The mean loss over real tokens (fp32 scalar).
    pub loss: Tensor,
    dz: Tensor,
    ids: Tensor,
    drop0: Drop,
    emb: LnSaved,
    /// The embeddings' output in the compute kind (the projection's operand).
    x0: Tensor,
    layers: Vec<LayerSaved>,
    h_last: Tensor,
    head_pre: Tensor,
    head_g: Tensor,
}

/// The dropout sites of layer `i`: (attention probabilities, attention output, feed-forward).
fn sites(i: usize) -> (u64, u64, u64) {
    let base = 1 + 3 * i as u64;
    (base, base + 1, base + 2)
}

/// The forward pass of the discriminator on `ids` [B, S] with `attention_mask` [B, S] (1 =
/// real; `padded`: whether some row mixes real tokens and padding, [`super::key_padding`]), the
/// loss against `targets` [B, S], and the logits' gradient of `scale` x loss.
/// `kind`: the compute kind of GEMMs and activations (fp32 on the CPU, bf16 on CUDA); the
/// residual stream and LayerNorms are fp32 in both.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    w: &Weights,
    ops: &dyn Ops,
    ids: &Tensor,
    attention_mask: &Tensor,
    padded: bool,
    targets: &Tensor,
    train: bool,
    scale: f64,
    kind: Kind,
) -> Forward {
    tch::no_grad(|| {
        let (b, s) = ids.size2().expect("ids are [B, S]");
        let e = w.word.size()[1];
        let hp = if train { w.hidden_dropout } else { 0.0 };
        let ap = if train { w.attention_dropout } else { 0.0 };
        let drop0 = ops.dropout(&[b, s, e], kind, hp, 0);
        let (x0, emb) = ops.embed_ln(
            ids,
            &w.word,
            &w.pos,
            &w.typ,
            &w.emb_ln.w,
            &w.emb_ln.b,
            w.eps,
            &drop0,
            kind,
        );
        let mut h = match &w.project {
            Some(p) => {
                let c = linear(&x0.c, p);
                Resid {
                    x: c.to_kind(Kind::Float),
                    c,
                }
            }
            None => x0.shallow_clone(),
        };
        let hidden = h.x.size()[1];
        let heads = w.heads;
        let d = hidden / heads;
        let keys = key_mask(attention_mask, padded);
        let mut layers = Vec::with_capacity(w.layers.len());
        for (i, l) in w.layers.iter().enumerate() {
            let (sa, s1, s2) = sites(i);
            // Key, query and value in one GEMM with the bias fused: [N, 3H], in that order.
            let kqv = l.kqv.b.borrow().addmm(&h.c, &l.kqv.w.borrow().tr());
            let split = |j: i64| {
                kqv.narrow(1, j * hidden, hidden)
                    .view([b, s, heads, d])
                    .transpose(1, 2)
            };
            let (k, q, v) = (split(0), split(1), split(2));
            let dropa = ops.dropout(&[b, heads, s, s], kind, ap, sa);
            let (ctx, attn) = ops.attention(&q, &k, &v, keys.as_ref(), dropa, ap);
            let ctx = ctx.transpose(1, 2).contiguous().view([b * s, hidden]);
            let o = gemm(&ctx, &l.attn_out);
            let drop1 = ops.dropout(&[b, s, hidden], kind, hp, s1);
            let (a, ln1) = ops.residual_ln(
                &o,
                &l.attn_out.b,
                &drop1,
                &h.x,
                &l.attn_ln.w,
                &l.attn_ln.b,
                w.eps,
            );
            let (pre, g) = ops.bias_gelu(&gemm(&a.c, &l.inter), &l.inter.b);
            let f = gemm(&g, &l.out);
            let drop2 = ops.dropout(&[b, s, hidden], kind, hp, s2);
            let (h_next, ln2) =
                ops.residual_ln(&f, &l.out.b, &drop2, &a.x, &l.out_ln.w, &l.out_ln.b, w.eps);
            layers.push(LayerSaved {
                h_in: h.c,
                attn,
                ctx,
                drop1,
                ln1,
                a: a.c,
                pre,
                g,
                drop2,
                ln2,
            });
            h = h_next;
        }
        let (head_pre, head_g) = ops.bias_gelu(&gemm(&h.c, &w.head_dense), &w.head_dense.b);
        let z = linear(&head_g, &w.head_pred)
            .to_kind(Kind::Float)
            .view([b, s]);
        let (loss, dz) = ops.rtd_loss(&z, targets, attention_mask, scale);
        Forward {
            logits: z,
            loss,
            dz,
            ids: ids.shallow_clone(),
            drop0,
            emb,
            x0: x0.c,
            layers,
            h_last: h.c,
            head_pre,
            head_g,
        }
    })
}

/// The key mask [B, 1, 1, S] (true = attend), None when no row mixes real tokens and padding
/// (`padded` false: known on the host, so no device sync). A row with no real token attends to
/// every position, as the autograd model's `key_mask`.
fn key_mask(attention_mask: &Tensor, padded: bool) -> Option<Tensor> {
    if !padded {
        return None;
    }
    let m = attention_mask.ne(0);
    let any = m.any_dims([1i64].as_slice(), true);
    let m = m.logical_or(&any.logical_not());
    let (b, s) = m.size2().expect("attention_mask is [B, S]");
    Some(m.view([b, 1, 1, s]))
}

/// Adds `dw = dy^T x` and `db = sum_rows(dy)` of the linear layer `l` to `grads` and returns
/// `dx = dy W` (all GEMMs in the compute kind of `dy` and `x`).
fn linear_backward(dy: &Tensor, x: &Tensor, l: &Lin, grads: &mut Sink) -> Tensor {
    grads.add(&format!("{}.weight", l.name), &dy.tr().matmul(x));
    grads.add(
        &format!("{}.bias", l.name),
        &dy.sum_dim_intlist(0, false, Kind::Float),
    );
    dy.matmul(&l.wc.borrow())
}

/// The backward pass: the gradient of every parameter of `scale` x loss into `grads`; `ready`
/// is told as each [`Unit`]'s gradients are final (head, layers from the last, embeddings).
pub fn backward(
    w: &Weights,
    ops: &dyn Ops,
    f: &Forward,
    kind: Kind,
    grads: &mut Sink,
    mut ready: Option<&mut dyn GradReady>,
) {
    let mut done = |u: Unit| {
        if let Some(r) = ready.as_deref_mut() {
            r.ready(u);
        }
    };
    tch::no_grad(|| {
        let (b, s) = f.ids.size2().expect("ids are [B, S]");
        let dz = f.dz.view([b * s, 1]).to_kind(kind);
        let dg = linear_backward(&dz, &f.head_g, &w.head_pred, grads);
        let dpre = ops.gelu_backward(&dg, &f.head_pre, &w.head_dense.b);
        let mut dh = ResidGrad {
            f: None,
            c: Some(linear_backward(&dpre, &f.h_last, &w.head_dense, grads)),
        };
        done(Unit::Head);
        let hidden = w.head_dense.w.size()[1];
        let heads = w.heads;
        let d = hidden / heads;
        for (i, (l, sv)) in w.layers.iter().zip(&f.layers).enumerate().rev() {
            // h = LN2(drop(f + bf) + a)
            let g2 = ops.residual_ln_backward(&dh, &sv.ln2, &l.out_ln.w, &sv.drop2);
            grads.add(&format!("{}.weight", l.out_ln.name), &g2.dw);
            grads.add(&format!("{}.bias", l.out_ln.name), &g2.db);
            let dg = linear_backward(&g2.dbranch, &sv.g, &l.out, grads);
            let dpre = ops.gelu_backward(&dg, &sv.pre, &l.inter.b);
            // a's gradient: the residual's (fp32) and the intermediate GEMM's, summed in fp32
            // by the LayerNorm below.
            let da = ResidGrad {
                f: Some(g2.dx),
                c: Some(linear_backward(&dpre, &sv.a, &l.inter, grads)),
            };
            // a = LN1(drop(o + bo) + h_in)
            let g1 = ops.residual_ln_backward(&da, &sv.ln1, &l.attn_ln.w, &sv.drop1);
            grads.add(&format!("{}.weight", l.attn_ln.name), &g1.dw);
            grads.add(&format!("{}.bias", l.attn_ln.name), &g1.db);
            let dctx = linear_backward(&g1.dbranch, &sv.ctx, &l.attn_out, grads);
            let dctx = dctx.view([b, s, heads, d]).transpose(1, 2);
            let (dq, dk, dv) = ops.attention_backward(&dctx, &sv.attn);
            // [N, 3H] in the key, query, value order of the fused GEMM.
            let dkqv = Tensor::empty([b * s, 3 * hidden], (dq.kind(), dq.device()));
            for (j, dt) in [dk, dq, dv].iter().enumerate() {
                dkqv.narrow(1, j as i64 * hidden, hidden)
                    .view([b, s, heads, d])
                    .copy_(&dt.transpose(1, 2));
            }
            let names = |suffix: &str| -> Vec<String> {
                [&l.key, &l.query, &l.value]
                    .iter()
                    .map(|x| format!("{}.{suffix}", x.name))
                    .collect()
            };
            grads.add_rows(&names("weight"), &dkqv.tr().matmul(&sv.h_in));
            grads.add_rows(&names("bias"), &dkqv.sum_dim_intlist(0, false, Kind::Float));
            dh = ResidGrad {
                f: Some(g1.dx),
                c: Some(dkqv.matmul(&l.kqv.w.borrow())),
            };
            done(Unit::Layer(i));
        }
        let dx0 = match &w.project {
            Some(p) => {
                let dh = dh.total().to_kind(kind);
                ResidGrad {
                    f: None,
                    c: Some(linear_backward(&dh, &f.x0, p, grads)),
                }
            }
            None => dh,
        };
        let ([dword, dpos, dtyp], dw, db) = ops.embed_ln_backward(
            &dx0,
            &f.ids,
            &f.emb,
            &w.emb_ln.w,
            &f.drop0,
            [&w.word, &w.pos, &w.typ],
        );
        let e = "electra.embeddings";
        grads.add(&format!("{e}.word_embeddings.weight"), &dword);
        grads.add(&format!("{e}.position_embeddings.weight"), &dpos);
        grads.add(&format!("{e}.token_type_embeddings.weight"), &dtyp);
        grads.add(&format!("{}.weight", w.emb_ln.name), &dw);
        grads.add(&format!("{}.bias", w.emb_ln.name), &db);
        done(Unit::Embeddings);
    })
}
