//! The fine-tuned model: a pre-trained encoder with transformers' `ElectraClassificationHead`
//! on the first token ([CLS]): dropout, `dense` (H -> H), GELU, dropout, `out_proj` (H -> N;
//! N = 1 for regression). The variables carry `ElectraForSequenceClassification`'s names
//! (`electra.*`, `classifier.dense.*`, `classifier.out_proj.*`), so the export is that class.
//!
//! The encoder comes from a Hugging Face folder of any class whose encoder we hold (ELECTRA or
//! BERT, with or without the `electra.`/`bert.` prefix: `ElectraForPreTraining`,
//! `ElectraForMaskedLM`, `ElectraModel`, `BertModel`, `BertForMaskedLM`, ...), from a
//! pre-training checkpoint of this trainer, or freshly initialised (`--init random`, the
//! control of every comparison).
use anyhow::{bail, Context};
use shared::model::{Activation, Architecture, Dense, Encoder, ModelConfig};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use shared::model::load_weights_as;

/// The prefix of the encoder's variables (ELECTRA's attribute name).
const ENCODER: &str = "electra";

/// The classification head: transformers' `ElectraClassificationHead`.
struct Head {
    dense: Dense,
    out_proj: Dense,
    activation: Activation,
    dropout: f64,
}

/// What a fine-tuned model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// N-way classification (cross-entropy over N logits).
    Classes(usize),
    /// One value (mean squared error).
    Regression,
}

impl Output {
    /// Logits per example.
    pub fn width(self) -> i64 {
        match self {
            Output::Classes(n) => n as i64,
            Output::Regression => 1,
        }
    }
}

/// The encoder and the head, in one `VarStore` named as `ElectraForSequenceClassification`.
pub struct Classifier {
    pub vs: VarStore,
    /// The encoder's config (dropout as fine-tuning asks).
    pub config: ModelConfig,
    pub output: Output,
    encoder: Encoder,
    head: Head,
}

/// Where a pre-trained encoder's weights are.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// A Hugging Face model folder (`config.json` + safetensors).
    HuggingFace(PathBuf),
    /// A checkpoint of this trainer (`RUN/checkpoints/step-N/model.safetensors`), whose
    /// variables sit under `prefix` (`discriminator.` for a joint ELECTRA run, else empty).
    Checkpoint { file: PathBuf, prefix: String },
    /// None: initialised from scratch (`--init random` or a size preset).
    Random,
}

impl Classifier {
    /// Builds the model for `config` on `device` (seed torch first: the head is random), and
    /// loads the encoder from `weights`.
    pub fn new(
        config: &ModelConfig,
        output: Output,
        weights: &Weights,
        device: Device,
    ) -> anyhow::Result<Self> {
        let vs = VarStore::new(device);
        let encoder = Encoder::new(&vs.root(), config, Architecture::ElectraForPreTraining)?;
        match weights {
            Weights::Random => {
                shared::model::admin::initialize(&encoder, config.vocab_size, device)
            }
            Weights::HuggingFace(dir) => {
                let files = shared::model::weight_files(dir)?;
                load_weights_as(&vs, &files, &|name| encoder_name(name, ""))
                    .with_context(|| format!("loading the encoder of {}", dir.display()))?;
            }
            Weights::Checkpoint { file, prefix } => {
                load_weights_as(&vs, std::slice::from_ref(file), &|name| {
                    encoder_name(name, prefix)
                })
                .with_context(|| format!("loading the encoder of {}", file.display()))?;
            }
        }
        // The head is added after loading, so that the loader only looks for the encoder.
        let p = vs.root() / "classifier";
        let h = config.hidden_size;
        let range = config.initializer_range;
        let head = Head {
            dense: Dense::new(&p / "dense", h, h, range),
            out_proj: Dense::new(&p / "out_proj", h, output.width(), range),
            activation: Activation::parse("gelu")?,
            dropout: classifier_dropout(config),
        };
        Ok(Self {
            vs,
            config: config.clone(),
            output,
            encoder,
            head,
        })
    }

