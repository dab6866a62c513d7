//! The frozen auxiliary masked LM: inspecting its folder before any work, loading it, and
//! turning one host batch into sampled replacement tokens on its device.
use std::path::Path;

use anyhow::Context;
use shared::manifest::AuxModelInfo;
use shared::model::{checkpoint_fingerprint, load_masked_lm, MaskedLm, ModelConfig, Pretrained};
use shared::sampling::{sample_tempered, Sampled};
use tch::{Device, Tensor};

use super::batch::Inputs;

/// What the folder says about the model, read without loading the weights.
#[derive(Debug, Clone)]
pub struct AuxSummary {
    pub info: AuxModelInfo,
    pub max_position_embeddings: i64,
}

/// Reads `dir/config.json` and fingerprints the folder (config + weights).
pub fn inspect(dir: &Path) -> anyhow::Result<AuxSummary> {
    let config_path = dir.join("config.json");
    let config = ModelConfig::from_file(&config_path)
        .with_context(|| format!("--aux-model {}", dir.display()))?;
    let architecture = config
        .architectures
        .as_ref()
        .and_then(|a| a.first().cloned())
        .unwrap_or_else(|| match config.model_type.as_str() {
            "bert" => "BertForMaskedLM".to_string(),
            _ => "ElectraForMaskedLM".to_string(),
        });
    let sha256 =
        checkpoint_fingerprint(dir).with_context(|| format!("--aux-model {}", dir.display()))?;
    Ok(AuxSummary {
        info: AuxModelInfo {
            path: dir.display().to_string(),
            sha256,
            architecture,
            num_layers: config.num_hidden_layers as u32,
            vocab_size: config.vocab_size as u32,
        },
        max_position_embeddings: config.max_position_embeddings,
    })
}

/// A loaded auxiliary model, inference only.
pub struct AuxModel {
    lm: Pretrained<MaskedLm>,
    device: Device,
}

impl AuxModel {
    /// Loads the folder's weights onto `device` (fp32 weights; bf16 compute on CUDA).
    pub fn load(dir: &Path, device: Device) -> anyhow::Result<Self> {
        let lm = load_masked_lm(dir, device)
            .with_context(|| format!("loading the auxiliary model {}", dir.display()))?;
        Ok(Self::new(lm, device))
    }

    /// Wraps an already built model (the benchmark's randomly initialised one).
    pub fn new(mut lm: Pretrained<MaskedLm>, device: Device) -> Self {
        lm.vs.freeze();
        Self { lm, device }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.lm.config
    }

    /// Runs the model on one batch and samples a token at every masked position from
    /// softmax(logits / temperature). Only the `[N]` results come back to the host.
    pub fn corrupt(&self, inputs: &Inputs, temperature: f64) -> anyhow::Result<Sampled> {
        if inputs.positions.is_empty() {
            return Ok(Sampled::default());
        }
        let shape = [inputs.rows as i64, inputs.width as i64];
        tch::no_grad(|| {
            let ids = Tensor::from_slice(&inputs.input_ids)
                .view(shape)
                .to_device(self.device);
            let mask = Tensor::from_slice(&inputs.attention_mask)
                .view(shape)
                .to_device(self.device);
            let positions = Tensor::from_slice(&inputs.positions).to_device(self.device);
            let logits = shared::device::with_autocast(self.device, || {
                self.lm.model.logits_at(&ids, &mask, &positions, false)
            });
            sample_tempered(&logits, temperature, &inputs.uniforms)
        })
    }
}
