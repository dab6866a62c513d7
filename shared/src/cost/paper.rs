//! The accounting of Table 1 of the Fast-ELECTRA paper (Dong et al., 2023): training FLOPs per
//! sequence and memory of the main model, of the auxiliary model trained jointly (ELECTRA) and
//! of the frozen auxiliary model (Fast-ELECTRA), at vocabulary 128,000, sequence length 512 and
//! batch 2,048. It differs from this crate's default accounting ([`super::cost_report`]) in
//! what it counts:
//! - the main model: the embedding lookup counted as a matmul (`2 S V E`) and the layers'
//!   matrix products (Q, K, V, attention logits, attention-weighted values, output projection,
//!   feed-forward), but neither the softmax nor the RTD head;
//! - the auxiliary model: its layers' matrix products and the vocabulary projection at every
//!   position (`2 S E V`), no embedding lookup and no masked-LM head transform; the default
//!   accounting projects only at the masked positions, as `preprocess` does;
//! - training is 3 x forward, inference 1 x forward (as the default);
//! - memory: 20 bytes per trainable and 2 per inference-only parameter, and one bf16 hidden
//!   state per layer per token of the batch for a trained model; the frozen model has no
//!   activation memory (as the default); reported in decimal gigabytes (10^9 bytes);
//! - the models are the paper's: T5 relative position bias instead of absolute position
//!   embeddings, so no position (nor token-type) embedding parameters are counted; the bias
//!   tables (buckets x heads) are too small to show.
//!
//! With these rules every figure of the paper's Table 1 is reproduced to the digit it prints
//! (tested below and by `trainer cost --accounting paper`).
use super::{
    activation_bytes, EncoderShape, ModelCost, FROZEN_BYTES_PER_PARAM, TRAINABLE_BYTES_PER_PARAM,
};

/// Forward FLOPs of one layer's matrix products on `s` tokens (no softmax).
pub fn layer_matmul_flops(shape: &EncoderShape, s: u64) -> u64 {
    let (h, f) = (shape.hidden, shape.intermediate);
    2 * 3 * s * h * h + 2 * s * s * h + 2 * s * s * h + 2 * s * h * h + 2 * s * (h * f + f * h)
}

/// Forward FLOPs per sequence of the main model in the paper's accounting.
pub fn main_forward_flops(main: &EncoderShape, s: u64) -> u64 {
    main.embedding_flops(s) + main.layers * layer_matmul_flops(main, s)
}

/// Forward FLOPs per sequence of the auxiliary model in the paper's accounting.
pub fn aux_forward_flops(aux: &EncoderShape, s: u64) -> u64 {
    aux.layers * layer_matmul_flops(aux, s) + 2 * s * aux.embedding * aux.vocab
}

/// The paper's three columns: (main trained, auxiliary trained jointly, auxiliary frozen).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperTable {
    pub main: ModelCost,
    pub aux_joint: ModelCost,
    pub aux_frozen: ModelCost,
}

/// Table 1 for a main model, an auxiliary model (same width), sequence length `s` and batch.
/// Position and token-type embeddings of the shapes are ignored (the paper's models use
/// relative positions).
pub fn table(main: &EncoderShape, aux: &EncoderShape, s: u64, batch: u64) -> PaperTable {
    let relative = |e: &EncoderShape| EncoderShape {
        max_positions: 0,
        type_vocab: 0,
        ..*e
    };
    let (main, aux) = (&relative(main), &relative(aux));
    let main_params =
        main.embedding_params() + main.layers * main.layer_params() + main.rtd_head_params();
    let main_fwd = main_forward_flops(main, s);
    let aux_body = aux.layers * aux.layer_params() + aux.mlm_head_params();
    let aux_fwd = aux_forward_flops(aux, s);
    let frozen_params = aux.embedding_params() + aux_body;
    PaperTable {
        main: ModelCost {
            params: main_params,
            forward_flops: main_fwd,
            flops_per_sequence: 3 * main_fwd,
            param_bytes: TRAINABLE_BYTES_PER_PARAM * main_params,
            activation_bytes: activation_bytes(main, batch, s),
        },
        aux_joint: ModelCost {
            params: aux_body,
            forward_flops: aux_fwd,
            flops_per_sequence: 3 * aux_fwd,
            param_bytes: TRAINABLE_BYTES_PER_PARAM * aux_body,
            activation_bytes: activation_bytes(aux, batch, s),
        },
        aux_frozen: ModelCost {
            params: frozen_params,
            forward_flops: aux_fwd,
            flops_per_sequence: aux_fwd,
            param_bytes: FROZEN_BYTES_PER_PARAM * frozen_params,
            activation_bytes: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (GFLOPs per sequence, GB) of the three columns, rounded as the paper prints them.
    fn printed(t: &PaperTable) -> ([String; 3], [String; 3]) {
        let g = |c: &ModelCost| format!("{:.1}", c.flops_per_sequence as f64 / 1e9);
        let m = |c: &ModelCost, d: usize| format!("{:.*}", d, c.memory_bytes() as f64 / 1e9);
        (
            [g(&t.main), g(&t.aux_joint), g(&t.aux_frozen)],
            [m(&t.main, 1), m(&t.aux_joint, 1), m(&t.aux_frozen, 2)],
        )
    }

    #[test]
    fn reproduces_table_1_base() {
        let main = EncoderShape::preset("base", 128_000).unwrap();
        let t = table(&main, &main.with_layers(4), 512, 2048);
        let (flops, mem) = printed(&t);
        assert_eq!(flops, ["591.9", "398.6", "132.9"]);
        assert_eq!(mem, ["23.0", "7.0", "0.25"]);
    }

    #[test]
    fn reproduces_table_1_large() {
        let main = EncoderShape::preset("large", 128_000).unwrap();
        let t = table(&main, &main.with_layers(6), 512, 2048);
        let (flops, mem) = printed(&t);
        assert_eq!(flops, ["1407.7", "653.9", "218.0"]);
        assert_eq!(mem, ["60.2", "14.4", "0.42"]);
    }
}
