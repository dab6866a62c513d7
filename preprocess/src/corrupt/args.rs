//! The flags of `preprocess --epoch E` and the checked configuration made from them before any
//! work starts.
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::Args;
use shared::corruption::distributions::{self, check_alpha, Choice, GammaSchedule, Named};
use shared::corruption::schedule::{TemperatureSchedule, SCHEDULE_NAMES};

/// The auxiliary model's folder when `--aux-model` is not given.
pub const DEFAULT_AUX_MODEL: &str = "models/aux";

/// Corrupt one epoch of token shards with the frozen auxiliary model, or with a model-free
/// distribution (no subcommand).
#[derive(Debug, Clone, Args)]
pub struct CorruptArgs {
    /// Epoch to corrupt, 0-based, below --epochs. Writes OUT/epoch-EEE/.
    #[arg(long, required = true)]
    pub epoch: Option<u32>,
    /// Replaced-token distribution: the auxiliary model's (aux, made easier by --augmentation),
    /// or a model-free one that needs no auxiliary model. Special tokens ([CLS], [SEP], [PAD],
    /// [MASK]) have probability 0 in the model-free ones.
    #[arg(long, default_value = "aux", value_parser = values(distributions::distributions()))]
    pub distribution: String,
    /// How the auxiliary model's distribution is made easier (with --distribution aux): the
    /// first listed (the default) tempers it with --temperature-schedule; the others sample at
    /// T = 1 with strength gamma from --gamma-schedule.
    #[arg(long, value_parser = values(distributions::augmentations()))]
    pub augmentation: Option<String>,
    /// Smoothing alpha of the smoothed one-hot distribution, in (0, 1) (smoothed-one-hot,
    /// unf-soh, tf-soh).
    #[arg(long, default_value_t = 0.35)]
    pub alpha: f64,
    /// Schedule of gamma (unf-soh, tf-soh and every augmentation but temperature), u = epoch /
    /// epochs: exp (gamma_max e^(-u/tau)), const (gamma_max), poly (gamma_max (1-u)^k) or step
    /// (k equal steps down from gamma_max); --tau and --k as for the temperature.
    #[arg(long, default_value = "exp", value_parser = SCHEDULE_NAMES)]
    pub gamma_schedule: String,
    /// Starting strength gamma_max, in [0, 1]. gamma = 1 is the easy end (the pure uniform or TF
    /// distribution; full dropout), gamma = 0 the hard end (SOH; the plain model at T = 1).
    #[arg(long, default_value_t = 1.0)]
    pub gamma_max: f64,
    /// Temperature schedule: exp (T = 1 + (T0-1) exp(-u/tau)), const (T = T0),
    /// poly (T = 1 + (T0-1) (1-u)^k) or step (k equal steps down from T0), u = epoch / epochs.
    #[arg(long, default_value = "exp", value_parser = SCHEDULE_NAMES)]
    pub temperature_schedule: String,
    /// Token folder made by `preprocess tokenize` (its manifest.json must be present), e.g.
    /// data/tokens or data/tokens/validation.
    #[arg(long, default_value = "data/tokens")]
    pub tokens: PathBuf,
    /// Auxiliary masked LM: a Hugging Face folder (config.json + model.safetensors) of an
    /// ElectraForMaskedLM or BertForMaskedLM; with --distribution aux only [default: models/aux].
    #[arg(long)]
    pub aux_model: Option<PathBuf>,
    /// Output root; the epoch goes to OUT/epoch-EEE/.
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// Number of epochs of the whole training (u = epoch / epochs).
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Starting temperature T0 (>= 1).
    #[arg(long, default_value_t = 2.0)]
    pub t0: f64,
    /// Decay constant tau of the exp schedule (> 0; 0.5 suits a deep auxiliary model).
    #[arg(long, default_value_t = 0.1)]
    pub tau: f64,
    /// Exponent of the poly schedule (> 0), or number of steps of the step schedule (whole, >= 1).
    #[arg(long, default_value_t = 2.0)]
    pub k: f64,
    /// Fraction of each sequence's non-special tokens to mask, in (0, 1]; rounded half up, at
    /// least one token per sequence.
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    /// Seed of masking, sampling and row shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device of the auxiliary model: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.
    /// CUDA runs the model in bf16, the CPU in fp32.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Sequences per auxiliary-model batch. Does not change the output, except with the dropout
    /// and drop-attention augmentations, whose masks are drawn per batch (the batch size is then
    /// recorded in the settings).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// CPU threads for Parquet encoding and CPU inference [default: all cores on the CPU; on
    /// CUDA at most 4, as more starve the thread that feeds the GPU]. Does not change the output.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Share the epoch among N processes: this one makes the shards k with k % N == I. The
    /// manifest appears when the last part finishes. Without it, the part comes from the
    /// launcher: torchrun's RANK/WORLD_SIZE, Slurm's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT
    /// or SLURM_PROCID/SLURM_NTASKS; else 0/1.
    #[arg(long, value_name = "I/N")]
    pub part: Option<String>,
    /// Replace shards (and the manifest) of this epoch made with other settings instead of
    /// refusing.
    #[arg(long)]
    pub overwrite: bool,
    /// Synchronise the device after each stage of every batch and print where the model
    /// thread's time went (inputs to device, encoder, head, sampling). Slows the run a little.
    #[arg(long)]
    pub profile_batches: bool,
    /// Skip the SHA-256 check of the token shards against their manifest (schema, metadata and
    /// every row are still checked). Recorded in the epoch's shards and manifest.
    #[arg(long)]
    pub no_verify_shards: bool,
    /// How tempered replacements are drawn on CUDA: `reference` (the exact two-level sampler of
    /// data-spec/epoch.md, "Sampling") or `kernel` (the one-pass NVRTC kernel of
    /// docs/fused-step.md: the same draws except at rounding ties; CUDA only).
    #[arg(long, value_enum, default_value_t = SamplerKind::Reference)]
    pub sampler: SamplerKind,
    /// Testing aid: abort the process (as a crash would) right after writing this many shards.
    #[arg(long, hide = true)]
    pub abort_after_shards: Option<usize>,
}

