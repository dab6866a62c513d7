//! The `hidden_act` values of transformers that map onto libtorch operations.
use anyhow::bail;
use tch::Tensor;

/// An activation function named as in transformers' `ACT2FN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`, `gelu_python`: exact erf GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: tanh approximation.
    GeluTanh,
    Relu,
    /// `silu`, `swish`.
    Silu,
    Tanh,
}

impl Activation {
    /// Maps a transformers activation name.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "gelu" | "gelu_python" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            other => bail!(
                "unsupported activation {other:?}: expected gelu, gelu_python, gelu_new, \
                 gelu_pytorch_tanh, gelu_fast, relu, silu, swish or tanh"
            ),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => x.gelu("none"),
            Activation::GeluTanh => x.gelu("tanh"),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
        }
    }
}
