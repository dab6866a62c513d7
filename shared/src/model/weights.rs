//! Tensor I/O of Hugging Face checkpoints: `model.safetensors` (or the shards listed in
//! `model.safetensors.index.json`) into a `VarStore`, and a `VarStore` into `model.safetensors`.
use anyhow::Context;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Kind, Tensor};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const PICKLE_FILE: &str = "pytorch_model.bin";

/// What can be wrong with a checkpoint folder.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "{dir}: has {PICKLE_FILE} but no {WEIGHTS_FILE}; only safetensors are read. Convert it \
         with: python -c \"from transformers import AutoModelForMaskedLM as M; \
         M.from_pretrained('{dir}').save_pretrained('{dir}', safe_serialization=True)\" \
         (AutoModelForPreTraining for a discriminator)"
    )]
    PickleOnly { dir: PathBuf },
    #[error("{dir}: no {WEIGHTS_FILE} (expected a Hugging Face model folder)")]
    NoWeights { dir: PathBuf },
    #[error("{file}: tensor {tensor} is missing (expected shape {expected:?})")]
    MissingTensor {
        file: PathBuf,
        tensor: String,
        expected: Vec<i64>,
    },
    #[error("{file}: tensor {tensor} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        file: PathBuf,
        tensor: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("{file}: tensor {tensor} has dtype {found}, expected F32, F16, BF16 or F64")]
    WrongDtype {
        file: PathBuf,
        tensor: String,
        found: String,
    },
}

/// The weight files of a model folder, with the error that explains a pickle-only folder.
pub fn weight_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("reading {}", index.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| {
                format!(
                    "{}: field weight_map: expected an object of tensor -> file",
                    index.display()
                )
            })?;
        let files: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    if dir.join(PICKLE_FILE).is_file() {
        return Err(CheckpointError::PickleOnly {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    Err(CheckpointError::NoWeights {
        dir: dir.to_path_buf(),
    }
    .into())
}

/// The name a tensor of an older checkpoint has today (`LayerNorm.gamma/beta` ->
/// `LayerNorm.weight/bias`), as transformers renames them on load.
fn modern_name(name: &str) -> String {
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_string()
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// Copies every variable of `vs` from the weight files (converted to fp32). Tensors of the files
/// that the model does not use (a pooler, buffers, tied copies) are ignored, as transformers
/// does; a variable without a tensor, or with a tensor of another shape, is an error.
pub fn load_weights(vs: &VarStore, files: &[PathBuf]) -> anyhow::Result<()> {
    load_weights_as(vs, files, &|name| Some(name.to_string()))
}

/// [`load_weights`], where the file's tensor `name` (old `gamma`/`beta` LayerNorm names
/// already modernised) is the variable `var_name(name)`; None = not a variable of `vs`
/// (ignored). E.g. a BERT checkpoint's `bert.encoder...` into an ELECTRA-named encoder.
pub fn load_weights_as(
    vs: &VarStore,
    files: &[PathBuf],
    var_name: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let variables = vs.variables();
    let mut found: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let bytes =
            std::fs::read(file).with_context(|| format!("reading weights {}", file.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("parsing safetensors {}", file.display()))?;
        // In name order, so that the first error reported does not depend on hashing.
        let mut tensors = st.tensors();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, view) in tensors {
            let Some(name) = var_name(&modern_name(&name)) else {
                continue;
            };
            let Some(var) = variables.get(&name) else {
                continue;
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != var.size() {
                return Err(CheckpointError::WrongShape {
                    file: file.clone(),
                    tensor: name,
                    expected: var.size(),
                    found: shape,
                }
                .into());
            }
            let kind = kind_of(view.dtype()).ok_or_else(|| CheckpointError::WrongDtype {
                file: file.clone(),
                tensor: name.clone(),
                found: format!("{:?}", view.dtype()),
            })?;
            let src = Tensor::f_from_data_size(view.data(), &shape, kind)
                .with_context(|| format!("{}: reading tensor {name}", file.display()))?
                .to_kind(Kind::Float);
            let mut var = var.shallow_clone();
            tch::no_grad(|| var.copy_(&src));
            found.insert(name, file.clone());
        }
    }
    let mut missing: Vec<_> = variables
        .iter()
        .filter(|(n, _)| !found.contains_key(*n))
        .collect();
    missing.sort_by(|a, b| a.0.cmp(b.0));
    if let Some((name, var)) = missing.first() {
        return Err(CheckpointError::MissingTensor {
            file: files.first().cloned().unwrap_or_default(),
            tensor: name.to_string(),
            expected: var.size(),
        }
        .into());
    }
    Ok(())
}

/// Serialises every variable of `vs` as fp32 safetensors bytes (names sorted, metadata
/// `format: pt` as transformers writes).
pub fn weights_bytes(vs: &VarStore) -> anyhow::Result<Vec<u8>> {
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(variables.len());
    for (name, t) in variables {
        let t = t
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(&t.view(-1))
            .with_context(|| format!("copying tensor {name} to host memory"))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((name, shape, bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .with_context(|| format!("tensor {name}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).context("serialising safetensors")
}

/// SHA-256 over `config.json` and `model.safetensors` of a model folder (the auxiliary-model
/// fingerprint): the hex digest of "config.json:<sha256>\nmodel.safetensors:<sha256>\n".
pub fn checkpoint_fingerprint(dir: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let config = dir.join(CONFIG_FILE);
    text.push_str(&format!(
        "{CONFIG_FILE}:{}\n",
        crate::files::hash::sha256_file(&config)
            .with_context(|| format!("fingerprinting model folder {}", dir.display()))?
    ));
    for file in weight_files(dir)? {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        text.push_str(&format!(
            "{name}:{}\n",
            crate::files::hash::sha256_file(&file)?
        ));
    }
    Ok(crate::files::hash::sha256_hex(text.as_bytes()))
}
