//! Everything checked and prepared before the first update: flags, data folders, model config,
//! number of updates, run folder (fresh or resumed), tokenizer for the export.
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Device;

use super::config::{self, DataRef, RunConfig, RUN_FILE};
use super::model::{resolve_config, Model};
use super::validate::ValidationSet;
use crate::checkpoint;
use crate::cli::{Objective, TrainArgs};
use crate::data::{self, Folder, ShardDecoder};
use crate::loader::pipeline::batches_per_pass;
use crate::loader::{BatchKind, EpochData, MlmMasking};
use crate::parallel::Parallel;
use shared::model::ModelConfig;

/// A checked, ready-to-train run.
pub struct Setup {
    pub config: RunConfig,
    pub run_dir: PathBuf,
    pub device: Device,
    pub model: Model,
    pub model_config: ModelConfig,
    pub epochs: Vec<EpochData>,
    pub decoder: Option<ShardDecoder>,
    pub temperatures: HashMap<u32, Option<f64>>,
    pub pad_id: i32,
    pub batch_kind: BatchKind,
    pub validation: Option<ValidationSet>,
    /// The checkpoint to continue from: (step, folder).
    pub resume_from: Option<(u64, PathBuf)>,
    /// Bytes of the data's tokenizer.json, checked against the manifest's SHA-256.
    pub tokenizer_json: Vec<u8>,
    /// This process's place in a data-parallel run (a single process unless launched).
    pub par: Parallel,
}

fn check_flags(a: &TrainArgs) -> anyhow::Result<()> {
    let positive = [
        ("--batch-size", a.batch_size as u64),
        ("--grad-accum", a.grad_accum as u64),
        ("--log-every", a.log_every),
        ("--checkpoint-every", a.checkpoint_every),
        ("--validate-every", a.validate_every),
        ("--shuffle-window", a.shuffle_window as u64),
    ];
    for (flag, v) in positive {
        if v == 0 {
            bail!("{flag}: expected a positive number, found 0");
        }
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr: expected a positive number, found {}", a.lr);
    }
    if !(a.mask_rate > 0.0 && a.mask_rate < 1.0) {
        bail!(
            "--mask-rate: expected a fraction in (0, 1), found {}",
            a.mask_rate
        );
    }
    if !(a.weight_decay >= 0.0 && a.clip_norm >= 0.0) {
        bail!("--weight-decay and --clip-norm: expected non-negative numbers");
    }
    if a.max_steps == Some(0) {
        bail!("--max-steps: expected a positive number, found 0");
    }
    Ok(())
}

/// Reads the tokenizer of the data (from `--tokenizer` or the manifest's path) and checks its
/// SHA-256 against the manifest's.
fn read_tokenizer(args: &TrainArgs, first: &Folder) -> anyhow::Result<Vec<u8>> {
    let info = &first.tokenizer;
    let manifest = first.dir.join(shared::format::spec::MANIFEST_FILE);
    let path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| PathBuf::from(&info.path));
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

