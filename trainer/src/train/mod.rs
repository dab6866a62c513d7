//! The training run: check flags and data, set up the run folder, then one straight loop:
//! fetch micro-batches, forward, loss, backward, clip, step, schedule, log, validate,
//! checkpoint; at the end plots and the Hugging Face export.
pub mod bench;
pub mod config;
mod gpu;
pub mod model;
mod setup;
mod validate;

use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

use crate::checkpoint::{self, TrainState};
use crate::cli::{Objective, TrainArgs};
use crate::loader::{Loader, LoaderConfig};
use crate::lr::LinearSchedule;
use crate::metrics::{rates, MetricsWriter, TrainRecord};
use crate::objectives::DeviceBatch;
use crate::optim::{AdamW, AdamWConfig};
use crate::parallel::Parallel;

/// The seed torch is given before update `step`, so that dropout masks are a function of
/// (seed, step) and a resumed run draws the same ones.
pub fn torch_seed(seed: u64, step: u64) -> i64 {
    let mut r = shared::corruption::rng::CounterRng::new(seed, &[0x7_0c4, step]);
    (r.next_u64() >> 1) as i64
}

/// Interval accumulators between two log lines.
struct Interval {
    start: Instant,
    wait: Duration,
    rows: u64,
    tokens: u64,
    flops: f64,
    /// (update number, loss) on the device, checked for finiteness at the next sync.
    losses: Vec<(u64, Tensor)>,
    grad_norms: Vec<Tensor>,
    counts: Option<Tensor>,
    /// Leading entries of `losses` already summed over the ranks.
    losses_reduced: usize,
}

impl Interval {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            wait: Duration::ZERO,
            rows: 0,
            tokens: 0,
            flops: 0.0,
            losses: vec![],
            grad_norms: vec![],
            counts: None,
            losses_reduced: 0,
        }
    }
}

/// Data-parallel runs: sums the interval's losses not summed yet (each rank holds its weighted
/// share of every update's loss) and, with `counts`, the metric counts over the ranks, in one
/// all-reduce, so that every rank sees the global values (and stops on the same non-finite one).
fn reduce_interval(par: &mut Parallel, iv: &mut Interval, counts: bool) -> anyhow::Result<()> {
    if par.world == 1 {
        return Ok(());
    }
    let fresh: Vec<Tensor> = iv.losses[iv.losses_reduced..]
        .iter()
        .map(|(_, t)| t.to_kind(Kind::Double).view([1]))
        .collect();
    let n = fresh.len() as i64;
    let mut parts = fresh;
    let c = if counts { iv.counts.take() } else { None };
    if let Some(c) = &c {
        parts.push(c.to_kind(Kind::Double).view([-1]));
    }
    if parts.is_empty() {
        return Ok(());
    }
    let flat = Tensor::cat(&parts, 0);
    let step = iv.losses.last().map_or(0, |(s, _)| *s);
    par.sum(&flat, &format!("the all-reduce of the losses and metrics up to update {step}"))?;
    for (i, entry) in iv.losses[iv.losses_reduced..].iter_mut().enumerate() {
        entry.1 = flat.get(i as i64);
    }
    iv.losses_reduced = iv.losses.len();
    if c.is_some() {
        iv.counts = Some(flat.narrow(0, n, flat.size()[0] - n));
    }
    Ok(())
}

/// Syncs the interval's losses and gradient norms to the host; the first non-finite one stops
/// the run.
fn check_finite(iv: &Interval, last_good: &Option<std::path::PathBuf>) -> anyhow::Result<Vec<f64>> {
    if iv.losses.is_empty() {
        return Ok(vec![]);
    }
    let losses = Tensor::stack(
        &iv.losses
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .collect::<Vec<_>>(),
        0,
    )
    .to_kind(Kind::Double)
    .to_device(tch::Device::Cpu);
    let norms = Tensor::stack(&iv.grad_norms, 0)
        .to_kind(Kind::Double)
        .to_device(tch::Device::Cpu);
    let losses = Vec::<f64>::try_from(&losses)?;
    let norms = Vec::<f64>::try_from(&norms)?;
    for ((step, _), (l, n)) in iv.losses.iter().zip(losses.iter().zip(&norms)) {
        if !l.is_finite() || !n.is_finite() {
            bail!(
                "non-finite {} ({}) at step {step}: the run stopped; the last good checkpoint is {}",
                if l.is_finite() { "gradient norm" } else { "loss" },
                if l.is_finite() { n } else { l },
                last_good
                    .as_ref()
                    .map_or("none (no checkpoint was written yet)".to_string(), |p| p.display().to_string())
            );
        }
    }
    Ok(losses)
}

