//! What an epoch shard's Parquet key-value metadata records (data-spec/epoch.md, "Shard
//! metadata"): the settings that decided its content, their fingerprint, and the shard's
//! corruption statistics, from which the epoch manifest is rebuilt by whoever finishes last.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::format::epoch_record::{Corruption, Replacement};
use crate::format::manifest::EpochManifest;
use crate::format::spec::{shard_file_name, READABLE_DATA_SPEC_VERSIONS};

/// JSON of [`EpochSettings`].
pub const META_SETTINGS: &str = "fast_electra.epoch_settings";
/// [`EpochSettings::fingerprint`] of the settings above.
pub const META_SETTINGS_FINGERPRINT: &str = "fast_electra.settings_fingerprint";
/// JSON of [`ShardStats`].
pub const META_SHARD_STATS: &str = "fast_electra.shard_stats";
/// File name of the token shard this epoch shard was made from.
pub const META_SOURCE_SHARD: &str = "fast_electra.source_shard";
/// SHA-256 of that token shard.
pub const META_SOURCE_SHA256: &str = "fast_electra.source_sha256";
/// The epoch (decimal), for readers that want it without parsing JSON.
/// Present (`"true"`) only on a shard made with `--no-verify-shards`: its token shard's SHA-256
/// was not checked against the token manifest before it was read.
pub const META_SOURCE_UNVERIFIED: &str = "fast_electra.source_unverified";
/// Its epoch number.
pub const META_EPOCH: &str = "fast_electra.epoch";
/// The epoch's temperature (decimal, shortest round-trip form).
pub const META_TEMPERATURE: &str = "fast_electra.temperature";

/// Everything that decides the content of an epoch folder. Paths are left out on purpose: moving
/// the token folder or the auxiliary model does not change the data. The JSON holds the fields in
/// declaration order, the blocks' fields where the block stands (data-spec/epoch.md, "Shard
/// metadata"); its bytes are fingerprinted, so the order is part of the format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochSettings {
    pub data_spec_version: u32,
    #[serde(flatten)]
    pub corruption: Corruption,
    /// Token id written into the auxiliary model's input at masked positions.
    pub mask_token_id: u32,
    #[serde(flatten)]
    pub replacement: Replacement,
    /// SHA-256 over the auxiliary model's `config.json` and `model.safetensors`; absent for a
    /// model-free distribution.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aux_model_sha256: String,
    /// SHA-256 of the tokenizer's `tokenizer.json`.
    pub tokenizer_sha256: String,
    /// `dataset_fingerprint` of the token folder.
    pub tokens_fingerprint: String,
    /// `split` of the token folder (`train` or `validation`).
    pub tokens_split: String,
    pub max_seq_len: u32,
    pub vocab_size: u32,
}

impl EpochSettings {
    /// SHA-256 of the settings' compact JSON (fields in declaration order).
    pub fn fingerprint(&self) -> String {
        crate::files::hash::sha256_hex(self.to_json().as_bytes())
    }

    /// Compact JSON, as stored under [`META_SETTINGS`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("settings serialise")
    }

    /// The fields whose values differ between `self` and the settings JSON `stored`, as
    /// `field: here X, there Y` lines (empty when they agree). Both sides go through the same
    /// JSON parser, so floats compare exactly.
    pub fn differences(&self, stored: &str) -> Vec<String> {
        let here: serde_json::Value =
            serde_json::from_str(&self.to_json()).expect("own JSON parses");
        let there: serde_json::Value = match serde_json::from_str(stored) {
            Ok(v) => v,
            Err(e) => return vec![format!("settings: not valid JSON ({e})")],
        };
        let (Some(here), Some(there)) = (here.as_object(), there.as_object()) else {
            return vec![format!("settings: expected a JSON object, found {there}")];
        };
        let mut keys: Vec<&String> = here.keys().chain(there.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| here.get(*k) != there.get(*k))
            .map(|k| {
                let show =
                    |v: Option<&serde_json::Value>| v.map_or("nothing".into(), |v| v.to_string());
                format!(
                    "{k}: this run {}, existing {}",
                    show(here.get(k)),
                    show(there.get(k))
                )
            })
            .collect()
    }
}

/// Corruption statistics of one shard (integers, plus an entropy sum accumulated in a fixed
/// order on the host, so the same data gives the same bits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardStats {
    pub rows: u64,
    pub tokens: u64,
    /// Masked positions.
    pub masked: u64,
    /// Masked positions whose sampled token differs from the original (targets = 1).
    pub replaced: u64,
    /// Masked positions where the auxiliary model's arg-max equals the original token.
    pub correct_top1: u64,
    /// Sum over masked positions of the entropy (nats) of softmax(logits / T).
    pub entropy_sum: f64,
}

impl ShardStats {
    pub fn add(&mut self, other: &ShardStats) {
        self.rows += other.rows;
        self.tokens += other.tokens;
        self.masked += other.masked;
        self.replaced += other.replaced;
        self.correct_top1 += other.correct_top1;
        self.entropy_sum += other.entropy_sum;
    }

