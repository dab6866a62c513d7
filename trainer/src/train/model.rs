//! The model config of a run (`--model`: a preset or a config.json, checked against the data)
//! and its cost-model shape. The models themselves belong to the objectives
//! (`crate::objectives`).
use anyhow::{bail, Context};
use shared::cost::EncoderShape;
use shared::model::ModelConfig;
use std::path::Path;

/// The model config of `--model` (a preset name or a config.json) for a vocabulary of `vocab`
/// tokens and sequences of up to `max_seq_len`.
pub fn resolve_config(model: &str, vocab: u32, max_seq_len: u32) -> anyhow::Result<ModelConfig> {
    let cfg = if ModelConfig::is_preset(model) {
        ModelConfig::preset(model, vocab as i64)?
    } else {
        let path = Path::new(model);
        let cfg = ModelConfig::from_file(path).with_context(|| {
            format!("--model {model}: expected tiny, small, base, large or a config.json")
        })?;
        if cfg.vocab_size != vocab as i64 {
            bail!(
                "{}: field vocab_size: expected {vocab} (the data's tokenizer), found {}",
                path.display(),
                cfg.vocab_size
            );
        }
        cfg
    };
    if cfg.max_position_embeddings < max_seq_len as i64 {
        bail!(
            "--model {model}: field max_position_embeddings: expected at least the data's max_seq_len {max_seq_len}, found {}",
            cfg.max_position_embeddings
        );
    }
    Ok(cfg)
}

/// The cost-model shape of a model config.
pub fn shape(cfg: &ModelConfig) -> EncoderShape {
    EncoderShape {
        hidden: cfg.hidden_size as u64,
        layers: cfg.num_hidden_layers as u64,
        heads: cfg.num_attention_heads as u64,
        intermediate: cfg.intermediate_size as u64,
        embedding: cfg.effective_embedding_size() as u64,
        vocab: cfg.vocab_size as u64,
        max_positions: cfg.max_position_embeddings as u64,
        type_vocab: cfg.type_vocab_size as u64,
    }
}
