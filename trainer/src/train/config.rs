//! The resolved run configuration (`RUN/run.json`): flags checked against the data, written
//! once when a run starts; `--resume` must resolve to the same configuration.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::objectives::Objective;

/// File name in the run folder.
pub const RUN_FILE: &str = "run.json";

/// A data folder as the run saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRef {
    pub dir: PathBuf,
    pub epoch: u32,
    /// SHA-256 of the folder's manifest.json.
    pub manifest_sha256: String,
}

/// Everything that decides the result of a run (device, loader threads and prefetch do not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub objective: Objective,
    /// `--model` as given.
    pub model: String,
    /// The Hugging Face config of the model trained.
    pub model_config: serde_json::Value,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    /// Updates of the run (the LR schedule reaches 0 here).
    pub total_steps: u64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub mask_rate: f64,
    pub seed: u64,
    pub shuffle_window: usize,
    pub repeat_last_epoch: bool,
    /// Training folders in training order.
    pub data: Vec<DataRef>,
    pub validation: Option<DataRef>,
    pub validate_every: u64,
    pub validation_rows: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    /// The objective's own settings (online, electra; absent for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective_settings: Option<serde_json::Value>,
    /// Started with `--no-verify-shards` (the shards' SHA-256 not checked against their
    /// manifests); absent otherwise. Not compared on `--resume`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified_shards: bool,
}

/// Fields of `run.json` a resume may change.
const NOT_COMPARED: [&str; 1] = ["unverified_shards"];

/// Compares `now` with the configuration stored at `path`, naming the first differing field.
pub fn check_same(stored: &RunConfig, now: &RunConfig, path: &Path) -> anyhow::Result<()> {
    let a = serde_json::to_value(stored)?;
    let b = serde_json::to_value(now)?;
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        bail!("run configuration is not an object");
    };
    for (key, va) in a
        .iter()
        .filter(|(k, _)| !NOT_COMPARED.contains(&k.as_str()))
    {
        let vb = b.get(key).unwrap_or(&serde_json::Value::Null);
        if va != vb {
            bail!(
                "{}: field {key}: the run was started with {va}, the flags give {vb} (--resume continues a run with the same settings)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Reads `run.json`.
pub fn read(path: &Path) -> anyhow::Result<RunConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: unexpected contents", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small configuration for tests.
    pub(crate) fn cfg(objective: Objective) -> RunConfig {
        RunConfig {
            objective,
            model: "tiny".into(),
            model_config: serde_json::json!({}),
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-3,
            warmup_steps: 10,
            total_steps: 100,
            weight_decay: 0.01,
            clip_norm: 2.0,
            mask_rate: 0.15,
            seed: 0,
            shuffle_window: 8,
            repeat_last_epoch: false,
            data: vec![],
            validation: None,
            validate_every: 10,
            validation_rows: 100,
            checkpoint_every: 10,
            log_every: 1,
            objective_settings: None,
            unverified_shards: false,
        }
    }

    #[test]
    fn names_the_differing_field() {
        let a = cfg(Objective::by_name("rtd").unwrap());
        let mut b = cfg(Objective::by_name("rtd").unwrap());
        assert!(check_same(&a, &b, Path::new("r/run.json")).is_ok());
        b.lr = 2e-3;
        let e = check_same(&a, &b, Path::new("r/run.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r/run.json: field lr: the run was started with 0.001"),
            "{e}"
        );
    }
}
