//! The discriminator's forward and backward written out (llm.c style): every activation the
//! backward needs is saved explicitly, gradients are computed by hand, and no autograd graph is
//! built. GEMMs are tch `matmul`s; everything else goes through [`Ops`].
//!
//! Forward (post-LN BERT/ELECTRA, N = B x S rows):
//!
//! ```text
//! x0  = LN(word[ids] + pos[0..S] + typ[0]) * M0               embed_ln
//! h   = x0 Wp^T + bp                        (embedding_size != hidden_size only)
//! per layer:  q, k, v = h Wq^T + bq, ...
//!             c = softmax(q k^T / sqrt(d) + key mask) * Ma  v  attention
//!             a = LN((c Wo^T + bo) * M1 + h)                  residual_ln
//!             g = gelu(a Wi^T + bi)                           bias_gelu
//!             h = LN((g Wf^T + bf) * M2 + a)                  residual_ln
//! head:       z = gelu(h Wd^T + bd) wz^T + bz                 [N] logits
//! loss        = sum_real bce(z, t) / max(#real, 1)            rtd_loss (also dz)
//! ```
//!
//! Dropout sites are numbered in that order (0 = embeddings, then 3 per layer: attention
//! probabilities, attention output, feed-forward output), which is also the order in which the
//! autograd model draws its masks from torch's generator.
use super::ops::{AttnSaved, Drop, LnSaved, Ops};
use super::weights::{Grads, Lin, Weights};
use tch::{Kind, Tensor};

/// A dense layer's GEMM without bias: `x W^T` in the compute kind.
fn gemm(x: &Tensor, l: &Lin, _kind: Kind) -> Tensor {
    x.matmul(&l.wc.borrow().tr())
}

struct LayerSaved {
    h_in: Tensor,
    attn: AttnSaved,
    ctx: Tensor,
    drop1: Drop,
    ln1: LnSaved,
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
/// real), the loss against `targets` [B, S], and the logits' gradient of `scale` x loss.
/// `kind`: the compute kind of GEMMs and activations (fp32 on the CPU, bf16 on CUDA).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    w: &Weights,
    ops: &dyn Ops,
    ids: &Tensor,
    attention_mask: &Tensor,
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
        );
        let x0 = x0.to_kind(kind);
        let mut h = match &w.project {
            Some(p) => gemm(&x0, p, kind) + p.b.to_kind(kind),
            None => x0.shallow_clone(),
        };
        let hidden = h.size()[1];
        let heads = w.heads;
        let d = hidden / heads;
        let keys = key_mask(attention_mask);
        let mut layers = Vec::with_capacity(w.layers.len());
        for (i, l) in w.layers.iter().enumerate() {
            let (sa, s1, s2) = sites(i);
            let split = |t: Tensor| t.view([b, s, heads, d]).transpose(1, 2);
            let q = split(gemm(&h, &l.query, kind) + l.query.b.to_kind(kind));
            let k = split(gemm(&h, &l.key, kind) + l.key.b.to_kind(kind));
            let v = split(gemm(&h, &l.value, kind) + l.value.b.to_kind(kind));
            let dropa = ops.dropout(&[b, heads, s, s], kind, ap, sa);
            let (ctx, attn) = ops.attention(&q, &k, &v, keys.as_ref(), dropa, ap);
            let ctx = ctx.transpose(1, 2).contiguous().view([b * s, hidden]);
            let o = gemm(&ctx, &l.attn_out, kind);
            let drop1 = ops.dropout(&[b, s, hidden], kind, hp, s1);
            let (a, ln1) = ops.residual_ln(
                &o,
                &l.attn_out.b,
                &drop1,
                &h,
                &l.attn_ln.w,
                &l.attn_ln.b,
                w.eps,
            );
            let a = a.to_kind(kind);
            let (pre, g) = ops.bias_gelu(&gemm(&a, &l.inter, kind), &l.inter.b);
            let f = gemm(&g, &l.out, kind);
            let drop2 = ops.dropout(&[b, s, hidden], kind, hp, s2);
            let (h_next, ln2) =
                ops.residual_ln(&f, &l.out.b, &drop2, &a, &l.out_ln.w, &l.out_ln.b, w.eps);
            layers.push(LayerSaved {
                h_in: h,
                attn,
                ctx,
                drop1,
                ln1,
                a,
                pre,
                g,
                drop2,
                ln2,
            });
            h = h_next.to_kind(kind);
        }
        let (head_pre, head_g) = ops.bias_gelu(&gemm(&h, &w.head_dense, kind), &w.head_dense.b);
        let z = (gemm(&head_g, &w.head_pred, kind) + w.head_pred.b.to_kind(kind))
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
            x0,
            layers,
            h_last: h,
            head_pre,
            head_g,
        }
    })
}

