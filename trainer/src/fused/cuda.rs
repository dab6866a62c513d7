//! `--step fused` on CUDA: [`CudaOps`], the [`Ops`] of the NVRTC kernels of `shared/kernels/`
//! (launched through `shared::cuda::ffi`), with attention on PyTorch's memory-efficient SDPA
//! kernel (forward and backward called directly; no mask when the batch has no padding).
//!
//! NOT RUN IN THIS REPOSITORY'S TESTS: no GPU is available where they run. Each operation has
//! the same contract as [`super::ops::TchOps`]'s, and `scripts/gpu-check.sh` runs
//! `trainer fused-check` (`super::check`), which compares every one against `TchOps` on the GPU
//! with the same dropout masks and bf16 tolerances, then times the step.
use super::ops::{AttnSaved, Drop, LnGrads, LnSaved, Ops, Resid, ResidGrad};
use shared::cuda::ffi::{self, Dropout, Kernels};
use std::cell::Cell;
use tch::{Device, Kind, Tensor};

/// The CUDA kernels behind [`Ops`].
pub struct CudaOps {
    device: Device,
    /// The Philox seed of the current micro-batch's dropout masks (drawn at site 0 from
    /// torch's CPU generator, which the trainer seeds from (seed, rank, step):
    /// `crate::rng::philox_seed`).
    seed: Cell<u64>,
}

/// The kernels' operations on `device` (compiling or loading them now, so that a problem shows
/// before training).
pub fn ops(device: Device) -> anyhow::Result<Box<dyn Ops>> {
    Ok(Box::new(CudaOps::new(device)?))
}

impl CudaOps {
    pub fn new(device: Device) -> anyhow::Result<Self> {
        let Device::Cuda(i) = device else {
            anyhow::bail!("CudaOps: expected a CUDA device, found {device:?}");
        };
        // Launch on libtorch's current stream, so that the kernels are ordered with ATen's
        // work even if a side stream is made current (docs/fused-step.md). A build without the
        // CUDA headers (then also without NCCL) cannot ask libtorch: the legacy default stream.
        if crate::ext::has_nccl() {
            ffi::use_streams_of(crate::ext::current_cuda_stream);
        } else {
            eprintln!(
                "trainer: --step fused: built without the CUDA headers: kernels run on the \
                 legacy default stream (libtorch's current stream unless a side stream is made \
                 current)"
            );
        }
        let k = Kernels::get(i)
            .map_err(|e| anyhow::anyhow!("--step fused: the CUDA kernels: {e:#}"))?;
        eprintln!(
            "trainer: --step fused: kernels for {} ({})",
            k.arch,
            if k.cached {
                "from the cache"
            } else {
                "compiled by NVRTC"
            }
        );
        Ok(Self {
            device,
            seed: Cell::new(0),
        })
    }

    fn drop_of(&self, d: &Drop) -> Dropout {
        match d {
            Drop::Philox { p, seed, site } => Dropout {
                p: *p,
                seed: *seed,
                site: *site,
            },
            Drop::Off => Dropout {
                p: 0.0,
                seed: 0,
                site: 0,
            },
            Drop::Mask(_) => panic!("CudaOps regenerates its masks; a stored mask is TchOps'"),
        }
    }

    fn f32(&self, shape: &[i64]) -> Tensor {
        Tensor::empty(shape, (Kind::Float, self.device))
    }

    fn bf16(&self, shape: &[i64]) -> Tensor {
        Tensor::empty(shape, (Kind::BFloat16, self.device))
    }
}

/// The two parts of a residual gradient as the kernels take them: fp32 and bf16, contiguous.
fn parts(g: &ResidGrad) -> (Option<Tensor>, Option<Tensor>) {
    (
        g.f.as_ref().map(|t| as_kind(t, Kind::Float)),
        g.c.as_ref().map(|t| as_kind(t, Kind::BFloat16)),
    )
}

/// `t` as a contiguous tensor of `kind`.
fn as_kind(t: &Tensor, kind: Kind) -> Tensor {
    t.to_kind(kind).contiguous()
}

fn ok(r: anyhow::Result<()>) {
    if let Err(e) = r {
        panic!("--step fused: CUDA kernel: {e:#}");
    }
}

