//! `nn.Linear` and `nn.LayerNorm` with the parameter names of PyTorch (`weight`, `bias`), aware of
//! the bf16 mixed precision of [`crate::runtime::device::with_autocast`].
use super::init;
use crate::runtime::device::bf16_autocast_active;
use tch::{nn, Kind, Tensor};

/// `nn.Linear(in, out)`: `weight` [out, in], `bias` [out].
#[derive(Debug)]
pub struct Dense {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Dense {
    pub fn new(p: nn::Path, in_dim: i64, out_dim: i64, init_range: f64) -> Self {
        Dense {
            weight: p.var("weight", &[out_dim, in_dim], init::normal(init_range)),
            bias: p.var("bias", &[out_dim], init::ZEROS),
        }
    }

    /// `x @ weight^T + bias`; in bf16 under CUDA autocast (the result is then bf16).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        linear(x, &self.weight, Some(&self.bias))
    }
}

/// A linear map that runs in bf16 inside [`crate::runtime::device::with_autocast`] on CUDA.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    if bf16_autocast_active() {
        let b = bias.map(|b| b.to_kind(Kind::BFloat16));
        x.to_kind(Kind::BFloat16)
            .linear(&weight.to_kind(Kind::BFloat16), b.as_ref())
    } else {
        x.linear(weight, bias)
    }
}

/// `nn.LayerNorm(dim, eps)`: `weight` [dim], `bias` [dim]; computed in the weights' kind (fp32
/// master weights: fp32 whatever the input; a model cast to bf16 for inference: bf16 in and out,
/// with fp32 statistics inside the kernel).
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.var("weight", &[dim], init::ONES),
            bias: p.var("bias", &[dim], init::ZEROS),
            dim,
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.to_kind(self.weight.kind()).layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}
