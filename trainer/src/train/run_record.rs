//! The resolved run configuration (`RUN/run.json`): flags checked against the data, written
//! once when a run starts; `--resume` must resolve to the same configuration.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::config::Hyper;
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

/// Everything that decides the result of a run (device, loader threads and prefetch do not):
/// the checked flags resolved against the data. `run.json` is this struct, one flat object (the
/// hyper-parameters' fields beside the others; unknown fields are refused by [`read`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub objective: Objective,
    /// `--model` as given.
    pub model: String,
    /// The Hugging Face config of the model trained.
    pub model_config: serde_json::Value,
    /// Updates of the run (the LR schedule reaches 0 here).
    pub total_steps: u64,
    /// The hyper-parameters, with the global micro-batch (`--batch-size` x world size).
    #[serde(flatten)]
    pub hyper: Hyper,
    /// Training folders in training order.
    pub data: Vec<DataRef>,
    pub validation: Option<DataRef>,
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
pub fn check_same(stored: &RunRecord, now: &RunRecord, path: &Path) -> anyhow::Result<()> {
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

/// Reads `run.json`, refusing a field it does not know (a typo, or a file of another
/// version) by name.
pub fn read(path: &Path) -> anyhow::Result<RunRecord> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let unexpected =
        |e: &dyn std::fmt::Display| format!("{}: unexpected contents: {e}", path.display());
    let raw: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!(unexpected(&e)))?;
    let record: RunRecord =
        serde_json::from_value(raw.clone()).map_err(|e| anyhow::anyhow!(unexpected(&e)))?;
    let known = serde_json::to_value(&record)?;
    let optional = ["objective_settings", "unverified_shards"];
    if let (Some(raw), Some(known)) = (raw.as_object(), known.as_object()) {
        if let Some(key) = raw
            .keys()
            .find(|k| !known.contains_key(*k) && !optional.contains(&k.as_str()))
        {
            bail!("{}: unknown field {key}", path.display());
        }
    }
    Ok(record)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small configuration for tests.
    pub(crate) fn cfg(objective: Objective) -> RunRecord {
        RunRecord {
            objective,
            model: "tiny".into(),
            model_config: serde_json::json!({}),
            total_steps: 100,
            hyper: Hyper {
                batch_size: 8,
                grad_accum: 1,
                lr: 1e-3,
                warmup_steps: 10,
                weight_decay: 0.01,
                clip_norm: 2.0,
                mask_rate: 0.15,
                seed: 0,
                shuffle_window: 8,
                repeat_last_epoch: false,
                validate_every: 10,
                validation_rows: 100,
                checkpoint_every: 10,
                log_every: 1,
            },
            data: vec![],
            validation: None,
            objective_settings: None,
            unverified_shards: false,
        }
    }

    #[test]
    fn names_the_differing_field() {
        let a = cfg(Objective::by_name("rtd").unwrap());
        let mut b = cfg(Objective::by_name("rtd").unwrap());
        assert!(check_same(&a, &b, Path::new("r/run.json")).is_ok());
        b.hyper.lr = 2e-3;
        let e = check_same(&a, &b, Path::new("r/run.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r/run.json: field lr: the run was started with 0.001"),
            "{e}"
        );
    }

    #[test]
    fn run_json_is_one_flat_object_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUN_FILE);
        let a = cfg(Objective::by_name("rtd").unwrap());
        let mut v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v["lr"],
            serde_json::json!(1e-3),
            "hyper-parameters sit at the top level"
        );
        assert_eq!(v["total_steps"], serde_json::json!(100));
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        assert_eq!(read(&path).unwrap(), a);
        v["learning_rate"] = serde_json::json!(1.0);
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field learning_rate"), "{e}");
    }
}
