//! The checked configuration of a training run, built once from the flags
//! (`TrainConfig::try_from(&TrainArgs)`): every flag is checked here, before any file is read,
//! and the rest of the trainer reads this, never the raw flags. What decides the result is
//! later resolved against the data into the [`RunRecord`](super::run_record::RunRecord) saved
//! as `run.json`; what does not ([`Runtime`]: device, loader threads, prefetch, peak
//! FLOP/s, the TensorBoard folder, testing aids) may change between a run and its resume.
use anyhow::bail;
use std::path::PathBuf;
use tch::Device;

use super::args::TrainArgs;
use crate::objectives::Objective;

/// Where the run's outputs go.
#[derive(Debug, Clone, PartialEq)]
pub enum RunDirChoice {
    /// `--run-dir DIR`.
    Given(PathBuf),
    /// A new folder `runs/<objective>-<model>-<UTC time>` (see `crate::outputs::run_dir`).
    Default,
}

/// Testing aids (hidden flags).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DebugFlags {
    /// Stop (as if killed) after this many updates of this invocation, writing nothing more.
    pub stop_after: Option<u64>,
    /// Make the loss of this update (1-based) NaN.
    pub nan_at_step: Option<u64>,
    /// `FAST_ELECTRA_TEST_DIE_AT_UPDATE=K` (environment, so that a restarted group sees the
    /// same command line): rank 1 SIGKILLs itself as update K starts, once per run folder
    /// (a marker file in the run folder remembers it), to test elastic restarts.
    pub die_at_update: Option<u64>,
}

/// The environment variable behind [`DebugFlags::die_at_update`].
pub const DIE_AT_UPDATE_ENV: &str = "FAST_ELECTRA_TEST_DIE_AT_UPDATE";

/// Where the TensorBoard event files go (`--tensorboard-dir`, `--no-tensorboard`).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorBoardDir {
    /// `RUN/tensorboard` (the default).
    InRun,
    /// `--tensorboard-dir DIR`.
    Given(PathBuf),
    /// `--no-tensorboard`.
    Off,
}

/// Settings that do not change the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// Under a launcher `auto`/`cuda` mean `cuda:$LOCAL_RANK`.
    pub device: Device,
    /// This process's place in a launched (data-parallel) run, from the environment.
    pub launch: Option<crate::dist::Launch>,
    /// How long a rank waits for the others (`--dist-timeout`).
    pub dist_timeout: std::time::Duration,
    /// Micro-batches the loader prepares ahead of the model.
    pub prefetch: usize,
    /// Loader (rayon) threads; 0 = all cores.
    pub loader_threads: usize,
    /// Peak FLOP/s of the device for MFU (None: from the GPU's name, or no MFU).
    pub peak_flops: Option<f64>,
    /// `--step`: autograd or the hand-written step.
    pub step: crate::fused::StepKind,
    /// `--bucket-mb` in bytes (0: one all-reduce after the backward pass), `--grad-comm bf16`,
    /// `--comm-timing`.
    pub buckets: crate::ext::ReducerOptions,
    /// Where the TensorBoard event files go.
    pub tensorboard: TensorBoardDir,
    pub debug: DebugFlags,
}

/// The flags that decide the result (with the data and `--max-steps` they make the
/// [`RunRecord`](super::run_record::RunRecord), where they are saved as they are).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hyper {
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub mask_rate: f64,
    pub seed: u64,
    pub shuffle_window: usize,
    pub repeat_last_epoch: bool,
    pub validate_every: u64,
    pub validation_rows: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
}

/// Everything a training run needs from its flags, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub objective: Objective,
    /// `--model` as given (a preset name or a config.json path).
    pub model: String,
    /// `--dropout`: hidden and attention dropout overriding the model config's.
    pub dropout: Option<f64>,
    /// `--export-format`.
    pub export_format: crate::train::args::ExportFormat,
    pub shards: Vec<PathBuf>,
    pub validation: Option<PathBuf>,
    /// `--tokenizer`: the tokenizer.json for the export (else the manifest's path).
    pub tokenizer: Option<PathBuf>,
    /// Check every shard's SHA-256 against its manifest before training.
    pub verify_shards: bool,
    pub run_dir: RunDirChoice,
    /// `--resume` / `--resume auto` (None: a fresh run).
    pub resume: Option<crate::train::args::ResumeMode>,
    /// `--max-steps`; None: as many updates as one pass over the data gives.
    pub max_steps: Option<u64>,
    pub hyper: Hyper,
    pub runtime: Runtime,
    /// The flags only some objectives read (checked for `objective`).
    pub objective_args: crate::objectives::args::ObjectiveArgs,
}

