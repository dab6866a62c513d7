//! `config.json` of a Hugging Face BERT/ELECTRA model, with its own field names, and the presets
//! of the paper's model sizes.
use super::positions::Positions;
use super::Architecture;

/// `model_type` of models in this project's own format (relative positions or Admin; see
/// [`ModelConfig::hugging_face_incompatibility`]).
pub const NATIVE_MODEL_TYPE: &str = "fast_electra";
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The model hyper-parameters, read from and written to Hugging Face's `config.json`.
/// Fields this crate does not use are kept in `extra`, so a load/save round trip keeps them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    /// ELECTRA's factorised embedding width; `None` means the transformers default
    /// (128 for `electra`, `hidden_size` for `bert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<i64>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// `electra` or `bert`.
    #[serde(default)]
    pub model_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<i64>,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Whether the MLM decoder shares the word-embedding matrix (transformers default: true).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Every other field of the file, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_max_positions() -> i64 {
    512
}
fn default_type_vocab() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_init_range() -> f64 {
    0.02
}
fn default_true() -> bool {
    true
}

/// (layers, hidden, ffn, heads, embedding) of a preset.
fn preset_dims(name: &str) -> anyhow::Result<(i64, i64, i64, i64, i64)> {
    Ok(match name {
        "tiny" => (2, 64, 128, 2, 64),
        "small" => (12, 256, 1024, 4, 128),
        "base" => (12, 768, 3072, 12, 768),
        "large" => (24, 1024, 4096, 16, 1024),
        other => bail!(
            "unknown model preset {other:?}: expected tiny, small, base or large (optionally with -rel or -rel-admin)"
        ),
    })
}

impl ModelConfig {
    /// Whether `name` is a preset name (`tiny`, `small`, `base`, `large`, each optionally with
    /// `-rel` or `-rel-admin`) rather than a path to a config.json.
    pub fn is_preset(name: &str) -> bool {
        let size = name
            .strip_suffix("-rel-admin")
            .or_else(|| name.strip_suffix("-rel"))
            .unwrap_or(name);
        matches!(size, "tiny" | "small" | "base" | "large")
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading model config {}", path.display()))?;
        let cfg: ModelConfig = serde_json::from_str(&text)
            .with_context(|| format!("parsing model config {}", path.display()))?;
        cfg.validate()
            .with_context(|| format!("model config {}", path.display()))?;
        Ok(cfg)
    }

    /// A paper-sized ELECTRA config (Table 2): `tiny` (tests: 2 layers, 64 hidden, 128 FFN,
    /// 2 heads), `small` (ELECTRA-small: 12/256/1024/4, embedding 128), `base` (12/768/3072/12),
    /// `large` (24/1024/4096/16). Maximum length 512, dropout 0.1, GELU.
    ///
    /// `NAME-rel` is the same size with the paper's main-model positions: T5 relative position
    /// bias (32 buckets, maximum distance 128; 128 and 256 for large) and no absolute position
    /// embeddings; `NAME-rel-admin` adds Admin initialisation. Both are in this project's own
    /// format (`model_type` `fast_electra`).
    pub fn preset(name: &str, vocab_size: i64) -> anyhow::Result<Self> {
        if let Some((size, admin)) = name
            .strip_suffix("-rel-admin")
            .map(|s| (s, true))
            .or_else(|| name.strip_suffix("-rel").map(|s| (s, false)))
        {
            let mut cfg = Self::preset(size, vocab_size)?;
            let (num_buckets, max_distance) = if size == "large" {
                (128, 256)
            } else {
                (32, 128)
            };
            Positions::T5Relative {
                num_buckets,
                max_distance,
            }
            .apply(&mut cfg);
            if admin {
                cfg.extra
                    .insert(super::admin::RESIDUAL_SCALING.into(), "admin".into());
            }
            cfg.model_type = NATIVE_MODEL_TYPE.into();
            return Ok(cfg);
        }
        let (layers, hidden, ffn, heads, emb) = preset_dims(name)?;
        if vocab_size <= 0 {
            bail!("model preset {name:?}: vocab_size must be positive, found {vocab_size}");
        }
        Ok(ModelConfig {
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: ffn,
            embedding_size: Some(emb),
            max_position_embeddings: default_max_positions(),
            type_vocab_size: default_type_vocab(),
            layer_norm_eps: default_eps(),
            hidden_act: default_act(),
            hidden_dropout_prob: default_dropout(),
            attention_probs_dropout_prob: default_dropout(),
            model_type: "electra".into(),
            architectures: None,
            pad_token_id: Some(0),
            initializer_range: default_init_range(),
            tie_word_embeddings: true,
            extra: Default::default(),
        })
    }

    /// The auxiliary (generator) config of a preset: the same width with fewer layers —
    /// 4 for base and small, 6 for large (paper), 1 for tiny.
    pub fn aux_preset(name: &str, vocab_size: i64) -> anyhow::Result<Self> {
        let mut cfg = Self::preset(name, vocab_size)?;
        cfg.num_hidden_layers = match name {
            "tiny" => 1,
            "large" => 6,
            _ => 4,
        };
        Ok(cfg)
    }