/// Updates the data allows: (total updates, micro-batches available without repeating).
/// `b` is the global micro-batch (`--batch-size` x world size).
fn plan_steps(args: &TrainArgs, epochs: &[EpochData], b: usize) -> anyhow::Result<u64> {
    let k = args.grad_accum as u64;
    let available: u64 = epochs.iter().map(|e| batches_per_pass(e, b)).sum();
    let rows: u64 = epochs.iter().map(|e| e.rows()).sum();
    match args.max_steps {
        Some(n) => {
            if n * k > available {
                let last = epochs.last().map_or(0, |e| batches_per_pass(e, b));
                if !args.repeat_last_epoch {
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

/// Checks the run folder: a fresh one gets `run.json`; an existing run is refused without
/// `--resume` and must match with it. Returns the checkpoint to resume from.
/// A group restarted by torchrun (`--max-restarts`, attempt > 0) resumes the run it finds.
fn prepare_run_dir(
    args: &TrainArgs,
    run_dir: &Path,
    rc: &RunConfig,
    attempt: u64,
) -> anyhow::Result<Option<(u64, PathBuf)>> {
    let run_file = run_dir.join(RUN_FILE);
    if run_file.exists() {
        if !args.resume && attempt == 0 {
            bail!(
                "{}: the run folder already holds a run; pass --resume to continue it, or choose another --run-dir",
                run_file.display()
            );
        }
        let stored = config::read(&run_file)?;
        config::check_same(&stored, rc, &run_file)?;
        return checkpoint::latest(run_dir);
    }
    if args.resume {
        bail!(
            "--resume: {} holds no run (no {RUN_FILE})",
            run_dir.display()
        );
    }
    if let Ok(mut entries) = std::fs::read_dir(run_dir) {
        if let Some(e) = entries.next() {
            bail!(
                "{}: the run folder is not empty (it holds {}) but has no {RUN_FILE}; choose an empty or new --run-dir",
                run_dir.display(),
                e?.file_name().to_string_lossy()
            );
        }
    }
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    shared::files::atomic::write_json_atomic(&run_file, rc)?;
    Ok(None)
}

impl Setup {
    pub fn new(args: &TrainArgs) -> anyhow::Result<Self> {
        check_flags(args)?;
        let run_dir = args.run_dir.clone().context("--run-dir is required")?;
        let launch = crate::dist::launch_from_env()?;
        let device = match &launch {
            Some(l) => launched_device(&args.device, l.local_rank)?,
            None => shared::runtime::device::parse_device(&args.device)?,
        };
        let world = launch.as_ref().map_or(1, |l| l.world_size);
        let global_batch = args.batch_size * world;
        if args.loader_threads > 0 {
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(args.loader_threads)
                .build_global();
        }
        let verify = !args.no_verify_shards;
        let mut folders = data::open_training(&args.shards, args.objective, verify)?;
        let validation_folder = match &args.validation {
            Some(d) => {
                let v = data::open_folder(d, args.objective, verify)?;
                data::check_compatible(&folders[0], &v, false)?;
                Some(v)
            }
            None => None,
        };
        let first = &folders[0];
        let tokenizer_json = read_tokenizer(args, first)?;
        let model_config = resolve_config(&args.model, first.vocab_size, first.max_seq_len)?;
        let special = first.tokenizer.special_tokens.clone();
        let pad_id = special.pad as i32;
        let batch_kind = match args.objective {
            Objective::Rtd => BatchKind::Rtd,
            Objective::Mlm => BatchKind::Mlm(MlmMasking {
                seed: args.seed,
                rate: args.mask_rate,
                special: (&special).into(),
                vocab: first.vocab_size,
            }),
        };
        let epochs: Vec<EpochData> = folders.iter().map(|f| f.epoch_data()).collect();
        let total_steps = plan_steps(args, &epochs, global_batch)?;
        let config = RunConfig {
            objective: args.objective,
            model: args.model.clone(),
            model_config: serde_json::to_value(&model_config)?,
            // The global micro-batch: a run resumes on another number of ranks with the same.
            batch_size: global_batch,
            grad_accum: args.grad_accum,
            lr: args.lr,
            warmup_steps: args.warmup_steps,
            total_steps,
            weight_decay: args.weight_decay,
            clip_norm: args.clip_norm,
            mask_rate: args.mask_rate,
            seed: args.seed,
            shuffle_window: args.shuffle_window,
            repeat_last_epoch: args.repeat_last_epoch,
            data: folders.iter().map(data_ref).collect(),
            validation: validation_folder.as_ref().map(data_ref),
            validate_every: args.validate_every,
            validation_rows: args.validation_rows,
            checkpoint_every: args.checkpoint_every,
            log_every: args.log_every,
        };
        let mut par = match &launch {
            Some(l) => Parallel::join(l, device, std::time::Duration::from_secs(args.dist_timeout))?,
            None => Parallel::single(),
        };
        par.check_same_config(&serde_json::to_value(&config)?)?;
        // Rank 0 alone writes into the run folder; the others learn what it found.
        let resume_from = if par.writes() {
            let attempt = launch.as_ref().map_or(0, |l| l.attempt);
            prepare_run_dir(args, &run_dir, &config, attempt)?
        } else {
            None
        };
        let resume_from: Option<(u64, PathBuf)> = serde_json::from_str(
            &par.from_rank0("resume-from", serde_json::to_string(&resume_from)?)?,
        )?;
        tch::manual_seed(super::torch_seed(args.seed, u64::MAX) ^ 0x5eed);
        let model = Model::init(args.objective, &model_config, device)?;
        // Rank 0 validates (the others go on and wait for it at the next all-reduce).
        let validation = validation_folder
            .filter(|_| par.writes())
            .map(|v| {
                ValidationSet::load(
                    v,
                    args.objective,
                    args.batch_size,
                    args.validation_rows,
                    pad_id,
                    batch_kind,
                )
            })
            .transpose()?;
        let temperatures = folders.iter().map(|f| (f.epoch, f.temperature)).collect();
        let decoder = ShardDecoder {
            shards: folders
                .iter_mut()
                .map(|f| std::mem::take(&mut f.shards))
                .collect(),
            objective: args.objective,
            vocab_size: folders[0].vocab_size,
        };
        Ok(Self {
            config,
            run_dir,
            device,
            model,
            model_config,
            epochs,
            decoder: Some(decoder),
            temperatures,
            pad_id,
            batch_kind,
            validation,
            resume_from,
            tokenizer_json,
            par,
        })
    }
}

/// The device of a launched rank: `auto` is `cuda:LOCAL_RANK` when CUDA is available, else the
/// CPU; `cuda` is `cuda:LOCAL_RANK`; anything else as given.
fn launched_device(flag: &str, local_rank: usize) -> anyhow::Result<Device> {
    let f = flag.trim().to_ascii_lowercase();
    let local = format!("cuda:{local_rank}");
    match f.as_str() {
        "auto" if tch::Cuda::is_available() => shared::runtime::device::parse_device(&local),
        "auto" => Ok(Device::Cpu),
        "cuda" => shared::runtime::device::parse_device(&local)
            .with_context(|| format!("--device cuda with LOCAL_RANK={local_rank}")),
        _ => shared::runtime::device::parse_device(flag),
    }
}