/// The possible values of a flag, with their help, from the registry of distributions.
fn values(named: Vec<Named>) -> PossibleValuesParser {
    PossibleValuesParser::new(
        named
            .into_iter()
            .map(|n| PossibleValue::new(n.name).help(n.about)),
    )
}

/// The checked configuration of one corruption run.
#[derive(Debug, Clone)]
pub struct CorruptConfig {
    pub epoch: u32,
    pub epochs: u32,
    /// The distribution, and this epoch's values of the parameters it uses (temperature,
    /// alpha, gamma).
    pub choice: Choice,
    pub tokens: PathBuf,
    /// Where the distribution uses the auxiliary model only.
    pub aux_model: Option<PathBuf>,
    /// OUT/epoch-EEE.
    pub out_dir: PathBuf,
    pub mask_rate: f64,
    pub seed: u64,
    pub device: String,
    pub batch_size: usize,
    /// Encoding threads (and torch's CPU threads on the CPU); see [`Self::use_device`].
    pub threads: usize,
    /// `--threads` as given.
    pub threads_requested: Option<usize>,
    pub part: Part,
    /// Where `part` came from (`--part`, or the launcher's variables), and the launcher's
    /// local rank (the CUDA device of this process) when there is one.
    pub part_source: String,
    pub local_rank: Option<usize>,
    pub overwrite: bool,
    pub profile_batches: bool,
    /// Check the token shards' SHA-256 against their manifest before reading them.
    pub verify_shards: bool,
    pub sampler: SamplerKind,
    pub abort_after_shards: Option<usize>,
}

/// `--sampler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerKind {
    Reference,
    Kernel,
}

