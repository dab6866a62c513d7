//! AdamW over one flat buffer, updated by PyTorch's fused AdamW kernel.
//!
//! Every parameter and every gradient is a view into one flat fp32 buffer (parameters with
//! weight decay first), so the gradient norm is one reduction, the gradients can be all-reduced
//! as one tensor in data-parallel training, and the update is two calls of `at::_fused_adamw_`
//! (the decayed prefix with weight decay, the rest without) through the trainer's C++ extension
//! (`crate::ext`; tch 0.24 does not bind the op). Each call reads the gradient and both moments
//! once and writes parameter and moments once (one vectorised loop on the CPU, one
//! multi-tensor-apply kernel on CUDA), instead of the ten whole-buffer passes of the element-wise
//! update this replaced. Clipping is folded into the kernel: it divides the gradient by
//! `grad_scale = max(1, (norm + 1e-6) / max_norm)`, a device scalar, so there is no host
//! synchronisation per update.
//!
//! The state (`exp_avg`, `exp_avg_sq`, `step`) is ours and goes into the checkpoint; it is the
//! same state, with the same meaning, as the element-wise update's, so checkpoints written before
//! the fused kernel resume unchanged.
use anyhow::{bail, Context};
use std::collections::HashMap;
use tch::{nn::VarStore, Kind, Tensor};

use crate::ext;

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// AdamW (decoupled weight decay), PyTorch's fused kernel.
    #[default]
    AdamW,
    /// AdaMax (Adam with the infinity norm: `u = max(beta2 u, |g| + eps)`, step
    /// `lr / (1 - beta1^t) m / u`), with AdamW's decoupled weight decay; the paper's
    /// fine-tuning optimizer. `exp_avg_sq` holds `u`.
    Adamax,
}

/// AdamW hyper-parameters (paper Table 3 defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub rule: Rule,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.01,
            rule: Rule::AdamW,
        }
    }
}

/// True for parameters that get no weight decay: biases and LayerNorm weights.
pub fn no_decay(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with("bias") || lower.contains("layernorm") || lower.contains("layer_norm")
}

/// AdamW whose parameters and gradients live in flat buffers.
pub struct AdamW {
    cfg: AdamWConfig,
    params: Tensor,
    grads: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Number of leading elements that get weight decay.
    decayed: i64,
    step: u64,
    /// `step` as a one-element fp32 tensor on the device (the fused kernel reads it there).
    step_t: Tensor,
    /// CUDA, `--step fused`: a bf16 copy of `params` (same layout) that the update writes in
    /// the same pass (`shared/kernels/adamw.cu`) for the next step's GEMMs.
    params_bf16: Option<Tensor>,
}

impl AdamW {
    /// Moves every trainable variable of `vs` into one flat buffer (same values) and binds
    /// their gradients to a second one.
    pub fn new(vs: &VarStore, cfg: AdamWConfig) -> anyhow::Result<Self> {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        if vars.is_empty() {
            bail!("the model has no trainable parameters");
        }
        // Decayed first, then by name, so the layout is deterministic.
        vars.sort_by(|a, b| (no_decay(&a.0), &a.0).cmp(&(no_decay(&b.0), &b.0)));
        let device = vars[0].1.device();
        let total: i64 = vars.iter().map(|(_, t)| t.numel() as i64).sum();
        let decayed: i64 = vars
            .iter()
            .filter(|(n, _)| !no_decay(n))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        let opts = (Kind::Float, device);
        let params = Tensor::zeros([total], opts);
        let grads = Tensor::zeros([total], opts);
        // Make every parameter own a gradient tensor, so it can be re-pointed at the flat one.
        let probe = Tensor::stack(
            &vars
                .iter()
                .map(|(_, t)| t.sum(Kind::Float))
                .collect::<Vec<_>>(),
            0,
        )
        .sum(Kind::Float)
            * 0.0;
        probe.backward();
        let mut offset = 0i64;
        tch::no_grad(|| -> anyhow::Result<()> {
            for (name, var) in &mut vars {
                if var.kind() != Kind::Float {
                    bail!("parameter {name}: expected fp32, found {:?}", var.kind());
                }
                let n = var.numel() as i64;
                let shape = var.size();
                let pview = params.narrow(0, offset, n).view(shape.as_slice());
                pview.shallow_clone().copy_(var);
                var.set_data(&pview);
                let mut grad = var.grad();
                if !grad.defined() {
                    bail!("parameter {name} got no gradient tensor");
                }
                grad.set_data(&grads.narrow(0, offset, n).view(shape.as_slice()));
                offset += n;
            }
            Ok(())
        })?;
        let _ = grads.shallow_clone().zero_();
        Ok(Self {
            cfg,
            exp_avg: Tensor::zeros([total], opts),
            exp_avg_sq: Tensor::zeros([total], opts),
            step_t: Tensor::zeros([1], opts),
            params,
            grads,
            decayed,
            step: 0,
            params_bf16: None,
        })
    }