impl Ops for CudaOps {
    fn dropout(&self, _shape: &[i64], _kind: Kind, p: f64, site: u64) -> Drop {
        if site == 0 {
            self.seed.set(crate::rng::philox_seed());
        }
        if p <= 0.0 {
            return Drop::Off;
        }
        Drop::Philox {
            p: p as f32,
            seed: self.seed.get(),
            site,
        }
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
        _kind: Kind,
    ) -> (Resid, LnSaved) {
        let (_, s) = ids.size2().expect("ids are [B, S]");
        let ids = ids.contiguous().view([-1]);
        let n = ids.size()[0];
        let c = w.size()[0];
        let (y, yc) = (self.f32(&[n, c]), self.bf16(&[n, c]));
        let (mean, rstd) = (self.f32(&[n]), self.f32(&[n]));
        ok(ffi::embed_ln_fwd(
            &ids,
            word,
            pos,
            typ,
            w,
            b,
            &y,
            &yc,
            &mean,
            &rstd,
            s,
            eps,
            self.drop_of(drop),
        ));
        let saved = LnSaved {
            x: Tensor::empty([0], (Kind::Float, self.device)),
            mean,
            rstd,
            kind: Kind::BFloat16,
        };
        (Resid { x: y, c: yc }, saved)
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
        let flat = ids.contiguous().view([-1]);
        let n = flat.size()[0];
        let c = w.size()[0];
        let (f, cc) = parts(dy);
        let dx = self.f32(&[n, c]);
        let d = self.drop_of(drop);
        ok(ffi::embed_ln_bwd(
            f.as_ref(),
            cc.as_ref(),
            &flat,
            tables[0],
            tables[1],
            tables[2],
            w,
            &saved.mean,
            &saved.rstd,
            &dx,
            s,
            d,
        ));
        // The LayerNorm's parameters: sum_rows(dy_dropped * xhat), sum_rows(dy_dropped), with
        // the LN input recomputed from the ids and the mask regenerated (once per micro-batch).
        let x = Tensor::embedding(tables[0], &flat, -1, false, false)
            + tables[1].narrow(0, 0, s).repeat([b, 1])
            + tables[2].get(0);
        let xh = (x - saved.mean.view([n, 1])) * saved.rstd.view([n, 1]);
        let mut g = dy.total();
        if d.p > 0.0 {
            let m = self.f32(&[n, c]);
            ok(ffi::dropout_mask(&m, d));
            g *= m;
        }
        let dw = (&g * xh).sum_dim_intlist(0, false, Kind::Float);
        let db = g.sum_dim_intlist(0, false, Kind::Float);
        let grads = super::ops::embedding_table_grads(&dx, ids, tables, (b, s));
        (grads, dw, db)
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
        let c = w.size()[0];
        let branch = as_kind(branch, Kind::BFloat16);
        let residual = as_kind(residual, Kind::Float);
        let n = branch.numel() as i64 / c;
        let (y, yc, xs) = (self.f32(&[n, c]), self.bf16(&[n, c]), self.f32(&[n, c]));
        let (mean, rstd) = (self.f32(&[n]), self.f32(&[n]));
        ok(ffi::residual_ln_fwd(
            &branch,
            bias,
            &residual,
            w,
            b,
            &y,
            &yc,
            &xs,
            &mean,
            &rstd,
            eps,
            self.drop_of(drop),
        ));
        let saved = LnSaved {
            x: xs,
            mean,
            rstd,
            kind: Kind::BFloat16,
        };
        (Resid { x: y, c: yc }, saved)
    }

