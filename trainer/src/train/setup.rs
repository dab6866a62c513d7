//! Everything checked and prepared before the first update, from the checked flags
//! ([`TrainConfig`]): data folders, tokenizer for the export, model config, number of updates,
//! the resolved `RunRecord`, the run folder (fresh or resumed), the objective's model(s), the
//! validation set and what the plots mark.
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::args::ResumeMode;
use super::config::RunDirChoice;
use super::config::{Hyper, Runtime, TrainConfig};
use super::model::resolve_config;
use super::run_record::RUN_FILE;
use super::run_record::{DataRef, RunRecord};
use super::validate::ValidationSet;
use crate::data::{self, Folder, ShardDecoder};
use crate::loader::pipeline::batches_per_pass;
use crate::loader::{BatchKind, EpochData};
use crate::objectives::{
    BatchContext, ObjectiveInit, ObjectiveSpec, SettingsInput, TrainObjective,
};
use crate::outputs::{ResumeFrom, RunOutputs};
use crate::parallel::Parallel;
use crate::plots::{EpochMark, PlotInfo};
use shared::model::ModelConfig;

/// A checked, ready-to-train run.
pub struct Setup {
    /// What decides the result (as in `run.json`).
    pub run: RunRecord,
    pub runtime: Runtime,
    pub objective: Box<dyn TrainObjective>,
    pub outputs: RunOutputs,
    /// The checkpoint to continue from.
    pub resume_from: ResumeFrom,
    pub epochs: Vec<EpochData>,
    pub decoder: ShardDecoder,
    /// Each epoch's temperature (None for token folders).
    pub temperatures: HashMap<u32, Option<f64>>,
    pub pad_id: i32,
    pub batch_kind: BatchKind,
    pub validation: Option<ValidationSet>,
    /// Bytes of the data's tokenizer.json, checked against the manifest's SHA-256.
    pub tokenizer_json: Vec<u8>,
    pub plot: PlotInfo,
    /// This process's place in a data-parallel run (a single process unless launched).
    pub parallel: Parallel,
}

/// Reads the tokenizer of the data (from `--tokenizer` or the manifest's path) and checks its
/// SHA-256 against the manifest's.
fn read_tokenizer(given: Option<&Path>, first: &Folder) -> anyhow::Result<Vec<u8>> {
    let info = &first.tokenizer;
    let manifest = first.dir.join(shared::format::spec::MANIFEST_FILE);
    let path = given.map_or_else(|| PathBuf::from(&info.path), Path::to_path_buf);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading the tokenizer {} (field tokenizer.path of {}; pass --tokenizer to give its place)",
            path.display(),
            manifest.display()
        )
    })?;
    let sha = shared::files::hash::sha256_hex(&bytes);
    if sha != info.sha256 {
        bail!(
            "{}: sha256: expected {} (field tokenizer.sha256 of {}), found {sha}",
            path.display(),
            info.sha256,
            manifest.display()
        );
    }
    Ok(bytes)
}

/// The number of updates of the run: `--max-steps`, checked against the data, or as many as
/// one pass over the epochs gives.
fn plan_steps(max_steps: Option<u64>, h: &Hyper, epochs: &[EpochData]) -> anyhow::Result<u64> {
    let b = h.batch_size;
    let k = h.grad_accum as u64;
    let available: u64 = epochs.iter().map(|e| batches_per_pass(e, b)).sum();
    let rows: u64 = epochs.iter().map(|e| e.rows()).sum();
    match max_steps {
        Some(n) => {
            if n * k > available {
                let last = epochs.last().map_or(0, |e| batches_per_pass(e, b));
                if !h.repeat_last_epoch {
                    bail!(
                        "--max-steps {n}: needs {} micro-batches of {b} rows, but the {} folder(s) hold {rows} rows ({available} micro-batches); lower --max-steps, add epochs, or pass --repeat-last-epoch",
                        n * k,
                        epochs.len()
                    );
                }
                if last == 0 {
                    bail!("--repeat-last-epoch: the last folder holds fewer rows than one micro-batch of {b}");
                }
            }
            Ok(n)
        }
        None => {
            let n = available / k;
            if n == 0 {
                bail!(
                    "the {} folder(s) hold {rows} rows: fewer than one update of {b} x {k} rows",
                    epochs.len()
                );
            }
            Ok(n)
        }
    }
}

