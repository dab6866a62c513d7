//! `--model`: what a fine-tuning run starts from, resolved once, before any work.
//!
//! - a run folder of this trainer (`run.json`): its export (`export/`, or `export/discriminator`
//!   for a joint `electra` run), the tokenizer beside it; the pre-training updates are the
//!   run's;
//! - a checkpoint folder of a run (`RUN/checkpoints/step-N`): its weights with the run's model
//!   config, the run's tokenizer; N pre-training updates (Figure 4, left: score against
//!   updates);
//! - a Hugging Face folder (`config.json` + safetensors) of any class whose encoder we hold,
//!   with `tokenizer.json` beside it or `--tokenizer`;
//! - a size preset (`tiny`, `small`, `base`, `large`, with `-rel`/`-rel-admin`): random
//!   initialisation, `--tokenizer` required.
//!
//! With `--init random` any of them gives the same architecture freshly initialised: the control
//! every comparison needs.
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use super::model::Weights;
use super::train::ModelChoice;
use crate::checkpoint;
use crate::train::run_record::{self, RUN_FILE};
use shared::model::{ModelConfig, CONFIG_FILE};

/// A resolved `--model`.
#[derive(Debug, Clone)]
pub struct Source {
    /// How tables and plots name it (the argument, shortened to the run and checkpoint names).
    pub label: String,
    /// `--model` as given.
    pub given: String,
    pub choice: ModelChoice,
    /// The tokenizer.json its vocabulary comes from.
    pub tokenizer: PathBuf,
    /// Pre-training updates behind the weights, where known (runs and checkpoints).
    pub pretrain_updates: Option<u64>,
    /// SHA-256 of what the weights are (config and weights files; for random initialisation,
    /// of the config alone): the identity of the model in the results.
    pub fingerprint: String,
}

/// Whether `--init` takes the weights or only the architecture.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The pre-trained weights.
    Pretrained,
    /// The same architecture, freshly initialised.
    Random,
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The tokenizer of a Hugging Face folder: `tokenizer.json` beside the weights, else `given`.
fn folder_tokenizer(dir: &Path, given: Option<&Path>, what: &str) -> anyhow::Result<PathBuf> {
    if let Some(t) = given {
        return Ok(t.to_path_buf());
    }
    let beside = dir.join("tokenizer.json");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "--model {what}: {} has no tokenizer.json; pass --tokenizer FILE",
        dir.display()
    )
}

/// The export folder of a run and the prefix of its main model's variables in checkpoints.
fn run_export(run: &Path, objective: &str) -> (PathBuf, &'static str) {
    let export = run.join(crate::outputs::EXPORT);
    if objective == "electra" {
        (export.join("discriminator"), "discriminator.")
    } else {
        (export, "")
    }
}

/// The tokenizer of a run: its export's copy, else the data's (the manifest's path).
fn run_tokenizer(
    run: &Path,
    rec: &run_record::RunRecord,
    given: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if let Some(t) = given {
        return Ok(t.to_path_buf());
    }
    let (export, _) = run_export(run, rec.objective.name());
    let copy = export.join("tokenizer.json");
    if copy.is_file() {
        return Ok(copy);
    }
    if let Some(t) = rec.data.first().and_then(|d| manifest_tokenizer(&d.dir)) {
        if t.is_file() {
            return Ok(t);
        }
    }
    bail!(
        "{}: the run has no export with a tokenizer.json yet, and its data's tokenizer is not found; pass --tokenizer FILE",
        run.display()
    )
}