    /// Keeps a bf16 copy of the parameters, written by every update in the same pass (CUDA
    /// only; call after any resume, which it copies). Returns each variable of `vs` as a bf16
    /// view of it, by name.
    pub fn keep_bf16_copy(&mut self, vs: &VarStore) -> anyhow::Result<HashMap<String, Tensor>> {
        if !self.params.device().is_cuda() {
            bail!("a bf16 copy of the weights is kept on CUDA only");
        }
        let flat = tch::no_grad(|| self.params.to_kind(Kind::BFloat16));
        let views = self.views_into(&flat, vs);
        self.params_bf16 = Some(flat);
        Ok(views)
    }

    /// Each trainable variable of `vs` as a view into `flat`, a buffer laid out as the
    /// parameters (each variable is a view into `params`: its offset there is its offset in
    /// `flat`).
    pub(crate) fn views_into(&self, flat: &Tensor, vs: &VarStore) -> HashMap<String, Tensor> {
        let base = self.params.data_ptr() as usize;
        let elem = self.params.kind().elt_size_in_bytes();
        vs.variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .map(|(name, var)| {
                let offset = ((var.data_ptr() as usize - base) / elem) as i64;
                let view = flat
                    .narrow(0, offset, var.numel() as i64)
                    .view(var.size().as_slice());
                (name, view)
            })
            .collect()
    }

    /// Number of trainable scalars.
    pub fn numel(&self) -> i64 {
        self.params.size()[0]
    }

    /// Updates done so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The flat gradient buffer (every parameter's `.grad()` is a view into it).
    pub fn grads(&self) -> &Tensor {
        &self.grads
    }

    /// The flat parameter buffer (every parameter is a view into it).
    pub fn params(&self) -> &Tensor {
        &self.params
    }

    /// Zeroes all gradients (one kernel).
    pub fn zero_grad(&mut self) {
        let _ = self.grads.zero_();
    }