    /// Logits `[B, N]` (fp32) of `input_ids` `[B, S]` with `token_type_ids` and
    /// `attention_mask` `[B, S]`; dropout when `train`.
    pub fn forward_t(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Tensor {
        let hidden =
            self.encoder
                .forward_typed(input_ids, Some(token_type_ids), attention_mask, train);
        let first = hidden.select(1, 0);
        let x = first.dropout(self.head.dropout, train);
        let x = self.head.activation.forward(&self.head.dense.forward(&x));
        let x = x.dropout(self.head.dropout, train);
        self.head.out_proj.forward(&x).to_kind(Kind::Float)
    }
}

/// The head's dropout: `classifier_dropout` of the config when set, else the hidden dropout
/// (transformers' rule).
fn classifier_dropout(config: &ModelConfig) -> f64 {
    config
        .extra
        .get("classifier_dropout")
        .and_then(|v| v.as_f64())
        .unwrap_or(config.hidden_dropout_prob)
}

/// The variable a file's tensor `name` loads into, for an encoder saved by any class whose
/// encoder we hold: `PREFIX electra.X` or `PREFIX bert.X` (a model with a head) or a bare
/// `embeddings.X` / `encoder.X` (`ElectraModel`, `BertModel`) is `electra.X`; anything else
/// (heads, a pooler) is not loaded.
fn encoder_name(name: &str, prefix: &str) -> Option<String> {
    let rest = name.strip_prefix(prefix)?;
    let inner = rest
        .strip_prefix("electra.")
        .or_else(|| rest.strip_prefix("bert."))
        .or_else(|| {
            (prefix.is_empty()
                && ["embeddings.", "embeddings_project.", "encoder."]
                    .iter()
                    .any(|p| rest.starts_with(p)))
            .then_some(rest)
        })?;
    Some(format!("{ENCODER}.{inner}"))
}

/// Writes the model as a Hugging Face `ElectraForSequenceClassification` folder: `config.json`
/// (the encoder's config with `num_labels`, `id2label`, `label2id` and `problem_type`) and
/// `model.safetensors`, atomically, config last. A model transformers' classes cannot hold
/// (T5 relative positions, Admin) is written in this project's `fast_electra` format
/// (docs/model-format.md), with the same names.
pub fn save(model: &Classifier, labels: &[String], dir: &Path) -> anyhow::Result<()> {
    let mut cfg = model.config.clone();
    cfg.embedding_size = Some(cfg.effective_embedding_size());
    cfg.model_type = match cfg.hugging_face_incompatibility() {
        Some(_) => shared::model::NATIVE_MODEL_TYPE.to_string(),
        None => "electra".to_string(),
    };
    cfg.architectures = Some(vec!["ElectraForSequenceClassification".to_string()]);
    let names: Vec<String> = match model.output {
        Output::Classes(n) if labels.len() == n => labels.to_vec(),
        Output::Classes(n) => bail!(
            "saving into {}: {} label names for {n} classes",
            dir.display(),
            labels.len()
        ),
        Output::Regression => vec!["LABEL_0".to_string()],
    };
    let id2label: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone().into()))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i.into()))
        .collect();
    cfg.extra.insert("num_labels".into(), names.len().into());
    cfg.extra.insert("id2label".into(), id2label.into());
    cfg.extra.insert("label2id".into(), label2id.into());
    let problem = match model.output {
        Output::Classes(_) => "single_label_classification",
        Output::Regression => "regression",
    };
    cfg.extra.insert("problem_type".into(), problem.into());
    cfg.validate()
        .with_context(|| format!("saving the model config into {}", dir.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = shared::model::weights_bytes(&model.vs)
        .with_context(|| format!("saving into {}", dir.display()))?;
    shared::files::atomic::write_atomic(&dir.join(shared::model::WEIGHTS_FILE), &bytes)?;
    shared::files::atomic::write_json_atomic(&dir.join(shared::model::CONFIG_FILE), &cfg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_names_of_every_class() {
        for (file, prefix, want) in [
            (
                "electra.encoder.layer.0.output.dense.weight",
                "",
                Some("electra.encoder.layer.0.output.dense.weight"),
            ),
            (
                "bert.embeddings.word_embeddings.weight",
                "",
                Some("electra.embeddings.word_embeddings.weight"),
            ),
            (
                "embeddings.LayerNorm.weight",
                "",
                Some("electra.embeddings.LayerNorm.weight"),
            ),
            (
                "encoder.layer.1.attention.self.query.bias",
                "",
                Some("electra.encoder.layer.1.attention.self.query.bias"),
            ),
            ("discriminator_predictions.dense.weight", "", None),
            ("generator_lm_head.weight", "", None),
            (
                "bert.pooler.dense.weight",
                "",
                Some("electra.pooler.dense.weight"),
            ),
            (
                "discriminator.electra.embeddings.word_embeddings.weight",
                "discriminator.",
                Some("electra.embeddings.word_embeddings.weight"),
            ),
            (
                "generator.electra.embeddings.word_embeddings.weight",
                "discriminator.",
                None,
            ),
            ("embeddings.LayerNorm.weight", "discriminator.", None),
        ] {
            assert_eq!(encoder_name(file, prefix).as_deref(), want, "{file}");
        }
    }
}
