//! `trainer bench`: the paper's Table 7 measured. Times seconds per update (forward, backward,
//! AdamW) and peak memory of `rtd` (the dumped Fast-ELECTRA: the discriminator alone), `online`
//! (plus a frozen auxiliary model's inference) and `electra` (generator and discriminator
//! trained jointly: the baseline), at the same model, batch and sequence length, on random
//! token rows; prints the ratios to the joint baseline.
//!
//! Each objective runs in its own child process (this binary, re-executed), so that its peak
//! memory is its own: on CUDA the memory `nvidia-smi` reports in use at the end (the caching
//! allocator's reserve included), on the CPU the process's peak resident set (`VmHWM`).
use anyhow::{bail, Context};
use clap::Args;
use shared::corruption::masking::SpecialIds;
use std::time::Instant;
use tch::Tensor;

use crate::loader::collate::collate;
use crate::loader::Rows;
use crate::objectives::{
    BatchContext, BenchInput, DeviceBatch, Objective, ObjectiveSpec, OBJECTIVES,
};
use crate::optim::{AdamW, AdamWConfig};

#[derive(Debug, Clone, Args)]
pub struct ObjectiveBenchArgs {
    /// What to measure: `all` (every objective of the registry that has a bench builder, each
    /// in its own process, and their ratios to the jointly trained one: electra) or one of
    /// them (rtd: the discriminator alone, dumped Fast-ELECTRA; online: plus a frozen
    /// auxiliary model's inference; electra: generator and discriminator trained jointly).
    #[arg(long, default_value = "all", value_parser = bench_objective)]
    pub objective: String,
    /// Main model: tiny, small, base or large (optionally -rel, -rel-admin), or a config.json.
    #[arg(long, default_value = "base")]
    pub model: String,
    /// Sequences per update.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sequence (every row is this long).
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 30522)]
    pub vocab: i64,
    /// Layers of the auxiliary model (online) and of the generator (electra), main model's
    /// width.
    #[arg(long, default_value_t = 4)]
    pub aux_layers: i64,
    /// Timed updates (after the warm-up ones).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// Untimed updates first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// One objective's figures.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    pub seconds_per_update: f64,
    pub peak_memory_bytes: u64,
}

const SPECIAL: SpecialIds = SpecialIds {
    cls: 1,
    sep: 2,
    pad: 0,
    mask: 3,
};

/// The objectives `trainer bench` measures: the registry's with a bench builder, the jointly
/// trained baseline first.
fn measured() -> Vec<&'static ObjectiveSpec> {
    let mut specs: Vec<&'static ObjectiveSpec> = OBJECTIVES
        .iter()
        .copied()
        .filter(|s| s.bench.is_some())
        .collect();
    specs.sort_by_key(|s| !s.joint);
    specs
}

/// `--objective`: `all` or the name of a measured objective.
fn bench_objective(s: &str) -> Result<String, String> {
    let names: Vec<&str> = measured().iter().map(|o| o.name).collect();
    if s == "all" || names.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("expected all, {}, found {s:?}", names.join(", ")))
    }
}

pub fn run(a: &ObjectiveBenchArgs) -> anyhow::Result<()> {
    if a.steps == 0 || a.batch_size == 0 || a.seq_len < 3 {
        bail!("--steps and --batch-size: expected at least 1; --seq-len: at least 3");
    }
    if a.objective == "all" {
        return compare(a);
    }
    let spec = Objective::by_name(&a.objective)
        .map_err(|e| anyhow::anyhow!("--objective: {e}"))?
        .spec();
    let f = measure(a, spec)?;
    println!("{}", serde_json::to_string(&f)?);
    Ok(())
}

