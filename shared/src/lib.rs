//! Code shared by `preprocess` and `trainer`, grouped by concern along the data flow:
//! - [`format`]: the shard formats of `data-spec/` (schema constants, manifests, reading,
//!   writing and validating token and epoch shards);
//! - [`files`]: atomic writes and SHA-256 fingerprints;
//! - [`corruption`]: the counter-based RNG, masking, temperature schedules, the exact tempered
//!   sampler, the frozen auxiliary model and batch building (used by `preprocess --epoch` and
//!   by the trainer's online objectives);
//! - [`model`]: the BERT/ELECTRA encoder with Hugging Face checkpoint I/O;
//! - [`runtime`]: device selection and mixed precision, progress lines, stage clocks;
//! - [`tokenizer`]: loading a Hugging Face `tokenizer.json`;
//! - [`cost`]: the FLOP and memory cost model.
pub mod corruption;
pub mod cost;
pub mod cuda;
pub mod files;
pub mod format;
pub mod model;
pub mod runtime;
pub mod tokenizer;
