//! `--step fused`: the RTD discriminator's update written out by hand (docs/fused-step.md).
//!
//! [`step`] is the forward with explicit saved activations and the backward with hand-written
//! gradients; GEMMs are tch matmuls, the rest goes through [`ops::Ops`]: [`ops::TchOps`] (plain
//! tch operations: the CPU implementation and the reference every kernel is checked against)
//! or, on CUDA, `cuda::CudaOps` (the NVRTC kernels of `shared/kernels/`). No autograd graph is
//! built; the gradients are added to the parameters' `.grad()` (views into the optimizer's flat
//! buffer), as `loss.backward()` would.
//!
//! On the CPU the dropout masks are drawn from torch's generator in the autograd model's order
//! ([`ops::Drop::Mask`]), so `--step fused` and `--step autograd` train the same model up to
//! floating-point rounding; on CUDA they come from Philox inside the kernels
//! ([`ops::Drop::Philox`]) and differ from autograd's (same distribution).
pub mod cuda;
pub mod ops;
pub mod step;
pub mod weights;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use shared::model::ModelConfig;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// `--step`: how the RTD update computes its gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// tch autograd over the model of `shared::model` (every architecture).
    #[default]
    Autograd,
    /// The hand-written forward and backward (absolute positions, GELU, post-LN only).
    Fused,
}

/// The hand-written step of one discriminator.
pub struct FusedStep {
    weights: weights::Weights,
    ops: Box<dyn ops::Ops>,
    kind: Kind,
    /// The bf16 weight copies are the optimizer's (written by its update).
    external_copies: std::cell::Cell<bool>,
}

impl FusedStep {
    /// The step over the variables of `vs` (a discriminator of config `cfg`) on `device`.
    pub fn new(vs: &VarStore, cfg: &ModelConfig, device: Device) -> anyhow::Result<Self> {
        let weights = weights::Weights::of(vs, cfg)?;
        let (ops, kind): (Box<dyn ops::Ops>, Kind) = if device.is_cuda() {
            (cuda::ops(device)?, Kind::BFloat16)
        } else {
            (Box::new(ops::TchOps { device }), Kind::Float)
        };
        weights.refresh(kind);
        Ok(Self {
            weights,
            ops,
            kind,
            external_copies: Default::default(),
        })
    }

    /// Call before each update: refreshes the compute-kind copies of the weights (unless the
    /// optimizer writes them, [`FusedStep::use_weight_copies`]).
    pub fn begin_update(&self) {
        if !self.external_copies.get() {
            self.weights.refresh(self.kind);
        }
    }

    /// Whether the step runs on CUDA (bf16, the kernels).
    pub fn is_cuda(&self) -> bool {
        self.kind == Kind::BFloat16
    }

    /// Reads the linear layers' bf16 weights from `views` (by variable name), which the
    /// optimizer's update writes (`AdamW::keep_bf16_copy`), instead of casting them each update.
    pub fn use_weight_copies(&self, views: &std::collections::HashMap<String, Tensor>) {
        self.weights.use_copies(views);
        self.external_copies.set(true);
    }

    /// A step with the given operations and compute kind (the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn with_ops(
        vs: &VarStore,
        cfg: &ModelConfig,
        ops: Box<dyn ops::Ops>,
        kind: Kind,
    ) -> anyhow::Result<Self> {
        let weights = weights::Weights::of(vs, cfg)?;
        weights.refresh(kind);
        Ok(Self {
            weights,
            ops,
            kind,
            external_copies: Default::default(),
        })
    }

    /// Forward and backward of one micro-batch: returns the logits [B, S] and the mean loss
    /// (both without gradient), and the gradients by parameter name of `scale` x loss.
    pub fn gradients(
        &self,
        ids: &Tensor,
        attention_mask: &Tensor,
        targets: &Tensor,
        train: bool,
        scale: f64,
    ) -> (Tensor, Tensor, weights::Grads) {
        let f = step::forward(
            &self.weights,
            self.ops.as_ref(),
            ids,
            attention_mask,
            targets,
            train,
            scale,
            self.kind,
        );
        let grads = step::backward(&self.weights, self.ops.as_ref(), &f, self.kind);
        (f.logits, f.loss, grads)
    }

    /// [`FusedStep::gradients`], added to the `.grad()` of the variables of `vs`.
    pub fn accumulate(
        &self,
        vs: &VarStore,
        ids: &Tensor,
        attention_mask: &Tensor,
        targets: &Tensor,
        scale: f64,
    ) -> (Tensor, Tensor) {
        let (logits, loss, grads) = self.gradients(ids, attention_mask, targets, true, scale);
        tch::no_grad(|| {
            for (name, var) in vs.variables() {
                let g = grads
                    .get(&name)
                    .unwrap_or_else(|| panic!("--step fused computed no gradient for {name}"));
                let mut acc = var.grad();
                if !acc.defined() {
                    // Make the variable own a gradient tensor (the optimizer always has).
                    tch::with_grad(|| var.sum(Kind::Float).backward());
                    acc = var.grad();
                    let _ = acc.zero_();
                }
                let _ = acc.g_add_(&g.to_kind(acc.kind()));
            }
        });
        (logits, loss)
    }
}

#[cfg(test)]
mod tests;