fn data_ref(f: &Folder) -> DataRef {
    DataRef {
        dir: f.dir.clone(),
        epoch: f.epoch,
        manifest_sha256: f.manifest_sha256.clone(),
    }
}

/// The resolved configuration saved as `run.json`.
/// `h` is `c.hyper` with the global micro-batch (`--batch-size` x world size).
fn run_record(
    c: &TrainConfig,
    h: &Hyper,
    model_config: &ModelConfig,
    total_steps: u64,
    folders: &[Folder],
    validation: Option<&Folder>,
    objective_settings: Option<serde_json::Value>,
) -> anyhow::Result<RunRecord> {
    Ok(RunRecord {
        objective: c.objective,
        model: c.model.clone(),
        model_config: serde_json::to_value(model_config)?,
        total_steps,
        hyper: h.clone(),
        data: folders.iter().map(data_ref).collect(),
        validation: validation.map(data_ref),
        objective_settings,
        unverified_shards: !c.verify_shards,
    })
}

/// Where each epoch with a temperature starts, in updates (its first micro-batch's index over
/// `grad_accum`), for the plots; epochs the run does not reach are left out.
fn epoch_marks(folders: &[Folder], epochs: &[EpochData], h: &Hyper, total: u64) -> Vec<EpochMark> {
    let mut start = 0u64;
    let mut marks = vec![];
    for (f, e) in folders.iter().zip(epochs) {
        let update = start as f64 / h.grad_accum as f64;
        if update < total as f64 {
            if let Some(t) = f.temperature {
                marks.push(EpochMark {
                    update,
                    epoch: f.epoch,
                    temperature: t,
                });
            }
        }
        start += batches_per_pass(e, h.batch_size);
    }
    marks
}

/// Opens the `--validation` folder and checks it against the training data.
fn open_validation(
    c: &TrainConfig,
    spec: &ObjectiveSpec,
    first: &Folder,
) -> anyhow::Result<Option<Folder>> {
    let Some(d) = &c.validation else {
        return Ok(None);
    };
    let v = data::open_folder(d, spec.data, spec.name, c.verify_shards)?;
    data::check_compatible(first, &v, false)?;
    Ok(Some(v))
}

