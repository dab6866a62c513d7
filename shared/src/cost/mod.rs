//! The cost model of `trainer cost` and of the MFU figure in the trainer's metrics: training
//! FLOPs per sequence per update and memory, for the main model (discriminator) and for the
//! auxiliary masked LM, either trained jointly (original ELECTRA) or frozen (Fast-ELECTRA).
//!
//! FLOPs follow Hoffmann et al. (2022), appendix F, per sequence of `seq_len` tokens:
//! - embedding lookup counted as a matmul: `2 * S * V * E` (plus `2 * S * E * H` for the
//!   projection when the embedding size `E` differs from the hidden size `H`);
//! - per layer: Q, K, V projections `2 * 3 * S * H * H`, logits `2 * S * S * H`, softmax
//!   `3 * heads * S * S`, softmax @ values `2 * S * S * H`, output projection `2 * S * H * H`,
//!   feed-forward `2 * S * (H * F + F * H)`;
//! - heads: the discriminator's RTD head `2 * S * (H * H + H)`; the masked LM's head only at the
//!   `M = round(mask_rate * S)` masked positions: `2 * M * (H * E + E * V)`;
//! - backward = 2 x forward, so training is 3 x forward and inference 1 x forward.
//!
//! In the jointly trained case the auxiliary model shares the main model's embedding, so its
//! embedding (FLOPs and parameters) is counted once, in the main model.
//!
//! Memory: 20 bytes per trainable parameter (bf16 weight and gradient copies + fp32 master
//! weight, Adam's two moments: 2 + 2 + 4 + 4 + 4 + 4 = 20, as in mixed-precision training),
//! 2 bytes per inference-only parameter (bf16), plus, for a trained model, activations counted
//! as one bf16 hidden state per layer per token of the whole batch (`2 * B * S * H * layers`),
//! as with activation checkpointing. An inference-only model (the frozen auxiliary model) keeps
//! no layer outputs for a backward pass, so it is charged no activation memory (its working set
//! of one layer at a time is small against the trained models' and is left out). Biases and
//! LayerNorm parameters are counted as parameters.
//!
//! [`paper`] holds the accounting of the Fast-ELECTRA paper's Table 1, which differs from this
//! one in what it counts (see there); `trainer cost --accounting paper` prints it.
pub mod paper;

/// The shape of an encoder, as far as the cost model needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderShape {
    /// Hidden size H.
    pub hidden: u64,
    /// Number of transformer layers.
    pub layers: u64,
    /// Number of attention heads.
    pub heads: u64,
    /// Feed-forward (intermediate) size F.
    pub intermediate: u64,
    /// Embedding size E (ELECTRA-small uses 128 with a projection to H); equal to H otherwise.
    pub embedding: u64,
    /// Vocabulary size V.
    pub vocab: u64,
    /// Number of position embeddings.
    pub max_positions: u64,
    /// Number of token-type embeddings.
    pub type_vocab: u64,
}

impl EncoderShape {
    /// The ELECTRA presets: `small`, `base`, `large` (Clark et al. 2020, table 6) and `tiny`
    /// (2 layers of 64, for tests; as `shared::model::ModelConfig::preset`), with the given
    /// vocabulary and 512 positions.
    pub fn preset(name: &str, vocab: u64) -> Option<Self> {
        let (hidden, layers, heads, intermediate, embedding) = match name {
            "tiny" => (64, 2, 2, 128, 64),
            "small" => (256, 12, 4, 1024, 128),
            "base" => (768, 12, 12, 3072, 768),
            "large" => (1024, 24, 16, 4096, 1024),
            _ => return None,
        };
        Some(Self {
            hidden,
            layers,
            heads,
            intermediate,
            embedding,
            vocab,
            max_positions: 512,
            type_vocab: 2,
        })
    }

    /// The same encoder with `layers` layers (e.g. a shallow auxiliary model).
    pub fn with_layers(self, layers: u64) -> Self {
        Self { layers, ..self }
    }