    /// The quality report of data-spec/epoch.md (fractions, accuracy, mean entropy).
    pub fn report(&self) -> BTreeMap<String, f64> {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        BTreeMap::from([
            ("masked_fraction".into(), ratio(self.masked, self.tokens)),
            (
                "replaced_fraction_of_tokens".into(),
                ratio(self.replaced, self.tokens),
            ),
            (
                "replaced_fraction_of_masked".into(),
                ratio(self.replaced, self.masked),
            ),
            (
                "aux_top1_accuracy".into(),
                ratio(self.correct_top1, self.masked),
            ),
            (
                "mean_entropy".into(),
                if self.masked == 0 {
                    0.0
                } else {
                    self.entropy_sum / self.masked as f64
                },
            ),
        ])
    }
}

/// Reads a complete epoch folder: its manifest (data-spec version checked, kind `epoch`) and the
/// paths of its shards in order. Fails when the manifest is missing (the epoch is incomplete),
/// a listed shard is missing, or the shard names are not `part-00000.parquet`, ... in order.
pub fn open_epoch_dir(dir: &Path) -> anyhow::Result<(EpochManifest, Vec<PathBuf>)> {
    let manifest: EpochManifest = crate::format::manifest::read_manifest(dir)?;
    let mpath = dir.join(crate::format::spec::MANIFEST_FILE);
    if manifest.kind != crate::format::spec::epoch::KIND {
        anyhow::bail!(
            "{}: field kind: expected \"epoch\", found {:?}",
            mpath.display(),
            manifest.kind
        );
    }
    if !READABLE_DATA_SPEC_VERSIONS.contains(&manifest.data_spec_version) {
        anyhow::bail!(
            "{}: field data_spec_version: expected one of {READABLE_DATA_SPEC_VERSIONS:?}, found {}",
            mpath.display(),
            manifest.data_spec_version
        );
    }
    let mut paths = Vec::with_capacity(manifest.shards.len());
    for (i, shard) in manifest.shards.iter().enumerate() {
        if shard.file != shard_file_name(i) {
            anyhow::bail!(
                "{}: field shards[{i}].file: expected {}, found {}",
                mpath.display(),
                shard_file_name(i),
                shard.file
            );
        }
        let path = dir.join(&shard.file);
        let meta = std::fs::metadata(&path).with_context(|| {
            format!(
                "{}: listed shard {} is missing",
                mpath.display(),
                path.display()
            )
        })?;
        if meta.len() != shard.bytes {
            anyhow::bail!(
                "{}: size: expected {} bytes (manifest), found {}",
                path.display(),
                shard.bytes,
                meta.len()
            );
        }
        paths.push(path);
    }
    Ok((manifest, paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EpochSettings {
        EpochSettings {
            data_spec_version: crate::format::spec::DATA_SPEC_VERSION,
            corruption: Corruption {
                epoch: 3,
                epochs: 10,
                schedule: crate::format::manifest::ScheduleInfo {
                    name: "exp".into(),
                    t0: 2.0,
                    tau: 0.1,
                    k: 0.0,
                },
                temperature: 1.0 + (-3.0f64).exp(),
                seed: 0,
                mask_rate: 0.15,
            },
            mask_token_id: 103,
            replacement: Replacement {
                distribution: "aux".into(),
                augmentation: Some("temperature".into()),
                alpha: None,
                gamma: None,
                gamma_schedule: None,
                term_frequency_sha256: None,
                dropout_batch_size: None,
            },
            aux_model_sha256: "a".into(),
            tokenizer_sha256: "t".into(),
            tokens_fingerprint: "d".into(),
            tokens_split: "train".into(),
            max_seq_len: 128,
            vocab_size: 30522,
        }
    }

    #[test]
    fn differences_name_the_fields() {
        let a = settings();
        assert!(a.differences(&a.to_json()).is_empty());
        let mut b = a.clone();
        b.corruption.seed = 5;
        b.corruption.temperature = 1.5;
        let d = a.differences(&b.to_json());
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("seed: this run 0, existing 5"), "{d:?}");
        assert!(d[1].starts_with("temperature"), "{d:?}");
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn unused_fields_are_left_out_and_model_free_has_no_aux() {
        let a = settings();
        let json = a.to_json();
        assert!(json.contains("\"distribution\":\"aux\",\"augmentation\":\"temperature\""));
        for absent in ["alpha", "gamma", "term_frequency", "dropout_batch_size"] {
            assert!(!json.contains(absent), "{absent} in {json}");
        }
        let mut m = a.clone();
        m.replacement.distribution = "tf-soh".into();
        m.replacement.augmentation = None;
        m.aux_model_sha256.clear();
        m.replacement.alpha = Some(0.35);
        m.replacement.gamma = Some(0.5);
        let json = m.to_json();
        assert!(!json.contains("aux_model_sha256") && json.contains("\"augmentation\":null"));
        let back: EpochSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let d = a.differences(&json);
        assert!(
            d.iter()
                .any(|l| l.starts_with("distribution: this run \"aux\"")),
            "{d:?}"
        );
        assert!(d.iter().any(|l| l.starts_with("aux_model_sha256")), "{d:?}");
    }

    #[test]
    fn report_fractions() {
        let s = ShardStats {
            rows: 2,
            tokens: 100,
            masked: 10,
            replaced: 4,
            correct_top1: 5,
            entropy_sum: 20.0,
        };
        let r = s.report();
        assert_eq!(r["replaced_fraction_of_tokens"], 0.04);
        assert_eq!(r["replaced_fraction_of_masked"], 0.4);
        assert_eq!(r["aux_top1_accuracy"], 0.5);
        assert_eq!(r["mean_entropy"], 2.0);
    }
}