impl Setup {
    pub fn new(c: TrainConfig) -> anyhow::Result<Self> {
        if c.runtime.loader_threads > 0 {
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(c.runtime.loader_threads)
                .build_global();
        }
        let spec = c.objective.spec();
        let mut folders = data::open_training(&c.shards, spec.data, spec.name, c.verify_shards)?;
        let validation_folder = open_validation(&c, spec, &folders[0])?;
        let first = &folders[0];
        let tokenizer_json = read_tokenizer(c.tokenizer.as_deref(), first)?;
        let mut model_config = resolve_config(&c.model, first.vocab_size, first.max_seq_len)?;
        if let Some(p) = c.dropout {
            model_config.hidden_dropout_prob = p;
            model_config.attention_probs_dropout_prob = p;
        }
        if let Some(why) = model_config.hugging_face_incompatibility() {
            if c.export_format == crate::train::args::ExportFormat::HuggingFace {
                anyhow::bail!(
                    "--export-format hugging-face: --model {} cannot be exported for transformers: its BERT/ELECTRA classes cannot hold {why}; use --export-format auto (the project's fast_electra format, docs/model-format.md)",
                    c.model
                );
            }
            eprintln!(
                "trainer: the export will be in this project's fast_electra format (docs/model-format.md): transformers' BERT/ELECTRA classes cannot hold {why}"
            );
        }
        let pad_id = first.tokenizer.special_tokens.pad as i32;
        let batch = BatchContext {
            seed: c.hyper.seed,
            mask_rate: c.hyper.mask_rate,
            special: (&first.tokenizer.special_tokens).into(),
            vocab: first.vocab_size,
            max_seq_len: first.max_seq_len,
        };
        let batch_kind = (spec.batches)(&batch);
        let epochs: Vec<EpochData> = folders.iter().map(|f| f.epoch_data()).collect();
        // The loader yields global micro-batches of --batch-size x world size rows (each rank
        // computes on its share): the data plan and run.json count in those.
        let world = c.runtime.launch.as_ref().map_or(1, |l| l.world_size);
        let global = Hyper {
            batch_size: c.hyper.batch_size * world,
            ..c.hyper.clone()
        };
        let total_steps = plan_steps(c.max_steps, &global, &epochs)?;
        let settings = (spec.settings)(&SettingsInput {
            args: &c.objective_args,
            model: &c.model,
            layers: model_config.num_hidden_layers,
        })?;
        let run = run_record(
            &c,
            &global,
            &model_config,
            total_steps,
            &folders,
            validation_folder.as_ref(),
            settings.clone(),
        )?;
        let mut parallel = match &c.runtime.launch {
            Some(l) => Parallel::join(l, c.runtime.device, c.runtime.dist_timeout)?,
            None => Parallel::single(),
        };
        parallel.check_same_config(&serde_json::to_value(&run)?)?;
        if parallel.world > 1 {
            let b = c.runtime.buckets;
            parallel.check_same_comm(format!(
                "--step {} --bucket-mb {} --grad-comm {}",
                match c.runtime.step {
                    crate::fused::StepKind::Autograd => "autograd",
                    _ => "fused",
                },
                b.bucket_bytes as f64 / (1024.0 * 1024.0),
                if b.bf16 { "bf16" } else { "fp32" }
            ))?;
        }
        let (outputs, resume_from) = prepare_outputs(&c, &run, spec.name, &mut parallel)?;
        tch::manual_seed(crate::rng::init_seed(c.hyper.seed));
        let objective = (spec.build)(&ObjectiveInit {
            model_config: &model_config,
            device: c.runtime.device,
            batch,
            args: &c.objective_args,
            settings: settings.as_ref(),
            step: c.runtime.step,
        })?;
        // Rank 0 validates (the others go on and wait for it at the next all-reduce).
        let validation = validation_folder
            .filter(|_| parallel.writes())
            .map(|v| ValidationSet::load(v, spec.data, &c.hyper, pad_id, batch_kind))
            .transpose()?;
        let plot = PlotInfo {
            loss_label: objective.reports().loss_label,
            epochs: epoch_marks(&folders, &epochs, &global, total_steps),
        };
        let temperatures = folders.iter().map(|f| (f.epoch, f.temperature)).collect();
        let decoder = ShardDecoder::take(&mut folders, spec.data);
        Ok(Self {
            run,
            runtime: c.runtime,
            objective,
            outputs,
            resume_from,
            epochs,
            decoder,
            temperatures,
            pad_id,
            batch_kind,
            validation,
            tokenizer_json,
            plot,
            parallel,
        })
    }
}

/// The run folder: rank 0 (or a single process) prepares it and tells the other ranks which
/// folder it is and which checkpoint to resume, through the store; they write nothing. A group
/// restarted by torchrun (`--max-restarts`, attempt > 0) resumes the run it finds, and so does
/// `--resume auto` on any attempt (a new or empty folder: it starts the run).
fn prepare_outputs(
    c: &TrainConfig,
    run: &RunRecord,
    objective: &str,
    parallel: &mut Parallel,
) -> anyhow::Result<(RunOutputs, ResumeFrom)> {
    let holds_run = matches!(&c.run_dir, RunDirChoice::Given(d) if d.join(RUN_FILE).exists());
    let restarted = c.runtime.launch.as_ref().is_some_and(|l| l.attempt > 0) && holds_run;
    let resume = match c.resume {
        Some(ResumeMode::Always) => true,
        Some(ResumeMode::Auto) => holds_run,
        None => restarted,
    };
    if c.resume == Some(ResumeMode::Auto) && parallel.writes() {
        eprintln!(
            "trainer: --resume auto: {}",
            if holds_run {
                "the run folder holds a run: continuing it"
            } else {
                "the run folder holds no run: starting it"
            }
        );
    }
    let mine = if parallel.writes() {
        Some(RunOutputs::prepare(
            &c.run_dir,
            resume,
            (objective, &c.model),
            run,
            true,
        )?)
    } else {
        None
    };
    let shared: (PathBuf, ResumeFrom) = serde_json::from_str(
        &parallel.shared_from_rank0(
            "run-folder",
            serde_json::to_string(
                &mine
                    .as_ref()
                    .map(|(o, r)| (o.dir().to_path_buf(), r.clone())),
            )?,
        )?,
    )
    .map(|v: Option<(PathBuf, ResumeFrom)>| v.expect("rank 0 prepared the run folder"))?;
    Ok(match mine {
        Some(m) => m,
        None => (RunOutputs::follower(shared.0), shared.1),
    })
}