/// Runs `trainer` (training).
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let mut s = setup::Setup::new(args)?;
    let rc = s.config.clone();
    let device = s.device;
    let k = rc.grad_accum;
    let mut opt = AdamW::new(
        s.model.vs(),
        AdamWConfig {
            weight_decay: rc.weight_decay,
            ..Default::default()
        },
    )?;
    let (mut step, cursor) = match &s.resume_from {
        Some((st, dir)) => {
            checkpoint::load_vars(s.model.vs(), &dir.join("model.safetensors"))?;
            let opt_path = dir.join("optimizer.safetensors");
            opt.load_state(
                &checkpoint::read_tensors(&opt_path)?,
                &opt_path.display().to_string(),
            )?;
            let state = checkpoint::read_state(dir)?;
            if state.step != *st || opt.step_count() != *st {
                bail!(
                    "{}: field step: expected {st} (the folder name and optimizer step), found {}",
                    dir.join("state.json").display(),
                    state.step
                );
            }
            eprintln!("trainer: resuming {} at step {st}", dir.display());
            (state.step, state.cursor)
        }
        None => (0, Default::default()),
    };
    // Every rank starts from rank 0's weights (fresh runs: one initialisation; resumed runs
    // loaded the same checkpoint, so this only guards against a mixed-up file system).
    s.par
        .broadcast_from_rank0(opt.params(), "broadcasting rank 0's weights")?;
    let world = s.par.world;
    let mut allreduce_time = Duration::ZERO;
    let mut last_good = s.resume_from.as_ref().map(|(_, d)| d.clone());
    let epochs = Arc::new(std::mem::take(&mut s.epochs));
    let temperatures: std::collections::HashMap<u32, Option<f64>> = s.temperatures.clone();
    let loader = Loader::start(
        epochs.clone(),
        Arc::new(s.decoder.take().expect("decoder")),
        LoaderConfig {
            seed: rc.seed,
            batch_size: rc.batch_size,
            window: rc.shuffle_window,
            prefetch: args.prefetch,
            pad_id: s.pad_id,
            kind: s.batch_kind,
            repeat_last_epoch: rc.repeat_last_epoch,
        },
        cursor,
    );
    // Rank 0 writes every output of the run.
    let mut metrics = if s.par.writes() {
        Some(MetricsWriter::open(&s.run_dir, Some(step))?)
    } else {
        None
    };
    // Dropout masks: rank 0 keeps the single-process rule, the others differ from it.
    let rank_seed = match s.par.rank {
        0 => rc.seed,
        r => rc.seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    };
    let sched = LinearSchedule {
        peak: rc.lr,
        warmup: rc.warmup_steps,
        total: rc.total_steps,
    };
    let shape = model::shape(&s.model_config);
    let peak = args
        .peak_tflops
        .map(|t| t * 1e12)
        .or_else(|| gpu::name(device).and_then(|n| shared::cost::peak_flops(&n)));
    let mut peak_mem: Option<u64> = None;
    let bar = shared::runtime::progress::Progress::new(
        "trainer",
        rc.total_steps,
        "updates",
        "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
    );
    bar.start_at(step);
    let mut iv = Interval::new();
    let mut epoch_now = 0u32;
    let mut cursor_now = cursor;
    let first_step = step;
    let run_start = Instant::now();
    while step < rc.total_steps {
        if args
            .debug_stop_after
            .is_some_and(|n| step - first_step >= n)
        {
            bar.finish_and_clear();
            eprintln!("trainer: stopped after step {step} (--debug-stop-after)");
            return Ok(());
        }
        tch::manual_seed(torch_seed(rank_seed, step));
        let mut step_loss: Option<Tensor> = None;
        for _ in 0..k {
            let t0 = Instant::now();
            let hb = loader.next_batch()?;
            iv.wait += t0.elapsed();
            iv.rows += hb.rows as u64;
            iv.tokens += hb.real_tokens;
            iv.flops += hb.rows as f64
                * match rc.objective {
                    Objective::Rtd => {
                        shared::cost::discriminator_train_flops(&shape, hb.len as u64)
                    }
                    Objective::Mlm => {
                        shared::cost::masked_lm_train_flops(&shape, hb.len as u64, rc.mask_rate)
                    }
                } as f64;
            epoch_now = hb.epoch;
            cursor_now = hb.cursor_after;
            // `hb` is the global micro-batch; this rank computes on its share, weighted so that
            // the sum over the ranks is the global batch's mean loss (crate::parallel).
            let mine = s.par.share(&hb);
            let weight = s.par.loss_weight(&hb, &mine);
            let db = DeviceBatch::new(&mine, device);
            let out = shared::runtime::device::with_autocast(device, || s.model.forward(&db, true));
            let mut loss = out.loss * (weight / k as f64);
            if args.debug_nan_at_step == Some(step + 1) {
                loss = loss.g_mul_scalar(f64::NAN);
            }
            loss.backward();
            let detached = loss.detach();
            step_loss = Some(match step_loss {
                Some(acc) => acc + detached,
                None => detached,
            });
            iv.counts = Some(match iv.counts.take() {
                Some(c) => c + out.counts,
                None => out.counts,
            });
        }
        let t_sync = Instant::now();
        s.par.sum(
            opt.grads(),
            &format!("the all-reduce of the gradients of update {}", step + 1),
        )?;
        allreduce_time += t_sync.elapsed();
        let lr = sched.at(step);
        let norm = opt.clip_and_step(lr, rc.clip_norm)?;
        opt.zero_grad();
        step += 1;
        iv.losses.push((step, step_loss.expect("grad_accum >= 1")));
        iv.grad_norms.push(norm);
        bar.set_position(step);
        let last = step == rc.total_steps;
        if step % rc.log_every == 0 || last {
            reduce_interval(&mut s.par, &mut iv, true)?;
            let losses = check_finite(&iv, &last_good)?;
            let counts: Vec<f64> = Vec::<f64>::try_from(
                iv.counts
                    .take()
                    .expect("counts")
                    .to_device(tch::Device::Cpu),
            )?;
            let (accuracy, precision, recall) =
                rates(&[counts[0], counts[1], counts[2], counts[3], counts[4]]);
            let secs = iv.start.elapsed().as_secs_f64().max(1e-9);
            if device.is_cuda() {
                peak_mem = peak_mem.max(gpu::memory_used(device));
            }
            let grad_norm = Vec::<f64>::try_from(
                iv.grad_norms
                    .last()
                    .expect("norm")
                    .to_kind(Kind::Double)
                    .to_device(tch::Device::Cpu)
                    .view([1]),
            )?[0];
            let record = TrainRecord {
                split: "train".into(),
                step,
                epoch: epoch_now,
                temperature: temperatures.get(&epoch_now).copied().flatten(),
                lr,
                loss: losses.iter().sum::<f64>() / losses.len() as f64,
                grad_norm,
                accuracy,
                precision: if rc.objective == Objective::Rtd {
                    precision
                } else {
                    None
                },
                recall: if rc.objective == Objective::Rtd {
                    recall
                } else {
                    None
                },
                seq_per_s: iv.rows as f64 / secs,
                tokens_per_s: iv.tokens as f64 / secs,
                mfu: peak.map(|p| iv.flops / secs / (p * world as f64)),
                peak_memory_bytes: peak_mem,
                data_wait_fraction: iv.wait.as_secs_f64() / secs,
            };
            bar.set_message(format!(
                "loss {:.4} acc {:.4}",
                record.loss, record.accuracy
            ));
            if let Some(m) = &mut metrics {
                m.write(&record)?;
            }
            iv = Interval::new();
        }
        if let Some(v) = &s.validation {
            if step % rc.validate_every == 0 || last {
                let rec = validate::run(&s.model, v, device, step, rc.objective)?;
                if let Some(m) = &mut metrics {
                    m.write(&rec)?;
                }
            }
        }
        if step % rc.checkpoint_every == 0 || last {
            reduce_interval(&mut s.par, &mut iv, false)?;
            check_finite(&iv, &last_good)?;
            if !s.par.writes() {
                continue;
            }
            let state = TrainState {
                step,
                cursor: cursor_now,
                seed: rc.seed,
                config: serde_json::to_value(&rc)?,
            };
            let dir = checkpoint::save(&s.run_dir, s.model.vs(), &opt.state(), &state)?;
            last_good = Some(dir);
            let _ = crate::plots::write_run_plots(&s.run_dir);
        }
    }
    bar.finish_and_clear();
    drop(loader);
    if world > 1 {
        let total = run_start.elapsed().as_secs_f64();
        eprint!(
            "{}",
            format!(
                "trainer: rank {}: {} updates in {total:.2} s, {:.2} s of it in the gradient all-reduce ({:.1}%)\n",
                s.par.rank,
                step - first_step,
                allreduce_time.as_secs_f64(),
                100.0 * allreduce_time.as_secs_f64() / total.max(1e-9)
            )
        );
    }
    if !s.par.writes() {
        return Ok(());
    }
    crate::plots::write_run_plots(&s.run_dir)?;
    let export = s.run_dir.join("export");
    s.model
        .save_pretrained(&export)
        .with_context(|| format!("exporting into {}", export.display()))?;
    shared::files::atomic::write_atomic(&export.join("tokenizer.json"), &s.tokenizer_json)?;
    eprintln!(
        "trainer: {} steps done; metrics in {}, export in {}",
        step,
        s.run_dir.join(crate::metrics::METRICS_FILE).display(),
        export.display()
    );
    Ok(())
}