/// Encoding threads on CUDA unless `--threads` says otherwise: measured on a 16-core H200
/// machine, 16 threads made each 128 x 512 batch take 27.7 ms instead of 17 ms (the thread that
/// launches the GPU work and copies its inputs loses its core), 2 or 4 threads kept up.
pub const CUDA_DEFAULT_THREADS: usize = 4;

impl CorruptConfig {
    /// Settles the thread count for `device`: all cores (or `--threads`) on the CPU; on CUDA
    /// `--threads`, else at most [`CUDA_DEFAULT_THREADS`].
    pub fn use_device(&mut self, device: tch::Device) {
        if device.is_cuda() && self.threads_requested.is_none() {
            self.threads = self.threads.min(CUDA_DEFAULT_THREADS);
        }
    }
}

/// This process's part from a launcher's environment (read through `get`): torchrun's
/// `RANK`/`WORLD_SIZE`, a Slurm job array's `SLURM_ARRAY_TASK_ID`/`SLURM_ARRAY_TASK_COUNT`
/// (counted from `SLURM_ARRAY_TASK_MIN`), or Slurm tasks' `SLURM_PROCID`/`SLURM_NTASKS`; 0/1
/// when none is set. Returns the part, the variables used, and the local rank (`LOCAL_RANK` or
/// `SLURM_LOCALID`).
pub fn part_from_env(
    get: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(Part, String, Option<usize>)> {
    let num = |name: &str| -> anyhow::Result<Option<usize>> {
        get(name)
            .map(|v| {
                v.trim().parse::<usize>().ok().with_context(|| {
                    format!("environment variable {name}={v:?}: expected an integer >= 0")
                })
            })
            .transpose()
    };
    let local_rank = match num("LOCAL_RANK")? {
        Some(r) => Some(r),
        None => num("SLURM_LOCALID")?,
    };
    let pairs = [
        ("RANK", "WORLD_SIZE", None),
        (
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_COUNT",
            Some("SLURM_ARRAY_TASK_MIN"),
        ),
        ("SLURM_PROCID", "SLURM_NTASKS", None),
    ];
    for (index_var, count_var, min_var) in pairs {
        let (index, count) = (num(index_var)?, num(count_var)?);
        let (index, count) = match (index, count) {
            (None, None) => continue,
            (Some(i), Some(n)) => (i, n),
            (Some(_), None) => bail!(
                "environment variable {count_var} is not set, but {index_var} is: the part comes from both (or pass --part I/N)"
            ),
            (None, Some(_)) => bail!(
                "environment variable {index_var} is not set, but {count_var} is: the part comes from both (or pass --part I/N)"
            ),
        };
        let min = match min_var {
            Some(m) => num(m)?.unwrap_or(0),
            None => 0,
        };
        if count == 0 || index < min || index - min >= count {
            bail!(
                "environment variables {index_var}={index}, {count_var}={count}{}: expected a part index in 0..{count}",
                min_var.map_or(String::new(), |m| format!(", {m}={min}"))
            );
        }
        return Ok((
            Part {
                index: index - min,
                count,
            },
            format!("{index_var}/{count_var}"),
            local_rank,
        ));
    }
    Ok((
        Part { index: 0, count: 1 },
        "the default (no --part, no launcher)".into(),
        None,
    ))
}

/// `--part I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: usize,
    pub count: usize,
}

impl Part {
    /// Whether shard `k` belongs to this part.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index
    }
}

impl std::str::FromStr for Part {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if count >= 1 && index < count => Ok(Self { index, count }),
            _ => bail!("--part: expected I/N with N >= 1 and 0 <= I < N, found {s:?}"),
        }
    }
}

impl TryFrom<CorruptArgs> for CorruptConfig {
    type Error = anyhow::Error;