/// Refuses 0 for a flag that counts something.
pub fn positive(flag: &str, v: u64) -> anyhow::Result<()> {
    if v == 0 {
        bail!("{flag}: expected a positive number, found 0");
    }
    Ok(())
}

/// Checks a float flag that becomes an fp32 number on the device (learning rate, weight decay,
/// clipping norm, loss weight, the online objective's temperature schedule): finite, `lo <= v`, and representable in fp32 without
/// overflowing to infinity or (for a non-zero value) flushing to zero or a subnormal.
pub fn fp32_flag(flag: &str, v: f64, positive: bool) -> anyhow::Result<()> {
    let what = if positive {
        "a positive number"
    } else {
        "a non-negative number"
    };
    if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
        bail!("{flag}: expected {what}, found {v}");
    }
    let (min, max) = (f32::MIN_POSITIVE as f64, f32::MAX as f64);
    if v > max || (v != 0.0 && v < min) {
        bail!(
            "{flag}: expected {what} within fp32's range ({min:e} to {max:e}; it is used in fp32 on the device), found {v:e}"
        );
    }
    Ok(())
}

impl TryFrom<&TrainArgs> for TrainConfig {
    type Error = anyhow::Error;

    fn try_from(a: &TrainArgs) -> anyhow::Result<Self> {
        positive("--batch-size", a.batch_size as u64)?;
        positive("--grad-accum", a.grad_accum as u64)?;
        positive("--log-every", a.log_every)?;
        positive("--checkpoint-every", a.checkpoint_every)?;
        positive("--validate-every", a.validate_every)?;
        positive("--shuffle-window", a.shuffle_window as u64)?;
        if a.max_steps == Some(0) {
            bail!("--max-steps: expected a positive number, found 0");
        }
        fp32_flag("--lr", a.lr, true)?;
        if !(a.mask_rate > 0.0 && a.mask_rate < 1.0) {
            bail!(
                "--mask-rate: expected a fraction in (0, 1), found {}",
                a.mask_rate
            );
        }
        fp32_flag("--weight-decay", a.weight_decay, false)?;
        fp32_flag("--clip-norm", a.clip_norm, false)?;
        fp32_flag("--rtd-weight", a.objective_args.rtd_weight, true)?;
        if let Some(t) = a.peak_tflops {
            if !(t.is_finite() && t > 0.0) {
                bail!("--peak-tflops: expected a positive number, found {t}");
            }
        }
        a.objective_args.check(a.objective)?;
        if a.step == crate::fused::StepKind::Fused && !a.objective.spec().fused_step {
            let with: Vec<&str> = crate::objectives::OBJECTIVES
                .iter()
                .filter(|s| s.fused_step)
                .map(|s| s.name)
                .collect();
            bail!(
                "--step fused: only --objective {} has a hand-written step (found --objective {}); use --step autograd",
                with.join(", "),
                a.objective
            );
        }
        if let Some(p) = a.dropout {
            if !(0.0..1.0).contains(&p) {
                bail!("--dropout: expected a probability in [0, 1), found {p}");
            }
        }
        if a.shards.is_empty() {
            bail!("--shards: expected at least one folder, found none");
        }
        if !(a.bucket_mb.is_finite() && a.bucket_mb >= 0.0) {
            bail!(
                "--bucket-mb: expected a non-negative number of MB, found {}",
                a.bucket_mb
            );
        }
        if a.dist_timeout == 0 {
            bail!("--dist-timeout: expected a positive number of seconds, found 0");
        }
        let launch = crate::dist::launch_from_env()?;
        let run_dir = match (&a.run_dir, a.resume) {
            (Some(d), _) => RunDirChoice::Given(d.clone()),
            (None, Some(_)) => bail!(
                "--resume: expected --run-dir naming the run to continue, found none (a default run folder is always a new one)"
            ),
            (None, None) => RunDirChoice::Default,
        };
        Ok(Self {
            objective: a.objective,
            model: a.model.clone(),
            dropout: a.dropout,
            export_format: a.export_format,
            shards: a.shards.clone(),
            validation: a.validation.clone(),
            tokenizer: a.tokenizer.clone(),
            verify_shards: !a.no_verify_shards,
            run_dir,
            resume: a.resume,
            max_steps: a.max_steps,
            hyper: Hyper {
                batch_size: a.batch_size,
                grad_accum: a.grad_accum,
                lr: a.lr,
                warmup_steps: a.warmup_steps,
                weight_decay: a.weight_decay,
                clip_norm: a.clip_norm,
                mask_rate: a.mask_rate,
                seed: a.seed,
                shuffle_window: a.shuffle_window,
                repeat_last_epoch: a.repeat_last_epoch,
                validate_every: a.validate_every,
                validation_rows: a.validation_rows,
                checkpoint_every: a.checkpoint_every,
                log_every: a.log_every,
            },
            runtime: Runtime {
                device: match &launch {
                    Some(l) => launched_device(&a.device, l.local_rank)?,
                    None => shared::runtime::device::parse_device(&a.device)
                        .map_err(|e| anyhow::anyhow!("--device: {e:#}"))?,
                },
                launch,
                dist_timeout: std::time::Duration::from_secs(a.dist_timeout),
                prefetch: a.prefetch,
                loader_threads: a.loader_threads,
                peak_flops: a.peak_tflops.map(|t| t * 1e12),
                step: a.step,
                buckets: crate::ext::ReducerOptions {
                    bucket_bytes: (a.bucket_mb * 1024.0 * 1024.0) as i64,
                    bf16: a.grad_comm == crate::train::args::GradComm::Bf16,
                    timing: a.comm_timing,
                },
                tensorboard: match (&a.tensorboard_dir, a.no_tensorboard) {
                    (_, true) => TensorBoardDir::Off,
                    (Some(d), false) => TensorBoardDir::Given(d.clone()),
                    (None, false) => TensorBoardDir::InRun,
                },
                debug: DebugFlags {
                    stop_after: a.debug_stop_after,
                    nan_at_step: a.debug_nan_at_step,
                    die_at_update: match std::env::var(DIE_AT_UPDATE_ENV) {
                        Ok(v) => Some(v.trim().parse().map_err(|_| {
                            anyhow::anyhow!(
                                "environment variable {DIE_AT_UPDATE_ENV}={v:?}: expected an update number"
                            )
                        })?),
                        Err(_) => None,
                    },
                },
            },
            objective_args: a.objective_args.clone(),
        })
    }
}

