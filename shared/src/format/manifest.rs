//! The `manifest.json` of a token folder and of an epoch folder (data-spec sections "Token
//! manifest" and "Epoch manifest"). A manifest is written last, atomically: its presence means
//! every shard it lists is complete. Unknown fields are refused, so a typo or a file from another
//! version is an error rather than a silent default.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::format::spec::{DATA_SPEC_VERSION, MANIFEST_FILE};

/// One Parquet shard as listed in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// File name inside the folder, e.g. `part-00000.parquet`.
    pub file: String,
    /// Number of rows (sequences).
    pub rows: u64,
    /// Number of tokens in all rows (no padding is stored).
    pub tokens: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

/// Special-token ids found in the tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialTokens {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
    pub unk: Option<u32>,
}

/// The tokenizer a dataset was made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// Path given on the command line (informational).
    pub path: String,
    /// SHA-256 of the `tokenizer.json` file: the tokenizer fingerprint.
    pub sha256: String,
    /// Vocabulary size including added tokens.
    pub vocab_size: u32,
    pub special_tokens: SpecialTokens,
}

/// One input file of the corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `data/tokens/manifest.json` (and the validation split's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenManifest {
    pub data_spec_version: u32,
    /// Always `"tokens"`.
    pub kind: String,
    /// `"train"` or `"validation"`.
    pub split: String,
    /// SHA-256 over everything that decides the content (sources, tokenizer, settings); two
    /// folders with the same fingerprint hold the same data. Both splits share it.
    pub dataset_fingerprint: String,
    pub tokenizer: TokenizerInfo,
    pub max_seq_len: u32,
    /// Settings that decided the content (text field, packing rule, validation fraction, ...).
    pub settings: BTreeMap<String, serde_json::Value>,
    pub num_documents: u64,
    pub num_sequences: u64,
    pub num_tokens: u64,
    pub shards: Vec<ShardEntry>,
    pub sources: Vec<SourceFile>,
}

/// The temperature schedule as recorded (data-spec "Epoch manifest").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInfo {
    /// `exp`, `const`, `poly` or `step`.
    pub name: String,
    pub t0: f64,
    /// Decay constant of `exp`.
    pub tau: f64,
    /// Exponent of `poly`, number of steps of `step`.
    pub k: f64,
}

/// The auxiliary model an epoch was corrupted with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuxModelInfo {
    pub path: String,
    /// SHA-256 over `config.json` and `model.safetensors`: the auxiliary-model fingerprint.
    pub sha256: String,
    /// `ElectraForMaskedLM` or `BertForMaskedLM`.
    pub architecture: String,
    pub num_layers: u32,
    pub vocab_size: u32,
}

/// `data/epoch-EEE/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochManifest {
    pub data_spec_version: u32,
    /// Always `"epoch"`.
    pub kind: String,
    pub epoch: u32,
    pub epochs: u32,
    pub schedule: ScheduleInfo,
    /// This epoch's temperature T.
    pub temperature: f64,
    pub seed: u64,
    pub mask_rate: f64,
    pub aux_model: AuxModelInfo,
    pub tokenizer: TokenizerInfo,
    /// `dataset_fingerprint` of the token folder this epoch was made from.
    pub tokens_fingerprint: String,
    /// `split` of that token folder (`train` or `validation`).
    #[serde(default)]
    pub split: String,
    /// SHA-256 of the settings that decided the content (data-spec/epoch.md, "Settings"); equal
    /// to every shard's `fast_electra.settings_fingerprint`.
    #[serde(default)]
    pub settings_fingerprint: String,
    pub max_seq_len: u32,
    pub vocab_size: u32,
    pub num_sequences: u64,
    pub num_tokens: u64,
    pub num_masked: u64,
    pub num_replaced: u64,
    /// Corruption-quality report (replaced fractions, aux accuracy, entropy, throughput).
    pub report: BTreeMap<String, f64>,
    pub shards: Vec<ShardEntry>,
}

/// Reads `dir/manifest.json`, checking the data-spec version.
pub fn read_manifest<T: serde::de::DeserializeOwned>(dir: &Path) -> anyhow::Result<T> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no manifest (the folder is incomplete or not a shard folder)",
            path.display()
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let version = value.get("data_spec_version").and_then(|v| v.as_u64());
    if version != Some(DATA_SPEC_VERSION as u64) {
        anyhow::bail!(
            "{}: field data_spec_version: expected {DATA_SPEC_VERSION}, found {}",
            path.display(),
            value
                .get("data_spec_version")
                .map_or("nothing".to_string(), |v| v.to_string())
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{}: unexpected contents", path.display()))
}
