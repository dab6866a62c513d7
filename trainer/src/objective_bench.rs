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
use shared::corruption::aux::AuxModel;
use shared::corruption::masking::SpecialIds;
use shared::model::{init_masked_lm, Architecture, ModelConfig};
use std::time::Instant;
use tch::{Device, Tensor};

use crate::cli::{BenchObjective, ObjectiveBenchArgs};
use crate::loader::collate::collate;
use crate::loader::Rows;
use crate::objectives::args::{ObjectiveArgs, ObjectiveSettings, TemperaturePer};
use crate::objectives::{BatchContext, DeviceBatch, ObjectiveInit, TrainObjective};
use crate::optim::{AdamW, AdamWConfig};

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

pub fn run(a: &ObjectiveBenchArgs) -> anyhow::Result<()> {
    if a.steps == 0 || a.batch_size == 0 || a.seq_len < 3 {
        bail!("--steps and --batch-size: expected at least 1; --seq-len: at least 3");
    }
    match a.objective {
        BenchObjective::All => compare(a),
        one => {
            let f = measure(a, one)?;
            println!("{}", serde_json::to_string(&f)?);
            Ok(())
        }
    }
}

fn name(o: BenchObjective) -> &'static str {
    match o {
        BenchObjective::Rtd => "rtd",
        BenchObjective::Online => "online",
        BenchObjective::Electra => "electra",
        BenchObjective::All => "all",
    }
}

/// Runs each objective in a child process and prints the table.
fn compare(a: &ObjectiveBenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the trainer binary")?;
    let mut rows = vec![];
    for o in [
        BenchObjective::Electra,
        BenchObjective::Rtd,
        BenchObjective::Online,
    ] {
        let out = std::process::Command::new(&exe)
            .arg("bench")
            .args(["--objective", name(o)])
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
                "bench --objective {}: {}",
                name(o),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Figures = serde_json::from_str(line.trim())
            .with_context(|| format!("bench --objective {}: unexpected output {line}", name(o)))?;
        rows.push((name(o), f));
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

fn measure(a: &ObjectiveBenchArgs, o: BenchObjective) -> anyhow::Result<Figures> {
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
    let (objective, kind): (Box<dyn TrainObjective>, _) = match o {
        BenchObjective::Rtd => {
            let t = Tensor::rand([rows.ids.len() as i64], tch::kind::FLOAT_CPU).lt(0.15);
            rows.targets = Vec::<bool>::try_from(&t)?
                .into_iter()
                .map(i8::from)
                .collect();
            let spec = &crate::objectives::rtd::SPEC;
            (
                build(spec, &cfg, device, batch, None)?,
                (spec.batches)(&batch),
            )
        }
        BenchObjective::Electra => {
            let settings = ObjectiveSettings::Electra {
                generator_layers: a.aux_layers,
                rtd_weight: 50.0,
            };
            let spec = &crate::objectives::electra::SPEC;
            (
                build(spec, &cfg, device, batch, Some(&settings))?,
                (spec.batches)(&batch),
            )
        }
        BenchObjective::Online => {
            let mut aux_cfg = cfg.clone();
            aux_cfg.num_hidden_layers = a.aux_layers;
            let lm = init_masked_lm(&aux_cfg, Architecture::ElectraForMaskedLM, device)?;
            let mut aux = AuxModel::new(lm, device);
            if device.is_cuda() {
                aux.use_bf16();
            }
            let spec = &crate::objectives::online::SPEC;
            let model = crate::objectives::online::with_aux(&cfg, aux, device, batch)?;
            (model, (spec.batches)(&batch))
        }
        BenchObjective::All => unreachable!("compare() runs the objectives"),
    };
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

fn build(
    spec: &crate::objectives::ObjectiveSpec,
    cfg: &ModelConfig,
    device: Device,
    batch: BatchContext,
    settings: Option<&ObjectiveSettings>,
) -> anyhow::Result<Box<dyn TrainObjective>> {
    let args = ObjectiveArgs {
        aux_model: None,
        temperature_per: TemperaturePer::Epoch,
        temperature_schedule: "exp".into(),
        t0: 2.0,
        tau: 0.1,
        k: 2.0,
        epochs: 10,
        generator_layers: None,
        rtd_weight: 50.0,
        debug_dump_corrupted: None,
    };
    (spec.build)(&ObjectiveInit {
        model_config: cfg,
        device,
        batch,
        args: &args,
        settings,
        step: crate::fused::StepKind::Autograd,
    })
}