/// The device of a launched rank: `auto` is `cuda:LOCAL_RANK` when CUDA is available, else the
/// CPU; `cuda` is `cuda:LOCAL_RANK`; anything else as given.
fn launched_device(flag: &str, local_rank: usize) -> anyhow::Result<Device> {
    let local = format!("cuda:{local_rank}");
    let parse = |name: &str| {
        shared::runtime::device::parse_device(name)
            .map_err(|e| anyhow::anyhow!("--device {flag} with LOCAL_RANK={local_rank}: {e:#}"))
    };
    match flag.trim().to_ascii_lowercase().as_str() {
        "auto" if tch::Cuda::is_available() => parse(&local),
        "auto" => Ok(Device::Cpu),
        "cuda" => parse(&local),
        _ => parse(flag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> anyhow::Result<TrainConfig> {
        let mut argv = vec!["trainer", "--shards", "data/epoch-000"];
        if !extra.contains(&"--device") {
            argv.extend(["--device", "cpu"]);
        }
        argv.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("clap accepts the flags");
        TrainConfig::try_from(&cli.train)
    }

    #[test]
    fn defaults_are_checked_and_carried() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.run_dir, RunDirChoice::Default);
        assert_eq!(c.objective.name(), "rtd");
        assert_eq!((c.hyper.batch_size, c.hyper.lr), (32, 1e-3));
        assert_eq!(c.runtime.device, Device::Cpu);
        assert_eq!(c.runtime.peak_flops, None);
        assert_eq!(c.runtime.tensorboard, TensorBoardDir::InRun);
        assert!(c.verify_shards && c.resume.is_none());
        let c = parse(&[
            "--run-dir",
            "r",
            "--peak-tflops",
            "2",
            "--debug-nan-at-step",
            "3",
        ])
        .unwrap();
        assert_eq!(c.run_dir, RunDirChoice::Given("r".into()));
        assert_eq!(c.runtime.peak_flops, Some(2e12));
        assert_eq!(c.runtime.debug.nan_at_step, Some(3));
    }

    #[test]
    fn bad_flags_are_named() {
        let err = |extra: &[&str]| parse(extra).unwrap_err().to_string();
        assert!(err(&["--batch-size", "0"])
            .contains("--batch-size: expected a positive number, found 0"));
        assert!(err(&["--max-steps", "0"]).contains("--max-steps"));
        assert!(err(&["--lr=-1"]).contains("--lr: expected a positive number, found -1"));
        assert!(err(&["--mask-rate", "1"])
            .contains("--mask-rate: expected a fraction in (0, 1), found 1"));
        assert!(err(&["--clip-norm=-2"]).contains("--clip-norm"));
        assert!(err(&["--peak-tflops", "0"]).contains("--peak-tflops"));
        assert!(err(&["--device", "tpu"]).contains("tpu"));
        for (flag, v) in [
            ("--lr", "1e39"),
            ("--lr", "1e-50"),
            ("--weight-decay", "1e40"),
            ("--clip-norm", "1e300"),
            ("--rtd-weight", "4e38"),
        ] {
            let e = err(&[flag, v]);
            assert!(
                e.contains(flag) && e.contains("within fp32's range") && e.contains("found"),
                "{flag} {v}: {e}"
            );
        }
        assert!(err(&["--lr", "inf"]).contains("--lr: expected a positive number, found inf"));
        assert!(parse(&["--lr", "3e38", "--weight-decay", "0", "--clip-norm", "0"]).is_ok());
    }

    #[test]
    fn tensorboard_goes_to_the_run_a_given_folder_or_nowhere() {
        let tb = |extra: &[&str]| parse(extra).map(|c| c.runtime.tensorboard);
        assert_eq!(
            tb(&["--tensorboard-dir", "tb/a"]).unwrap(),
            TensorBoardDir::Given("tb/a".into())
        );
        assert_eq!(tb(&["--no-tensorboard"]).unwrap(), TensorBoardDir::Off);
        let both = [
            "trainer",
            "--shards",
            "d",
            "--no-tensorboard",
            "--tensorboard-dir",
            "x",
        ];
        let e = crate::cli::Cli::try_parse_from(both)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn the_online_schedule_is_refused_outside_fp32_by_flag() {
        let online = |extra: &[&str]| {
            let mut a = vec!["--objective", "online", "--aux-model", "models/aux"];
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert!(online(&[]).is_ok());
        for (flag, v) in [
            ("--t0", "1e39"),
            ("--tau", "1e39"),
            ("--tau", "1e-45"),
            ("--k", "4e38"),
            ("--k", "1e-40"),
        ] {
            let e = online(&[flag, v]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{flag}: ")) && e.contains("within fp32's range"),
                "{flag} {v}: {e}"
            );
        }
        let e = online(&["--t0", "nan"]).unwrap_err().to_string();
        assert!(
            e.contains("--t0: expected a positive number, found NaN"),
            "{e}"
        );
        // The largest and smallest normal fp32 values are accepted.
        assert!(online(&["--t0", "3e38", "--tau", "1e-37"]).is_ok());
    }

    #[test]
    fn resume_needs_a_run_dir() {
        let e = parse(&["--resume"]).unwrap_err().to_string();
        assert!(e.contains("--resume: expected --run-dir"), "{e}");
        use crate::train::args::ResumeMode;
        let mode = |extra: &[&str]| parse(extra).unwrap().resume;
        assert_eq!(
            mode(&["--resume", "--run-dir", "runs/a"]),
            Some(ResumeMode::Always)
        );
        assert_eq!(
            mode(&["--run-dir", "runs/a", "--resume"]),
            Some(ResumeMode::Always)
        );
        assert_eq!(
            mode(&["--resume", "auto", "--run-dir", "runs/a"]),
            Some(ResumeMode::Auto)
        );
        let e = parse(&["--resume", "auto"]).unwrap_err().to_string();
        assert!(e.contains("--resume: expected --run-dir"), "{e}");
    }
}