    /// Clips the global gradient norm to `max_norm` (when > 0), then does one AdamW update
    /// with learning rate `lr`. Returns the gradient norm before clipping, on the device.
    pub fn clip_and_step(&mut self, lr: f64, max_norm: f64) -> anyhow::Result<Tensor> {
        tch::no_grad(|| {
            let norm = self.grads.norm();
            // grad / max(1, (norm + 1e-6) / max_norm) = grad * min(1, max_norm / (norm + 1e-6)).
            let scale =
                (max_norm > 0.0).then(|| ((&norm + 1e-6) / max_norm).clamp_min(1.0).view([1]));
            self.step += 1;
            let _ = self.step_t.fill_(self.step as f64);
            let c = self.cfg;
            let total = self.numel();
            for (start, len, wd) in [
                (0, self.decayed, c.weight_decay),
                (self.decayed, total - self.decayed, 0.0),
            ] {
                if len == 0 {
                    continue;
                }
                let slice = |t: &Tensor| t.narrow(0, start, len);
                if c.rule == Rule::Adamax {
                    let g = slice(&self.grads);
                    let g = match &scale {
                        Some(s) => &g / s,
                        None => g,
                    };
                    let mut p = slice(&self.params);
                    if wd > 0.0 {
                        let _ = p.g_mul_scalar_(1.0 - lr * wd);
                    }
                    let mut m = slice(&self.exp_avg);
                    let _ = m.lerp_(&g, 1.0 - c.beta1);
                    let mut u = slice(&self.exp_avg_sq);
                    let grown = (&u * c.beta2).maximum(&(g.abs() + c.eps));
                    u.copy_(&grown);
                    let step = lr / (1.0 - c.beta1.powi(self.step as i32));
                    let _ = p.g_sub_(&(&m / &u * step));
                    continue;
                }
                if let Some(bf16) = &self.params_bf16 {
                    let ones;
                    let gs = match &scale {
                        Some(s) => s,
                        None => {
                            ones = Tensor::ones([1], (Kind::Float, self.params.device()));
                            &ones
                        }
                    };
                    shared::cuda::ffi::adamw_bf16(
                        &slice(&self.params),
                        &slice(&self.exp_avg),
                        &slice(&self.exp_avg_sq),
                        &slice(&self.grads),
                        &slice(bf16),
                        &gs.to_kind(Kind::Float).contiguous(),
                        shared::cuda::ffi::AdamW {
                            lr: lr as f32,
                            beta1: c.beta1 as f32,
                            beta2: c.beta2 as f32,
                            eps: c.eps as f32,
                            weight_decay: wd as f32,
                            bias_correction1: (1.0 - c.beta1.powi(self.step as i32)) as f32,
                            bias_correction2: (1.0 - c.beta2.powi(self.step as i32)) as f32,
                        },
                    )
                    .context("the AdamW update with bf16 copies")?;
                    continue;
                }
                ext::fused_adamw(
                    &slice(&self.params),
                    &slice(&self.grads),
                    &slice(&self.exp_avg),
                    &slice(&self.exp_avg_sq),
                    &self.step_t,
                    lr,
                    (c.beta1, c.beta2),
                    wd,
                    c.eps,
                    scale.as_ref(),
                )
                .context("the fused AdamW update")?;
            }
            Ok(norm)
        })
    }