/// The key mask [B, 1, 1, S] (true = attend), None when no token is padding. A row with no
/// real token attends to every position, as the autograd model's `key_mask`.
fn key_mask(attention_mask: &Tensor) -> Option<Tensor> {
    let m = attention_mask.ne(0);
    let any = m.any_dims([1i64].as_slice(), true);
    let m = m.logical_or(&any.logical_not());
    if m.all().int64_value(&[]) != 0 {
        return None;
    }
    let (b, s) = m.size2().expect("attention_mask is [B, S]");
    Some(m.view([b, 1, 1, s]))
}

/// Adds `dw = dy^T x` and `db = sum_rows(dy)` of the linear layer `l` to `grads` and returns
/// `dx = dy W`.
fn linear_backward(dy: &Tensor, x: &Tensor, l: &Lin, _kind: Kind, grads: &mut Grads) -> Tensor {
    let dw = dy.tr().matmul(x).to_kind(Kind::Float);
    let db = dy.sum_dim_intlist(0, false, Kind::Float);
    add(grads, format!("{}.weight", l.name), dw);
    add(grads, format!("{}.bias", l.name), db);
    dy.matmul(&l.wc.borrow())
}

fn add(grads: &mut Grads, name: String, g: Tensor) {
    match grads.get_mut(&name) {
        Some(acc) => {
            let _ = acc.g_add_(&g);
        }
        None => {
            grads.insert(name, g);
        }
    }
}

/// The backward pass: the gradient of every parameter (fp32, by name) of `scale` x loss.
pub fn backward(w: &Weights, ops: &dyn Ops, f: &Forward, kind: Kind) -> Grads {
    tch::no_grad(|| {
        let mut grads = Grads::new();
        let (b, s) = f.ids.size2().expect("ids are [B, S]");
        let dz = f.dz.view([b * s, 1]).to_kind(kind);
        let dg = linear_backward(&dz, &f.head_g, &w.head_pred, kind, &mut grads);
        let dpre = ops.gelu_backward(&dg, &f.head_pre, &w.head_dense.b);
        let mut dh = linear_backward(&dpre, &f.h_last, &w.head_dense, kind, &mut grads);
        let hidden = dh.size()[1];
        let heads = w.heads;
        let d = hidden / heads;
        for (l, sv) in w.layers.iter().zip(&f.layers).rev() {
            // h = LN2(drop(f + bf) + a)
            let g2 = ops.residual_ln_backward(&dh, &sv.ln2, &l.out_ln.w, &sv.drop2);
            add(&mut grads, format!("{}.weight", l.out_ln.name), g2.dw);
            add(&mut grads, format!("{}.bias", l.out_ln.name), g2.db);
            let dbranch = g2.dbranch.to_kind(kind);
            let dg = linear_backward(&dbranch, &sv.g, &l.out, kind, &mut grads);
            let dpre = ops.gelu_backward(&dg, &sv.pre, &l.inter.b);
            let da =
                g2.dx.to_kind(kind) + linear_backward(&dpre, &sv.a, &l.inter, kind, &mut grads);
            // a = LN1(drop(o + bo) + h_in)
            let g1 = ops.residual_ln_backward(&da, &sv.ln1, &l.attn_ln.w, &sv.drop1);
            add(&mut grads, format!("{}.weight", l.attn_ln.name), g1.dw);
            add(&mut grads, format!("{}.bias", l.attn_ln.name), g1.db);
            let dctx = linear_backward(
                &g1.dbranch.to_kind(kind),
                &sv.ctx,
                &l.attn_out,
                kind,
                &mut grads,
            );
            let dctx = dctx.view([b, s, heads, d]).transpose(1, 2);
            let (dq, dk, dv) = ops.attention_backward(&dctx, &sv.attn);
            let merge = |t: Tensor| t.transpose(1, 2).contiguous().view([b * s, hidden]);
            let mut dh_in = g1.dx.to_kind(kind);
            for (dt, lin) in [(dq, &l.query), (dk, &l.key), (dv, &l.value)] {
                dh_in += linear_backward(&merge(dt), &sv.h_in, lin, kind, &mut grads);
            }
            dh = dh_in;
        }
        let dx0 = match &w.project {
            Some(p) => linear_backward(&dh, &f.x0, p, kind, &mut grads),
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
        add(&mut grads, format!("{e}.word_embeddings.weight"), dword);
        add(&mut grads, format!("{e}.position_embeddings.weight"), dpos);
        add(
            &mut grads,
            format!("{e}.token_type_embeddings.weight"),
            dtyp,
        );
        add(&mut grads, format!("{}.weight", w.emb_ln.name), dw);
        add(&mut grads, format!("{}.bias", w.emb_ln.name), db);
        grads
    })
}
