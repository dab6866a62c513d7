//! Checkpoints: `RUN/checkpoints/step-XXXXXXX/` holding `model.safetensors`,
//! `optimizer.safetensors` and `state.json`. A checkpoint is written into a temporary sibling
//! folder and renamed into place, so a folder named `step-*` is always complete.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Tensor};

use crate::loader::Cursor;

/// Sub-folder of the run folder holding the checkpoints.
pub const CHECKPOINTS: &str = "checkpoints";

/// `state.json`: everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Updates done.
    pub step: u64,
    /// Where the next micro-batch starts.
    pub cursor: Cursor,
    /// The RNG rule: dropout is re-seeded before every update with
    /// `torch_seed(seed, step)`, shuffling and masking are keyed by (seed, epoch, pass, step),
    /// so the seed is the whole RNG state.
    pub seed: u64,
    /// The resolved run configuration (as in `run.json`).
    pub config: serde_json::Value,
}

/// Folder name of the checkpoint after `step` updates.
pub fn folder_name(step: u64) -> String {
    format!("step-{step:07}")
}

/// Writes tensors (moved to the CPU, made contiguous) as safetensors.
pub fn write_tensors(path: &Path, named: &[(String, Tensor)]) -> anyhow::Result<()> {
    let cpu: Vec<(String, Tensor)> = named
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, path).with_context(|| format!("writing {}", path.display()))
}

/// Reads every tensor of a safetensors file.
pub fn read_tensors(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))
}

/// Copies the tensors of `path` into the variables of `vs` in place (so views stay views);
/// every variable must be present with the same shape.
pub fn load_vars(vs: &VarStore, path: &Path) -> anyhow::Result<()> {
    let named = read_tensors(path)?;
    let map: std::collections::HashMap<_, _> = named.into_iter().collect();
    for (name, var) in vs.variables() {
        let src = map.get(&name).with_context(|| {
            format!("{}: tensor {name}: expected, found nothing", path.display())
        })?;
        if src.size() != var.size() {
            bail!(
                "{}: tensor {name}: expected shape {:?}, found {:?}",
                path.display(),
                var.size(),
                src.size()
            );
        }
        tch::no_grad(|| var.shallow_clone().copy_(src));
    }
    Ok(())
}

/// Writes checkpoint `state.step` atomically under `run_dir/checkpoints/`.
pub fn save(
    run_dir: &Path,
    vs: &VarStore,
    optimizer: &[(String, Tensor)],
    state: &TrainState,
) -> anyhow::Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let dest = root.join(folder_name(state.step));
    let tmp = shared::files::atomic::temp_path(&dest);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = write_tensors(
        &tmp.join("model.safetensors"),
        &vs.variables().into_iter().collect::<Vec<_>>(),
    )
    .and_then(|()| write_tensors(&tmp.join("optimizer.safetensors"), optimizer))
    .and_then(|()| shared::files::atomic::write_json_atomic(&tmp.join("state.json"), state));
    if let Err(e) = written {
        // A full disk: give the space back; the earlier checkpoints stay as they were.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    if let Ok(d) = std::fs::File::open(&root) {
        let _ = d.sync_all();
    }
    Ok(dest)
}

/// The complete checkpoint with the highest step in `run_dir`, if any. Leftover temporary
/// folders of interrupted writes are removed.
pub fn latest(run_dir: &Path) -> anyhow::Result<Option<(u64, PathBuf)>> {
    let root = run_dir.join(CHECKPOINTS);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(None);
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
            continue;
        }
        let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, entry.path()));
        }
    }
    Ok(best)
}

/// Reads `state.json` of a checkpoint folder.
pub fn read_state(dir: &Path) -> anyhow::Result<TrainState> {
    let path = dir.join("state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: unexpected contents", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Kind};

    #[test]
    fn save_then_latest_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let vs = VarStore::new(Device::Cpu);
        let _lin = nn::linear(vs.root() / "dense", 3, 2, Default::default());
        let state = TrainState {
            step: 7,
            cursor: Cursor { pass: 1, row: 64 },
            seed: 3,
            config: serde_json::json!({"lr": 0.001}),
        };
        let opt = vec![("step".to_string(), Tensor::from_slice(&[7i64]))];
        save(dir.path(), &vs, &opt, &state).unwrap();
        let mut later = state.clone();
        later.step = 12;
        save(dir.path(), &vs, &opt, &later).unwrap();
        // An interrupted write leaves a temporary folder: ignored and removed.
        std::fs::create_dir(dir.path().join("checkpoints/.step-0000099.1.tmp")).unwrap();
        let (step, path) = latest(dir.path()).unwrap().unwrap();
        assert_eq!(step, 12);
        assert_eq!(read_state(&path).unwrap(), later);
        assert!(!dir.path().join("checkpoints/.step-0000099.1.tmp").exists());

        let vs2 = VarStore::new(Device::Cpu);
        let lin2 = nn::linear(vs2.root() / "dense", 3, 2, Default::default());
        load_vars(&vs2, &path.join("model.safetensors")).unwrap();
        let a = vs.variables()["dense.weight"].shallow_clone();
        assert_eq!(
            (&a - &lin2.ws).abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
    }

    #[test]
    fn load_refuses_wrong_shape() {
        let dir = tempfile::tempdir().unwrap();
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root() / "dense", 3, 2, Default::default());
        let p = dir.path().join("m.safetensors");
        let opts = (Kind::Float, Device::Cpu);
        write_tensors(
            &p,
            &[
                ("dense.weight".into(), Tensor::zeros([2, 4], opts)),
                ("dense.bias".into(), Tensor::zeros([2], opts)),
            ],
        )
        .unwrap();
        let err = format!("{:#}", load_vars(&vs, &p).unwrap_err());
        assert!(
            err.contains("dense.weight") && err.contains("[2, 3]"),
            "{err}"
        );
    }
}