    /// Parameters of the embeddings (word, position, token type, LayerNorm, projection).
    pub fn embedding_params(&self) -> u64 {
        let e = self.embedding;
        let mut n = (self.vocab + self.max_positions + self.type_vocab) * e + 2 * e;
        if e != self.hidden {
            n += e * self.hidden + self.hidden;
        }
        n
    }

    /// Parameters of one transformer layer.
    pub fn layer_params(&self) -> u64 {
        let (h, f) = (self.hidden, self.intermediate);
        4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
    }

    /// Parameters of the discriminator's RTD head (dense H->H, dense H->1).
    pub fn rtd_head_params(&self) -> u64 {
        let h = self.hidden;
        h * h + h + h + 1
    }

    /// Parameters of the masked-LM head (dense H->E, LayerNorm(E), output bias V; the output
    /// weight is tied to the word embedding).
    pub fn mlm_head_params(&self) -> u64 {
        let (h, e) = (self.hidden, self.embedding);
        h * e + e + 2 * e + self.vocab
    }

    /// Forward FLOPs of the embedding lookup (as a matmul) and projection for `s` tokens.
    pub fn embedding_flops(&self, s: u64) -> u64 {
        let mut f = 2 * s * self.vocab * self.embedding;
        if self.embedding != self.hidden {
            f += 2 * s * self.embedding * self.hidden;
        }
        f
    }

    /// Forward FLOPs of one layer on a sequence of `s` tokens.
    pub fn layer_flops(&self, s: u64) -> u64 {
        let (h, f) = (self.hidden, self.intermediate);
        let qkv = 2 * 3 * s * h * h;
        let logits = 2 * s * s * h;
        let softmax = 3 * self.heads * s * s;
        let reduce = 2 * s * s * h;
        let out = 2 * s * h * h;
        let ffn = 2 * s * (h * f + f * h);
        qkv + logits + softmax + reduce + out + ffn
    }

    /// Forward FLOPs of the RTD head on `s` tokens.
    pub fn rtd_head_flops(&self, s: u64) -> u64 {
        2 * s * (self.hidden * self.hidden + self.hidden)
    }

    /// Forward FLOPs of the masked-LM head at `m` masked positions.
    pub fn mlm_head_flops(&self, m: u64) -> u64 {
        2 * m * (self.hidden * self.embedding + self.embedding * self.vocab)
    }
}

/// FLOPs and memory of one model in one role.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCost {
    /// Parameters counted for this model (the joint auxiliary model excludes the shared embedding).
    pub params: u64,
    /// Forward FLOPs per sequence.
    pub forward_flops: u64,
    /// FLOPs per sequence per update: 3 x forward when trained, 1 x forward when frozen.
    pub flops_per_sequence: u64,
    /// Bytes of parameters (20 per trainable, 2 per inference-only parameter).
    pub param_bytes: u64,
    /// Bytes of activations for the whole batch (one bf16 hidden state per layer per token).
    pub activation_bytes: u64,
}

impl ModelCost {
    /// Parameter plus activation bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.param_bytes + self.activation_bytes
    }
}

/// Bytes per trainable parameter in mixed precision (weights, gradient, Adam state).
pub const TRAINABLE_BYTES_PER_PARAM: u64 = 20;
/// Bytes per inference-only parameter (bf16).
pub const FROZEN_BYTES_PER_PARAM: u64 = 2;

/// The table of `trainer cost`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostReport {
    /// The discriminator, trained.
    pub main: ModelCost,
    /// The auxiliary masked LM trained jointly with the main model (original ELECTRA).
    pub aux_joint: ModelCost,
    /// The frozen auxiliary masked LM (Fast-ELECTRA; run offline, once per epoch).
    pub aux_frozen: ModelCost,
}