    fn residual_ln_backward(
        &self,
        dy: &ResidGrad,
        saved: &LnSaved,
        w: &Tensor,
        drop: &Drop,
    ) -> LnGrads {
        let c = w.size()[0];
        let n = saved.x.numel() as i64 / c;
        let (f, cc) = parts(dy);
        let (dx, dbranch) = (self.f32(&[n, c]), self.bf16(&[n, c]));
        ok(ffi::residual_ln_bwd(
            f.as_ref(),
            cc.as_ref(),
            &saved.x,
            w,
            &saved.mean,
            &saved.rstd,
            &dx,
            &dbranch,
            self.drop_of(drop),
        ));
        let dwb = ffi::ln_param_grads(
            f.as_ref(),
            cc.as_ref(),
            &saved.x,
            &saved.mean,
            &saved.rstd,
            c,
        )
        .unwrap_or_else(|e| panic!("--step fused: CUDA kernel: {e:#}"));
        LnGrads {
            dx,
            dbranch,
            dw: dwb.get(0),
            db: dwb.get(1),
        }
    }

    fn bias_gelu(&self, x: &Tensor, bias: &Tensor) -> (Tensor, Tensor) {
        let x = as_kind(x, Kind::BFloat16);
        let y = self.bf16(&x.size());
        ok(ffi::bias_gelu_fwd(&x, bias, &y));
        (x, y)
    }

    fn gelu_backward(&self, dy: &Tensor, saved: &Tensor, bias: &Tensor) -> Tensor {
        let dy = as_kind(dy, Kind::BFloat16);
        let dx = self.bf16(&saved.size());
        ok(ffi::bias_gelu_bwd(&dy, saved, bias, &dx));
        dx
    }

    fn rtd_loss(
        &self,
        z: &Tensor,
        targets: &Tensor,
        real: &Tensor,
        scale: f64,
    ) -> (Tensor, Tensor) {
        let z = as_kind(z, Kind::Float);
        let t = as_kind(targets, Kind::Float);
        let real = as_kind(real, Kind::Int64);
        let loss = self.f32(&[1]);
        let dz = self.f32(&z.size());
        ok(ffi::rtd_loss(&z, &t, &real, &loss, &dz, scale as f32));
        (loss.view([]), dz)
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        keys: Option<&Tensor>,
        _drop: Drop,
        p: f64,
    ) -> (Tensor, AttnSaved) {
        let (b, h, s, _) = q.size4().expect("q is [B, heads, S, d]");
        let bias = keys.map(|m| {
            // The efficient kernel wants the bias's last dimension aligned to 16 elements:
            // pad, then slice (as ATen's SDPA does).
            let pad = (16 - s % 16) % 16;
            let full = Tensor::zeros([b, 1, 1, s + pad], (q.kind(), self.device));
            let blocked = m.logical_not();
            let _ = full
                .narrow(3, 0, s)
                .masked_fill_(&blocked, f64::NEG_INFINITY);
            full.narrow(3, 0, s).expand([b, h, s, s], false)
        });
        let (out, logsumexp, philox_seed, philox_offset) =
            Tensor::internal_scaled_dot_product_efficient_attention(
                q,
                k,
                v,
                bias.as_ref(),
                true,
                p,
                false,
                None,
            );
        (
            out.shallow_clone(),
            AttnSaved::Efficient {
                q: q.shallow_clone(),
                k: k.shallow_clone(),
                v: v.shallow_clone(),
                out,
                logsumexp,
                philox_seed,
                philox_offset,
                bias,
                dropout: p,
            },
        )
    }

    fn attention_backward(&self, dctx: &Tensor, saved: &AttnSaved) -> (Tensor, Tensor, Tensor) {
        let AttnSaved::Efficient {
            q,
            k,
            v,
            out,
            logsumexp,
            philox_seed,
            philox_offset,
            bias,
            dropout,
        } = saved
        else {
            panic!("CudaOps::attention_backward needs the efficient attention's saved tensors");
        };
        let s = q.size()[2];
        // `_efficient_attention_backward` takes [B, S, heads, d], as ATen's SDPA backward
        // calls it.
        let t = |x: &Tensor| x.transpose(1, 2);
        let (dq, dk, dv, _) = Tensor::internal_efficient_attention_backward(
            &t(dctx),
            &t(q),
            &t(k),
            &t(v),
            bias.as_ref(),
            &t(out),
            None::<&Tensor>,
            None::<&Tensor>,
            s,
            s,
            logsumexp,
            *dropout,
            philox_seed,
            philox_offset,
            0,
            false,
            None,
            None,
            None,
            false,
        );
        (t(&dq), t(&dk), t(&dv))
    }
}
