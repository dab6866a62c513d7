//! AdamW over one flat buffer (a multi-tensor "fused" AdamW without a custom kernel).
//!
//! tch 0.24 does not expose PyTorch's `_fused_adamw_` nor the `_foreach_*` ops (its generator
//! excludes them), so instead every parameter and every gradient is made a view into one flat
//! fp32 buffer: the update, the global gradient norm and clipping are then a dozen whole-buffer
//! kernels per step, whatever the number of parameter tensors, with no host synchronisation
//! (the clip factor stays on the device). Parameters with weight decay come first in the buffer,
//! so decoupled weight decay is one multiply on a prefix.
//!
//! The state (`exp_avg`, `exp_avg_sq`, `step`) is ours and goes into the checkpoint.
use anyhow::{bail, Context};
use tch::{nn::VarStore, Kind, Tensor};

/// AdamW hyper-parameters (paper Table 3 defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.01,
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
            params,
            grads,
            decayed,
            step: 0,
        })
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
    #[cfg(test)]
    pub fn grads(&self) -> &Tensor {
        &self.grads
    }

    /// Zeroes all gradients (one kernel).
    pub fn zero_grad(&mut self) {
        let _ = self.grads.zero_();
    }

    /// Clips the global gradient norm to `max_norm` (when > 0), then does one AdamW update
    /// with learning rate `lr`. Returns the gradient norm before clipping, on the device.
    pub fn clip_and_step(&mut self, lr: f64, max_norm: f64) -> Tensor {
        tch::no_grad(|| {
            let norm = self.grads.norm();
            if max_norm > 0.0 {
                let coef = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
                let _ = self.grads.g_mul_(&coef);
            }
            self.step += 1;
            let c = self.cfg;
            let t = self.step as f64;
            let bc1 = 1.0 - c.beta1.powf(t);
            let bc2 = 1.0 - c.beta2.powf(t);
            let _ = self.exp_avg.lerp_(&self.grads, 1.0 - c.beta1);
            let _ = self.exp_avg_sq.lerp_(&self.grads.square(), 1.0 - c.beta2);
            if lr > 0.0 {
                if c.weight_decay > 0.0 && self.decayed > 0 {
                    let _ = self
                        .params
                        .narrow(0, 0, self.decayed)
                        .g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                // p -= lr / bc1 * m / (sqrt(v / bc2) + eps), as p += m / (denom * -(bc1 / lr)).
                let mut denom = (&self.exp_avg_sq / bc2).sqrt_();
                let _ = denom.g_add_scalar_(c.eps);
                let _ = denom.g_mul_scalar_(-bc1 / lr);
                let _ = self.params.addcdiv_(&self.exp_avg, &denom);
            }
            norm
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
        for (key, dst) in [
            ("exp_avg", &self.exp_avg),
            ("exp_avg_sq", &self.exp_avg_sq),
        ] {
            let src = get(key)?;
            if src.size() != [total] {
                bail!(
                    "{path}: tensor {key}: expected shape [{total}], found {:?}",
                    src.size()
                );
            }
            tch::no_grad(|| dst.shallow_clone().copy_(src));
        }
        let step = get("step")?;
        self.step = step.int64_value(&[0]) as u64;
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
            let got_norm = opt.clip_and_step(0.1, 2.0).double_value(&[]);
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

    #[test]
    fn names_without_decay() {
        assert!(no_decay("electra.embeddings.LayerNorm.weight"));
        assert!(no_decay("electra.encoder.layer.0.output.dense.bias"));
        assert!(!no_decay("electra.encoder.layer.0.output.dense.weight"));
        assert!(!no_decay("electra.embeddings.word_embeddings.weight"));
    }
}