/// Number of masked positions per sequence: `round(mask_rate * seq_len)`.
pub fn masked_positions(seq_len: u64, mask_rate: f64) -> u64 {
    (mask_rate * seq_len as f64).round() as u64
}

/// Forward FLOPs per sequence of the discriminator.
pub fn discriminator_forward_flops(main: &EncoderShape, seq_len: u64) -> u64 {
    main.embedding_flops(seq_len)
        + main.layers * main.layer_flops(seq_len)
        + main.rtd_head_flops(seq_len)
}

/// Forward FLOPs per sequence of a masked LM (logits at `mask_rate * seq_len` positions);
/// `with_embedding` false leaves out the embedding (shared with the main model).
pub fn masked_lm_forward_flops(
    aux: &EncoderShape,
    seq_len: u64,
    mask_rate: f64,
    with_embedding: bool,
) -> u64 {
    let emb = if with_embedding {
        aux.embedding_flops(seq_len)
    } else {
        0
    };
    emb + aux.layers * aux.layer_flops(seq_len)
        + aux.mlm_head_flops(masked_positions(seq_len, mask_rate))
}

/// Training FLOPs per sequence per update of the discriminator (3 x forward): the MFU figure.
pub fn discriminator_train_flops(main: &EncoderShape, seq_len: u64) -> u64 {
    3 * discriminator_forward_flops(main, seq_len)
}

/// Training FLOPs per sequence per update of a masked LM trained alone (`trainer --objective
/// mlm`; 3 x forward, own embedding).
pub fn masked_lm_train_flops(aux: &EncoderShape, seq_len: u64, mask_rate: f64) -> u64 {
    3 * masked_lm_forward_flops(aux, seq_len, mask_rate, true)
}

pub(crate) fn activation_bytes(shape: &EncoderShape, batch: u64, seq_len: u64) -> u64 {
    2 * batch * seq_len * shape.hidden * shape.layers
}

/// The cost table for a main model, an auxiliary model, a sequence length, a batch size and a
/// mask rate.
pub fn cost_report(
    main: &EncoderShape,
    aux: &EncoderShape,
    seq_len: u64,
    batch: u64,
    mask_rate: f64,
) -> CostReport {
    let main_params =
        main.embedding_params() + main.layers * main.layer_params() + main.rtd_head_params();
    let main_fwd = discriminator_forward_flops(main, seq_len);
    let main_cost = ModelCost {
        params: main_params,
        forward_flops: main_fwd,
        flops_per_sequence: 3 * main_fwd,
        param_bytes: TRAINABLE_BYTES_PER_PARAM * main_params,
        activation_bytes: activation_bytes(main, batch, seq_len),
    };
    let aux_body = aux.layers * aux.layer_params() + aux.mlm_head_params();
    let joint_fwd = masked_lm_forward_flops(aux, seq_len, mask_rate, false);
    let aux_joint = ModelCost {
        params: aux_body,
        forward_flops: joint_fwd,
        flops_per_sequence: 3 * joint_fwd,
        param_bytes: TRAINABLE_BYTES_PER_PARAM * aux_body,
        activation_bytes: activation_bytes(aux, batch, seq_len),
    };
    let frozen_params = aux.embedding_params() + aux_body;
    let frozen_fwd = masked_lm_forward_flops(aux, seq_len, mask_rate, true);
    let aux_frozen = ModelCost {
        params: frozen_params,
        forward_flops: frozen_fwd,
        flops_per_sequence: frozen_fwd,
        param_bytes: FROZEN_BYTES_PER_PARAM * frozen_params,
        // Inference keeps no layer outputs for a backward pass.
        activation_bytes: 0,
    };
    CostReport {
        main: main_cost,
        aux_joint,
        aux_frozen,
    }
}