    /// Why transformers' BERT/ELECTRA classes cannot hold this model, or None if they can: T5
    /// relative position buckets and Admin's residual scales have no place in them. Such a model
    /// is saved in this project's own format (`model_type` `fast_electra`,
    /// `docs/model-format.md`).
    pub fn hugging_face_incompatibility(&self) -> Option<String> {
        let mut why = vec![];
        if let Ok(Positions::T5Relative { .. }) = Positions::of(self) {
            why.push("T5 relative position buckets (transformers' BERT/ELECTRA classes have only absolute or relative_key position embeddings)");
        }
        if super::admin::enabled(self).unwrap_or(false) {
            why.push("Admin residual scales (admin_omega), which transformers' post-LN layers do not have");
        }
        (!why.is_empty()).then(|| why.join(" and "))
    }

    /// The embedding width actually used: `embedding_size`, or transformers' default for the
    /// model type (128 for ELECTRA, `hidden_size` for BERT).
    pub fn effective_embedding_size(&self) -> i64 {
        match (self.embedding_size, self.model_type.as_str()) {
            (Some(e), _) => e,
            (None, "electra" | NATIVE_MODEL_TYPE) => 128,
            (None, _) => self.hidden_size,
        }
    }

    /// Checks that the sizes are positive and consistent.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("embedding_size", self.effective_embedding_size()),
        ];
        for (field, v) in positive {
            if v <= 0 {
                bail!("field {field}: expected a positive number, found {v}");
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "field num_attention_heads: expected a divisor of hidden_size {}, found {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if !matches!(
            self.model_type.as_str(),
            "electra" | "bert" | NATIVE_MODEL_TYPE
        ) {
            bail!(
                "field model_type: expected \"electra\", \"bert\" or \"{NATIVE_MODEL_TYPE}\", found {:?}",
                self.model_type
            );
        }
        let positions = Positions::of(self)?;
        let admin = super::admin::enabled(self)?;
        if self.model_type == "bert" && (admin || positions != Positions::Absolute) {
            bail!("field model_type: relative positions and Admin are for ELECTRA models, found \"bert\"");
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            // 1 (PyTorch's upper end) drops everything: the gamma = 1 end of the auxiliary
            // model's dropout augmentations (`preprocess --augmentation dropout` at epoch 0 of
            // the default --gamma-max 1).
            if !(0.0..=1.0).contains(&p) {
                bail!("field {field}: expected a probability in [0, 1], found {p}");
            }
        }
        super::activation::Activation::parse(&self.hidden_act).context("field hidden_act")?;
        Ok(())
    }

    /// The number of parameters of `arch` built from this config (tied weights counted once).
    pub fn num_parameters(&self, arch: Architecture) -> i64 {
        let (v, h, f, l) = (
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
        );
        let e = match arch {
            Architecture::BertForMaskedLM => h,
            _ => self.effective_embedding_size(),
        };
        let (positions, relative) = match Positions::of(self) {
            Ok(Positions::T5Relative { num_buckets, .. }) => {
                (0, num_buckets * self.num_attention_heads)
            }
            _ => (self.max_position_embeddings, 0),
        };
        let admin = if super::admin::enabled(self).unwrap_or(false) {
            2 * l * h
        } else {
            0
        };
        let embeddings = (v + positions + self.type_vocab_size) * e + 2 * e + relative + admin;
        let project = if e != h { e * h + h } else { 0 };
        let layer = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h;
        let tied = if self.tie_word_embeddings { 0 } else { v * e };
        let head = match arch {
            Architecture::ElectraForMaskedLM => (h * e + e) + 2 * e + v + tied,
            Architecture::BertForMaskedLM => (h * h + h) + 2 * h + v + tied,
            Architecture::ElectraForPreTraining => (h * h + h) + (h + 1),
        };
        embeddings + project + l * layer + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_table_2() {
        let base = ModelConfig::preset("base", 30522).unwrap();
        assert_eq!((base.num_hidden_layers, base.hidden_size), (12, 768));
        assert_eq!(
            (base.intermediate_size, base.num_attention_heads),
            (3072, 12)
        );
        let large = ModelConfig::aux_preset("large", 30522).unwrap();
        assert_eq!((large.num_hidden_layers, large.hidden_size), (6, 1024));
        assert_eq!(
            ModelConfig::aux_preset("base", 10)
                .unwrap()
                .num_hidden_layers,
            4
        );
        assert!(ModelConfig::preset("huge", 10).is_err());
        // ELECTRA-base discriminator: about 110M parameters.
        let n = base.num_parameters(Architecture::ElectraForPreTraining);
        assert!((108_000_000..112_000_000).contains(&n), "{n}");
    }

    #[test]
    fn keeps_unknown_fields_and_rejects_bad_ones() {
        let text = r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "model_type": "bert",
            "some_future_field": [1, 2]}"#;
        let cfg: ModelConfig = serde_json::from_str(text).unwrap();
        cfg.validate().unwrap();
        let back = serde_json::to_value(&cfg).unwrap();
        assert_eq!(back["some_future_field"], serde_json::json!([1, 2]));
        let mut bad = cfg.clone();
        bad.model_type = "gpt2".into();
        assert!(bad.validate().unwrap_err().to_string().contains("gpt2"));
        bad = cfg.clone();
        bad.num_attention_heads = 3;
        assert!(bad.validate().is_err());
        // Dropout probabilities in [0, 1]: 1 drops everything (PyTorch's range).
        let mut all = cfg.clone();
        all.hidden_dropout_prob = 1.0;
        all.attention_probs_dropout_prob = 1.0;
        all.validate().unwrap();
        all.hidden_dropout_prob = 1.5;
        let e = all.validate().unwrap_err().to_string();
        assert!(
            e.contains("field hidden_dropout_prob: expected a probability in [0, 1], found 1.5"),
            "{e}"
        );
    }
}