/// Runs each objective in a child process and prints the table.
fn compare(a: &ObjectiveBenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the trainer binary")?;
    let mut rows = vec![];
    for spec in measured() {
        let name = spec.name;
        let out = std::process::Command::new(&exe)
            .arg("bench")
            .args(["--objective", name])
            .args(["--model", &a.model])
            .args(["--batch-size", &a.batch_size.to_string()])
            .args(["--seq-len", &a.seq_len.to_string()])
            .args(["--vocab", &a.vocab.to_string()])
            .args(["--aux-layers", &a.aux_layers.to_string()])
            .args(["--steps", &a.steps.to_string()])
            .args(["--warmup", &a.warmup.to_string()])
            .args(["--device", &a.device])
            .output()
            .context("running a bench child")?;
        if !out.status.success() {
            bail!(
                "bench --objective {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Figures = serde_json::from_str(line.trim())
            .with_context(|| format!("bench --objective {name}: unexpected output {line}"))?;
        rows.push((name, f));
    }
    let base = rows[0].1;
    println!(
        "model {}, batch {}, seq {}, vocab {}, aux/generator layers {}, device {}, {} timed updates",
        a.model, a.batch_size, a.seq_len, a.vocab, a.aux_layers, a.device, a.steps
    );
    println!("objective  s/update  peak memory (MiB)  time/joint  memory/joint");
    for (n, f) in &rows {
        println!(
            "{n:<9}  {:>8.4}  {:>17.1}  {:>10.3}  {:>12.3}",
            f.seconds_per_update,
            f.peak_memory_bytes as f64 / (1 << 20) as f64,
            f.seconds_per_update / base.seconds_per_update,
            f.peak_memory_bytes as f64 / base.peak_memory_bytes.max(1) as f64
        );
    }
    Ok(())
}

/// Peak resident set of this process in bytes (Linux), else 0.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib << 10)
}

/// A batch of random rows ([CLS] ids [SEP]) of `seq_len` tokens.
fn random_rows(a: &ObjectiveBenchArgs) -> Rows {
    let ids = Tensor::randint_low(
        5,
        a.vocab,
        [(a.batch_size * a.seq_len) as i64],
        tch::kind::INT64_CPU,
    );
    let mut ids: Vec<i32> = Vec::<i64>::try_from(&ids)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i as i32)
        .collect();
    for r in 0..a.batch_size {
        ids[r * a.seq_len] = SPECIAL.cls;
        ids[(r + 1) * a.seq_len - 1] = SPECIAL.sep;
    }
    Rows {
        sequence_ids: (0..a.batch_size as u64).collect(),
        offsets: (0..=a.batch_size).map(|r| r * a.seq_len).collect(),
        ids,
        targets: vec![],
    }
}

fn measure(a: &ObjectiveBenchArgs, spec: &ObjectiveSpec) -> anyhow::Result<Figures> {
    let device = shared::runtime::device::parse_device(&a.device)
        .map_err(|e| anyhow::anyhow!("--device: {e:#}"))?;
    let cfg = crate::train::model::resolve_config(&a.model, a.vocab as u32, a.seq_len as u32)?;
    tch::manual_seed(0);
    let batch = BatchContext {
        seed: 0,
        mask_rate: 0.15,
        special: SPECIAL,
        vocab: a.vocab as u32,
        max_seq_len: a.seq_len as u32,
    };
    let mut rows = random_rows(a);
    let bench = spec
        .bench
        .with_context(|| format!("--objective {}: not measured by trainer bench", spec.name))?;
    let objective = bench(&mut BenchInput {
        model_config: &cfg,
        device,
        batch,
        aux_layers: a.aux_layers,
        rows: &mut rows,
    })?;
    let kind = (spec.batches)(&batch);
    let host = collate(
        &(0..a.batch_size).map(|i| (&rows, i)).collect::<Vec<_>>(),
        0,
        kind,
        0,
    );
    let db = DeviceBatch::new(&host, device);
    let mut opt = AdamW::new(objective.vars(), AdamWConfig::default())?;
    let update = |opt: &mut AdamW| {
        let out = shared::runtime::device::with_autocast(device, || objective.step(&db, true));
        out.loss.backward();
        let _ = opt.clip_and_step(1e-4, 1.0);
        opt.zero_grad();
        let _ = out.loss.double_value(&[]); // sync
    };
    for _ in 0..a.warmup {
        update(&mut opt);
    }
    let t = Instant::now();
    for _ in 0..a.steps {
        update(&mut opt);
    }
    let seconds_per_update = t.elapsed().as_secs_f64() / a.steps as f64;
    let peak_memory_bytes = if device.is_cuda() {
        crate::train::gpu::memory_used(device).unwrap_or(0)
    } else {
        peak_rss()
    };
    Ok(Figures {
        seconds_per_update,
        peak_memory_bytes,
    })
}