/// Peak dense bf16 FLOP/s of a device, used for MFU: an H100 SXM 989.4e12, an H200 989.4e12
/// (same tensor cores), an A100 312e12 (NVIDIA data sheets, without sparsity). `None` for
/// devices not in the table (and for the CPU), so MFU is reported as null there.
pub fn peak_flops(device_name: &str) -> Option<f64> {
    let n = device_name.to_ascii_lowercase();
    if n.contains("h100") || n.contains("h200") {
        Some(989.4e12)
    } else if n.contains("a100") {
        Some(312e12)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy shape small enough to compute by hand.
    fn toy() -> EncoderShape {
        EncoderShape {
            hidden: 4,
            layers: 2,
            heads: 2,
            intermediate: 8,
            embedding: 4,
            vocab: 10,
            max_positions: 6,
            type_vocab: 2,
        }
    }

    #[test]
    fn toy_flops_by_hand() {
        let t = toy();
        // S = 3: embedding 2*3*10*4 = 240.
        assert_eq!(t.embedding_flops(3), 240);
        // layer: qkv 2*3*3*16 = 288, logits 2*9*4 = 72, softmax 3*2*9 = 54, reduce 72,
        // out 2*3*16 = 96, ffn 2*3*(32+32) = 384 -> 966.
        assert_eq!(t.layer_flops(3), 966);
        // RTD head 2*3*(16+4) = 120.
        assert_eq!(t.rtd_head_flops(3), 120);
        assert_eq!(discriminator_forward_flops(&t, 3), 240 + 2 * 966 + 120);
        assert_eq!(discriminator_train_flops(&t, 3), 3 * 2292);
        // mask rate 1/3 of 3 -> 1 position: 2*1*(16 + 40) = 112.
        assert_eq!(masked_positions(3, 1.0 / 3.0), 1);
        assert_eq!(t.mlm_head_flops(1), 112);
    }

    #[test]
    fn toy_params_and_memory_by_hand() {
        let t = toy();
        // embeddings (10+6+2)*4 + 8 = 80; layer 4*20 + 8 + 40 + 36 + 8 = 172; head 16+4+4+1 = 25.
        assert_eq!(t.embedding_params(), 80);
        assert_eq!(t.layer_params(), 172);
        assert_eq!(t.rtd_head_params(), 25);
        // mlm head 16 + 4 + 8 + 10 = 38.
        assert_eq!(t.mlm_head_params(), 38);
        let aux = t.with_layers(1);
        let r = cost_report(&t, &aux, 3, 5, 1.0 / 3.0);
        assert_eq!(r.main.params, 80 + 2 * 172 + 25);
        assert_eq!(r.main.param_bytes, 20 * 449);
        // activations 2 bytes * 5 * 3 * 4 * 2 layers = 240.
        assert_eq!(r.main.activation_bytes, 240);
        // joint aux: 1 layer + head, no embedding; 3 x (966 + 112).
        assert_eq!(r.aux_joint.params, 172 + 38);
        assert_eq!(r.aux_joint.flops_per_sequence, 3 * (966 + 112));
        // frozen aux: with embedding, forward only, 2 bytes per parameter.
        assert_eq!(r.aux_frozen.params, 80 + 172 + 38);
        assert_eq!(r.aux_frozen.flops_per_sequence, 240 + 966 + 112);
        assert_eq!(r.aux_frozen.param_bytes, 2 * 290);
        assert_eq!(r.aux_frozen.activation_bytes, 0);
    }

    #[test]
    fn parameter_counts_match_transformers() {
        // Counted by transformers 5.17's ElectraForPreTraining / ElectraForMaskedLM.
        let b = EncoderShape::preset("base", 30522).unwrap();
        let n = b.embedding_params() + 12 * b.layer_params() + b.rtd_head_params();
        assert_eq!(n, 109_483_009);
        let s = EncoderShape::preset("small", 30522).unwrap();
        let n = s.embedding_params() + 12 * s.layer_params() + s.rtd_head_params();
        assert_eq!(n, 13_549_057);
        let n = s.embedding_params() + 12 * s.layer_params() + s.mlm_head_params();
        assert_eq!(n, 13_546_682);
    }
}