    /// The optimizer state as named tensors (for `optimizer.safetensors`); the step is a
    /// one-element int64 tensor, the layout a check on resume.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("exp_avg".into(), self.exp_avg.shallow_clone()),
            ("exp_avg_sq".into(), self.exp_avg_sq.shallow_clone()),
            ("step".into(), Tensor::from_slice(&[self.step as i64])),
        ]
    }

    /// Restores the state written by [`AdamW::state`] from `path`.
    pub fn load_state(&mut self, named: &[(String, Tensor)], path: &str) -> anyhow::Result<()> {
        let get = |key: &str| {
            named
                .iter()
                .find(|(n, _)| n == key)
                .map(|(_, t)| t)
                .with_context(|| format!("{path}: tensor {key}: expected, found nothing"))
        };
        let total = self.numel();
        for (key, dst) in [("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)] {
            let src = get(key)?;
            if src.size() != [total] {
                bail!(
                    "{path}: tensor {key}: expected shape [{total}] (the model's trainable scalars), found {:?}: the checkpoint was written for another model",
                    src.size()
                );
            }
            tch::no_grad(|| dst.shallow_clone().copy_(src));
        }
        let step = get("step")?;
        self.step = step.int64_value(&[0]) as u64;
        let _ = self.step_t.fill_(self.step as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module};
    use tch::Device;

    fn setup() -> (VarStore, nn::Linear) {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "dense", 3, 2, Default::default());
        (vs, lin)
    }

    #[test]
    fn gradients_accumulate_into_the_flat_buffer() {
        let (vs, lin) = setup();
        let mut opt = AdamW::new(&vs, AdamWConfig::default()).unwrap();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]);
        for _ in 0..2 {
            lin.forward(&x).sum(Kind::Float).backward();
        }
        // d/dW of sum(Wx + b) = x per output row, twice; d/db = 1, twice.
        let w_grad = lin.ws.grad();
        assert_eq!(
            Vec::<f32>::try_from(w_grad.view([-1])).unwrap(),
            vec![2.0, 4.0, 6.0, 2.0, 4.0, 6.0]
        );
        let flat = Vec::<f32>::try_from(opt.grads()).unwrap();
        // Weight (decayed) first, then bias.
        assert_eq!(flat, vec![2.0, 4.0, 6.0, 2.0, 4.0, 6.0, 2.0, 2.0]);
        opt.zero_grad();
        assert_eq!(lin.ws.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn matches_reference_adamw_with_clipping() {
        // Reference values from torch.optim.AdamW(lr=0.1, betas=(0.9, 0.98), eps=1e-6,
        // weight_decay=0.01 on the weight only) after clip_grad_norm_(2.0), two steps on
        // loss = sum(W x + b) with x = [1, 2, 3], W = 1, b = 0 (computed by hand below).
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(
            vs.root() / "dense",
            3,
            1,
            nn::LinearConfig {
                ws_init: nn::Init::Const(1.0),
                bs_init: Some(nn::Init::Const(0.0)),
                bias: true,
            },
        );
        let mut opt = AdamW::new(&vs, AdamWConfig::default()).unwrap();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]);
        let mut w = [1.0f64, 1.0, 1.0];
        let mut b = 0.0f64;
        let g = [1.0f64, 2.0, 3.0, 1.0];
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let coef = (2.0 / (norm + 1e-6)).min(1.0);
        let (mut m, mut v) = ([0.0f64; 4], [0.0f64; 4]);
        for t in 1..=2 {
            opt.zero_grad();
            lin.forward(&x).sum(Kind::Float).backward();
            let got_norm = opt.clip_and_step(0.1, 2.0).unwrap().double_value(&[]);
            assert!((got_norm - norm).abs() < 1e-5);
            let (bc1, bc2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.98f64.powi(t));
            for i in 0..4 {
                let gi = g[i] * coef;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.98 * v[i] + 0.02 * gi * gi;
                let upd = 0.1 / bc1 * m[i] / ((v[i] / bc2).sqrt() + 1e-6);
                if i < 3 {
                    w[i] = w[i] * (1.0 - 0.1 * 0.01) - upd;
                } else {
                    b -= upd;
                }
            }
        }
        let got_w = Vec::<f32>::try_from(lin.ws.view([-1])).unwrap();
        for i in 0..3 {
            assert!((got_w[i] as f64 - w[i]).abs() < 1e-5, "{got_w:?} {w:?}");
        }
        let got_b = lin.bs.as_ref().unwrap().double_value(&[0]);
        assert!((got_b - b).abs() < 1e-5);
        assert_eq!(opt.step_count(), 2);
    }

    /// fp64 AdamW (torch.optim.AdamW's formulas) over the same flat layout, with clipping.
    struct Reference {
        p: Vec<f64>,
        m: Vec<f64>,
        v: Vec<f64>,
        t: i32,
    }

    impl Reference {
        fn step(&mut self, g: &[f64], lr: f64, max_norm: f64, decayed: usize, c: AdamWConfig) {
            let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            let coef = (max_norm / (norm + 1e-6)).min(1.0);
            self.t += 1;
            let (bc1, bc2) = (1.0 - c.beta1.powi(self.t), 1.0 - c.beta2.powi(self.t));
            #[allow(clippy::needless_range_loop)] // i indexes five arrays
            for i in 0..self.p.len() {
                let gi = g[i] * coef;
                if i < decayed {
                    self.p[i] *= 1.0 - lr * c.weight_decay;
                }
                self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * gi;
                self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * gi * gi;
                self.p[i] -= lr / bc1 * self.m[i] / ((self.v[i] / bc2).sqrt() + c.eps);
            }
        }
    }

    #[test]
    fn fused_adamw_equals_an_fp64_reference_over_ten_updates() {
        // Two groups (a decayed weight, an undecayed LayerNorm weight and bias), random
        // gradients of varying size so that clipping is active on some updates only, and a
        // varying learning rate.
        tch::manual_seed(7);
        let vs = VarStore::new(Device::Cpu);
        let _lin = nn::linear(vs.root() / "dense", 16, 8, Default::default());
        let _ln = nn::layer_norm(vs.root() / "LayerNorm", vec![8], Default::default());
        let c = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = AdamW::new(&vs, c).unwrap();
        let n = opt.numel() as usize;
        let decayed = 16 * 8;
        let mut r = Reference {
            p: Vec::<f64>::try_from(opt.params().to_kind(Kind::Double)).unwrap(),
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        };
        let mut clipped = 0;
        for k in 0..10 {
            let g =
                Tensor::randn([n as i64], (Kind::Float, Device::Cpu)) * (0.02 + 0.05 * k as f64);
            let g64 = Vec::<f64>::try_from(g.to_kind(Kind::Double)).unwrap();
            let norm = g64.iter().map(|x| x * x).sum::<f64>().sqrt();
            clipped += (norm > 2.0) as i32;
            opt.grads().shallow_clone().copy_(&g);
            let lr = 1e-2 * (1.0 + k as f64) / 10.0;
            let got = opt.clip_and_step(lr, 2.0).unwrap().double_value(&[]);
            assert!((got - norm).abs() < 1e-4 * norm);
            r.step(&g64, lr, 2.0, decayed, c);
            opt.zero_grad();
        }
        assert!(
            clipped > 0 && clipped < 10,
            "clipping active on {clipped} of 10 updates"
        );
        let got = Vec::<f64>::try_from(opt.params().to_kind(Kind::Double)).unwrap();
        let worst = got
            .iter()
            .zip(&r.p)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst <= 1e-6,
            "largest difference from fp64 AdamW: {worst:e}"
        );
        let m = Vec::<f64>::try_from(opt.state()[0].1.to_kind(Kind::Double)).unwrap();
        let worst_m = m
            .iter()
            .zip(&r.m)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert!(worst_m <= 1e-6, "exp_avg: {worst_m:e}");
        assert_eq!(opt.step_count(), 10);
    }

    #[test]
    fn adamax_equals_an_fp64_reference_over_ten_updates() {
        // torch.optim.Adamax's formulas, with AdamW's decoupled weight decay, over the same
        // flat layout and clipping as the AdamW test.
        tch::manual_seed(8);
        let vs = VarStore::new(Device::Cpu);
        let _lin = nn::linear(vs.root() / "dense", 16, 8, Default::default());
        let _ln = nn::layer_norm(vs.root() / "LayerNorm", vec![8], Default::default());
        let c = AdamWConfig {
            weight_decay: 0.1,
            rule: Rule::Adamax,
            ..Default::default()
        };
        let mut opt = AdamW::new(&vs, c).unwrap();
        let n = opt.numel() as usize;
        let decayed = 16 * 8;
        let mut p = Vec::<f64>::try_from(opt.params().to_kind(Kind::Double)).unwrap();
        let (mut m, mut u) = (vec![0.0; n], vec![0.0; n]);
        let mut clipped = 0;
        for k in 0..10 {
            let g =
                Tensor::randn([n as i64], (Kind::Float, Device::Cpu)) * (0.02 + 0.05 * k as f64);
            let g64 = Vec::<f64>::try_from(g.to_kind(Kind::Double)).unwrap();
            let norm = g64.iter().map(|x| x * x).sum::<f64>().sqrt();
            clipped += (norm > 2.0) as i32;
            opt.grads().shallow_clone().copy_(&g);
            let lr = 1e-2 * (1.0 + k as f64) / 10.0;
            let got = opt.clip_and_step(lr, 2.0).unwrap().double_value(&[]);
            assert!((got - norm).abs() < 1e-4 * norm);
            let coef = (2.0 / (norm + 1e-6)).min(1.0);
            for i in 0..n {
                let gi = g64[i] * coef;
                if i < decayed {
                    p[i] *= 1.0 - lr * c.weight_decay;
                }
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
                u[i] = (c.beta2 * u[i]).max(gi.abs() + c.eps);
                p[i] -= lr / (1.0 - c.beta1.powi(k + 1)) * m[i] / u[i];
            }
            opt.zero_grad();
        }
        assert!(clipped > 0 && clipped < 10, "clipping on {clipped} of 10");
        let got = Vec::<f64>::try_from(opt.params().to_kind(Kind::Double)).unwrap();
        let worst = got
            .iter()
            .zip(&p)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst <= 1e-6,
            "largest difference from fp64 AdaMax: {worst:e}"
        );
    }

    #[test]
    fn state_round_trips_and_a_wrong_size_is_refused_with_the_reason() {
        let (vs, _lin) = setup();
        let mut opt = AdamW::new(&vs, AdamWConfig::default()).unwrap();
        let _ = opt.grads().shallow_clone().fill_(0.5);
        let _ = opt.clip_and_step(0.1, 2.0).unwrap();
        let state = opt.state();
        let (vs2, _lin2) = setup();
        let mut opt2 = AdamW::new(&vs2, AdamWConfig::default()).unwrap();
        opt2.load_state(&state, "opt.safetensors").unwrap();
        assert_eq!(opt2.step_count(), 1);
        // The next update continues from the restored step (bias corrections at t = 2).
        let _ = opt.grads().shallow_clone().fill_(0.5);
        let _ = opt2.grads().shallow_clone().fill_(0.5);
        opt2.params().shallow_clone().copy_(opt.params());
        let _ = opt.clip_and_step(0.1, 2.0).unwrap();
        let _ = opt2.clip_and_step(0.1, 2.0).unwrap();
        assert!(opt.params().equal(opt2.params()));
        let bad = vec![
            (
                "exp_avg".to_string(),
                Tensor::zeros([3], (Kind::Float, Device::Cpu)),
            ),
            (
                "exp_avg_sq".to_string(),
                Tensor::zeros([3], (Kind::Float, Device::Cpu)),
            ),
            ("step".to_string(), Tensor::from_slice(&[1i64])),
        ];
        let e = opt2
            .load_state(&bad, "opt.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected shape [8]") && e.contains("another model"),
            "{e}"
        );
    }

    #[test]
    fn copies_are_laid_out_as_the_parameters() {
        // The layout keep_bf16_copy relies on, checked with an fp32 "copy" on the CPU.
        let (vs, _lin) = setup();
        let opt = AdamW::new(&vs, AdamWConfig::default()).unwrap();
        let copy = opt.params().copy() * 2.0;
        let views = opt.views_into(&copy, &vs);
        assert_eq!(views.len(), vs.variables().len());
        for (name, var) in vs.variables() {
            let want = var.detach() * 2.0;
            assert!(views[&name].equal(&want), "{name}");
        }
        let mut opt = opt;
        let err = opt.keep_bf16_copy(&vs).unwrap_err().to_string();
        assert!(err.contains("CUDA only"), "{err}");
    }

    #[test]
    fn names_without_decay() {
        assert!(no_decay("electra.embeddings.LayerNorm.weight"));
        assert!(no_decay("electra.encoder.layer.0.output.dense.bias"));
        assert!(!no_decay("electra.encoder.layer.0.output.dense.weight"));
        assert!(!no_decay("electra.embeddings.word_embeddings.weight"));
    }
}
