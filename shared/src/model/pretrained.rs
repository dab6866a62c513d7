//! Hugging Face model folders (`config.json` + `model.safetensors`): load into, and save from,
//! the models of this crate.
use super::weights::{load_weights, weight_files, weights_bytes, CONFIG_FILE, WEIGHTS_FILE};
use super::{Architecture, Discriminator, MaskedLm, ModelConfig, NATIVE_MODEL_TYPE};
use anyhow::{bail, Context};
use std::path::Path;
use tch::{nn::VarStore, Device};

/// A model with the variable store that owns its weights and the config it was built from.
pub struct Pretrained<M> {
    pub model: M,
    pub vs: VarStore,
    pub config: ModelConfig,
    pub architecture: Architecture,
}

impl<M> std::fmt::Debug for Pretrained<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pretrained")
            .field("architecture", &self.architecture)
            .field("device", &self.vs.device())
            .field("variables", &self.vs.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<M> Pretrained<M> {
    /// Saves this model as a Hugging Face folder (see [`save_pretrained`]).
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        save_pretrained(&self.vs, &self.config, self.architecture, dir)
    }
}

/// A freshly initialised masked LM (for training from scratch; seed with `tch::manual_seed`).
pub fn init_masked_lm(
    config: &ModelConfig,
    arch: Architecture,
    device: Device,
) -> anyhow::Result<Pretrained<MaskedLm>> {
    let vs = VarStore::new(device);
    let model = MaskedLm::new(&vs.root(), config, arch)?;
    super::admin::initialize(&model.encoder, config.vocab_size, device);
    Ok(Pretrained {
        model,
        vs,
        config: config.clone(),
        architecture: arch,
    })
}

/// A freshly initialised discriminator (for training from scratch).
pub fn init_discriminator(
    config: &ModelConfig,
    device: Device,
) -> anyhow::Result<Pretrained<Discriminator>> {
    let vs = VarStore::new(device);
    let model = Discriminator::new(&vs.root(), config)?;
    super::admin::initialize(&model.encoder, config.vocab_size, device);
    Ok(Pretrained {
        model,
        vs,
        config: config.clone(),
        architecture: Architecture::ElectraForPreTraining,
    })
}

/// Which of `wanted` the config describes: the first known entry of `architectures`, else the
/// class `model_type` implies.
fn resolve_architecture(
    cfg: &ModelConfig,
    path: &Path,
    wanted: &[Architecture],
) -> anyhow::Result<Architecture> {
    let names = cfg.architectures.clone().unwrap_or_default();
    let wanted_names = || {
        wanted
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let arch = match names.iter().find_map(|n| Architecture::parse(n).ok()) {
        Some(a) => a,
        None => match (cfg.model_type.as_str(), wanted.first()) {
            ("bert", _) => Architecture::BertForMaskedLM,
            ("electra" | NATIVE_MODEL_TYPE, Some(&first))
                if first != Architecture::BertForMaskedLM =>
            {
                first
            }
            (other, _) => bail!(
                "{}: field model_type: expected \"electra\" or \"bert\", found {other:?}",
                path.display()
            ),
        },
    };
    if !wanted.contains(&arch) {
        bail!(
            "{}: field architectures: expected {}, found {names:?}",
            path.display(),
            wanted_names()
        );
    }
    let native_ok = cfg.model_type == NATIVE_MODEL_TYPE && arch != Architecture::BertForMaskedLM;
    if cfg.model_type != arch.model_type() && !native_ok {
        bail!(
            "{}: field model_type: expected {:?} for {arch}, found {:?}",
            path.display(),
            arch.model_type(),
            cfg.model_type
        );
    }
    Ok(arch)
}

fn load<M>(
    dir: &Path,
    device: Device,
    wanted: &[Architecture],
    edit: impl FnOnce(&mut ModelConfig),
    build: impl FnOnce(&VarStore, &ModelConfig, Architecture) -> anyhow::Result<M>,
) -> anyhow::Result<Pretrained<M>> {
    let config_path = dir.join(CONFIG_FILE);
    let mut config = ModelConfig::from_file(&config_path)?;
    edit(&mut config);
    let architecture = resolve_architecture(&config, &config_path, wanted)?;
    let files = weight_files(dir)?;
    let vs = VarStore::new(device);
    let model = build(&vs, &config, architecture)
        .with_context(|| format!("building the model of {}", config_path.display()))?;
    load_weights(&vs, &files)?;
    Ok(Pretrained {
        model,
        vs,
        config,
        architecture,
    })
}

/// Loads an `ElectraForMaskedLM` or `BertForMaskedLM` folder; weights become fp32 on `device`.
pub fn load_masked_lm(dir: &Path, device: Device) -> anyhow::Result<Pretrained<MaskedLm>> {
    load_masked_lm_with(dir, device, |_| {})
}

/// [`load_masked_lm`], with the folder's config changed by `edit` before the model is built
/// (e.g. other dropout rates; the weights do not depend on them).
pub fn load_masked_lm_with(
    dir: &Path,
    device: Device,
    edit: impl FnOnce(&mut ModelConfig),
) -> anyhow::Result<Pretrained<MaskedLm>> {
    load(
        dir,
        device,
        &[
            Architecture::ElectraForMaskedLM,
            Architecture::BertForMaskedLM,
        ],
        edit,
        |vs, cfg, arch| MaskedLm::new(&vs.root(), cfg, arch),
    )
}

/// Loads an `ElectraForPreTraining` folder; weights become fp32 on `device`.
pub fn load_discriminator(dir: &Path, device: Device) -> anyhow::Result<Pretrained<Discriminator>> {
    load(
        dir,
        device,
        &[Architecture::ElectraForPreTraining],
        |_| {},
        |vs, cfg, _| Discriminator::new(&vs.root(), cfg),
    )
}

/// Writes `config.json` (with `architectures` and `model_type` set, and `embedding_size` spelled
/// out for ELECTRA) and `model.safetensors` (fp32; tied decoder weights left out, as
/// transformers 5 writes them) into `dir`. Each file is written atomically, the weights first
/// and the config last, so a folder with a new config always has its weights.
pub fn save_pretrained(
    vs: &VarStore,
    config: &ModelConfig,
    arch: Architecture,
    dir: &Path,
) -> anyhow::Result<()> {
    let mut cfg = config.clone();
    cfg.embedding_size = match arch {
        Architecture::BertForMaskedLM => config.embedding_size,
        _ => Some(config.effective_embedding_size()),
    };
    cfg.model_type = match cfg.hugging_face_incompatibility() {
        Some(_) => NATIVE_MODEL_TYPE.to_string(),
        None => arch.model_type().to_string(),
    };
    cfg.architectures = Some(vec![arch.as_str().to_string()]);
    cfg.validate()
        .with_context(|| format!("saving model config into {}", dir.display()))?;
    let word = format!("{}.embeddings.word_embeddings.weight", arch.base_prefix());
    match vs.variables().get(&word) {
        Some(t) if t.size()[0] == cfg.vocab_size => {}
        Some(t) => bail!(
            "saving {arch} into {}: {word} has shape {:?}, but config vocab_size is {}",
            dir.display(),
            t.size(),
            cfg.vocab_size
        ),
        None => bail!(
            "saving {arch} into {}: the VarStore has no {word}; it does not hold a {arch}",
            dir.display()
        ),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::files::atomic::remove_stale_temps(dir)?;
    let bytes = weights_bytes(vs).with_context(|| format!("saving into {}", dir.display()))?;
    crate::files::atomic::write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
    crate::files::atomic::write_json_atomic(&dir.join(CONFIG_FILE), &cfg)?;
    Ok(())
}
