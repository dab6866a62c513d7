//! The `manifest.json` of a token folder and of an epoch folder (data-spec sections "Token
//! manifest" and "Epoch manifest"). A manifest is written last, atomically: its presence means
//! every shard it lists is complete. Unknown fields are refused, so a typo or a file from another
//! version is an error rather than a silent default.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::format::epoch_meta::EpochSettings;
use crate::format::epoch_record::{Corruption, Replacement};
use crate::format::spec::{MANIFEST_FILE, READABLE_DATA_SPEC_VERSIONS};

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
    /// The training split's term-frequency file (data-spec "Term frequency"); absent in
    /// validation manifests and in folders made before data-spec version 2 (add it with
    /// `preprocess term-frequency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_frequency: Option<TermFrequencyEntry>,
}

/// The term-frequency file of a token folder, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermFrequencyEntry {
    /// File name inside the folder: `term_frequency.parquet`.
    pub file: String,
    /// Tokens counted (every token of every row of the split, [CLS] and [SEP] included).
    pub tokens: u64,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
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

/// The strength schedule of a model-free interpolation or an augmentation (data-spec/epoch.md,
/// "Gamma"): gamma = gamma_max * the decay of schedule `name` with `tau` and `k`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GammaScheduleInfo {
    /// `exp`, `const`, `poly` or `step`.
    pub name: String,
    pub gamma_max: f64,
    /// Decay constant of `exp` (0 when unused).
    pub tau: f64,
    /// Exponent of `poly`, number of steps of `step` (0 when unused).
    pub k: f64,
}

/// The auxiliary model an epoch was corrupted with (all fields empty, and absent from the JSON,
/// for a model-free epoch).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

impl AuxModelInfo {
    /// No auxiliary model: a model-free epoch.
    pub fn is_absent(&self) -> bool {
        self.sha256.is_empty()
    }
}

/// `data/epoch-EEE/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochManifest {
    pub data_spec_version: u32,
    /// Always `"epoch"`.
    pub kind: String,
    #[serde(flatten)]
    pub corruption: Corruption,
    #[serde(flatten)]
    pub replacement: Replacement,
    /// Absent for a model-free distribution.
    #[serde(default, skip_serializing_if = "AuxModelInfo::is_absent")]
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
    /// Token shards read with `--no-verify-shards` (their SHA-256 not checked against the token
    /// manifest), by file name; absent when every one was checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified_token_shards: Vec<String>,
}

impl EpochManifest {
    /// The settings this manifest records: those of every one of its shards (the manifest's
    /// `settings_fingerprint` is their [`EpochSettings::fingerprint`]).
    pub fn settings(&self) -> EpochSettings {
        EpochSettings {
            data_spec_version: self.data_spec_version,
            corruption: self.corruption.clone(),
            mask_token_id: self.tokenizer.special_tokens.mask,
            replacement: self.replacement.clone(),
            aux_model_sha256: self.aux_model.sha256.clone(),
            tokenizer_sha256: self.tokenizer.sha256.clone(),
            tokens_fingerprint: self.tokens_fingerprint.clone(),
            tokens_split: self.split.clone(),
            max_seq_len: self.max_seq_len,
            vocab_size: self.vocab_size,
        }
    }
}

/// Reads `dir/manifest.json`, checking the data-spec version (any of
/// [`READABLE_DATA_SPEC_VERSIONS`]).
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
    if !version.is_some_and(|v| READABLE_DATA_SPEC_VERSIONS.contains(&(v as u32))) {
        anyhow::bail!(
            "{}: field data_spec_version: expected one of {READABLE_DATA_SPEC_VERSIONS:?}, found {}",
            path.display(),
            value
                .get("data_spec_version")
                .map_or("nothing".to_string(), |v| v.to_string())
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{}: unexpected contents", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An epoch manifest as data-spec version 1 wrote it.
    fn version_1() -> serde_json::Value {
        serde_json::json!({
            "data_spec_version": 1, "kind": "epoch", "epoch": 0, "epochs": 3,
            "schedule": {"name": "exp", "t0": 2.0, "tau": 0.1, "k": 0.0},
            "temperature": 2.0, "seed": 0, "mask_rate": 0.15,
            "aux_model": {"path": "m", "sha256": "ab", "architecture": "ElectraForMaskedLM",
                          "num_layers": 1, "vocab_size": 10},
            "tokenizer": {"path": "t", "sha256": "cd", "vocab_size": 10,
                          "special_tokens": {"cls": 1, "sep": 2, "mask": 3, "pad": 0, "unk": null}},
            "tokens_fingerprint": "ef", "split": "train", "settings_fingerprint": "01",
            "max_seq_len": 8, "vocab_size": 10, "num_sequences": 1, "num_tokens": 8,
            "num_masked": 1, "num_replaced": 1, "report": {}, "shards": []
        })
    }

    #[test]
    fn a_version_1_epoch_manifest_reads_as_aux_with_temperature() {
        let dir = tempfile::tempdir().unwrap();
        let text = serde_json::to_string(&version_1()).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), text).unwrap();
        let m: EpochManifest = read_manifest(dir.path()).unwrap();
        assert_eq!(m.data_spec_version, 1);
        assert_eq!(m.replacement.distribution, "aux");
        assert_eq!(m.replacement.augmentation.as_deref(), Some("temperature"));
        let r = &m.replacement;
        assert_eq!((r.alpha, r.gamma, r.dropout_batch_size), (None, None, None));
        assert_eq!(m.aux_model.sha256, "ab");
        // Written back, a model-free manifest has no aux_model and a null augmentation.
        let mut free = m.clone();
        free.replacement.distribution = "uniform".into();
        free.replacement.augmentation = None;
        free.aux_model = AuxModelInfo::default();
        let v = serde_json::to_value(&free).unwrap();
        assert!(v.get("aux_model").is_none() && v["augmentation"].is_null());
        let back: EpochManifest = serde_json::from_value(v).unwrap();
        assert_eq!(back, free);
    }

    #[test]
    fn unknown_fields_are_refused_also_among_the_shared_blocks() {
        // The settings' and manifest's field blocks are flattened in; a typo beside them (or a
        // field of another version) must still be an error, not a silent default.
        let dir = tempfile::tempdir().unwrap();
        let mut v = version_1();
        v["temprature"] = 2.0.into();
        std::fs::write(dir.path().join(MANIFEST_FILE), v.to_string()).unwrap();
        let err = read_manifest::<EpochManifest>(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `temprature`"),
            "{err:#}"
        );
        let mut m: EpochManifest = serde_json::from_value(version_1()).unwrap();
        m.replacement.distribution = "tf-soh".into();
        let settings = m.settings().to_json();
        let typo = settings.replacen("\"seed\"", "\"sead\":1,\"seed\"", 1);
        let err = serde_json::from_str::<EpochSettings>(&typo).unwrap_err();
        assert!(err.to_string().contains("unknown field `sead`"), "{err}");
        assert!(serde_json::from_str::<EpochSettings>(&settings).is_ok());
    }

    #[test]
    fn unknown_versions_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = version_1();
        v["data_spec_version"] = 3.into();
        std::fs::write(dir.path().join(MANIFEST_FILE), v.to_string()).unwrap();
        let err = read_manifest::<EpochManifest>(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data_spec_version: expected one of [1, 2], found 3"),
            "{err}"
        );
    }
}
