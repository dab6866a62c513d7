//! The BERT/ELECTRA encoder in tch, one struct per Hugging Face submodule so that the variable
//! names are transformers' attribute paths, with Hugging Face checkpoint I/O.
mod activation;
pub mod admin;
mod architecture;
mod attention;
mod config;
mod dense;
mod discriminator;
mod embeddings;
mod encoder;
mod init;
mod layer;
mod masked_lm;
mod mlm_head;
pub mod positions;
mod pretrained;
mod rtd_head;
mod weights;

pub use activation::Activation;
pub use architecture::Architecture;
pub use config::{ModelConfig, NATIVE_MODEL_TYPE};
pub use dense::Dense;
pub use discriminator::Discriminator;
pub use embeddings::Embeddings;
pub use encoder::Encoder;
pub use masked_lm::MaskedLm;
pub use mlm_head::MlmHead;
pub use pretrained::{
    init_discriminator, init_masked_lm, load_discriminator, load_masked_lm, load_masked_lm_with,
    save_pretrained, Pretrained,
};
pub use rtd_head::RtdHead;
pub use weights::{
    checkpoint_fingerprint, load_weights_as, weight_files, weights_bytes, CheckpointError,
    CONFIG_FILE, PICKLE_FILE, WEIGHTS_FILE,
};