/// The tokenizer path a data folder's manifest records (`tokenizer.path`).
fn manifest_tokenizer(dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dir.join(shared::format::spec::MANIFEST_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(PathBuf::from(v.get("tokenizer")?.get("path")?.as_str()?))
}

/// Resolves one `--model` argument.
pub fn resolve(
    given: &str,
    init: Init,
    tokenizer: Option<&Path>,
    vocab_from_tokenizer: &dyn Fn(&Path) -> anyhow::Result<i64>,
) -> anyhow::Result<Source> {
    let path = Path::new(given);
    let (label, config, weights, tok, updates, fingerprint) = if path.join(RUN_FILE).is_file() {
        let rec = run_record::read(&path.join(RUN_FILE))?;
        let (export, _) = run_export(path, rec.objective.name());
        if !export.join(CONFIG_FILE).is_file() {
            bail!(
                "--model {given}: the run has no export yet ({} is missing); name one of its checkpoints, e.g. {}",
                export.join(CONFIG_FILE).display(),
                path.join(checkpoint::CHECKPOINTS).join("step-N").display()
            );
        }
        let config = ModelConfig::from_file(&export.join(CONFIG_FILE))?;
        let tok = run_tokenizer(path, &rec, tokenizer)?;
        let fp = shared::model::checkpoint_fingerprint(&export)
            .with_context(|| format!("--model {given}"))?;
        (
            file_name(path),
            config,
            Weights::HuggingFace(export),
            tok,
            Some(rec.total_steps),
            fp,
        )
    } else if path.join("state.json").is_file() {
        let run = path
            .parent()
            .and_then(Path::parent)
            .context("a checkpoint folder sits in RUN/checkpoints/")?;
        let rec = run_record::read(&run.join(RUN_FILE)).with_context(|| {
            format!("--model {given}: a checkpoint folder needs its run's {RUN_FILE}")
        })?;
        let state = checkpoint::read_state(path)?;
        let config: ModelConfig = serde_json::from_value(rec.model_config.clone())
            .with_context(|| format!("{}: field model_config", run.join(RUN_FILE).display()))?;
        let (_, prefix) = run_export(run, rec.objective.name());
        let file = path.join(shared::model::WEIGHTS_FILE);
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let fp = shared::files::hash::sha256_hex(&bytes);
        (
            format!("{}/{}", file_name(run), file_name(path)),
            config,
            Weights::Checkpoint {
                file,
                prefix: prefix.to_string(),
            },
            run_tokenizer(run, &rec, tokenizer)?,
            Some(state.step),
            fp,
        )
    } else if path.join(CONFIG_FILE).is_file() {
        let config = ModelConfig::from_file(&path.join(CONFIG_FILE))?;
        let fp = shared::model::checkpoint_fingerprint(path)
            .with_context(|| format!("--model {given}"))?;
        (
            file_name(path),
            config,
            Weights::HuggingFace(path.to_path_buf()),
            folder_tokenizer(path, tokenizer, given)?,
            None,
            fp,
        )
    } else if ModelConfig::is_preset(given) {
        let Some(tok) = tokenizer else {
            bail!("--model {given}: a size preset needs --tokenizer FILE (its vocabulary sizes the model)");
        };
        let config = ModelConfig::preset(given, vocab_from_tokenizer(tok)?)?;
        let fp = shared::files::hash::sha256_hex(serde_json::to_string(&config)?.as_bytes());
        (
            given.to_string(),
            config,
            Weights::Random,
            tok.to_path_buf(),
            None,
            fp,
        )
    } else {
        bail!(
            "--model {given}: expected a run folder (with {RUN_FILE}), a checkpoint folder (with state.json), a Hugging Face folder (with {CONFIG_FILE}) or a size preset (tiny, small, base, large)"
        );
    };
    let (label, weights, fingerprint) = match (init, weights) {
        (Init::Random, Weights::Random) | (Init::Pretrained, Weights::Random) => {
            (label, Weights::Random, fingerprint)
        }
        (Init::Random, _) => {
            let fp = shared::files::hash::sha256_hex(serde_json::to_string(&config)?.as_bytes());
            (format!("{label} (random init)"), Weights::Random, fp)
        }
        (Init::Pretrained, w) => (label, w, fingerprint),
    };
    Ok(Source {
        label,
        given: given.to_string(),
        choice: ModelChoice { config, weights },
        tokenizer: tok,
        pretrain_updates: updates.filter(|_| !matches!(init, Init::Random)),
        fingerprint,
    })
}