    fn try_from(a: CorruptArgs) -> anyhow::Result<Self> {
        let epoch = a
            .epoch
            .context("--epoch: expected an epoch number, found nothing")?;
        if a.epochs == 0 {
            bail!("--epochs: expected at least 1, found 0");
        }
        if epoch >= a.epochs {
            bail!(
                "--epoch: expected an epoch in 0..{} (below --epochs {}), found {epoch}",
                a.epochs,
                a.epochs
            );
        }
        let distribution = distributions::find(&a.distribution, a.augmentation.as_deref())
            .map_err(anyhow::Error::msg)?;
        let aux_model = match (distribution.uses().aux_model, a.aux_model) {
            (true, path) => Some(path.unwrap_or_else(|| PathBuf::from(DEFAULT_AUX_MODEL))),
            (false, None) => None,
            (false, Some(path)) => bail!(
                "--aux-model {}: unused by --distribution {} (a model-free distribution needs \
                 no auxiliary model); leave the flag out",
                path.display(),
                distribution.distribution().name
            ),
        };
        let alpha = check_alpha(a.alpha).map_err(anyhow::Error::msg)?;
        let gamma_schedule = GammaSchedule::new(&a.gamma_schedule, a.gamma_max, a.tau, a.k)
            .map_err(anyhow::Error::msg)?;
        let (schedule, t0, tau, k) = (&a.temperature_schedule, a.t0, a.tau, a.k);
        let temperature_schedule = || {
            TemperatureSchedule::new(schedule, t0, tau, k)
                .map_err(|e| anyhow::anyhow!("--temperature-schedule: {e}"))
        };
        let choice = Choice::new(
            distribution,
            alpha,
            gamma_schedule,
            temperature_schedule,
            epoch,
            a.epochs,
        )?;
        if !(a.mask_rate.is_finite() && a.mask_rate > 0.0 && a.mask_rate <= 1.0) {
            bail!(
                "--mask-rate: expected a fraction in (0, 1], found {}",
                a.mask_rate
            );
        }
        if a.batch_size == 0 {
            bail!("--batch-size: expected at least 1 sequence, found 0");
        }
        let threads = match a.threads {
            Some(0) => bail!("--threads: expected at least 1, found 0"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let (part, part_source, local_rank) = match &a.part {
            Some(p) => (p.parse()?, "--part".to_string(), None),
            None => part_from_env(&|k| std::env::var(k).ok())?,
        };
        Ok(Self {
            epoch,
            epochs: a.epochs,
            choice,
            tokens: a.tokens,
            aux_model,
            out_dir: a.out.join(shared::format::spec::epoch::folder_name(epoch)),
            mask_rate: a.mask_rate,
            seed: a.seed,
            device: a.device,
            batch_size: a.batch_size,
            threads,
            threads_requested: a.threads,
            part,
            part_source,
            local_rank,
            overwrite: a.overwrite,
            profile_batches: a.profile_batches,
            verify_shards: !a.no_verify_shards,
            sampler: a.sampler,
            abort_after_shards: a.abort_after_shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CorruptArgs,
    }

    fn config(flags: &[&str]) -> anyhow::Result<CorruptConfig> {
        let cli = Cli::try_parse_from(std::iter::once("preprocess").chain(flags.iter().copied()))?;
        CorruptConfig::try_from(cli.args)
    }

    #[test]
    fn the_flag_defaults_are_the_documented_ones() {
        let c = config(&["--epoch", "3", "--temperature-schedule", "exp"]).unwrap();
        assert_eq!(c.out_dir, PathBuf::from("data/epoch-003"));
        assert_eq!(c.tokens, PathBuf::from("data/tokens"));
        assert_eq!(c.aux_model, Some(PathBuf::from("models/aux")));
        let d = c.choice.distribution;
        assert_eq!(
            (
                d.distribution().name,
                d.augmentation().map(|a| a.name),
                c.choice.alpha,
                c.choice.gamma
            ),
            ("aux", Some("temperature"), None, None)
        );
        assert_eq!((c.epochs, c.mask_rate, c.seed), (10, 0.15, 0));
        assert!((c.choice.temperature - (1.0 + (-3.0f64).exp())).abs() < 1e-12);
        assert_eq!(c.part, Part { index: 0, count: 1 });
    }

    #[test]
    fn the_part_comes_from_the_launcher() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let p = |i, n| Part { index: i, count: n };
        let (part, src, local) = part_from_env(&env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "3"),
        ]))
        .unwrap();
        assert_eq!(
            (part, src.as_str(), local),
            (p(3, 8), "RANK/WORLD_SIZE", Some(3))
        );
        let (part, src, _) = part_from_env(&env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
        ]))
        .unwrap();
        assert_eq!(
            (part, src.as_str()),
            (p(3, 4), "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
        );
        let (part, _, local) = part_from_env(&env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "1"),
        ]))
        .unwrap();
        assert_eq!((part, local), (p(1, 2), Some(1)));
        assert_eq!(part_from_env(&env(&[])).unwrap().0, p(0, 1));
        let e = part_from_env(&env(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(e.to_string().contains("RANK=2, WORLD_SIZE=2"), "{e}");
        let e = part_from_env(&env(&[("RANK", "0")])).unwrap_err();
        assert!(e.to_string().contains("WORLD_SIZE is not set"), "{e}");
    }

    #[test]
    fn bad_flags_are_refused() {
        let err = |f: &[&str]| config(f).unwrap_err().to_string();
        assert!(err(&["--epoch", "10"]).contains("0..10"));
        assert!(err(&["--epoch", "0", "--t0", "0.5"]).contains("t0"));
        assert!(err(&["--epoch", "0", "--tau", "nan"]).contains("tau"));
        assert!(err(&["--epoch", "0", "--mask-rate", "0"]).contains("--mask-rate"));
        assert!(err(&["--epoch", "0", "--part", "2/2"]).contains("--part"));
        assert!(err(&["--epoch", "0", "--batch-size", "0"]).contains("--batch-size"));
        assert!(config(&["--epoch", "0", "--temperature-schedule", "cosine"]).is_err());
        let model_free = ["--epoch", "0", "--distribution", "uniform"];
        let with = |extra: &[&str]| err(&[&model_free[..], extra].concat());
        assert!(with(&["--aux-model", "m"]).contains("unused by --distribution uniform"));
        assert!(with(&["--augmentation", "dropout"]).contains("--distribution aux only"));
        assert!(with(&["--alpha", "1"]).contains("--alpha: expected a number in (0, 1), found 1"));
        assert!(with(&["--gamma-max=-0.5"]).contains("--gamma-max: expected a number in [0, 1]"));
        assert!(config(&["--epoch", "0", "--distribution", "zipf"]).is_err());
    }

    #[test]
    fn gamma_and_alpha_are_kept_where_used() {
        let c = config(&[
            "--epoch",
            "2",
            "--epochs",
            "4",
            "--distribution",
            "tf-soh",
            "--gamma-schedule",
            "poly",
            "--k",
            "1",
            "--gamma-max",
            "0.8",
        ])
        .unwrap();
        assert_eq!((c.choice.alpha, c.aux_model.is_none()), (Some(0.35), true));
        let (_, gamma) = c.choice.gamma.unwrap();
        assert!((gamma - 0.4).abs() < 1e-15);
        assert_eq!(c.choice.temperature, 1.0);
        let c = config(&["--epoch", "0", "--augmentation", "drop-token", "--t0", "3"]).unwrap();
        assert_eq!((c.choice.temperature, c.choice.alpha), (1.0, None));
        assert_eq!(c.choice.gamma.unwrap().1, 1.0);
        let c = config(&["--epoch", "0", "--distribution", "uniform"]).unwrap();
        assert_eq!((c.choice.alpha, c.choice.gamma.is_none()), (None, true));
        let p: Part = "1/3".parse().unwrap();
        assert!(p.owns(4) && !p.owns(3));
    }
}
