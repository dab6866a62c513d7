//! Weight initialisation for training from scratch, as transformers' `_init_weights` for
//! BERT/ELECTRA: Linear and Embedding weights ~ Normal(0, initializer_range), biases zero,
//! LayerNorm weight one and bias zero, the padding token's embedding row zero.
use tch::nn::Init;

/// Normal(0, `range`) for Linear and Embedding weights.
pub fn normal(range: f64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: range,
    }
}

/// Zeros, for biases and LayerNorm biases.
pub const ZEROS: Init = Init::Const(0.0);

/// Ones, for LayerNorm weights.
pub const ONES: Init = Init::Const(1.0);
