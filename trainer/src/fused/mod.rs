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
pub mod grads;
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
    /// `padded`: whether a row mixes real tokens and padding ([`key_padding`]).
    pub fn gradients(
        &self,
        ids: &Tensor,
        attention_mask: &Tensor,
        padded: bool,
        targets: &Tensor,
        train: bool,
        scale: f64,
    ) -> (Tensor, Tensor, weights::Grads) {
        let mut sink = grads::Sink::Collect(Default::default());
        let (logits, loss) = self.run(
            ids,
            attention_mask,
            padded,
            targets,
            train,
            scale,
            &mut sink,
            None,
        );
        let grads::Sink::Collect(g) = sink else {
            unreachable!("a collecting sink")
        };
        (logits, loss, g)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        ids: &Tensor,
        attention_mask: &Tensor,
        padded: bool,
        targets: &Tensor,
        train: bool,
        scale: f64,
        sink: &mut grads::Sink,
        ready: Option<&mut dyn grads::GradReady>,
    ) -> (Tensor, Tensor) {
        let f = step::forward(
            &self.weights,
            self.ops.as_ref(),
            ids,
            attention_mask,
            padded,
            targets,
            train,
            scale,
            self.kind,
        );
        step::backward(&self.weights, self.ops.as_ref(), &f, self.kind, sink, ready);
        (f.logits, f.loss)
    }

    /// [`FusedStep::gradients`] of a training micro-batch, added to the `.grad()` of the
    /// variables of `vs` as the backward computes them (one in-place addition per gradient);
    /// `ready` is told as each part of the model's gradients is final ([`grads::Unit`]).
    #[allow(clippy::too_many_arguments)]
    pub fn accumulate(
        &self,
        vs: &VarStore,
        ids: &Tensor,
        attention_mask: &Tensor,
        padded: bool,
        targets: &Tensor,
        scale: f64,
        ready: Option<&mut dyn grads::GradReady>,
    ) -> (Tensor, Tensor) {
        let targets_of_grads = tch::no_grad(|| {
            vs.variables()
                .into_iter()
                .map(|(name, var)| {
                    let mut acc = var.grad();
                    if !acc.defined() {
                        // Make the variable own a gradient tensor (the optimizer always has).
                        tch::with_grad(|| var.sum(Kind::Float).backward());
                        acc = var.grad();
                        let _ = acc.zero_();
                    }
                    (name, acc)
                })
                .collect()
        });
        let mut sink = grads::Sink::Into(targets_of_grads, Default::default());
        let out = self.run(
            ids,
            attention_mask,
            padded,
            targets,
            true,
            scale,
            &mut sink,
            ready,
        );
        sink.check_complete();
        out
    }

    /// Whether the compute-kind key, query and value weights of every layer are read as one
    /// `[3H, H]` view of adjacent weights (no copy per update).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn kqv_are_views(&self) -> bool {
        self.weights.kqv_are_views()
    }
}

/// Whether a batch's attention mask (`mask`, rows of `len`, 1 = real) has a row that mixes real
/// tokens and padding, so that attention needs a key mask: computed on the host from the
/// collated batch, so the step never waits for the device to find out.
pub fn key_padding(mask: &[i64], len: usize) -> bool {
    len > 0
        && mask
            .chunks(len)
            .any(|row| row.contains(&0) && row.iter().any(|&m| m != 0))
}

/// [`key_padding`] of a mask tensor `[B, S]` (copies it to the host: the tests and checks).
#[cfg_attr(not(test), allow(dead_code))]
pub fn key_padding_of(mask: &Tensor) -> bool {
    let (_, s) = mask.size2().expect("the attention mask is [B, S]");
    let host =
        Vec::<i64>::try_from(mask.to_kind(Kind::Int64).reshape([-1])).expect("an int64 mask");
    key_padding(&host, s as usize)
}

#[cfg(test)]
mod tests;
