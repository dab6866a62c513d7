//! What an epoch's shard settings ([`crate::format::epoch_meta::EpochSettings`]) and its manifest
//! ([`crate::format::manifest::EpochManifest`]) both record, field for field: two blocks, each
//! flattened into both JSON objects (`#[serde(flatten)]`), so a field is declared once.
//!
//! They are two blocks rather than one because the settings JSON, whose bytes are fingerprinted,
//! holds `mask_token_id` between them (data-spec/epoch.md, "Shard metadata"), and the manifest
//! does not (it records the tokenizer's special tokens instead). Serde writes a flattened block's
//! fields where the block is declared, in its own order, so both JSON objects keep the field
//! order of data-spec version 1 and 2 byte for byte (`tests/tests/epoch_json.rs` holds them
//! against manifests and settings written before the blocks existed). Unknown fields are still
//! refused: the outer structs deny them, and serde checks what the blocks left over.
use serde::{Deserialize, Serialize};

use crate::format::manifest::{GammaScheduleInfo, ScheduleInfo};

/// Which epoch of how many, its temperature, and how its positions are masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corruption {
    pub epoch: u32,
    pub epochs: u32,
    /// The temperature schedule (`const` with `t0 = 1` where the sampling is not tempered).
    pub schedule: ScheduleInfo,
    /// This epoch's temperature T.
    pub temperature: f64,
    pub seed: u64,
    pub mask_rate: f64,
}

/// `distribution` of a version-1 manifest or settings record: the auxiliary model's.
pub fn default_distribution() -> String {
    "aux".to_string()
}

/// `augmentation` of a version-1 manifest or settings record: temperature.
pub fn default_augmentation() -> Option<String> {
    Some("temperature".to_string())
}

/// Where the replacement tokens come from (data-spec/epoch.md, "Distributions"): the
/// distribution, the augmentation and the parameters they use. Unused parameters are left out of
/// the JSON, so `aux` with `temperature` records exactly what version 1 recorded (plus the two
/// names), and a version-1 record (without the names) reads as `aux` with `temperature`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    /// `aux` (the auxiliary model) or a model-free distribution: `uniform`, `term-frequency`,
    /// `smoothed-one-hot`, `unf-soh`, `tf-soh` (version 1: always `aux`).
    #[serde(default = "default_distribution")]
    pub distribution: String,
    /// With `aux`: `temperature`, `tf-interp`, `dropout`, `drop-attention` or `drop-token`;
    /// `null` for a model-free distribution (version 1: always `temperature`).
    #[serde(default = "default_augmentation")]
    pub augmentation: Option<String>,
    /// Smoothing of the smoothed one-hot distribution (`smoothed-one-hot`, `unf-soh`, `tf-soh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// This epoch's strength gamma (interpolations and augmentations other than temperature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// The schedule gamma follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma_schedule: Option<GammaScheduleInfo>,
    /// SHA-256 of the term-frequency file used (`term-frequency`, `tf-soh`, `tf-interp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_frequency_sha256: Option<String>,
    /// `dropout` and `drop-attention`: the `--batch-size` the dropout masks depend on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout_batch_size: Option<u64>,
}
